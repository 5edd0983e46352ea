// Simulation.SimBackend, sockets: listeners, connections and the network between them.
//
// Each connection is two `SimSocket`s linked as peers. Bytes a socket sends are copied at
// once, held "in flight" for a latency drawn from the seed, then appended to the peer's
// inbox in order; a direction holds at most `socketBufferBytes` in flight plus unread, so a
// peer that does not read pushes back on the sender (sends park). FIN and RST travel the
// same way, after the data sent before them. Closing with unread input, or with SO_LINGER
// 0, resets the peer; bytes arriving at a closed socket reset their sender. Receives follow
// io_uring: provided-buffer receives take a pool buffer when data is there (none free past
// half the pool: -ENOBUFS), multishot ones keep delivering with CQE_F_MORE.
// Non-goals: modelling the handshake beyond one latency, addresses beyond IPv4 numbers.
import BufferPool
import Ring
#if canImport(Glibc)
import Glibc
#endif

final class SimSocket {
    @safe enum Reader { case select(ud: UInt64, multishot: Bool), plain(ud: UInt64, UnsafeMutableRawPointer, Int) }
    @safe enum Writer { case bytes(ud: UInt64, UnsafeRawPointer, Int), message(ud: UInt64, UnsafeRawPointer) }

    var fd: Int32
    let serial: Int
    var local: SocketAddress?
    var remote: SocketAddress?
    var peer: SimSocket?
    var listening = false
    var backlog = 0
    var acceptQueue: [SimSocket] = []
    var acceptors: [(ud: UInt64, multishot: Bool)] = []
    var inbox: [UInt8] = []
    var inboxHead = 0
    /// Bytes sent toward this socket that have not arrived yet.
    var incoming = 0
    /// When the last byte (or FIN/RST) sent toward this socket arrives: arrivals keep order.
    var lastArrival: Int64 = 0
    var finReceived = false
    var resetReceived = false
    var readShut = false
    var writeShut = false
    var closed = false
    var resetOnClose = false
    var readers: [Reader] = []
    var writers: [Writer] = []
    var connectUD: UInt64?

    init(fd: Int32, serial: Int) {
        self.fd = fd
        self.serial = serial
    }

    var unread: Int { inbox.count - inboxHead }

    /// Forgets a cancelled operation.
    func drop(ud: UInt64) {
        readers.removeAll { r in
            switch r { case .select(let u, _), .plain(let u, _, _): return u == ud }
        }
        writers.removeAll { w in
            switch w { case .bytes(let u, _, _), .message(let u, _): return u == ud }
        }
        acceptors.removeAll { $0.ud == ud }
        if connectUD == ud { connectUD = nil }
    }
}

extension SimBackend {
    // MARK: Descriptors

    func allocateFD() -> Int32 {
        var fd: Int32 = 3
        while sockets[fd] != nil || openFiles[fd] != nil { fd += 1 }
        return fd
    }

    package func socket(family: Int32) -> Int32 {
        guard family == AF_INET else { return -EAFNOSUPPORT }
        connectionSerial += 1
        let fd = allocateFD()
        sockets[fd] = SimSocket(fd: fd, serial: connectionSerial)
        return fd
    }

    package func bind(fd: Int32, address: UnsafeRawPointer, length: UInt32) -> Int32 {
        guard let s = sockets[fd] else { return -EBADF }
        var a = unsafe SocketAddress(bytes: UnsafeRawBufferPointer(start: address, count: Int(length)))
        if a.port == 0 { a = (try? SocketAddress(host: a.host, port: ephemeralPort())) ?? a }
        if s.local != nil { return -EINVAL }
        if let l = listeners[a.description], !l.closed { return -EADDRINUSE }
        s.local = a
        return 0
    }

    func ephemeralPort() -> UInt16 {
        nextEphemeralPort = nextEphemeralPort == 60_999 ? 40_000 : nextEphemeralPort + 1
        return nextEphemeralPort
    }

    package func listen(fd: Int32, backlog: Int32) -> Int32 {
        guard let s = sockets[fd], let local = s.local else { return -EINVAL }
        s.listening = true
        s.backlog = Int(max(1, min(backlog, 64)))
        listeners[local.description] = s
        return 0
    }

    package func setOption(fd: Int32, level: Int32, name: Int32, value: UnsafeRawPointer, length: UInt32) -> Int32 {
        guard let s = sockets[fd] else { return -EBADF }
        if level == SOL_SOCKET && name == SO_LINGER && Int(length) >= MemoryLayout<linger>.size {
            let l = unsafe value.loadUnaligned(as: linger.self)
            s.resetOnClose = l.l_onoff != 0 && l.l_linger == 0
        }
        return 0
    }

