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
import Threads
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

@safe public final class EventLoop: TaskExecutor, @unchecked Sendable {
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
        /// File ranges sent by splice at once (`TCPConnection.send(file:range:)`, io_uring):
        /// each holds a kernel worker thread while it waits for socket space, so past this
        /// many the next ones are copied through pool buffers. 0 copies every range.
        public var splicedSendsMax: Int = 32
        /// Builds the backend instead of choosing one (the simulator); called on the loop
        /// thread with the loop's pool.
        package var makeBackend: (@Sendable (BufferPool) throws(RingError) -> any IOBackend)?
        public init() {}
    }

    public enum BackendPreference: String, Sendable {
        case automatic, uring, epoll
    }

    public typealias Callback = (OpResult) -> Void

    @safe enum Handler {
        case free
        case continuation(UnsafeContinuation<OpResult, Never>)
        case callback(Callback)
        case multishot(any MultishotSink)
        /// A queued send of this connection (TCPConnection+QueuedSend.swift); the slot keeps
        /// the connection alive while the kernel reads its buffer.
        case queuedSend(TCPConnection)
        /// The owner went away; buffers delivered to the slot go straight back to the pool.
        case orphan
    }

    struct Slot {
        var generation: UInt32 = 1
        var handler: Handler = .free
    }

    public let id: Int
    public let configuration: Configuration
    let logger: Logger

    // Cross-thread state.
    let remote = Mutex(RemoteQueue())
    /// Set (after the push) by every remote enqueue, so the loop takes the lock only when
    /// there is something to take.
    let remotePending = Atomic<Bool>(false)
    let sleeping = Atomic<Bool>(false)
    let stopRequested = Atomic<Bool>(false)
    let wakeFD: Int32
    var thread = pthread_t()
    /// Start-up and stop handshake with the threads that start and shut down the loop.
    private let ready = ConditionLock<ReadyState>(.starting)

    enum ReadyState: Sendable { case starting, running(IOBackendKind, String), failed(RingError), stopped }

    // Loop-confined state (set up on the loop thread).
    var backendStorage: (any IOBackend)?
    var backend: any IOBackend { unsafe backendStorage.unsafelyUnwrapped }
    public internal(set) var pool: BufferPool!
    var slots: UnsafeMutablePointer<Slot>
    var freeSlots: UnsafeMutablePointer<UInt32>
    var freeSlotCount: Int
    let scratch: UnsafeMutableRawPointer
    static let scratchStride = 272           // 256 bytes for sockaddr/statx, 16 for a timespec
    let cqes: UnsafeMutablePointer<Completion>
    static let cqeBatchMax = 256
    var jobs = FIFOQueue<UnownedJob>()
    let wakeStorage: UnsafeMutableRawPointer
    /// Connections whose receive found no pool buffer, waiting for one (FIFO).
    var recvStarved = FIFOQueue<any RecvStarved>()
    public internal(set) var backendKind: IOBackendKind = .epoll
    /// The backend keeps the time (see EventLoop+Clock.swift).
    var clockFromBackend = false
    /// The loop's clock as last read on its thread: right after a pass's completions are
    /// reaped (every pass while `marksPasses`, else those with parked deadlines to check),
    /// and again by each `nanosSinceMark()` (EventLoop+Clock.swift).
    var markNanos: Int64 = 0
    /// Set on the loop thread by a user of `nanosSinceMark()` (the HTTP server), so that
    /// every pass marks its start; a loop without one (an echo server's: no deadlines, no
    /// timed answers) reads no clock per pass.
    package var marksPasses = false
    public internal(set) var backendSummary = ""
    /// The reap's replayed answers (io_uring; ReplayTable.swift), nil elsewhere.
    package internal(set) var replayTable: ReplayTable?
    /// Receives the reap answered by replaying a kept answer, since the loop started.
    public var reapReplays: Int { replayTable?.replayed ?? 0 }

    /// Jobs (task slices) this loop has run: a cost counter for benchmarks.
    public internal(set) var jobsRun = 0

    /// Operations currently in flight (slots in use), for leak checks.
    public var operationsInFlight: Int { configuration.slotsMax - freeSlotCount }

    /// Parked waits by deadline (see ParkedDeadlines.swift).
    var deadlines = DeadlineHeap<Parker>()

    /// File sends going by splice now (bounded by `configuration.splicedSendsMax`).
    var splicedSends = 0
    /// File sends completed by splice since the loop started (tests and benchmarks).
    public internal(set) var splicedSendsDone = 0

    /// How often a receive found no pool buffer (and waited for one): backpressure events.
    public internal(set) var receiveStarvations = 0

    // MARK: Start and stop

    /// Starts a loop on a new thread and waits until its backend is up.
    public static func start(id: Int = 0, configuration: Configuration = Configuration(), logger: Logger = Logger(label: "spool.ring")) throws(RingError) -> EventLoop {
        let loop = try EventLoop(id: id, configuration: configuration, logger: logger)
        try loop.launch()
        return loop
    }

    private init(id: Int, configuration: Configuration, logger: Logger) throws(RingError) {
        // Below 2^30: user_data with bit 30 set in the slot half are the reap's replays.
        precondition(configuration.slotsMax > 0 && configuration.slotsMax < 1 << 30)
        self.id = id
        self.configuration = configuration
        self.logger = logger
        let efd = eventfd(0, Int32(EFD_CLOEXEC))
        guard efd >= 0 else { throw RingError(errno: errno, operation: "eventfd") }
        wakeFD = efd
        unsafe slots = .allocate(capacity: configuration.slotsMax)
        unsafe slots.initialize(repeating: Slot(), count: configuration.slotsMax)
        unsafe freeSlots = .allocate(capacity: configuration.slotsMax)
        for i in 0..<configuration.slotsMax { unsafe freeSlots[i] = UInt32(configuration.slotsMax - 1 - i) }
        freeSlotCount = configuration.slotsMax
        unsafe scratch = .allocate(byteCount: configuration.slotsMax * Self.scratchStride, alignment: 16)
        unsafe cqes = .allocate(capacity: Self.cqeBatchMax)
        unsafe wakeStorage = .allocate(byteCount: 8, alignment: 8)
    }

    deinit {
        unsafe slots.deinitialize(count: configuration.slotsMax)
        unsafe slots.deallocate()
        unsafe freeSlots.deallocate()
        unsafe scratch.deallocate()
        unsafe cqes.deallocate()
        unsafe wakeStorage.deallocate()
        Glibc.close(wakeFD)
    }

    private func launch() throws(RingError) {
        let unmanaged = unsafe Unmanaged.passRetained(self)
        var attr = pthread_attr_t()
        unsafe pthread_attr_init(&attr)
        unsafe pthread_attr_setstacksize(&attr, 8 << 20)
        let rc = unsafe pthread_create(&thread, &attr, { arg in
            let loop = unsafe Unmanaged<EventLoop>.fromOpaque(arg!).takeRetainedValue()
            loop.threadMain()
            return nil
        }, unsafe unmanaged.toOpaque())
        unsafe pthread_attr_destroy(&attr)
        guard rc == 0 else {
            unsafe unmanaged.release()
            throw RingError(errno: rc, operation: "pthread_create")
        }
        let state = ready.wait(until: { if case .starting = $0 { return false } else { return true } }) { s, _ in s }
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
            let chosen = try configuration.makeBackend.map { make throws(RingError) in
                BackendSelector.Choice(backend: try make(pool), reason: "injected")
            } ?? BackendSelector.make(configuration: configuration, pool: pool, logger: logger)
            backendStorage = chosen.backend
            clockFromBackend = chosen.backend.keepsOwnTime
            kind = chosen.backend.kind
            backendKind = kind
            backendSummary = chosen.backend.summary
            replayTable = chosen.backend.replayTable
            // Unchecked capture: this thread holds the loop until teardown() clears the
            // hook, and the pool is the loop's (ADR 0019, addendum 3: the checked one cost a
            // strong retain and release per returned buffer, two per request).
            pool.releaseHook = { [unowned(unsafe) self] index in unsafe self.bufferReturned(index) }
            if let epoll = chosen.backend as? EpollBackend {
                // File operations finish on the blocking pool; their results hop back here.
                let bound = LoopBound(epoll, loop: self)
                epoll.postCompletion = { [weak self] ud, res in
                    self?.execute { bound.value.completeOffloaded(ud, res) }
                }
            }
        } catch let error as RingError {
            ready.change { $0 = .failed(error) }
            return
        } catch {
            ready.change { $0 = .failed(RingError(.invalidArgument, operation: "start loop", reason: "\(error)")) }
            return
        }
        armWakeup()
        ready.change { $0 = .running(kind, backendSummary) }
        run()
        teardown()
        ready.change { $0 = .stopped }
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
        ready.wait(until: { if case .stopped = $0 { return true } else { return false } }) { _, _ in }
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
        unsafe pthread_key_create(&key, nil)
        return key
    }()

    private static func setCurrent(_ loop: EventLoop?) {
        unsafe pthread_setspecific(currentKey, loop.map { unsafe Unmanaged.passUnretained($0).toOpaque() })
    }

    /// The loop whose thread is running the caller, if any.
    public static var current: EventLoop? {
        guard let p = unsafe pthread_getspecific(currentKey) else { return nil }
        return unsafe Unmanaged<EventLoop>.fromOpaque(p).takeUnretainedValue()
    }

    public var inLoop: Bool { pthread_equal(pthread_self(), thread) != 0 }

    @inline(__always)
    func assertInLoop(_ what: @autoclosure () -> String = "") {
        assert(inLoop, "event loop \(id) used from another thread \(what())")
    }

}
