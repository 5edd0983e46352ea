// TCP on the event loop: addresses, listeners (multishot accept, SO_REUSEPORT) and
// connections (provided-buffer multishot receive, short-send handling, linked timeouts).
//
// A listener or connection belongs to the loop that created it; use it from tasks running
// on that loop (`loop.spawn`). Received data arrives in pool buffers that the kernel picks
// when bytes land, so an idle connection holds no buffer; when the pool is empty the
// receive waits for a buffer (backpressure) instead of growing memory.
import BufferPool
import Threads
#if canImport(Glibc)
import Glibc
#endif
internal import CEpoll

// MARK: Addresses

public struct SocketAddress: @unchecked Sendable, CustomStringConvertible, Equatable {
    // @unchecked: sockaddr_storage is plain bytes.
    var storage = sockaddr_storage()
    var length: socklen_t = 0

    public var family: Int32 { Int32(storage.ss_family) }

    /// Parses "1.2.3.4:80", "[::1]:80" or "localhost:80" (numeric hosts only, plus localhost).
    public init(_ text: String) throws(RingError) {
        var host: Substring, portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw Self.bad(text) }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { throw Self.bad(text) }
            portText = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { throw Self.bad(text) }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard let port = UInt16(portText) else { throw Self.bad(text) }
        if host == "localhost" { host = "127.0.0.1" }
        try self.init(host: String(host), port: port)
    }

    public init(host: String, port: UInt16) throws(RingError) {
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, host, &v4) == 1 {
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port.bigEndian
            sin.sin_addr = v4
            withUnsafeMutableBytes(of: &storage) { dst in withUnsafeBytes(of: sin) { dst.copyMemory(from: $0) } }
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
        } else if inet_pton(AF_INET6, host, &v6) == 1 {
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = port.bigEndian
            sin6.sin6_addr = v6
            withUnsafeMutableBytes(of: &storage) { dst in withUnsafeBytes(of: sin6) { dst.copyMemory(from: $0) } }
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        } else {
            throw RingError(.invalidArgument("\"\(host)\" is not a numeric IPv4 or IPv6 address"), operation: "parse address")
        }
    }

    init(storage: sockaddr_storage, length: socklen_t) {
        self.storage = storage
        self.length = length
    }

    /// Addresses for `host`: numeric hosts and "localhost" directly; names through
    /// getaddrinfo, which blocks, so it runs on the blocking pool and the caller awaits
    /// the result (resumed on its own executor).
    public static func resolve(_ host: String, port: UInt16) async throws(RingError) -> [SocketAddress] {
        if host == "localhost" { return [try SocketAddress(host: "127.0.0.1", port: port)] }
        if let numeric = try? SocketAddress(host: host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host, port: port) {
            return [numeric]
        }
        let result = (try? await BlockingPool.shared.run { () -> Result<[SocketAddress], RingError> in
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            hints.ai_family = AF_UNSPEC
            var list: UnsafeMutablePointer<addrinfo>?
            let rc = getaddrinfo(host, String(port), &hints, &list)
            guard rc == 0, let first = list else {
                return .failure(RingError(.invalidArgument("cannot resolve \"\(host)\": \(String(cString: gai_strerror(rc)))"), operation: "resolve"))
            }
            defer { freeaddrinfo(list) }
            var out: [SocketAddress] = []
            var p: UnsafeMutablePointer<addrinfo>? = first
            while let ai = p {
                if let sa = ai.pointee.ai_addr, ai.pointee.ai_family == AF_INET || ai.pointee.ai_family == AF_INET6 {
                    var ss = sockaddr_storage()
                    withUnsafeMutableBytes(of: &ss) { $0.copyMemory(from: UnsafeRawBufferPointer(start: sa, count: Int(ai.pointee.ai_addrlen))) }
                    out.append(SocketAddress(storage: ss, length: ai.pointee.ai_addrlen))
                }
                p = ai.pointee.ai_next
            }
            return out.isEmpty ? .failure(RingError(.invalidArgument("no address for \"\(host)\""), operation: "resolve")) : .success(out)
        }) ?? .failure(RingError(.invalidArgument("cannot resolve \"\(host)\": the blocking pool is full"), operation: "resolve"))
        return try result.get()
    }

    private static func bad(_ text: String) -> RingError {
        RingError(.invalidArgument("\"\(text)\" is not HOST:PORT (IPv6 as [::1]:PORT)"), operation: "parse address")
    }

    public var port: UInt16 {
        withUnsafeBytes(of: storage) { raw in
            family == AF_INET ? UInt16(bigEndian: raw.load(fromByteOffset: 2, as: UInt16.self))
                              : UInt16(bigEndian: raw.load(fromByteOffset: 2, as: UInt16.self))
        }
    }

    public var host: String {
        var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        withUnsafeBytes(of: storage) { raw in
            let addr = raw.baseAddress! + (family == AF_INET ? 4 : 8)
            _ = inet_ntop(family, addr, &buf, socklen_t(buf.count))
        }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public var description: String { family == AF_INET6 ? "[\(host)]:\(port)" : "\(host):\(port)" }

    public static func == (a: SocketAddress, b: SocketAddress) -> Bool { a.description == b.description }

    func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        withUnsafeBytes(of: storage) { body($0.baseAddress!.assumingMemoryBound(to: sockaddr.self), length) }
    }

    static func local(of fd: Int32) -> SocketAddress? {
        var ss = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &ss) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return rc == 0 ? SocketAddress(storage: ss, length: len) : nil
    }

    static func peer(of fd: Int32) -> SocketAddress? {
        var ss = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &ss) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &len) } }
        return rc == 0 ? SocketAddress(storage: ss, length: len) : nil
    }
}

