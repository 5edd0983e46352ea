// EventLoop as a task executor: jobs queued on the loop thread run in order; other
// threads hand jobs, closures and cancellations over through one locked queue and an
// eventfd wake-up (the loop sleeps only after announcing it). The loop itself: run
// ready jobs (at most 1024 before looking at I/O again), then submit and reap.
import BufferPool
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

extension EventLoop {
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
    func pushRemote(_ change: (inout RemoteQueue) -> Void) {
        remote.withLock { change(&$0) }
        remotePending.store(true, ordering: .sequentiallyConsistent)
        wake()
    }

    func wake() {
        if inLoop { return }
        if sleeping.exchange(false, ordering: .sequentiallyConsistent) {
            var one: UInt64 = 1
            _ = unsafe Glibc.write(wakeFD, &one, 8)
        }
    }

    func armWakeup() {
        if backendKind == .epoll {
            let flags = fcntl(wakeFD, F_GETFL)
            _ = fcntl(wakeFD, F_SETFL, flags | O_NONBLOCK)
        }
        let rc = unsafe backend.armWakeup(fd: wakeFD, storage: wakeStorage)
        precondition(rc == 0, "could not arm the loop wakeup: errno \(-rc)")
    }

    // MARK: The loop

    func run() {
        var jobsSinceIO = 0
        while true {
            drainRemote()
            // Run ready tasks, but come back to I/O regularly so a busy task set cannot
            // starve completions.
            while let job = jobs.popFirst() {
                unsafe job.runSynchronously(on: asUnownedTaskExecutor())
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
                waitNs = Swift.max(0, first.at - nowNanos)
                if waitNs == 0 {
                    sleeping.store(false, ordering: .sequentiallyConsistent)
                    mayBlock = false
                }
            }
            let n = unsafe backend.submitAndReap(wait: mayBlock, timeoutNs: waitNs, into: cqes, max: Self.cqeBatchMax)
            if mayBlock { sleeping.store(false, ordering: .sequentiallyConsistent) }
            // At most one clock read per pass: it starts the time `nanosSinceMark()`
            // measures for the first answer of the pass, and (with the later marks the
            // answers leave) tells which parked deadlines are due. One that falls due while
            // the pass runs is expired by the next pass, which does not sleep past it.
            let checksDeadlines = deadlines.first != nil
            if checksDeadlines || marksPasses { markNanos = nowNanos }
            for i in 0..<n { unsafe dispatch(cqes[i]) }
            if checksDeadlines, let first = deadlines.first, first.at <= markNanos { expireDeadlines() }
        }
    }

    func drainRemote() {
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
}

// MARK: Support types

struct RemoteQueue {
    var jobs: [UnownedJob] = []
    var closures: [@Sendable () -> Void] = []
    var cancels: [UInt64] = []
    var isEmpty: Bool { jobs.isEmpty && closures.isEmpty && cancels.isEmpty }
}
