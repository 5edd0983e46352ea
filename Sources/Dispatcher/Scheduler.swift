// Dispatcher.Scheduler: hands pending jobs to engines that ask for work. Its own loop,
// decoupled from request handlers: a lease request parks its engine here and wakes the
// loop; JobCreated, JobStateChanged (a retry became pending) and EngineHeartbeat events
// wake it too, and a slow timer is the backstop.
//
// Jobs reach it through the MessageQueue (topic "jobs"): every job that becomes pending is
// published there after its commit (JobService's hooks), and the jobs pending at start are
// published again (the reconciler). A round first takes what the queue delivers into its
// hand (a delivery stays in flight, its visibility extended, while the job waits here; a
// duplicate or a job no longer pending is acked and dropped), then gives every parked
// engine the job Scheduling.FairShare picks among the held ones whose required
// capabilities the engine has, by committing the move to `assigned` (a new lease epoch)
// before the engine hears of it, and acks that job's delivery. The database stays the
// system of record; the queue says what is ready.
//
// Leases are given back when their engine is gone: an engine marked offline loses all of
// its jobs, and an engine whose heartbeat does not list a job it holds (its lease answer
// was lost on the way, or it restarted) loses that job after a grace period. A job lost
// while assigned or transcoding is pending again at once (no attempt counted); one lost
// while completing fails (its attempt counts, and it retries by policy).
import Engines
import Events
import Files
import JSON
import Jobs
import Logging
import MessageQueue
import Scheduling
import SpoolModel
import Synchronization
import Threads

public final class Scheduler: Sendable {
    struct Waiter: Sendable {
        let token: UInt64
        let engine: EngineID
        let capabilities: Set<String>
        /// Served by the next round or answered nil.
        let once: Bool
        /// Called exactly once, by whoever takes the waiter out of the list.
        let deliver: @Sendable (Job?) -> Void
    }

    /// A pending job the scheduler holds, with its queue delivery.
    struct Held: Sendable {
        var delivery: QueueDelivery
        var job: PendingJob
        /// The job's lease epoch when it was read pending: the assignment is conditional on it.
        var epoch: Int64
        var priority: Int
        var cost: Double
        var extendedAt: MonotonicInstant
        var checkedAt: MonotonicInstant
    }

    struct State: Sendable {
        var waiters: [Waiter] = []
        var nextToken: UInt64 = 0
        var fair = FairShare()
        var weightsText = ""
        /// The held jobs by id, and what each leased job was charged.
        var hand: [String: Held] = [:]
        var charged: [String: (tenant: String, cost: Double, estimate: Double)] = [:]
        /// Measured work / estimated work of the jobs finished so far (a moving average):
        /// estimates from file sizes are scaled by it, so charges come close to what jobs cost.
        var workRatio: Double?
    }

    let jobs: JobService
    let files: FileService
    let queue: any MessageQueue
    let clock: any ServiceClock
    let logger: Logger
    let weights: @Sendable () -> String
    let state = Mutex(State())
    let wakeStream: AsyncStream<Void>
    let wakeContinuation: AsyncStream<Void>.Continuation
    /// Rounds run, jobs assigned, and assignments refused by the epoch fence (tests and metrics).
    let counters = Mutex<(rounds: Int, assigned: Int, fenced: Int)>((0, 0, 0))
    let gate = TurnGate()

    /// How long a job an engine holds may be missing from its heartbeats before it is taken back.
    static let unlistedGraceMilliseconds: Int64 = 15_000

    /// The topic pending jobs are published on.
    public static let topic = "jobs"
    /// How long a delivery the scheduler holds stays its own unless extended (extended
    /// at half of it): when a dispatcher dies, another takes its held jobs after this.
    let visibility: Duration
    /// This scheduler's consumer name (unique per process: dispatchers share a queue).
    let consumer: String