private func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32) {
    var v = value
    _ = setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size))
}

// MARK: Listener

public final class TCPListener: MultishotSink {
    public let fd: Int32
    public let localAddress: SocketAddress
    public let loop: EventLoop
    private var accepted: [Int32] = []
    private var acceptedHead = 0
    private var armedUD: UInt64?
    private var failure: RingError?
    private var closed = false
    private let parker = Parker()
    /// Accepted sockets queued before `accept()` takes them; past this the listener stops
    /// accepting (the kernel backlog then applies backpressure).
    public var queuedMax = 1024

    /// Binds and listens on `address` (port 0 picks a free port) on the current loop.
    public init(address: SocketAddress, backlog: Int32 = 4096, reusePort: Bool = true, loop: EventLoop? = nil) throws(RingError) {
        guard let loop = loop ?? EventLoop.current else {
            throw RingError(.invalidArgument("no event loop: create listeners from a task on a loop"), operation: "listen")
        }
        let s = socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { throw RingError(errno: errno, operation: "socket") }
        setOption(s, SOL_SOCKET, SO_REUSEADDR, 1)
        if reusePort { setOption(s, SOL_SOCKET, SO_REUSEPORT, 1) }
        let rc = address.withSockaddr { bind(s, $0, $1) }
        guard rc == 0 else {
            let e = errno
            Glibc.close(s)
            throw RingError(errno: e, operation: "bind \(address)")
        }
        guard Glibc.listen(s, backlog) == 0 else {
            let e = errno
            Glibc.close(s)
            throw RingError(errno: e, operation: "listen \(address)")
        }
        fd = s
        localAddress = SocketAddress.local(of: s) ?? address
        self.loop = loop
    }

    deinit {
        while acceptedHead < accepted.count {
            Glibc.close(accepted[acceptedHead])
            acceptedHead += 1
        }
        if !closed {
            loop.backend.forget(fd: fd)
            Glibc.close(fd)
        }
    }

    private func arm() throws(RingError) {
        switch loop.submitMultishot(self, { ud in loop.backend.accept(fd: fd, multishot: true, ud) }) {
        case .success(let ud): armedUD = ud
        case .failure(let e): throw e
        }
    }

    /// The next connection. Throws `.cancelled` if the task is cancelled, `.closed` after close.
    public func accept() async throws(RingError) -> TCPConnection {
        while true {
            if acceptedHead < accepted.count {
                let c = accepted[acceptedHead]
                acceptedHead += 1
                if acceptedHead == accepted.count {
                    accepted.removeAll(keepingCapacity: true)
                    acceptedHead = 0
                }
                return TCPConnection(fd: c, loop: loop)
            }
            if let f = failure {
                failure = nil
                throw f
            }
            if closed { throw RingError(.closed, operation: "accept") }
            if armedUD == nil { try arm() }
            switch await parker.wait(loop: loop) {
            case .cancelled: throw RingError(.cancelled, operation: "accept")
            case .timedOut: throw RingError(.timedOut, operation: "accept")
            case .signalled: continue
            }
        }
    }

