// A TCP connection on the event loop: provided-buffer multishot receive, short-send
// handling, linked timeouts.
//
// A listener or connection belongs to the loop that created it; use it from tasks running
// on that loop (`loop.spawn`). Received data arrives in pool buffers that the kernel picks
// when bytes land, so an idle connection holds no buffer; when the pool is empty the
// receive waits for a buffer (backpressure) instead of growing memory.
// This file: the connection, its receive side, shutdown and close; sending is in
// TCPConnection+Send.swift.
import BufferPool
import Threads
#if canImport(Glibc)
import Glibc
#endif
internal import CEpoll
internal import CURing

// MARK: Connection

/// The result of a receive into a caller's buffer: the buffer always comes back.
public struct IOCompletion: ~Copyable {
    public let result: Result<Int, RingError>
    public var buffer: PooledBuffer

    /// Ends the completion, keeping its buffer.
    public consuming func takeBuffer() -> PooledBuffer { buffer }
}

@safe public final class TCPConnection: MultishotSink, RecvStarved {
    public let fd: Int32
    public let loop: EventLoop
    /// The loop's pool, held as a constant: a method called on a `let` of a live object
    /// needs no retain around the call, where one on the loop's settable `pool` took one
    /// per call (a receive, a send and its completion each call into the pool).
    package let pool: BufferPool
    private var received = FIFOQueue<PooledBuffer.Parts>()
    var recvUD: UInt64?
    private var recvEOF = false
    private var recvFailure: RingError?
    private var starved = false
    var closed = false
    var opsInFlight = 0
    private let parker = Parker()
    private let closeParker = Parker()
    /// Completion-driven receiving (`receiveContinuously`): where buffers go instead of
    /// `received`, and who hears of the end.
    var onData: ((consuming PooledBuffer) -> Void)?
    var onEnd: ((RingError?) -> Void)?

    /// A synchronous first look at bytes that arrive while a task waits in `receive()`
    /// with nothing buffered, on the loop thread inside their completion (no task is
    /// resumed). It returns true when it has wholly dealt with the bytes: the buffer goes
    /// back to the pool and the task keeps waiting, its deadline (if it has one) moved to
    /// `receiveShortcutWaitNanoseconds` from now; false leaves them to the task, as without a
    /// shortcut. It must not block; what it sends goes through `sendQueued`, in order with
    /// everything else queued. The task sets it before it waits and clears it after: the
    /// HTTP server answers a plain keep-alive GET this way (Web/FastLane.swift).
    public var receiveShortcut: ((TCPConnection, borrowing PooledBuffer) -> Bool)?
    /// In nanoseconds (nil: no deadline): the shortcut moves it per answer, so it is kept
    /// converted (a `Duration`'s conversion is 128-bit arithmetic).
    public var receiveShortcutWaitNanoseconds: Int64?
    // Queued sends (TCPConnection+QueuedSend.swift).
    var outbox = FIFOQueue<QueuedSend>()
    /// Bytes of the outbox's first buffer already sent.
    var outboxSent = 0
    /// Whether the first buffer's next attempt may wait for socket space (with its deadline).
    var outboxMayWait = false
    var queuedSendInFlight = false
    var queuedSendFailure: RingError?
    let flushParker = Parker()

    /// Whether task cancellation interrupts this connection's receives and sends (true,
    /// the default). A server that ends connections by closing them can turn it off: each
    /// wait then skips installing a task-cancellation handler (~0.5 µs each on this
    /// machine), and `close()` from any task on the loop still wakes a waiting receive and
    /// aborts a blocked send.
    public var followsTaskCancellation = true

    // The reap's replay (TCPConnection+Replay.swift): this connection's entry in its loop's
    // table, opened on the first `keepReplay`, and the guard words it points at, held here
    // for as long as it may read them.
    var replayEntry: UnsafeMutablePointer<curing_replay>?
    var replayWords: [SharedWord] = []

    init(fd: Int32, loop: EventLoop) {
        self.fd = fd
        self.loop = loop
        self.pool = loop.pool
        loop.backend.setOption(fd: fd, level: Int32(IPPROTO_TCP), name: TCP_NODELAY, 1)
    }

