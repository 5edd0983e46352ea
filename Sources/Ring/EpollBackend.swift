// EpollBackend: the io_uring-shaped IOBackend for kernels or sandboxes without io_uring.
//
// Goals: the same completion semantics as URingBackend, so the loop and everything above
// it cannot tell the difference: socket operations are tried at once (non-blocking) and
// parked on edge-triggered epoll readiness when they would block; multishot accept and
// provided-buffer recv are emulated (buffers come from the pool; none free => -ENOBUFS,
// as the kernel does); timeouts and linked timeouts live in a timer heap; file operations
// run on the process's BlockingPool (EpollBackend+Files.swift), as io_uring runs them on
// its io-wq workers, so a slow disk stalls no loop.
// Non-goals: matching io_uring's speed.
import BufferPool
import Threads
#if canImport(Glibc)
import Glibc
#endif
internal import CEpoll

@safe final class EpollBackend: IOBackend, SystemDescriptors {
    let kind = IOBackendKind.epoll
    let supportsMultishotRecv = true
    let usesFixedBuffers = false
    func isFixedRegistered(bufferIndex: UInt32) -> Bool { false }
    let summary: String
    private let epfd: Int32
    private let pool: BufferPool

    @safe private enum Parked {
        case accept(multishot: Bool)
        case recvSelect(multishot: Bool)
        case recv(UnsafeMutableRawPointer, Int)
        case send(UnsafeRawPointer, Int)
        case sendmsg(UnsafeRawPointer)
        case connect
        case wakeup(UnsafeMutableRawPointer)
    }

    private struct Waiter {
        var ud: UInt64
        var op: Parked
    }

    private struct FDState {
        var registered = false
        // io_uring allows several operations per fd (an armed multishot receive plus a
        // single-shot one, say), so each direction keeps a list, served in order.
        var readers: [Waiter] = []
        var writers: [Waiter] = []
    }

    private var fds: [FDState] = []
    private var ready = CompletionQueue()
    /// `ud` of a parked socket op -> fd, so cancel can find it.
    private var parkedFD: [UInt64: Int32] = [:]
    private var timers = TimerHeap()
    private let events: UnsafeMutablePointer<epoll_event>
    private let eventsMax = 256

    init(pool: BufferPool) throws(RingError) {
        let e = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard e >= 0 else { throw RingError(errno: errno, operation: "epoll_create1") }
        epfd = e
        self.pool = pool
        unsafe events = .allocate(capacity: eventsMax)
        summary = "epoll (io_uring semantics emulated: multishot accept/recv, provided buffers, timer heap)"
    }

    func shutdownBackend() {
        // A pool job still running writes into the loop's buffers: wait for it.
        while offloaded.count.load(ordering: .acquiring) > 0 { usleep(1000) }
        Glibc.close(epfd)
        unsafe events.deallocate()
    }

    /// Set by the loop that owns this backend: delivers a completion produced on a pool
    /// thread (it hops to the loop thread, then calls `completeOffloaded`).
    var postCompletion: (@Sendable (UInt64, Int32) -> Void)?
    let offloaded = Offloaded()

    func offerBuffer(_ index: UInt32) -> Bool { false }

    var receiveBuffersAvailable: Int { max(0, pool.freeBuffers - pool.bufferCount / 2) }

    func forget(fd: Int32) {
        let i = Int(fd)
        guard i < fds.count else { return }
        if fds[i].registered { epoll_ctl(epfd, EPOLL_CTL_DEL, fd, nil) }
        // Operations still parked on a closing fd complete as cancelled, never silently
        // vanish (their owners would wait forever).
        for w in fds[i].readers + fds[i].writers where w.ud != ReservedUserData.wakeup {
            parkedFD[w.ud] = nil
            timers.remove(ud: w.ud)
            complete(w.ud, -ECANCELED)
        }
        fds[i] = FDState()
    }

    // MARK: Helpers

    func complete(_ ud: UInt64, _ res: Int32, _ flags: UInt32 = 0) {
        ready.append(Completion(user_data: ud, res: res, flags: flags))
    }