    func deliver(_ res: Int32, flags: UInt32, loop: EventLoop) {
        if res >= 0 {
            if closed {
                Glibc.close(res)
            } else {
                accepted.append(res)
                if accepted.count - acceptedHead >= queuedMax, let ud = armedUD { loop.requestCancel(ud) }
            }
        } else if res != -ECANCELED && !closed {
            // EMFILE/ENFILE and friends: report to the acceptor; the next accept() re-arms.
            failure = RingError(errno: -res, operation: "accept")
        }
        if flags & CQEFlag.more == 0 { armedUD = nil }
        parker.wake(loop: loop)
    }

    /// Stops accepting and closes the listening socket; queued connections are closed.
    public func close() async {
        guard !closed else { return }
        closed = true
        parker.wake(.cancelled, loop: loop)
        if let ud = armedUD {
            loop.requestCancel(ud)
            while armedUD != nil { _ = await parker.wait(loop: loop, cancellable: false) }
        }
        while acceptedHead < accepted.count {
            Glibc.close(accepted[acceptedHead])
            acceptedHead += 1
        }
        accepted.removeAll()
        acceptedHead = 0
        await closeDescriptor(fd, on: loop)
        // No forget(fd:) here: the backend forgets before closing, and after the close
        // the number may already belong to a newly accepted socket.
    }
}

// MARK: Connection

/// The result of a receive into a caller's buffer: the buffer always comes back.
public struct IOCompletion: ~Copyable {
    public let result: Result<Int, RingError>
    public var buffer: PooledBuffer

    /// Ends the completion, keeping its buffer.
    public consuming func takeBuffer() -> PooledBuffer { buffer }
}

public final class TCPConnection: MultishotSink, RecvStarved {
    public let fd: Int32
    public let loop: EventLoop
    private var pool: BufferPool { loop.pool }
    private var received: [PooledBuffer.Parts] = []
    private var receivedHead = 0
    private var recvUD: UInt64?
    private var recvEOF = false
    private var recvFailure: RingError?
    private var starved = false
    private var closed = false
    private var opsInFlight = 0
    private let parker = Parker()
    private let closeParker = Parker()

    /// Whether task cancellation interrupts this connection's receives and sends (true,
    /// the default). A server that ends connections by closing them can turn it off: each
    /// wait then skips installing a task-cancellation handler (~0.5 µs each on this
    /// machine), and `close()` from any task on the loop still wakes a waiting receive and
    /// aborts a blocked send.
    public var followsTaskCancellation = true

    init(fd: Int32, loop: EventLoop) {
        self.fd = fd
        self.loop = loop
        setOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
    }

    deinit {
        // No multishot can be armed here: an armed one retains its sink (self).
        while receivedHead < received.count {
            _ = pool.reassemble(received[receivedHead])
            receivedHead += 1
        }
        if !closed {
            loop.backend.forget(fd: fd)
            Glibc.close(fd)
        }
    }

    public var localAddress: SocketAddress? { SocketAddress.local(of: fd) }
    public var remoteAddress: SocketAddress? { SocketAddress.peer(of: fd) }

    /// Connects to `address` from the current loop, optionally binding a local address
    /// first (tests use 127.x.y.z sources to spread ephemeral ports).
    public static func connect(to address: SocketAddress, from local: SocketAddress? = nil, timeout: Duration? = nil) async throws(RingError) -> TCPConnection {
        guard let loop = EventLoop.current else {
            throw RingError(.invalidArgument("no event loop: connect from a task on a loop"), operation: "connect")
        }
        let s = socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { throw RingError(errno: errno, operation: "socket") }
        if let local {
            setOption(s, SOL_IP, cepoll_ip_bind_address_no_port(), 1)
            let rc = local.withSockaddr { bind(s, $0, $1) }
            if rc != 0 {
                let e = errno
                Glibc.close(s)
                throw RingError(errno: e, operation: "bind \(local)")
            }
        }
        let tns = timeout?.nanoseconds
        let r = await loop.perform { ud, slot in
            let dst = loop.scratch(slot)
            address.withSockaddr { p, len in dst.copyMemory(from: UnsafeRawPointer(p), byteCount: Int(len)) }
            return loop.backend.connect(fd: s, address: dst, length: address.length, ud,
                                        timeout: tns == nil ? nil : loop.timeoutScratch(slot), timeoutNs: tns ?? -1)
        }
        guard r.res >= 0 else {
            loop.backend.forget(fd: s)
            Glibc.close(s)
            throw timeoutAware(r.res, "connect \(address)", hadTimeout: tns != nil)
        }
        return TCPConnection(fd: s, loop: loop)
    }

