// EventLoop: one thread, one backend (io_uring or epoll), one buffer pool.
//
// Two layers, as in the architecture notes:
//  - a non-allocating completion core: a fixed table of operation slots; `user_data` packs
//    (generation << 32 | slot) so a stale completion trips an assertion instead of touching
//    a reused slot; completions are copied out in batches, then handlers run;
//  - a thin async adapter: an operation parks the calling task's continuation in its slot
//    and the loop resumes it from the completion, on the loop thread (the loop is the
//    task's executor: start work with `loop.spawn` or `Task(executorPreference: loop)`).
// Cancelling an operation submits ASYNC_CANCEL and keeps waiting for the operation's own
// completion, so no buffer or scratch memory is released while the kernel may use it.
// Non-goals: work stealing between loops; sharing slots or pools across threads.
import BufferPool
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif
internal import CEpoll

/// The result of one completed operation: io_uring's `res` and `flags`.
public struct OpResult: Sendable, Equatable {
    public var res: Int32
    public var flags: UInt32
    public init(res: Int32, flags: UInt32 = 0) {
        self.res = res
        self.flags = flags
    }
    public var hasMore: Bool { flags & CQEFlag.more != 0 }
}

/// A target for the completions of a multishot operation (accept, recv).
protocol MultishotSink: AnyObject {
    func deliver(_ res: Int32, flags: UInt32, loop: EventLoop)
}

public final class EventLoop: TaskExecutor, @unchecked Sendable {
    // @unchecked Sendable: everything below the "loop-confined" mark is touched only on the
    // loop thread (asserted in debug builds); cross-thread state is behind Mutex/Atomic.

    public struct Configuration: Sendable {
        /// Which backend to run; `.automatic` reads SPOOL_IO_BACKEND and probes the kernel.
        public var backend: BackendPreference = .automatic
        public var ringEntries: UInt32 = 1024
        /// Operations in flight at once on this loop (each takes one slot).
        public var slotsMax: Int = 8192
        public var pool = BufferPoolConfiguration()
        /// Pool buffers kept in the kernel's provided-buffer ring for receives (io_uring;
        /// capped at half the pool so other users can always get buffers).
        public var recvBuffersMax: Int = 1024
        public init() {}
    }

    public enum BackendPreference: String, Sendable {
        case automatic, uring, epoll
    }

    public typealias Callback = (OpResult) -> Void

    enum Handler {
        case free
        case continuation(UnsafeContinuation<OpResult, Never>)
        case callback(Callback)
        case multishot(any MultishotSink)
        /// The owner went away; buffers delivered to the slot go straight back to the pool.
        case orphan
    }

    struct Slot {
        var generation: UInt32 = 1
        var handler: Handler = .free
    }

    public let id: Int
    public let configuration: Configuration
    private let logger: Logger

    // Cross-thread state.
    private let remote = Mutex(RemoteQueue())
    /// Set (after the push) by every remote enqueue, so the loop takes the lock only when
    /// there is something to take.
    private let remotePending = Atomic<Bool>(false)
    private let sleeping = Atomic<Bool>(false)
    private let stopRequested = Atomic<Bool>(false)
    private let wakeFD: Int32
    private var thread = pthread_t()
    private let ready = Mutex<ReadyState>(.starting)
    private let readyCondition = Condition()

    enum ReadyState: Sendable { case starting, running(IOBackendKind, String), failed(RingError), stopped }

    // Loop-confined state (set up on the loop thread).
    private var backendStorage: (any IOBackend)?
    var backend: any IOBackend { backendStorage.unsafelyUnwrapped }
    public private(set) var pool: BufferPool!
    private var slots: UnsafeMutablePointer<Slot>
    private var freeSlots: UnsafeMutablePointer<UInt32>
    private var freeSlotCount: Int
    private let scratch: UnsafeMutableRawPointer
    static let scratchStride = 272           // 256 bytes for sockaddr/statx, 16 for a timespec
    private let cqes: UnsafeMutablePointer<Completion>
    private static let cqeBatchMax = 256
    private var jobs = JobQueue()
    private let wakeStorage: UnsafeMutableRawPointer
    /// Connections whose receive found no pool buffer, waiting for one (FIFO).
    var recvStarved = StarvedQueue()
    public private(set) var backendKind: IOBackendKind = .epoll
    public private(set) var backendSummary = ""

    /// Jobs (task slices) this loop has run: a cost counter for benchmarks.
    public private(set) var jobsRun = 0