    init(jobs: JobService, files: FileService, queue: any MessageQueue, clock: any ServiceClock, logger: Logger,
         consumer: String = "scheduler", visibility: Duration = .seconds(600),
         weights: @escaping @Sendable () -> String) {
        self.consumer = consumer
        self.visibility = visibility
        self.jobs = jobs
        self.files = files
        self.queue = queue
        self.clock = clock
        self.logger = logger
        self.weights = weights
        (wakeStream, wakeContinuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    public var assignedCount: Int { counters.withLock { $0.assigned } }
    /// Assignments refused because the job's lease epoch moved since this scheduler read it.
    public var fencedCount: Int { counters.withLock { $0.fenced } }
    /// Rounds run (each reads the pending jobs once).
    public var roundCount: Int { counters.withLock { $0.rounds } }

    /// Wakes the loop (coalesced: many wakes before a round make one round).
    public func wake() { wakeContinuation.yield() }

    /// A job for `engine`, or nil when none came within `wait` (zero: one round only).
    public func lease(engine: EngineID, capabilities: Set<String>, wait: Duration) async -> Job? {
        if wait <= .zero { return await offer([(engine, capabilities)])[0] }
        let token = state.withLock { s -> UInt64 in s.nextToken += 1; return s.nextToken }
        let timeout = Task { [clock] in
            try? await clock.sleep(until: clock.now + wait)
            self.abandon(token)
        }
        let job = await withCheckedContinuation { (c: CheckedContinuation<Job?, Never>) in
            state.withLock { $0.waiters.append(Waiter(token: token, engine: engine, capabilities: capabilities, once: false,
                                                      deliver: { c.resume(returning: $0) })) }
            wake()
        }
        timeout.cancel()
        return job
    }

    /// One round for several engines at once, in the order given (each gets a job or nil):
    /// what a round does for the engines parked in long polls, callable directly.
    public func offer(_ asks: [(engine: EngineID, capabilities: Set<String>)]) async -> [Job?] {
        let results = Answers(count: asks.count)
        let tokens = state.withLock { s -> [UInt64] in
            asks.enumerated().map { i, ask in
                s.nextToken += 1
                s.waiters.append(Waiter(token: s.nextToken, engine: ask.engine, capabilities: ask.capabilities, once: true,
                                        deliver: { job in results.set(i, job) }))
                return s.nextToken
            }
        }
        do { try await round() } catch { logger.error("scheduler round failed: \(error)") }
        for t in tokens { abandon(t) }   // normally the round answered them all
        return results.all
    }

    /// Takes a waiter out and answers nil (its wait is over), unless a round took it first.
    func abandon(_ token: UInt64) {
        let w = state.withLock { s -> Waiter? in
            guard let i = s.waiters.firstIndex(where: { $0.token == token }) else { return nil }
            return s.waiters.remove(at: i)
        }
        w?.deliver(nil)
    }

    /// Answers nil to the lease requests `engine` has parked (it is draining, busy or leaving).
    public func release(engine: EngineID) {
        let mine = state.withLock { s -> [Waiter] in
            let m = s.waiters.filter { $0.engine == engine }
            s.waiters.removeAll { $0.engine == engine }
            return m
        }
        for w in mine { w.deliver(nil) }
    }

    /// Answers every parked engine nil (the server is stopping).
    public func releaseAll() {
        let all = state.withLock { s -> [Waiter] in defer { s.waiters = [] }; return s.waiters }
        for w in all { w.deliver(nil) }
    }

    /// Runs rounds as it is woken, until cancelled.
    public func run(events: any EventBus) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { [self] in
                for await event in await events.subscribeAll() {
                    switch event.type {
                    case .jobCreated, .jobStateChanged, .engineHeartbeat: wake()
                    default: break
                    }
                }
            }
            group.addTask { [self] in
                while !Task.isCancelled {
                    do { try await clock.sleep(until: clock.now + .seconds(1)) } catch { return }
                    wake()
                }
            }
            group.addTask { [self] in
                for await _ in wakeStream {
                    if Task.isCancelled { break }
                    do { try await round() } catch { logger.error("scheduler round failed: \(error)") }
                }
            }
            await group.next()
            group.cancelAll()
        }
        releaseAll()
    }