    // MARK: Receive

    /// The next bytes from the peer in a pool buffer, or nil at end of stream.
    /// Waits for a pool buffer when the pool is exhausted.
    public func receive(timeout: Duration? = nil) async throws(RingError) -> PooledBuffer? {
        while true {
            if receivedHead < received.count {
                let parts = received[receivedHead]
                receivedHead += 1
                if receivedHead == received.count {
                    received.removeAll(keepingCapacity: true)
                    receivedHead = 0
                }
                return pool.reassemble(parts)
            }
            if let f = recvFailure { throw f }
            if recvEOF { return nil }
            if closed { throw RingError(.closed, operation: "recv") }
            if recvUD == nil && !starved {
                switch loop.submitMultishot(self, { ud in loop.backend.recvSelect(fd: fd, multishot: true, ud) }) {
                case .success(let ud): recvUD = ud
                case .failure(let e): throw e
                }
            }
            switch await parker.wait(loop: loop, timeoutNs: timeout?.nanoseconds, cancellable: followsTaskCancellation) {
            case .cancelled: throw RingError(.cancelled, operation: "recv")
            case .timedOut: throw RingError(.timedOut, operation: "recv")
            case .signalled: continue
            }
        }
    }

    func deliver(_ res: Int32, flags: UInt32, loop: EventLoop) {
        if flags & CQEFlag.buffer != 0 {
            let buffer = pool.adoptFromKernel(index: flags >> CQEFlag.bufferShift, count: max(0, Int(res)))
            if res > 0 && !closed {
                received.append(pool.disassemble(buffer))
                // Bound what one connection can hold unread: past the cap, stop receiving
                // (the socket's own buffer then pushes back on the peer); receive() re-arms.
                if received.count - receivedHead >= Self.receivedMax, let ud = recvUD { loop.requestCancel(ud) }
            }
        }
        if res > 0 {
            // Data: handled above.
        } else if res == 0 {
            recvEOF = true
        } else if res == -ENOBUFS {
            if !starved && !closed {
                starved = true
                loop.receiveStarved(self)
            }
        } else if res < 0 && res != -ECANCELED {
            recvFailure = RingError(errno: -res, operation: "recv")
        }
        if flags & CQEFlag.more == 0 { recvUD = nil }
        parker.wake(loop: loop)
    }

    func bufferAvailable(loop: EventLoop) -> Bool {
        starved = false
        guard !closed else { return false }
        parker.wake(loop: loop)
        return true
    }

    /// A send or receive(into:) finished: let a waiting close() proceed when none is left.
    private func operationEnded() {
        opsInFlight -= 1
        if opsInFlight == 0 { closeParker.wake(loop: loop) }
    }

    /// Received buffers one connection may hold before it stops receiving.
    static let receivedMax = 16

    /// Receives once into `buffer` after its first `count` bytes (a plain recv, not a
    /// provided buffer). The buffer comes back with the result whatever happens.
    public func receive(into buffer: consuming PooledBuffer, timeout: Duration? = nil) async -> IOCompletion {
        if closed { return IOCompletion(result: .failure(RingError(.closed, operation: "recv")), buffer: buffer) }
        opsInFlight += 1
        defer { operationEnded() }
        let parts = pool.disassemble(buffer)
        let tns = timeout?.nanoseconds
        let space = pool.bufferSizeBytes - parts.count
        let dst = pool.address(of: parts.index) + parts.count
        let r = await loop.perform(cancellable: followsTaskCancellation) { ud, slot in
            loop.backend.recv(fd: fd, into: dst, count: space, ud, timeout: tns == nil ? nil : loop.timeoutScratch(slot), timeoutNs: tns ?? -1)
        }
        var back = pool.reassemble(parts)
        if r.res >= 0 {
            back.count += Int(r.res)
            return IOCompletion(result: .success(Int(r.res)), buffer: back)
        }
        return IOCompletion(result: .failure(timeoutAware(r.res, "recv", hadTimeout: tns != nil)), buffer: back)
    }

    // MARK: Send

    /// Sends every valid byte of `buffer` (short sends are continued), then returns the
    /// buffer to the pool. Waits while the peer is not reading (socket backpressure).
    public func send(_ buffer: consuming PooledBuffer, timeout: Duration? = nil) async throws(RingError) {
        let parts = pool.disassemble(buffer)
        defer { _ = pool.reassemble(parts) }
        try await sendAll(pool.address(of: parts.index), count: parts.count, timeoutNs: timeout?.nanoseconds)
    }