    package func address(fd: Int32, peer: Bool, into storage: UnsafeMutableRawPointer, length: inout UInt32) -> Int32 {
        guard let s = sockets[fd] else { return -EBADF }
        guard let a = peer ? s.remote : s.local else { return -ENOTCONN }
        let bytes = a.bytes
        let n = min(bytes.count, Int(length))
        unsafe bytes.withUnsafeBytes { unsafe storage.copyMemory(from: $0.baseAddress!, byteCount: n) }
        length = UInt32(bytes.count)
        return 0
    }

    // MARK: Connect and accept

    package func connect(fd: Int32, address: UnsafeRawPointer, length: UInt32, _ ud: UInt64, timeout: UnsafeMutableRawPointer?, timeoutNs: Int64) -> Int32 {
        guard let s = sockets[fd] else { complete(ud, -EBADF); return 0 }
        let target = unsafe SocketAddress(bytes: UnsafeRawBufferPointer(start: address, count: Int(length)))
        if s.local == nil { s.local = try? SocketAddress(host: "10.0.1.\(1 + s.serial % 250)", port: ephemeralPort()) }
        s.remote = target
        s.connectUD = ud
        pending[ud] = .socket(fd)
        unsafe linkTimeout(ud, timeout, timeoutNs)
        schedule(at: nowNanos + latency()) { [unowned self] in attemptConnect(s, ud, to: target) }
        return 0
    }

    private func attemptConnect(_ client: SimSocket, _ ud: UInt64, to target: SocketAddress) {
        guard pending[ud] != nil, !client.closed else { return }
        let wildcard = "0.0.0.0:\(target.port)"
        guard let l = listeners[target.description] ?? listeners[wildcard], !l.closed else {
            client.connectUD = nil
            finish(ud, -ECONNREFUSED)
            return
        }
        if l.acceptQueue.count >= l.backlog {
            // A full accept queue drops the SYN; the client tries again a second later.
            schedule(at: nowNanos + 1_000_000_000) { [unowned self] in attemptConnect(client, ud, to: target) }
            return
        }
        connectionSerial += 1
        let server = SimSocket(fd: -1, serial: connectionSerial)
        server.local = target
        server.remote = client.local
        server.peer = client
        client.peer = server
        l.acceptQueue.append(server)
        pumpAcceptors(l)
        schedule(at: nowNanos + latency()) { [unowned self] in
            client.connectUD = nil
            finish(ud, 0)
        }
    }

    package func accept(fd: Int32, multishot: Bool, _ ud: UInt64) -> Int32 {
        guard let s = sockets[fd], s.listening else { complete(ud, -EINVAL); return 0 }
        pending[ud] = .socket(fd)
        s.acceptors.append((ud, multishot))
        pumpAcceptors(s)
        return 0
    }

    private func pumpAcceptors(_ l: SimSocket) {
        while let a = l.acceptors.first, !l.acceptQueue.isEmpty {
            let c = l.acceptQueue.removeFirst()
            c.fd = allocateFD()
            sockets[c.fd] = c
            if a.multishot {
                complete(a.ud, c.fd, CQEFlag.more)
            } else {
                l.acceptors.removeFirst()
                finish(a.ud, c.fd)
            }
        }
    }

    // MARK: Receive

    package func recvSelect(fd: Int32, multishot: Bool, _ ud: UInt64) -> Int32 {
        guard let s = sockets[fd] else { complete(ud, -EBADF); return 0 }
        pending[ud] = .socket(fd)
        s.readers.append(.select(ud: ud, multishot: multishot))
        pumpReaders(s)
        return 0
    }

    package func recv(fd: Int32, into: UnsafeMutableRawPointer, count: Int, _ ud: UInt64, timeout: UnsafeMutableRawPointer?, timeoutNs: Int64) -> Int32 {
        guard let s = sockets[fd] else { complete(ud, -EBADF); return 0 }
        pending[ud] = .socket(fd)
        unsafe s.readers.append(.plain(ud: ud, into, count))
        pumpReaders(s)
        if pending[ud] != nil { unsafe linkTimeout(ud, timeout, timeoutNs) }
        return 0
    }

    /// How many of `available` bytes one receive takes (a short read now and then).
    private func readSize(_ available: Int) -> Int {
        guard available > 1, rng.chance(faults.shortRead) else { return available }
        injected.shortReads += 1
        return rng.int(in: 1...(available - 1))
    }