    /// One pass: every parked engine that a pending job fits gets one. Rounds never overlap.
    public func round() async throws {
        await gate.enter()
        defer { gate.leave() }
        counters.withLock { $0.rounds += 1 }
        let parked = state.withLock { $0.waiters.count }
        guard parked > 0 else { return }
        try await collect()
        refreshWeights()
        // Each tenant's held jobs in its order: priority high to low, then oldest first.
        let held = state.withLock { s in s.hand.values.sorted { a, b in
            (a.job.tenant, -a.priority, a.job.id.text) < (b.job.tenant, -b.priority, b.job.id.text)
        } }
        var byID: [String: Held] = [:]
        var candidates: [Candidate] = []
        let ratio = state.withLock { $0.workRatio } ?? 1
        for h in held {
            byID[h.job.id.text] = h
            candidates.append(Candidate(id: h.job.id.text, tenant: h.job.tenant, cost: h.cost * ratio, requires: h.job.requiredCapabilities))
        }
        var served = Set<UInt64>()
        while true {
            // Every parked engine and the job the policy picks for it, taken out under the lock...
            var picks: [(Waiter, Candidate, Held)] = []
            while let (waiter, candidate) = state.withLock({ s -> (Waiter, Candidate)? in
                for (i, w) in s.waiters.enumerated() where !served.contains(w.token) {
                    if let c = s.fair.choose(from: candidates, capabilities: w.capabilities) {
                        s.waiters.remove(at: i)
                        return (w, c)
                    }
                    served.insert(w.token)   // nothing fits this engine this round
                }
                return nil
            }) {
                candidates.removeAll { $0.id == candidate.id }
                if let h = byID[candidate.id] { picks.append((waiter, candidate, h)) } else { state.withLock { $0.waiters.insert(waiter, at: 0) } }
            }
            guard !picks.isEmpty else { break }
            // ...then every assignment committed at once (they share group commits), each
            // before its engine hears of it.
            let outcomes = await withTaskGroup(of: (Int, Job?).self) { group in
                for (i, p) in picks.enumerated() {
                    group.addTask { [self] in
                        do {
                            return (i, try await jobs.transition(p.2.job.id, to: .assigned, leaseEpoch: p.2.epoch, engineID: p.0.engine))
                        } catch let e as ModelError where e.code == .staleLease {
                            // Fenced: this scheduler's view is older than the job's lease.
                            counters.withLock { $0.fenced += 1 }
                            logger.warning("stale assignment refused: \(e.message)")
                            return (i, nil)
                        } catch {
                            return (i, nil)
                        }
                    }
                }
                var out = [Job?](repeating: nil, count: picks.count)
                for await (i, job) in group { out[i] = job }
                return out
            }
            var refused = 0
            for ((waiter, candidate, h), leased) in zip(picks, outcomes) {
                let job = h.job
                if let leased {
                    state.withLock { s in
                        s.charged[job.id.text] = (job.tenant, candidate.cost, h.cost)
                        s.hand[job.id.text] = nil
                    }
                    counters.withLock { $0.assigned += 1 }
                    waiter.deliver(leased)
                } else {
                    // The job moved on meanwhile (cancelled, expired): not this engine's; it tries again.
                    refused += 1
                    state.withLock { s in
                        s.fair.correct(job.tenant, estimated: candidate.cost, measured: .leastNonzeroMagnitude)
                        s.waiters.insert(waiter, at: 0)
                        s.hand[job.id.text] = nil
                    }
                    served.remove(waiter.token)
                }
                // Leased or gone, the queue is done with it (a stale receipt: redelivered, dropped next time).
                try? await queue.ack(h.delivery)
            }
            if refused == 0 { break }
        }
        // Engines that asked for one round only hear no now.
        let unserved = state.withLock { s -> [Waiter] in
            let gone = s.waiters.filter(\.once)
            s.waiters.removeAll(where: \.once)
            return gone
        }
        for w in unserved { w.deliver(nil) }
    }