    /// Most buffers one vectored send carries (the iovecs live in the operation's scratch).
    public static let vectorMax = 8

    /// Sends the valid bytes of every buffer in `list`, in order, with one sendmsg per
    /// attempt over up to `vectorMax` buffers; short sends continue where they stopped.
    public func send(_ list: consuming PooledBufferList, timeout: Duration? = nil) async throws(RingError) {
        if closed { throw RingError(.closed, operation: "sendmsg") }
        opsInFlight += 1
        defer { operationEnded() }
        let tns = timeout?.nanoseconds
        var part = 0, offset = 0
        while part < list.count {
            if list.parts[part].count - offset == 0 { part += 1; offset = 0; continue }
            let first = part, firstOffset = offset
            let r = await loop.perform(cancellable: followsTaskCancellation) { ud, slot in
                // msghdr at scratch+0, iovecs at scratch+64 (8 x 16 bytes).
                let scratch = loop.scratch(slot)
                let iov = (scratch + 64).bindMemory(to: iovec.self, capacity: Self.vectorMax)
                var n = 0
                var i = first
                while i < list.count && n < Self.vectorMax {
                    let skip = i == first ? firstOffset : 0
                    let len = list.parts[i].count - skip
                    if len > 0 {
                        iov[n] = iovec(iov_base: list.address(of: i) + skip, iov_len: len)
                        n += 1
                    }
                    i += 1
                }
                let msg = scratch.bindMemory(to: msghdr.self, capacity: 1)
                msg.initialize(to: msghdr())
                msg.pointee.msg_iov = iov
                msg.pointee.msg_iovlen = n
                return loop.backend.sendmsg(fd: fd, message: scratch, ud,
                                            timeout: tns == nil ? nil : loop.timeoutScratch(slot), timeoutNs: tns ?? -1)
            }
            if r.res <= 0 {
                throw r.res == 0 ? RingError(.brokenPipe, operation: "sendmsg") : timeoutAware(r.res, "sendmsg", hadTimeout: tns != nil)
            }
            // Advance past what the kernel took.
            var sent = Int(r.res)
            while sent > 0 {
                let left = list.parts[part].count - offset
                if sent >= left { sent -= left; part += 1; offset = 0 } else { offset += sent; sent = 0 }
            }
        }
    }