    private func state(_ fd: Int32) -> Int {
        let i = Int(fd)
        if i >= fds.count { fds.append(contentsOf: repeatElement(FDState(), count: i - fds.count + 64)) }
        if !fds[i].registered {
            var ev = unsafe epoll_event()
            unsafe ev.events = EPOLLIN.rawValue | EPOLLOUT.rawValue | EPOLLRDHUP.rawValue | EPOLLET.rawValue
            unsafe ev.data.fd = fd
            if unsafe epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) == 0 || errno == EEXIST {
                fds[i].registered = true
            }
        }
        return i
    }

    private func park(fd: Int32, reading: Bool, _ w: Waiter, timeoutNs: Int64) {
        let i = state(fd)
        if reading { fds[i].readers.append(w) } else { fds[i].writers.append(w) }
        parkedFD[w.ud] = fd
        if timeoutNs >= 0 { timers.push(deadline: SystemClock.nanoseconds() &+ timeoutNs, ud: w.ud, cancelsTarget: true) }
    }

    /// Runs one attempt of a parked op. Returns true when the op is finished (completed).
    private func attempt(fd: Int32, _ w: Waiter) -> Bool {
        switch w.op {
        case .accept(let multishot):
            while true {
                let c = cepoll_accept4_nonblock(fd)
                if c >= 0 {
                    complete(w.ud, c, multishot ? CQEFlag.more : 0)
                    if !multishot { return true }
                    continue
                }
                let e = errno
                if e == EAGAIN || e == EWOULDBLOCK { return false }
                if e == EINTR || e == ECONNABORTED { continue }
                complete(w.ud, -e)
                return true
            }
        case .recvSelect(let multishot):
            while true {
                // Receives may use at most half the pool (as the io_uring ring does), so
                // sends and file I/O can always get buffers.
                guard pool.freeBuffers > pool.bufferCount / 2, let index = pool.lendToKernel() else {
                    complete(w.ud, -ENOBUFS)
                    return true
                }
                let n = unsafe Glibc.recv(fd, pool.address(of: index), pool.bufferSizeBytes, Int32(MSG_DONTWAIT))
                if n > 0 {
                    let flags = CQEFlag.buffer | (UInt32(index) << CQEFlag.bufferShift) | (multishot ? CQEFlag.more : 0)
                    complete(w.ud, Int32(n), flags)
                    if !multishot { return true }
                    continue
                }
                let e = errno
                // Give the buffer back as a release (not a silent reclaim) so the loop's
                // release hook wakes a receiver that is starved for buffers.
                _ = pool.adoptFromKernel(index: index, count: 0)
                if n == 0 { complete(w.ud, 0); return true }
                if e == EAGAIN || e == EWOULDBLOCK { return false }
                if e == EINTR { continue }
                complete(w.ud, -e)
                return true
            }
        case .recv(let p, let count):
            return attemptSyscall(w.ud) { unsafe Glibc.recv(fd, p, count, Int32(MSG_DONTWAIT)) }
        case .send(let p, let count):
            return attemptSyscall(w.ud) { unsafe Glibc.send(fd, p, count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
        case .sendmsg(let msg):
            return attemptSyscall(w.ud) { unsafe Glibc.sendmsg(fd, msg.assumingMemoryBound(to: msghdr.self), Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
        case .connect:
            var err: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            unsafe getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
            complete(w.ud, -err)
            return true
        case .wakeup(let storage):
            _ = unsafe Glibc.read(fd, storage, 8)
            complete(w.ud, 8)
            return false
        }
    }

    /// Runs a non-blocking socket call: completes `ud` with its result (or -errno) and
    /// returns true, or returns false on EAGAIN so the op stays parked. EINTR retries.
    private func attemptSyscall(_ ud: UInt64, _ call: () -> Int) -> Bool {
        while true {
            let n = call()
            if n >= 0 { complete(ud, Int32(n)); return true }
            let e = errno
            if e == EAGAIN || e == EWOULDBLOCK { return false }
            if e == EINTR { continue }
            complete(ud, -e)
            return true
        }
    }

    private func submitParked(fd: Int32, reading: Bool, _ w: Waiter, timeoutNs: Int64 = -1) -> Int32 {
        if !attempt(fd: fd, w) {
            park(fd: fd, reading: reading, w, timeoutNs: timeoutNs)
        }
        return 0
    }

    private func setNonBlocking(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFL)
        if flags >= 0 && flags & O_NONBLOCK == 0 { _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
    }

    // MARK: Operations

    func nop(_ ud: UInt64) -> Int32 { complete(ud, 0); return 0 }

    func accept(fd: Int32, multishot: Bool, _ ud: UInt64) -> Int32 {
        setNonBlocking(fd)
        return submitParked(fd: fd, reading: true, Waiter(ud: ud, op: .accept(multishot: multishot)))
    }

    func recvSelect(fd: Int32, multishot: Bool, _ ud: UInt64) -> Int32 {
        setNonBlocking(fd)
        return submitParked(fd: fd, reading: true, Waiter(ud: ud, op: .recvSelect(multishot: multishot)))
    }

    func recv(fd: Int32, into: UnsafeMutableRawPointer, count: Int, _ ud: UInt64, timeout: UnsafeMutableRawPointer?, timeoutNs: Int64) -> Int32 {
        unsafe submitParked(fd: fd, reading: true, Waiter(ud: ud, op: .recv(into, count)), timeoutNs: timeout == nil ? -1 : timeoutNs)
    }

    func send(fd: Int32, from: UnsafeRawPointer, count: Int, _ ud: UInt64, timeout: UnsafeMutableRawPointer?, timeoutNs: Int64) -> Int32 {
        unsafe submitParked(fd: fd, reading: false, Waiter(ud: ud, op: .send(from, count)), timeoutNs: timeout == nil ? -1 : timeoutNs)
    }

    func sendNow(fd: Int32, from: UnsafeRawPointer, count: Int, _ ud: UInt64) -> Int32 {
        let n = unsafe Glibc.send(fd, from, count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
        complete(ud, n >= 0 ? Int32(n) : -errno)
        return 0
    }

    func sendmsg(fd: Int32, message: UnsafeRawPointer, _ ud: UInt64, timeout: UnsafeMutableRawPointer?, timeoutNs: Int64) -> Int32 {
        unsafe submitParked(fd: fd, reading: false, Waiter(ud: ud, op: .sendmsg(message)), timeoutNs: timeout == nil ? -1 : timeoutNs)
    }

    func connect(fd: Int32, address: UnsafeRawPointer, length: UInt32, _ ud: UInt64, timeout: UnsafeMutableRawPointer?, timeoutNs: Int64) -> Int32 {
        setNonBlocking(fd)
        let rc = unsafe Glibc.connect(fd, address.assumingMemoryBound(to: sockaddr.self), length)
        if rc == 0 { complete(ud, 0); return 0 }
        let e = errno
        guard e == EINPROGRESS || e == EINTR else { complete(ud, -e); return 0 }
        unsafe park(fd: fd, reading: false, Waiter(ud: ud, op: .connect), timeoutNs: timeout == nil ? -1 : timeoutNs)
        return 0
    }

    func shutdown(fd: Int32, how: Int32, _ ud: UInt64) -> Int32 {
        complete(ud, Glibc.shutdown(fd, how) == 0 ? 0 : -errno)
        return 0
    }

    func close(fd: Int32, _ ud: UInt64) -> Int32 {
        forget(fd: fd)
        complete(ud, Glibc.close(fd) == 0 ? 0 : -errno)
        return 0
    }

    func timeout(nanoseconds: Int64, storage: UnsafeMutableRawPointer, _ ud: UInt64) -> Int32 {
        timers.push(deadline: SystemClock.nanoseconds() &+ max(0, nanoseconds), ud: ud, cancelsTarget: false)
        return 0
    }

    func cancel(_ target: UInt64) -> Int32 {
        if let fd = parkedFD.removeValue(forKey: target) {
            let i = Int(fd)
            fds[i].readers.removeAll { $0.ud == target }
            fds[i].writers.removeAll { $0.ud == target }
            timers.remove(ud: target)
            complete(target, -ECANCELED)
        } else if timers.remove(ud: target) {
            // A pending plain timeout, cancelled as io_uring does: -ECANCELED.
            complete(target, -ECANCELED)
        }
        return 0
    }

    func armWakeup(fd: Int32, storage: UnsafeMutableRawPointer) -> Int32 {
        let i = state(fd)
        if !fds[i].readers.contains(where: { $0.ud == ReservedUserData.wakeup }) {
            unsafe fds[i].readers.append(Waiter(ud: ReservedUserData.wakeup, op: .wakeup(storage)))
        }
        return 0
    }

    // MARK: Completion

    func submitAndReap(wait: Bool, timeoutNs: Int64, into out: UnsafeMutablePointer<Completion>, max: Int) -> Int {
        if ready.isEmpty {
            var waitMs: Int32 = wait ? -1 : 0
            if wait {
                var ns = timeoutNs
                if let next = timers.nextDeadline {
                    let untilTimer = Swift.max(0, next - SystemClock.nanoseconds())
                    ns = ns < 0 ? untilTimer : Swift.min(ns, untilTimer)
                }
                if ns >= 0 { waitMs = Int32(clamping: (ns + 999_999) / 1_000_000) }
            }
            let n = unsafe epoll_wait(epfd, events, Int32(eventsMax), waitMs)
            if n > 0 {
                for k in 0..<Int(n) {
                    let fd = unsafe events[k].data.fd
                    let ev = unsafe events[k].events
                    let i = Int(fd)
                    guard i < fds.count else { continue }
                    let readable = ev & (EPOLLIN.rawValue | EPOLLERR.rawValue | EPOLLHUP.rawValue | EPOLLRDHUP.rawValue) != 0
                    let writable = ev & (EPOLLOUT.rawValue | EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0
                    if readable { serve(fd: fd, reading: true) }
                    if writable { serve(fd: fd, reading: false) }
                }
            }
            fireTimers()
        }
        return unsafe ready.drain(into: out, max: max)
    }

    /// Attempts every parked op of one direction in order; finished ones leave the list.
    private func serve(fd: Int32, reading: Bool) {
        let i = Int(fd)
        let list = reading ? fds[i].readers : fds[i].writers
        guard !list.isEmpty else { return }
        var keep: [Waiter] = []
        for w in list {
            // An earlier attempt may have cancelled or closed this one.
            guard w.ud == ReservedUserData.wakeup || parkedFD[w.ud] != nil else { continue }
            if attempt(fd: fd, w) {
                parkedFD[w.ud] = nil
                timers.remove(ud: w.ud)
            } else {
                keep.append(w)
            }
        }
        if reading { fds[i].readers = keep } else { fds[i].writers = keep }
    }

    private func fireTimers() {
        let now = SystemClock.nanoseconds()
        while let t = timers.popExpired(now: now) {
            if t.cancelsTarget {
                _ = cancel(t.ud)   // a linked timeout: the op completes with -ECANCELED
            } else {
                complete(t.ud, -ETIME)
            }
        }
    }
}

/// A binary min-heap of deadlines with lazy removal.
struct TimerHeap {
    struct Entry { var deadline: Int64; var ud: UInt64; var cancelsTarget: Bool }
    private var heap = DeadlineHeap<Entry>()
    private var live: [UInt64: Bool] = [:]   // ud -> cancelsTarget, for entries not removed

    mutating func push(deadline: Int64, ud: UInt64, cancelsTarget: Bool) {
        live[ud] = cancelsTarget
        heap.push(at: deadline, Entry(deadline: deadline, ud: ud, cancelsTarget: cancelsTarget))
    }

    @discardableResult
    mutating func remove(ud: UInt64) -> Bool { live.removeValue(forKey: ud) != nil }

    var nextDeadline: Int64? {
        mutating get {
            dropDead()
            return heap.first?.at
        }
    }

    private mutating func dropDead() {
        while let top = heap.first?.payload, live[top.ud] != top.cancelsTarget { heap.popFirst() }
    }

    mutating func popExpired(now: Int64) -> Entry? {
        dropDead()
        guard let top = heap.first, top.at <= now else { return nil }
        heap.popFirst()
        live[top.payload.ud] = nil
        return top.payload
    }
}
