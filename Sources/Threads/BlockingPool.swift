// Threads.BlockingPool: the one place blocking calls run (getaddrinfo, file syscalls on
// the epoll backend, SQLite and libpq later). A bounded set of worker threads, started as
// work arrives and ended after a while idle, takes jobs from one FIFO queue with a bounded
// length. An event loop never blocks: it hands a job over and is woken by its result like
// by any other completion (the job posts it back, or an awaiting task is resumed on its
// executor). Long-lived work (a transcode) does not belong here: give it its own thread
// with OSThread.spawn, so it cannot starve the short jobs.

public struct BlockingPoolError: Error, Equatable, Sendable, CustomStringConvertible {
    public let queued: Int
    public var description: String { "the blocking pool's queue is full (\(queued) jobs waiting)" }
}

public final class BlockingPool: Sendable {
    public struct Configuration: Sendable {
        /// Worker threads at most.
        public var maxThreads: Int
        /// Jobs waiting for a worker at most; past it `submit` refuses.
        public var maxQueued: Int
        /// A worker idle this long ends (the pool keeps none idle for ever).
        public var idleNanos: Int64

        public init(maxThreads: Int = 16, maxQueued: Int = 65_536, idleNanos: Int64 = 10_000_000_000) {
            self.maxThreads = maxThreads
            self.maxQueued = maxQueued
            self.idleNanos = idleNanos
        }
    }

    private struct State {
        var queue: [@Sendable () -> Void] = []
        var head = 0
        var threads = 0
        var idle = 0
        var completed: UInt64 = 0
        var queued: Int { queue.count - head }
    }

    public let configuration: Configuration
    private let state: ConditionLock<State>

    /// The process's pool: 16 threads at most (blocking calls wait on the kernel or the
    /// network, not on the CPU, so more threads than cores is right), 65,536 jobs queued.
    public static let shared = BlockingPool()

    public init(_ configuration: Configuration = Configuration()) {
        precondition(configuration.maxThreads >= 1 && configuration.maxQueued >= 1, "a blocking pool needs a thread and a queue")
        self.configuration = configuration
        state = ConditionLock(State())
    }

    /// Threads alive, jobs waiting, jobs finished (for metrics and tests).
    public var snapshot: (threads: Int, queued: Int, completed: UInt64) {
        state.withLock { ($0.threads, $0.queued, $0.completed) }
    }

    /// Queues `job`; it runs on a worker thread. Throws when the queue is full.
    public func submit(_ job: @escaping @Sendable () -> Void) throws(BlockingPoolError) {
        enum Outcome { case queued, startWorker, full(Int) }
        let outcome: Outcome = state.change(wakeAll: false) { s in
            guard s.queued < configuration.maxQueued else { return .full(s.queued) }
            s.queue.append(job)
            guard s.idle == 0, s.threads < configuration.maxThreads else { return .queued }
            s.threads += 1
            return .startWorker
        }
        switch outcome {
        case .queued: return
        case .full(let n): throw BlockingPoolError(queued: n)
        case .startWorker:
            if OSThread.spawn(stackBytes: 1 << 20, { self.work() }) { return }
            // No thread to be had: the queued job waits for a running worker; with none at
            // all it would wait for ever, so run it here rather than lose it.
            let orphaned = state.withLock { s -> (@Sendable () -> Void)? in
                s.threads -= 1
                guard s.threads == 0, s.queued > 0 else { return nil }
                return s.queue.removeLast()
            }
            orphaned?()
        }
    }

    /// Runs `body` on a worker and returns its result to the awaiting task (which resumes
    /// on its own executor: a loop's task resumes on its loop).
    public func run<T: Sendable, E: Error>(_ body: @escaping @Sendable () throws(E) -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (k: CheckedContinuation<T, any Error>) in
            do {
                try submit {
                    do { k.resume(returning: try body()) } catch { k.resume(throwing: error) }
                }
            } catch {
                k.resume(throwing: error)
            }
        }
    }

    private func work() {
        while true {
            // Counted idle before waiting, so a submit meanwhile wakes this worker instead of
            // starting another (the count is a hint; the queue under the lock is the truth).
            state.withLock { $0.idle += 1 }
            let next: (@Sendable () -> Void)? = state.wait(until: { $0.queued > 0 }, timeoutNanos: configuration.idleNanos) { s, ready in
                s.idle -= 1
                guard ready else {
                    s.threads -= 1
                    return nil
                }
                let j = s.queue[s.head]
                s.head += 1
                if s.head == s.queue.count || s.head >= 1024 {
                    s.queue.removeFirst(s.head)
                    s.head = 0
                }
                return j
            }
            guard let next else { return }   // idle past the limit: this worker ends
            next()
            state.withLock { $0.completed &+= 1 }
        }
    }
}