    /// Operations currently in flight (slots in use), for leak checks.
    public var operationsInFlight: Int { configuration.slotsMax - freeSlotCount }

    // MARK: Start and stop

    /// Starts a loop on a new thread and waits until its backend is up.
    public static func start(id: Int = 0, configuration: Configuration = Configuration(), logger: Logger = Logger(label: "spool.ring")) throws(RingError) -> EventLoop {
        let loop = try EventLoop(id: id, configuration: configuration, logger: logger)
        try loop.launch()
        return loop
    }

    private init(id: Int, configuration: Configuration, logger: Logger) throws(RingError) {
        precondition(configuration.slotsMax > 0 && configuration.slotsMax < Int(UInt32.max))
        self.id = id
        self.configuration = configuration
        self.logger = logger
        let efd = eventfd(0, Int32(EFD_CLOEXEC))
        guard efd >= 0 else { throw RingError(errno: errno, operation: "eventfd") }
        wakeFD = efd
        slots = .allocate(capacity: configuration.slotsMax)
        slots.initialize(repeating: Slot(), count: configuration.slotsMax)
        freeSlots = .allocate(capacity: configuration.slotsMax)
        for i in 0..<configuration.slotsMax { freeSlots[i] = UInt32(configuration.slotsMax - 1 - i) }
        freeSlotCount = configuration.slotsMax
        scratch = .allocate(byteCount: configuration.slotsMax * Self.scratchStride, alignment: 16)
        cqes = .allocate(capacity: Self.cqeBatchMax)
        wakeStorage = .allocate(byteCount: 8, alignment: 8)
    }

    deinit {
        slots.deinitialize(count: configuration.slotsMax)
        slots.deallocate()
        freeSlots.deallocate()
        scratch.deallocate()
        cqes.deallocate()
        wakeStorage.deallocate()
        Glibc.close(wakeFD)
    }

    private func launch() throws(RingError) {
        let unmanaged = Unmanaged.passRetained(self)
        var attr = pthread_attr_t()
        pthread_attr_init(&attr)
        pthread_attr_setstacksize(&attr, 8 << 20)
        let rc = pthread_create(&thread, &attr, { arg in
            let loop = Unmanaged<EventLoop>.fromOpaque(arg!).takeRetainedValue()
            loop.threadMain()
            return nil
        }, unmanaged.toOpaque())
        pthread_attr_destroy(&attr)
        guard rc == 0 else {
            unmanaged.release()
            throw RingError(errno: rc, operation: "pthread_create")
        }
        let state = readyCondition.wait(on: ready) { if case .starting = $0 { return false } else { return true } }
        if case .failed(let error) = state {
            pthread_join(thread, nil)
            throw error
        }
    }

    private func threadMain() {
        EventLoop.setCurrent(self)
        let kind: IOBackendKind
        do {
            let pool = try BufferPool(configuration.pool)
            self.pool = pool
            let chosen = try BackendSelector.make(configuration: configuration, pool: pool, logger: logger)
            backendStorage = chosen.backend
            kind = chosen.backend.kind
            backendKind = kind
            backendSummary = chosen.backend.summary
            pool.releaseHook = { [unowned self] index in self.bufferReturned(index) }
            if let epoll = chosen.backend as? EpollBackend {
                // File operations finish on the blocking pool; their results hop back here.
                let bound = LoopBound(value: epoll)
                epoll.postCompletion = { [weak self] ud, res in
                    self?.execute { bound.value.completeOffloaded(ud, res) }
                }
            }
        } catch let error as RingError {
            readyCondition.signal(ready) { $0 = .failed(error) }
            return
        } catch {
            readyCondition.signal(ready) { $0 = .failed(RingError(.invalidArgument("\(error)"), operation: "start loop")) }
            return
        }
        armWakeup()
        readyCondition.signal(ready) { $0 = .running(kind, backendSummary) }
        run()
        teardown()
        readyCondition.signal(ready) { $0 = .stopped }
    }

    /// Asks the loop to stop after the work already queued; returns at once.
    public func requestStop() {
        stopRequested.store(true, ordering: .sequentiallyConsistent)
        wake()
    }

    /// Stops the loop and waits for its thread to end. Call it from outside the loop.
    public func shutdown() {
        precondition(!inLoop, "shutdown() from the loop's own thread would deadlock; use requestStop()")
        requestStop()
        _ = readyCondition.wait(on: ready) { if case .stopped = $0 { return true } else { return false } }
        pthread_join(thread, nil)
    }