    deinit {
        // No multishot can be armed here: an armed one retains its sink (self).
        if let e = unsafe replayEntry { unsafe loop.replayTable?.release(e) }
        while let parts = received.popFirst() { _ = pool.reassemble(parts) }
        while let q = outbox.popFirst() { _ = pool.reassemble(q.parts) }
        if !closed {
            loop.backend.forget(fd: fd)
            _ = loop.backend.closeNow(fd: fd)
        }
    }

    public var localAddress: SocketAddress? { SocketAddress.of(fd, on: loop.backend) }
    public var remoteAddress: SocketAddress? { SocketAddress.of(fd, peer: true, on: loop.backend) }

    /// Connects to `address` from the current loop, optionally binding a local address
    /// first (tests use 127.x.y.z sources to spread ephemeral ports).
    public static func connect(to address: SocketAddress, from local: SocketAddress? = nil, timeout: Duration? = nil) async throws(RingError) -> TCPConnection {
        guard let loop = EventLoop.current else {
            throw RingError(.invalidArgument, operation: "connect", reason: "no event loop: connect from a task on a loop")
        }
        let backend = loop.backend
        let s = backend.socket(family: address.family)
        guard s >= 0 else { throw RingError(errno: -s, operation: "socket") }
        if let local {
            backend.setOption(fd: s, level: SOL_IP, name: cepoll_ip_bind_address_no_port(), 1)
            let rc = unsafe local.withSockaddr { unsafe backend.bind(fd: s, address: $0, length: $1) }
            if rc != 0 {
                _ = backend.closeNow(fd: s)
                throw RingError(errno: -rc, operation: "bind \(local)")
            }
        }
        let tns = timeout?.nanoseconds
        let r = await loop.perform { ud, slot in
            let dst = unsafe loop.scratch(slot)
            unsafe address.withSockaddr { p, len in unsafe dst.copyMemory(from: UnsafeRawPointer(p), byteCount: Int(len)) }
            return unsafe loop.backend.connect(fd: s, address: dst, length: address.length, ud,
                                        timeout: tns == nil ? nil : loop.timeoutScratch(slot), timeoutNs: tns ?? -1)
        }
        guard r.res >= 0 else {
            backend.forget(fd: s)
            _ = backend.closeNow(fd: s)
            throw timeoutAware(r.res, "connect \(address)", hadTimeout: tns != nil)
        }
        return TCPConnection(fd: s, loop: loop)
    }

    // MARK: Receive

    /// The next bytes from the peer in a pool buffer, or nil at end of stream.
    /// Waits for a pool buffer when the pool is exhausted.
    nonisolated(nonsending) public func receive(timeout: Duration? = nil) async throws(RingError) -> PooledBuffer? {
        var waitNs = timeout?.nanoseconds
        while true {
            if let parts = received.popFirst() { return pool.reassemble(parts) }
            if let f = recvFailure { throw f }
            if recvEOF { return nil }
            if closed { throw RingError(.closed, operation: "recv") }
            if recvUD == nil && !starved {
                switch loop.submitMultishot("recv", self, { ud in loop.backend.recvSelect(fd: fd, multishot: true, ud) }) {
                case .success(let ud): recvUD = ud
                case .failure(let e): throw e
                }
            }
            let woken = await parker.wait(loop: loop, timeoutNs: waitNs, cancellable: followsTaskCancellation)
            // Answers the reap replayed moved the idle deadline as the shortcut's do.
            if woken == .timedOut, let more = replayDeadlineLeft() {
                waitNs = more
                continue
            }
            disarmReplay()
            switch woken {
            case .cancelled: throw RingError(.cancelled, operation: "recv")
            case .timedOut: throw RingError(.timedOut, operation: "recv")
            case .signalled: continue
            }
        }
    }