    /// Sends a copy of `bytes`, through pool buffers.
    /// Sends `bytes` (copied into pool buffers). The concrete overload spares callers in
    /// other modules the unspecialized generic path.
    public func send(_ bytes: [UInt8], timeout: Duration? = nil) async throws(RingError) {
        var at = 0
        while at < bytes.count {
            guard var b = pool.tryAcquire() else {
                // The pool is empty: send the rest from a heap copy rather than wait. Waiting
                // could deadlock a loop whose buffers are held by connections that are
                // themselves waiting to send.
                let n = bytes.count - at
                let heap = UnsafeMutableRawPointer.allocate(byteCount: n, alignment: 16)
                defer { heap.deallocate() }
                bytes.withUnsafeBytes { heap.copyMemory(from: $0.baseAddress! + at, byteCount: n) }
                try await sendAll(heap, count: n, timeoutNs: timeout?.nanoseconds)
                return
            }
            let n = min(b.capacity, bytes.count - at)
            b.withUnsafeMutableBytes { dst in
                bytes.withUnsafeBytes { src in dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[at..<(at + n)])) }
            }
            b.count = n
            at += n
            try await send(b, timeout: timeout)
        }
    }

    public func send(_ bytes: some Collection<UInt8>, timeout: Duration? = nil) async throws(RingError) {
        var rest = bytes[...]
        while !rest.isEmpty {
            var b = await pool.acquire()
            let n = min(b.capacity, rest.count)
            let chunk = rest.prefix(n)
            b.withUnsafeMutableBytes { dst in
                let copied = chunk.withContiguousStorageIfAvailable { src in
                    dst.copyMemory(from: UnsafeRawBufferPointer(src))
                }
                if copied == nil { _ = dst.initializeMemory(as: UInt8.self, from: chunk) }
            }
            b.count = n
            rest = rest.dropFirst(n)
            try await send(b, timeout: timeout)
        }
    }

    private func sendAll(_ base: UnsafeMutableRawPointer, count: Int, timeoutNs: Int64?) async throws(RingError) {
        if closed { throw RingError(.closed, operation: "send") }
        opsInFlight += 1
        defer { operationEnded() }
        var sent = 0
        if timeoutNs != nil {
            // Optimistic first attempt without a timer: a response that fits in the socket
            // buffer (the common case) never arms and cancels a linked timeout.
            let r = await loop.perform(cancellable: false) { ud, _ in loop.backend.sendNow(fd: fd, from: base, count: count, ud) }
            if r.res > 0 {
                sent = Int(r.res)
            } else if r.res != -EAGAIN && r.res != -EWOULDBLOCK {
                throw r.res == 0 ? RingError(.brokenPipe, operation: "send") : RingError(errno: -r.res, operation: "send")
            }
        }
        // The deadline covers the whole send: a reader taking a few bytes at a time must not
        // restart it with every partial send.
        let deadline = timeoutNs.map { ContinuousClock.now + .nanoseconds($0) }
        while sent < count {
            var leftNs: Int64? = nil
            if let deadline {
                let left = deadline - ContinuousClock.now
                guard left > .zero else { throw RingError(.timedOut, operation: "send") }
                leftNs = max(1, left.nanoseconds)
            }
            let tns = leftNs
            let r = await loop.perform(cancellable: followsTaskCancellation) { ud, slot in
                loop.backend.send(fd: fd, from: base + sent, count: count - sent, ud,
                                  timeout: tns == nil ? nil : loop.timeoutScratch(slot), timeoutNs: tns ?? -1)
            }
            if r.res <= 0 {
                throw r.res == 0 ? RingError(.brokenPipe, operation: "send") : timeoutAware(r.res, "send", hadTimeout: timeoutNs != nil)
            }
            sent += Int(r.res)
        }
    }

    // MARK: Shutdown and close

    public enum ShutdownHow: Int32 { case read = 0, write = 1, both = 2 }

    /// Half-closes the connection (`.write` sends FIN and keeps receiving).
    public func shutdown(_ how: ShutdownHow = .write) async throws(RingError) {
        if closed { throw RingError(.closed, operation: "shutdown") }
        let r = await loop.perform(cancellable: false) { ud, _ in loop.backend.shutdown(fd: fd, how: how.rawValue, ud) }
        if r.res < 0 && r.res != -ENOTCONN { throw RingError(errno: -r.res, operation: "shutdown") }
    }

    /// Resets the connection on close (SO_LINGER 0): no TIME_WAIT, the peer sees ECONNRESET.
    public func setResetOnClose() {
        var l = linger(l_onoff: 1, l_linger: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
    }

    /// Cancels the armed receive, returns every queued buffer and closes the socket.
    public func close() async {
        guard !closed else { return }
        closed = true
        parker.wake(.cancelled, loop: loop)
        // A send blocked on a peer that does not read, or a receive(into:) on a quiet peer,
        // would keep the fd busy: shut the socket down so the kernel completes them first.
        if opsInFlight > 0 {
            _ = Glibc.shutdown(fd, Int32(SHUT_RDWR))
            while opsInFlight > 0 { _ = await closeParker.wait(loop: loop, cancellable: false) }
        }
        if let ud = recvUD {
            loop.requestCancel(ud)
            while recvUD != nil { _ = await parker.wait(loop: loop, cancellable: false) }
        }
        while receivedHead < received.count {
            _ = pool.reassemble(received[receivedHead])
            receivedHead += 1
        }
        received.removeAll()
        receivedHead = 0
        await closeDescriptor(fd, on: loop)
        // No forget(fd:) here: the backend forgets before closing, and after the close
        // the number may already belong to a newly accepted socket.
    }
}

/// Closes `fd` through the loop; if the close cannot even be queued (no slot, SQ full),
/// closes it synchronously rather than leak it.
func closeDescriptor(_ fd: Int32, on loop: EventLoop) async {
    let r = await loop.perform(cancellable: false) { ud, _ in loop.backend.close(fd: fd, ud) }
    if r.res == -EAGAIN || r.res == -EBUSY {
        loop.backend.forget(fd: fd)
        Glibc.close(fd)
    }
}

/// A linked timeout cancels its operation (-ECANCELED); report that as a timeout unless the
/// task itself was cancelled.
func timeoutAware(_ res: Int32, _ op: String, hadTimeout: Bool) -> RingError {
    if res == -ECANCELED && hadTimeout && !Task.isCancelled { return RingError(.timedOut, operation: op) }
    return RingError(errno: -res, operation: op)
}
