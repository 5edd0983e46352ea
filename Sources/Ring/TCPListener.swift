// A TCP listener on the event loop: multishot accept (one submission delivers every
// connection), SO_REUSEPORT so each loop can own a listener on the same port.
import BufferPool
import Threads
#if canImport(Glibc)
import Glibc
#endif
internal import CEpoll

// MARK: Listener

public final class TCPListener: MultishotSink {
    public let fd: Int32
    public let localAddress: SocketAddress
    public let loop: EventLoop
    private var accepted = FIFOQueue<Int32>()
    private var armedUD: UInt64?
    private var failure: RingError?
    private var closed = false
    private let parker = Parker()
    /// Accepted sockets queued before `accept()` takes them; past this the listener stops
    /// accepting (the kernel backlog then applies backpressure).
    public var queuedMax = 1024

    /// Binds and listens on `address` (port 0 picks a free port) on the current loop.
    ///
    /// With `reusePort`, Linux lets any socket of the same user that sets SO_REUSEPORT bind
    /// the port too, another process's as well, and then spreads connections over all of
    /// them. `exclusive` refuses that for the first listener of a group: before binding, a
    /// probe socket without SO_REUSEPORT binds the address, which fails (EADDRINUSE) while
    /// any other socket listens there, and is closed again; the group's later listeners
    /// join this one with `exclusive: false`. A second server started on a port in use so
    /// fails at once instead of quietly taking half of the first one's connections. Only
    /// a process that binds in the microseconds between the probe and the bind can still
    /// share the port.
    public init(address: SocketAddress, backlog: Int32 = 4096, reusePort: Bool = true, exclusive: Bool = false,
                loop: EventLoop? = nil) throws(RingError) {
        guard let loop = loop ?? EventLoop.current else {
            throw RingError(.invalidArgument, operation: "listen", reason: "no event loop: create listeners from a task on a loop")
        }
        let backend = loop.backend
        if reusePort && exclusive && address.port != 0 { try Self.probe(address, on: backend) }
        let s = backend.socket(family: address.family)
        guard s >= 0 else { throw RingError(errno: -s, operation: "socket") }
        backend.setOption(fd: s, level: SOL_SOCKET, name: SO_REUSEADDR, 1)
        if reusePort { backend.setOption(fd: s, level: SOL_SOCKET, name: SO_REUSEPORT, 1) }
        let rc = unsafe address.withSockaddr { unsafe backend.bind(fd: s, address: $0, length: $1) }
        guard rc == 0 else {
            _ = backend.closeNow(fd: s)
            throw RingError(errno: -rc, operation: "bind \(address)")
        }
        let lrc = backend.listen(fd: s, backlog: backlog)
        guard lrc == 0 else {
            _ = backend.closeNow(fd: s)
            throw RingError(errno: -lrc, operation: "listen \(address)")
        }
        fd = s
        localAddress = SocketAddress.of(s, on: backend) ?? address
        self.loop = loop
    }

    /// Fails with `EADDRINUSE` when another socket is bound to `address` (see `init`).
    private static func probe(_ address: SocketAddress, on backend: any IOBackend) throws(RingError) {
        let p = backend.socket(family: address.family)
        guard p >= 0 else { throw RingError(errno: -p, operation: "socket") }
        defer { _ = backend.closeNow(fd: p) }
        // SO_REUSEADDR as the listener sets it: a connection of an earlier server still in
        // TIME_WAIT does not count as the port being in use.
        backend.setOption(fd: p, level: SOL_SOCKET, name: SO_REUSEADDR, 1)
        let rc = unsafe address.withSockaddr { unsafe backend.bind(fd: p, address: $0, length: $1) }
        guard rc == 0 else { throw RingError(errno: -rc, operation: "bind \(address)") }
    }

    deinit {
        while let c = accepted.popFirst() { _ = loop.backend.closeNow(fd: c) }
        if !closed {
            loop.backend.forget(fd: fd)
            _ = loop.backend.closeNow(fd: fd)
        }
    }

    private func arm() throws(RingError) {
        switch loop.submitMultishot("accept", self, { ud in loop.backend.accept(fd: fd, multishot: true, ud) }) {
        case .success(let ud): armedUD = ud
        case .failure(let e): throw e
        }
    }

    /// The next connection. Throws `.cancelled` if the task is cancelled, `.closed` after close.
    public func accept() async throws(RingError) -> TCPConnection {
        while true {
            if let c = accepted.popFirst() { return TCPConnection(fd: c, loop: loop) }
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
                _ = loop.backend.closeNow(fd: res)
            } else {
                accepted.append(res)
                if accepted.count >= queuedMax, let ud = armedUD { loop.requestCancel(ud) }
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
        while let c = accepted.popFirst() { _ = loop.backend.closeNow(fd: c) }
        await closeDescriptor(fd, on: loop)
        // No forget(fd:) here: the backend forgets before closing, and after the close
        // the number may already belong to a newly accepted socket.
    }
}