    /// Serves waiting receives from the inbox, then reports end of stream or a reset.
    func pumpReaders(_ s: SimSocket) {
        let before = s.unread
        while let r = s.readers.first {
            if s.unread > 0 && !s.readShut {
                switch r {
                case .select(let ud, let multishot):
                    guard pool.freeBuffers > pool.bufferCount / 2, let index = pool.lendToKernel() else {
                        s.readers.removeFirst()
                        finish(ud, -ENOBUFS)
                        continue
                    }
                    let n = readSize(min(s.unread, pool.bufferSizeBytes))
                    unsafe take(s, n, into: pool.address(of: index))
                    let flags = CQEFlag.buffer | (index << CQEFlag.bufferShift)
                    if multishot {
                        complete(ud, Int32(n), flags | CQEFlag.more)
                    } else {
                        s.readers.removeFirst()
                        finish(ud, Int32(n), flags)
                    }
                case .plain(let ud, let p, let count):
                    let n = readSize(min(s.unread, count))
                    unsafe take(s, n, into: p)
                    s.readers.removeFirst()
                    finish(ud, Int32(n))
                }
            } else if s.resetReceived {
                s.readers.removeFirst()
                finish(ud(of: r), -ECONNRESET)
            } else if s.finReceived || s.readShut {
                s.readers.removeFirst()
                finish(ud(of: r), 0)
            } else {
                break
            }
        }
        if s.unread < before, let sender = s.peer { pumpWriters(sender) }
    }

    private func ud(of r: SimSocket.Reader) -> UInt64 {
        switch r { case .select(let u, _), .plain(let u, _, _): return u }
    }

    private func take(_ s: SimSocket, _ n: Int, into p: UnsafeMutableRawPointer) {
        unsafe s.inbox.withUnsafeBytes { unsafe p.copyMemory(from: $0.baseAddress! + s.inboxHead, byteCount: n) }
        s.inboxHead += n
        if s.inboxHead == s.inbox.count {
            s.inbox.removeAll(keepingCapacity: true)
            s.inboxHead = 0
        }
    }

    // MARK: Send

    package func send(fd: Int32, from: UnsafeRawPointer, count: Int, _ ud: UInt64, timeout: UnsafeMutableRawPointer?, timeoutNs: Int64) -> Int32 {
        unsafe queueWriter(fd, .bytes(ud: ud, from, count), ud, timeout, timeoutNs)
    }

    package func sendmsg(fd: Int32, message: UnsafeRawPointer, _ ud: UInt64, timeout: UnsafeMutableRawPointer?, timeoutNs: Int64) -> Int32 {
        unsafe queueWriter(fd, .message(ud: ud, message), ud, timeout, timeoutNs)
    }

    package func sendNow(fd: Int32, from: UnsafeRawPointer, count: Int, _ ud: UInt64) -> Int32 {
        guard let s = sockets[fd] else { complete(ud, -EBADF); return 0 }
        if s.writers.isEmpty && (sendSpace(s) > 0 || s.resetReceived || s.writeShut) {
            pending[ud] = .socket(fd)
            unsafe s.writers.append(.bytes(ud: ud, from, count))
            pumpWriters(s)
        } else {
            complete(ud, -EAGAIN)
        }
        return 0
    }

    private func queueWriter(_ fd: Int32, _ w: SimSocket.Writer, _ ud: UInt64, _ timeout: UnsafeMutableRawPointer?, _ ns: Int64) -> Int32 {
        guard let s = sockets[fd] else { complete(ud, -EBADF); return 0 }
        pending[ud] = .socket(fd)
        s.writers.append(w)
        pumpWriters(s)
        if pending[ud] != nil { unsafe linkTimeout(ud, timeout, ns) }
        return 0
    }

    /// Room toward the peer (a peer that is gone takes anything: the bytes are lost).
    private func sendSpace(_ s: SimSocket) -> Int {
        guard let p = s.peer, !p.closed else { return Int.max }
        return max(0, socketBufferBytes - p.incoming - p.unread)
    }

    /// Runs waiting sends in order while there is room.
    func pumpWriters(_ s: SimSocket) {
        while let w = s.writers.first {
            let ud: UInt64
            switch w { case .bytes(let u, _, _), .message(let u, _): ud = u }
            if s.resetReceived || s.writeShut || s.peer == nil {
                s.writers.removeFirst()
                finish(ud, s.resetReceived ? -ECONNRESET : -EPIPE)
                continue
            }
            let space = sendSpace(s)
            guard space > 0 else { break }
            var bytes = gather(w, max: space)
            if bytes.count > 1 && rng.chance(faults.shortWrite) {
                injected.shortWrites += 1
                bytes.removeLast(rng.int(in: 1...(bytes.count - 1)))
            }
            s.writers.removeFirst()
            finish(ud, Int32(bytes.count))
            transmit(bytes, from: s)
        }
    }