    private func teardown() {
        if operationsInFlight > 0 {
            logger.warning("event loop \(id) stopping with \(operationsInFlight) operations in flight")
        }
        pool.releaseHook = nil
        backend.shutdownBackend()
        EventLoop.setCurrent(nil)
    }

    // MARK: Thread identity

    private static let currentKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    private static func setCurrent(_ loop: EventLoop?) {
        pthread_setspecific(currentKey, loop.map { Unmanaged.passUnretained($0).toOpaque() })
    }

    /// The loop whose thread is running the caller, if any.
    public static var current: EventLoop? {
        guard let p = pthread_getspecific(currentKey) else { return nil }
        return Unmanaged<EventLoop>.fromOpaque(p).takeUnretainedValue()
    }

    public var inLoop: Bool { pthread_equal(pthread_self(), thread) != 0 }

    @inline(__always)
    func assertInLoop(_ what: @autoclosure () -> String = "") {
        assert(inLoop, "event loop \(id) used from another thread \(what())")
    }

    // MARK: Executor

    public func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        if inLoop {
            jobs.append(unowned)
        } else {
            pushRemote { $0.jobs.append(unowned) }
        }
    }

    /// Runs `body` on the loop as a new task.
    @discardableResult
    public func spawn<T: Sendable>(_ body: sending @escaping () async throws -> T) -> Task<T, any Error> {
        Task(executorPreference: self, operation: body)
    }

    /// Runs `body` on the loop and waits for its result.
    public func run<T: Sendable>(_ body: sending @escaping () async throws -> T) async throws -> T {
        try await Task(executorPreference: self, operation: body).value
    }

    /// Runs a closure on the loop thread soon (from any thread).
    public func execute(_ work: @escaping @Sendable () -> Void) {
        pushRemote { $0.closures.append(work) }
    }

    /// Hands work to the loop from another thread: queue it, flag it, wake the loop.
    private func pushRemote(_ change: (inout RemoteQueue) -> Void) {
        remote.withLock { change(&$0) }
        remotePending.store(true, ordering: .sequentiallyConsistent)
        wake()
    }

    private func wake() {
        if inLoop { return }
        if sleeping.exchange(false, ordering: .sequentiallyConsistent) {
            var one: UInt64 = 1
            _ = Glibc.write(wakeFD, &one, 8)
        }
    }

    private func armWakeup() {
        if backendKind == .epoll {
            let flags = fcntl(wakeFD, F_GETFL)
            _ = fcntl(wakeFD, F_SETFL, flags | O_NONBLOCK)
        }
        let rc = backend.armWakeup(fd: wakeFD, storage: wakeStorage)
        precondition(rc == 0, "could not arm the loop wakeup: errno \(-rc)")
    }

    // MARK: The loop

    private func run() {
        var jobsSinceIO = 0
        while true {
            drainRemote()
            // Run ready tasks, but come back to I/O regularly so a busy task set cannot
            // starve completions.
            while let job = jobs.popFirst() {
                job.runSynchronously(on: asUnownedTaskExecutor())
                jobsRun &+= 1
                jobsSinceIO += 1
                if jobsSinceIO >= 1024 { break }
            }
            jobsSinceIO = 0
            if stopRequested.load(ordering: .sequentiallyConsistent) && jobs.isEmpty { break }

            if recvStarved.count > 0 && jobs.isEmpty { wakeStarvedReceivers() }
            var mayBlock = jobs.isEmpty
            if mayBlock {
                sleeping.store(true, ordering: .sequentiallyConsistent)
                if remotePending.load(ordering: .sequentiallyConsistent) || stopRequested.load(ordering: .sequentiallyConsistent) {
                    sleeping.store(false, ordering: .sequentiallyConsistent)
                    mayBlock = false
                }
            }
            // Parked waits with deadlines bound how long the loop may sleep.
            var waitNs: Int64 = -1
            if mayBlock, let first = deadlines.first {
                waitNs = Swift.max(0, first.at - monotonicNanos())
                if waitNs == 0 {
                    sleeping.store(false, ordering: .sequentiallyConsistent)
                    mayBlock = false
                }
            }
            let n = backend.submitAndReap(wait: mayBlock, timeoutNs: waitNs, into: cqes, max: Self.cqeBatchMax)
            if mayBlock { sleeping.store(false, ordering: .sequentiallyConsistent) }
            for i in 0..<n { dispatch(cqes[i]) }
            if let first = deadlines.first, first.at <= monotonicNanos() { expireDeadlines() }
        }
    }

    // MARK: Deadlines of parked waits (ParkedDeadlines.swift)

    /// Parked waits by deadline (see ParkedDeadlines.swift).
    var deadlines = DeadlineHeap<Parker>()

    private func drainRemote() {
        guard remotePending.load(ordering: .relaxed) else { return }
        remotePending.store(false, ordering: .sequentiallyConsistent)
        let (newJobs, closures, cancels) = remote.withLock { q -> ([UnownedJob], [@Sendable () -> Void], [UInt64]) in
            if q.isEmpty { return ([], [], []) }
            defer { q = RemoteQueue() }
            return (q.jobs, q.closures, q.cancels)
        }
        for j in newJobs { jobs.append(j) }
        for c in closures { c() }
        for ud in cancels { cancelIfLive(ud) }
    }

    @inline(__always)
    private func dispatch(_ c: Completion) {
        let ud = c.user_data
        if ud >= ReservedUserData.wakeup {
            if ud == ReservedUserData.wakeup, backendKind == .uring { armWakeup() }
            return
        }
        let slot = Int(UInt32(truncatingIfNeeded: ud))
        let generation = UInt32(truncatingIfNeeded: ud >> 32)
        precondition(slot < configuration.slotsMax && slots[slot].generation == generation,
                     "stale completion for slot \(slot) generation \(generation) (res \(c.res))")
        checkProgrammerError(c.res, "completion")
        let more = c.flags & CQEFlag.more != 0
        switch slots[slot].handler {
        case .free:
            preconditionFailure("completion for a free slot \(slot)")
        case .continuation(let k):
            freeSlot(slot)
            k.resume(returning: OpResult(res: c.res, flags: c.flags))
        case .callback(let cb):
            if !more { freeSlot(slot) }
            cb(OpResult(res: c.res, flags: c.flags))
        case .multishot(let sink):
            if !more { freeSlot(slot) }
            sink.deliver(c.res, flags: c.flags, loop: self)
        case .orphan:
            if !more { freeSlot(slot) }
            dropDelivered(c.res, flags: c.flags)
        }
    }

    /// Returns a buffer a completion carried to the pool (its owner is gone), or closes
    /// an accepted descriptor nobody will take.
    func dropDelivered(_ res: Int32, flags: UInt32) {
        if flags & CQEFlag.buffer != 0 {
            _ = pool.adoptFromKernel(index: flags >> CQEFlag.bufferShift, count: max(0, Int(res)))
        }
    }

    // MARK: Slots

    @inline(__always)
    func allocSlot() -> (slot: Int, ud: UInt64)? {
        guard freeSlotCount > 0 else { return nil }
        freeSlotCount -= 1
        let s = Int(freeSlots[freeSlotCount])
        return (s, UInt64(slots[s].generation) << 32 | UInt64(s))
    }

    @inline(__always)
    private func freeSlot(_ s: Int) {
        slots[s].handler = .free
        slots[s].generation &+= 1
        if slots[s].generation == 0 { slots[s].generation = 1 }
        freeSlots[freeSlotCount] = UInt32(s)
        freeSlotCount += 1
    }

    @inline(__always)
    func scratch(_ slot: Int) -> UnsafeMutableRawPointer { scratch + slot * Self.scratchStride }
    @inline(__always)
    func timeoutScratch(_ slot: Int) -> UnsafeMutableRawPointer { scratch + slot * Self.scratchStride + 256 }

    func setHandler(_ slot: Int, _ h: Handler) { slots[slot].handler = h }

    /// Marks a multishot slot's owner as gone: later completions free what they carry.
    func orphan(ud: UInt64) {
        let s = Int(UInt32(truncatingIfNeeded: ud))
        guard s < configuration.slotsMax, slots[s].generation == UInt32(truncatingIfNeeded: ud >> 32) else { return }
        if case .free = slots[s].handler { return }
        slots[s].handler = .orphan
    }

    private func cancelIfLive(_ ud: UInt64) {
        let s = Int(UInt32(truncatingIfNeeded: ud))
        guard s < configuration.slotsMax, slots[s].generation == UInt32(truncatingIfNeeded: ud >> 32) else { return }
        if case .free = slots[s].handler { return }
        _ = backend.cancel(ud)
    }

    /// Asks the kernel to cancel operation `ud` (from any thread). The operation still
    /// completes (usually with -ECANCELED) and its owner is resumed then, not before.
    public func requestCancel(_ ud: UInt64) {
        if inLoop {
            cancelIfLive(ud)
        } else {
            pushRemote { $0.cancels.append(ud) }
        }
    }

    // MARK: The async adapter

    /// Submits one operation and suspends until its completion. `prepare` gets the
    /// operation's `user_data` and slot index and returns 0 or a negative errno; a failure
    /// to queue completes the operation at once with that errno.
    ///
    /// `cancellable`: task cancellation becomes an ASYNC_CANCEL (the call still returns
    /// only when the kernel is done with the operation). Installing the cancellation
    /// handler costs a task status-record update on entry and exit (measured ~0.6 µs here,
    /// more than the NOP itself), so operations that finish in bounded time (NOP, regular
    /// file I/O, which io_uring cannot interrupt once started anyway, close, shutdown)
    /// pass `false`; everything that can wait on a peer or a clock passes `true`.
    @inline(__always)
    func perform(cancellable: Bool = true, _ prepare: (UInt64, Int) -> Int32) async -> OpResult {
        assertInLoop()
        guard let (slot, ud) = allocSlot() else { return OpResult(res: -EAGAIN) }
        if Task.isCancelled && cancellable {
            freeSlot(slot)
            return OpResult(res: -ECANCELED)
        }
        guard cancellable else { return await park(slot: slot, ud: ud, prepare) }
        return await withTaskCancellationHandler {
            await park(slot: slot, ud: ud, recheckCancellation: true, prepare)
        } onCancel: {
            self.requestCancel(ud)
        }
    }

    @inline(__always)
    private func park(slot: Int, ud: UInt64, recheckCancellation: Bool = false, _ prepare: (UInt64, Int) -> Int32) async -> OpResult {
        await withUnsafeContinuation { (k: UnsafeContinuation<OpResult, Never>) in
            slots[slot].handler = .continuation(k)
            let rc = prepare(ud, slot)
            if rc < 0 {
                freeSlot(slot)
                k.resume(returning: OpResult(res: rc))
            } else if recheckCancellation && Task.isCancelled {
                // Cancelled between the entry check and the handler's installation: the
                // handler ran while the slot was still free and did nothing.
                _ = backend.cancel(ud)
            }
        }
    }

    /// Submits one operation whose completion runs `callback` on the loop thread (the
    /// lower, callback-style layer). Returns the operation's `user_data`, or nil when no
    /// slot is free or the operation could not be queued.
    @discardableResult
    func submit(_ callback: @escaping Callback, _ prepare: (UInt64, Int) -> Int32) -> UInt64? {
        assertInLoop()
        guard let (slot, ud) = allocSlot() else { return nil }
        slots[slot].handler = .callback(callback)
        if prepare(ud, slot) < 0 {
            freeSlot(slot)
            return nil
        }
        return ud
    }

    /// Starts a multishot operation delivering to `sink`. Returns its `user_data`.
    func submitMultishot(_ sink: any MultishotSink, _ prepare: (UInt64) -> Int32) -> Result<UInt64, RingError> {
        assertInLoop()
        guard let (slot, ud) = allocSlot() else { return .failure(RingError(.system(errno: EAGAIN), operation: "no free operation slot")) }
        slots[slot].handler = .multishot(sink)
        let rc = prepare(ud)
        if rc < 0 {
            freeSlot(slot)
            return .failure(RingError(errno: -rc, operation: "submit"))
        }
        return .success(ud)
    }

    // MARK: Public operations

    /// A no-op round trip through the backend (async layer). A NOP completes at once, so
    /// it takes the non-cancellable path; `cancellable: true` measures the other one.
    public func nop(cancellable: Bool = false) async -> OpResult {
        await perform(cancellable: cancellable) { ud, _ in backend.nop(ud) }
    }

    /// A no-op round trip through the backend (callback layer). Call on the loop thread.
    @discardableResult
    public func submitNop(_ callback: @escaping Callback) -> Bool {
        submit(callback) { ud, _ in backend.nop(ud) } != nil
    }

    /// Suspends the calling task for `nanoseconds` using a backend timeout.
    public func sleep(nanoseconds: Int64) async throws(RingError) {
        let r = await perform { ud, slot in backend.timeout(nanoseconds: nanoseconds, storage: timeoutScratch(slot), ud) }
        if r.res == -ETIME || r.res == 0 { return }
        throw RingError(errno: -r.res, operation: "sleep")
    }

    public func sleep(for duration: Duration) async throws(RingError) {
        try await sleep(nanoseconds: duration.nanoseconds)
    }

    // MARK: Buffers

    /// How often a receive found no pool buffer (and waited for one): backpressure events.
    public private(set) var receiveStarvations = 0

    /// A receive found no buffer to receive into: queue it, move free pool buffers into
    /// the kernel's ring (up to its target), and wake as many queued receivers as there
    /// are buffers they could use now. The ENOBUFS may be stale (buffers came back while
    /// its completion waited in the batch), so this never waits for another release.
    func receiveStarved(_ who: any RecvStarved) {
        receiveStarvations += 1
        recvStarved.append(who)
        while pool.freeBuffers > pool.bufferCount / 2, let index = pool.lendToKernel() {
            if !backend.offerBuffer(index) {
                pool.reclaimFromKernel(index: index)
                break
            }
        }
        wakeStarvedReceivers()
    }

    /// Wakes as many receivers that found no buffer as there are buffers they could take
    /// now. Also run before the loop blocks, so a wake-up lost to a receiver that was busy
    /// elsewhere (or closed) can never leave buffers idle while receivers wait.
    private func wakeStarvedReceivers() {
        var usable = backend.receiveBuffersAvailable
        while usable > 0, let next = recvStarved.popFirst() {
            if next.bufferAvailable(loop: self) { usable -= 1 }
        }
    }

    /// The pool hands back a buffer nobody waits for: lend it to the kernel's ring (io_uring)
    /// and wake one receiver that found the pool empty.
    private func bufferReturned(_ index: UInt32) -> Bool {
        let kept = backend.offerBuffer(index)
        while let starved = recvStarved.popFirst(), !starved.bufferAvailable(loop: self) {}
        return kept
    }
}