    func deliver(_ res: Int32, flags: UInt32, loop: EventLoop) {
        // The reap left this completion to Swift: it replays nothing more for this
        // connection until the shortcut arms it again, and its last replay no longer
        // moves the task's deadline (the shortcut moves it, or the task sets its own).
        if let e = unsafe replayEntry {
            unsafe e.pointee.armed = 0
            unsafe e.pointee.last_active = 0
        }
        var handled = false
        if flags & CQEFlag.buffer != 0 {
            let buffer = pool.adoptFromKernel(index: flags >> CQEFlag.bufferShift, count: max(0, Int(res)))
            if res > 0 && !closed, let onData {
                onData(buffer)
            } else if res > 0 && !closed, received.isEmpty, parker.isWaiting, let shortcut = receiveShortcut, shortcut(self, buffer) {
                // Dealt with: `buffer` goes back to the pool here; the task waits on.
                handled = true
                // From the loop's mark (read when this pass began, or by the answer just
                // made): at most one pass behind now, so the idle timeout is that much early.
                if let wait = receiveShortcutWaitNanoseconds, parker.deadline != nil {
                    parker.deadline = loop.markNanos &+ wait
                }
            } else if res > 0 && !closed {
                received.append(pool.disassemble(buffer))
                // Bound what one connection can hold unread: past the cap, stop receiving
                // (the socket's own buffer then pushes back on the peer); receive() re-arms.
                if received.count >= Self.receivedMax, let ud = recvUD { loop.requestCancel(ud) }
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
        // After a shortcut, the waiting task has nothing to see while the receive stays
        // armed; once it ends, the task re-arms it.
        if handled && recvUD != nil { return }
        wakeReceiver()
    }

    func bufferAvailable(loop: EventLoop) -> Bool {
        starved = false
        guard !closed else { return false }
        wakeReceiver()
        return true
    }

    /// Something changed for the receiver: the callback mode re-arms or reports the end;
    /// a task waiting in `receive()` wakes.
    private func wakeReceiver() {
        if onData != nil { continueReceiving() } else { parker.wake(loop: loop) }
    }

    /// Completion-driven receiving: from now on each received buffer goes to `onData` on
    /// the loop thread as its completion is handled (no task is resumed), in order, and
    /// `onEnd` is called once: with nil at end of stream, or with the failure. Buffers
    /// already received go first. Do not call `receive()` afterwards. `close()` ends it
    /// without calling `onEnd`. The handlers usually capture the connection: the cycle is
    /// broken when `onEnd` is called or the connection closes. When the pool has no buffer
    /// the receive waits for one, as `receive()` does.
    public func receiveContinuously(onData: @escaping (consuming PooledBuffer) -> Void,
                                    onEnd: @escaping (RingError?) -> Void) {
        loop.assertInLoop()
        precondition(!parker.isWaiting, "receiveContinuously while a task waits in receive()")
        self.onData = onData
        self.onEnd = onEnd
        while self.onData != nil, let parts = received.popFirst() { onData(pool.reassemble(parts)) }
        continueReceiving()
    }

    /// Callback mode: reports the end, or keeps a multishot receive armed.
    private func continueReceiving() {
        guard !closed, onData != nil else { return }
        if recvEOF || recvFailure != nil {
            let end = onEnd
            onData = nil
            onEnd = nil
            end?(recvFailure)
            return
        }
        if recvUD == nil && !starved {
            switch loop.submitMultishot("recv", self, { ud in loop.backend.recvSelect(fd: fd, multishot: true, ud) }) {
            case .success(let ud): recvUD = ud
            case .failure(let e):
                recvFailure = e
                continueReceiving()
            }
        }
    }

    /// A send or receive(into:) finished: let a waiting close() proceed when none is left.
    func operationEnded() {
        opsInFlight -= 1
        if opsInFlight == 0 { closeParker.wake(loop: loop) }
    }

    /// Received buffers one connection may hold before it stops receiving.
    static let receivedMax = 16

    /// Receives once into `buffer` after its first `count` bytes (a plain recv, not a
    /// provided buffer). The buffer comes back with the result whatever happens.
    nonisolated(nonsending) public func receive(into buffer: consuming PooledBuffer, timeout: Duration? = nil) async -> IOCompletion {
        if closed { return IOCompletion(result: .failure(RingError(.closed, operation: "recv")), buffer: buffer) }
        opsInFlight += 1
        defer { operationEnded() }
        let parts = pool.disassemble(buffer)
        let tns = timeout?.nanoseconds
        let space = pool.bufferSizeBytes - parts.count
        let dst = unsafe pool.address(of: parts.index) + parts.count
        let r = await loop.perform(cancellable: followsTaskCancellation) { ud, slot in
            unsafe loop.backend.recv(fd: fd, into: dst, count: space, ud, timeout: tns == nil ? nil : loop.timeoutScratch(slot), timeoutNs: tns ?? -1)
        }
        var back = pool.reassemble(parts)
        if r.res >= 0 {
            back.count += Int(r.res)
            return IOCompletion(result: .success(Int(r.res)), buffer: back)
        }
        return IOCompletion(result: .failure(timeoutAware(r.res, "recv", hadTimeout: tns != nil)), buffer: back)
    }

    // MARK: Shutdown and close

    public enum ShutdownHow: Int32 { case read = 0, write = 1, both = 2 }

    /// Half-closes the connection (`.write` sends FIN and keeps receiving).
    /// Queued sends go out first: the FIN follows every byte queued before it.
    nonisolated(nonsending) public func shutdown(_ how: ShutdownHow = .write) async throws(RingError) {
        if closed { throw RingError(.closed, operation: "shutdown") }
        if how != .read { try? await flushSends() }
        let r = await loop.perform(cancellable: false) { ud, _ in loop.backend.shutdown(fd: fd, how: how.rawValue, ud) }
        if r.res < 0 && r.res != -ENOTCONN { throw RingError(errno: -r.res, operation: "shutdown") }
    }

    /// Resets the connection on close (SO_LINGER 0): no TIME_WAIT, the peer sees ECONNRESET.
    public func setResetOnClose() {
        loop.backend.setOption(fd: fd, level: SOL_SOCKET, name: SO_LINGER, linger(l_onoff: 1, l_linger: 0))
    }

    /// Cancels the armed receive, returns every queued buffer and closes the socket. Sends
    /// still queued are abandoned: call `flushSends()` first to deliver them.
    nonisolated(nonsending) public func close() async {
        guard !closed else { return }
        closed = true
        onData = nil
        onEnd = nil
        disarmReplay()
        parker.wake(.cancelled, loop: loop)
        // A send blocked on a peer that does not read, or a receive(into:) on a quiet peer,
        // would keep the fd busy: shut the socket down so the kernel completes them first
        // (a replay's send too; its entry outlives it).
        if opsInFlight > 0 || replaySending {
            _ = loop.backend.shutdownNow(fd: fd, how: Int32(SHUT_RDWR))
            while opsInFlight > 0 { _ = await closeParker.wait(loop: loop, cancellable: false) }
        }
        if let ud = recvUD {
            loop.requestCancel(ud)
            while recvUD != nil { _ = await parker.wait(loop: loop, cancellable: false) }
        }
        while let parts = received.popFirst() { _ = pool.reassemble(parts) }
        await closeDescriptor(fd, on: loop)
        // No forget(fd:) here: the backend forgets before closing, and after the close
        // the number may already belong to a newly accepted socket.
    }
}

/// Closes `fd` through the loop; if the close cannot even be queued (no slot, SQ full),
/// closes it synchronously rather than leak it.
func closeDescriptor(_ fd: Int32, on loop: EventLoop) async {
    let r = await loop.perform(cancellable: false) { ud, _ in loop.backend.close(fd: fd, ud) }
    if r.isSlotsExhausted || r.res == -EAGAIN || r.res == -EBUSY {
        loop.backend.forget(fd: fd)
        _ = loop.backend.closeNow(fd: fd)
    }
}

/// A linked timeout cancels its operation (-ECANCELED); report that as a timeout unless the
/// task itself was cancelled.
func timeoutAware(_ res: Int32, _ op: String, hadTimeout: Bool) -> RingError {
    if res == -ECANCELED && hadTimeout && !Task.isCancelled { return RingError(.timedOut, operation: op) }
    return RingError(errno: -res, operation: op)
}