    /// Jobs held, waiting for an engine.
    public var heldCount: Int { state.withLock { $0.hand.count } }

    func refreshWeights() {
        let text = weights()
        state.withLock { s in
            guard s.weightsText != text else { return }
            s.weightsText = text
            if case .success(let w) = FairShare.parseWeights(text) { s.fair.weights = w }
        }
    }

    /// A job ended: its tenant's charge becomes the work the engine measured (pixels ×
    /// frames), when it reported one.
    public func finished(_ jobID: JobID, measuredWork: Double?) {
        state.withLock { s in
            guard let charge = s.charged.removeValue(forKey: jobID.text) else { return }
            guard var measuredWork, measuredWork.isFinite, measuredWork > 0 else { return }
            // An engine's figure is trusted within a factor of 1000 of the estimate: one
            // absurd report (1.7e308) made every later cost infinite and fair shares moot.
            let estimate = max(1, charge.estimate)
            measuredWork = min(max(measuredWork, estimate / 1000), estimate * 1000)
            s.fair.correct(charge.tenant, estimated: charge.cost, measured: measuredWork)
            let sample = measuredWork / estimate
            s.workRatio = s.workRatio.map { $0 * 0.8 + sample * 0.2 } ?? sample
        }
    }

    /// Takes back the jobs `engine` holds: all of them (`listed` nil: the engine is gone),
    /// or those its heartbeat did not list and that have not changed for the grace period.
    @discardableResult
    public func reclaim(engine: EngineID, listed: Set<String>?) async throws -> [JobID] {
        let now = clock.unixMilliseconds
        var taken: [JobID] = []
        for job in try await jobs.store.leasedJobs(engine: engine) {
            if let listed, listed.contains(job.id.text) || job.updatedAt > now - Self.unlistedGraceMilliseconds { continue }
            let reason = listed == nil ? "lease_lost: engine \(engine.text) went offline" : "lease_lost: engine \(engine.text) no longer runs it"
            do {
                if job.state == .completing {
                    try await jobs.transition(job.id, to: .failed, reason: reason, leaseEpoch: job.leaseEpoch)
                } else {
                    try await jobs.transition(job.id, to: .pending, reason: reason, leaseEpoch: job.leaseEpoch)
                }
                finished(job.id, measuredWork: nil)
                taken.append(job.id)
                logger.warning("took job \(job.id.text) (epoch \(job.leaseEpoch)) back from engine \(engine.text): \(reason)")
            } catch {
                // It moved meanwhile (completed, cancelled, leased again): nothing to take back.
            }
        }
        if !taken.isEmpty { wake() }
        return taken
    }
}

/// An async mutex: one holder at a time, the others wait their turn in order.
final class TurnGate: Sendable {
    private let state = Mutex<(held: Bool, waiting: [CheckedContinuation<Void, Never>])>((false, []))

    func enter() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                if !s.held { s.held = true; return true }
                s.waiting.append(c)
                return false
            }
            if now { c.resume() }
        }
    }

    /// Hands the gate to the next waiter (it stays held), or opens it.
    func leave() {
        let next = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if s.waiting.isEmpty { s.held = false; return nil }
            return s.waiting.removeFirst()
        }
        next?.resume()
    }
}

/// The answers of one `offer`, filled in by the round.
final class Answers: Sendable {
    private let jobs: Mutex<[Job?]>
    init(count: Int) { jobs = Mutex(Array(repeating: nil, count: count)) }
    func set(_ i: Int, _ job: Job?) { jobs.withLock { $0[i] = job } }
    var all: [Job?] { jobs.withLock { $0 } }
}