    private func gather(_ w: SimSocket.Writer, max: Int) -> [UInt8] {
        switch w {
        case .bytes(_, let p, let count):
            return unsafe Array(UnsafeRawBufferPointer(start: p, count: min(count, max)))
        case .message(_, let m):
            let msg = unsafe m.assumingMemoryBound(to: msghdr.self).pointee
            var out: [UInt8] = []
            for i in unsafe 0..<Int(msg.msg_iovlen) where out.count < max {
                let v = unsafe msg.msg_iov[i]
                unsafe out += UnsafeRawBufferPointer(start: v.iov_base, count: min(v.iov_len, max - out.count))
            }
            return out
        }
    }

    /// Puts bytes on the wire toward `s`'s peer; now and then the connection resets instead.
    private func transmit(_ bytes: [UInt8], from s: SimSocket) {
        guard let p = s.peer else { return }
        if rng.chance(faults.reset) {
            injected.resets += 1
            deliverReset(to: p)
            deliverReset(to: s)
            return
        }
        p.incoming += bytes.count
        deliver(to: p) { [unowned self] in
            p.incoming -= bytes.count
            if p.closed || p.resetReceived {
                if p.closed { deliverReset(to: s) }
                return
            }
            p.inbox += bytes
            pumpReaders(p)
        }
    }

    /// Runs `arrival` at `to` after a latency, after everything sent to it before.
    private func deliver(to s: SimSocket, _ arrival: @escaping () -> Void) {
        let at = max(nowNanos + latency(), s.lastArrival)
        s.lastArrival = at
        schedule(at: at, arrival)
    }

    private func deliverReset(to s: SimSocket) {
        guard !s.resetReceived else { return }
        deliver(to: s) { [unowned self] in
            guard !s.resetReceived else { return }
            s.resetReceived = true
            pumpReaders(s)
            pumpWriters(s)
        }
    }

    private func deliverFIN(to s: SimSocket) {
        deliver(to: s) { [unowned self] in
            s.finReceived = true
            pumpReaders(s)
        }
    }

    // MARK: Shutdown and close

    package func shutdown(fd: Int32, how: Int32, _ ud: UInt64) -> Int32 {
        complete(ud, shutdownNow(fd: fd, how: how))
        return 0
    }

    package func shutdownNow(fd: Int32, how: Int32) -> Int32 {
        guard let s = sockets[fd] else { return -EBADF }
        guard s.peer != nil || s.listening else { return -ENOTCONN }
        if how != Int32(SHUT_RD), !s.writeShut {
            s.writeShut = true
            if let p = s.peer, !s.resetReceived { deliverFIN(to: p) }
            pumpWriters(s)
        }
        if how != Int32(SHUT_WR) {
            s.readShut = true
            pumpReaders(s)
        }
        return 0
    }

    package func close(fd: Int32, _ ud: UInt64) -> Int32 {
        let later = latency()
        let rc = closeNow(fd: fd)
        schedule(at: nowNanos + later / 4) { [unowned self] in complete(ud, rc) }
        return 0
    }

    package func closeNow(fd: Int32) -> Int32 {
        if openFiles.removeValue(forKey: fd) != nil { return 0 }
        guard let s = sockets.removeValue(forKey: fd) else { return -EBADF }
        s.closed = true
        for r in s.readers { finish(ud(of: r), -ECANCELED) }
        for w in s.writers {
            switch w { case .bytes(let u, _, _), .message(let u, _): finish(u, -ECANCELED) }
        }
        for a in s.acceptors { finish(a.ud, -ECANCELED) }
        if let u = s.connectUD { finish(u, -ECANCELED) }
        s.readers = []
        s.writers = []
        s.acceptors = []
        if s.listening {
            if let local = s.local, listeners[local.description] === s { listeners[local.description] = nil }
            for c in s.acceptQueue { if let client = c.peer { deliverReset(to: client) } }
            s.acceptQueue = []
        } else if let p = s.peer, !s.resetReceived {
            if s.resetOnClose || s.unread > 0 {
                deliverReset(to: p)
            } else if !s.writeShut {
                s.writeShut = true
                deliverFIN(to: p)
            }
            if p.closed {
                p.peer = nil
                s.peer = nil
            }
        }
        return 0
    }
}