extension Duration {
    var nanoseconds: Int64 {
        let (s, a) = components
        return s * 1_000_000_000 + a / 1_000_000_000
    }
}

// MARK: Support types

struct RemoteQueue {
    var jobs: [UnownedJob] = []
    var closures: [@Sendable () -> Void] = []
    var cancels: [UInt64] = []
    var isEmpty: Bool { jobs.isEmpty && closures.isEmpty && cancels.isEmpty }
}

/// FIFO of jobs that reuses its storage.
struct JobQueue {
    private var items: [UnownedJob] = []
    private var head = 0
    var isEmpty: Bool { head == items.count }

    mutating func append(_ j: UnownedJob) { items.append(j) }

    mutating func popFirst() -> UnownedJob? {
        guard head < items.count else { return nil }
        let j = items[head]
        head += 1
        if head == items.count {
            items.removeAll(keepingCapacity: true)
            head = 0
        }
        return j
    }
}

/// Something waiting for a pool buffer to receive into.
protocol RecvStarved: AnyObject {
    /// Returns false when the receiver no longer wants a buffer (closed): the wake-up
    /// goes to the next one.
    func bufferAvailable(loop: EventLoop) -> Bool
}

struct StarvedQueue {
    private var items: [(any RecvStarved)?] = []
    private var head = 0
    var count: Int { items.count - head }

    mutating func append(_ s: any RecvStarved) { items.append(s) }

    mutating func popFirst() -> (any RecvStarved)? {
        guard head < items.count else { return nil }
        let s = items[head]
        items[head] = nil
        head += 1
        if head == items.count {
            items.removeAll(keepingCapacity: true)
            head = 0
        }
        return s
    }
}

/// A minimal condition variable over a Mutex-protected state.
final class Condition: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var cond = pthread_cond_t()

    init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&cond, nil)
    }

    deinit {
        pthread_cond_destroy(&cond)
        pthread_mutex_destroy(&mutex)
    }

    func signal<S>(_ state: borrowing Mutex<S>, _ change: (inout sending S) -> Void) {
        pthread_mutex_lock(&mutex)
        state.withLock { change(&$0) }
        pthread_cond_broadcast(&cond)
        pthread_mutex_unlock(&mutex)
    }

    func wait<S: Sendable>(on state: borrowing Mutex<S>, until done: (S) -> Bool) -> S {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        while true {
            let s = state.withLock { $0 }
            if done(s) { return s }
            pthread_cond_wait(&cond, &mutex)
        }
    }
}
