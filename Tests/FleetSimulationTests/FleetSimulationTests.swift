// The dispatcher's scheduler, leases, heartbeats, engine sweeps and job sweeps under a
// seeded discrete-event simulation of 100 engines on simulated time (ManualClock): the real
// DispatchServer services (SQLite in /dev/shm, the Scheduler, EngineRegistry, JobService
// with its fencing) driven by simulated engines whose fake transcodes take random times,
// and which crash (losing their work, restarting later) or are cut off from the server
// (their heartbeats and reports lost for a while; their work goes on, and their late
// reports arrive when the partition heals: stale ones must be refused).
//
// Per seed, checked: no job is lost (every job ends completed once the fleet is healthy),
// none completes twice, no report under a stale lease is accepted (every accepted
// completion is from the newest lease of its job), every lease of a job requiring GPU:0
// went to an engine tagged GPU:0, and while tenants a, b, c (weights 3:2:1) all had jobs
// waiting each got its weight's share of the leases (within 10 %).
//
// Seeds 1...SPOOL_FLEET_SEEDS (default 10, about a minute on a debug build; `make
// simulate-fleet SEEDS=300` runs hundreds) so `make test` is reproducible; SPOOL_FLEET_SEED=N
// replays one; every failure prints its seed.
import Dispatcher
import Engines
import Foundation
import Jobs
import Logging
import ServerConfig
import SpoolModel
import SpoolTestSupport
import Threads
import XCTest

final class FleetSimulationTests: XCTestCase {
    func seeds() -> [UInt64] {
        let env = ProcessInfo.processInfo.environment
        if let one = env["SPOOL_FLEET_SEED"].flatMap({ UInt64($0) }) { return [one] }
        let count = env["SPOOL_FLEET_SEEDS"].flatMap { Int($0) } ?? 10
        return (1...UInt64(max(1, count))).map { $0 }
    }

    func testHundredEnginesOverSeeds() async throws {
        var failures: [String] = []
        var totals = (leases: 0, completions: 0, refused: 0, crashes: 0, partitions: 0, reclaimed: 0)
        let started = Date()
        for seed in seeds() {
            do {
                let r = try await FleetRun(seed: seed).run()
                totals.leases += r.leases; totals.completions += r.completions; totals.refused += r.refused
                totals.crashes += r.crashes; totals.partitions += r.partitions; totals.reclaimed += r.reclaimed
            } catch {
                failures.append("seed \(seed): \(error)\n  replay: SPOOL_FLEET_SEED=\(seed) swift test --filter FleetSimulationTests")
                if failures.count >= 3 { break }
            }
        }
        print("fleet simulation: \(seeds().count) seeds in \(String(format: "%.1f", Date().timeIntervalSince(started))) s: "
              + "\(totals.leases) leases, \(totals.completions) completions, \(totals.refused) stale reports refused, "
              + "\(totals.crashes) crashes, \(totals.partitions) partitions, \(totals.reclaimed) leases taken back")
        XCTAssertTrue(failures.isEmpty, failures.joined(separator: "\n"))
    }
}

struct SimFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// One seed's run.
final class FleetRun {
    static let engines = 100
    static let gpuEngines = 10
    static let jobsPerTenant = ["a": 60, "b": 60, "c": 60, "gpu": 15]
    static let weights = ["a": 3.0, "b": 2.0, "c": 1.0]
    static let heartbeatMs: Int64 = 10_000
    static let timeoutSeconds: Int64 = 30

    struct Engine {
        var id: EngineID
        var gpu: Bool
        var alive = true
        var incarnation = 0
        var partitionedUntil: Int64 = 0
        /// job → epoch it was leased under.
        var running: [JobID: Int64] = [:]
    }

    enum Action {
        case heartbeat(Int), poll(Int), finish(Int, JobID, Int64, Int), crash(Int), restart(Int), partition(Int)
        case sweepEngines, sweepJobs, round, longPollTick
    }

    struct Event { var at: Int64; var seq: Int; var action: Action }

    let seed: UInt64
    var rng: SplitMix
    var queue: [Event] = []
    var seq = 0
    var engines: [Engine] = []
    var dir = ""
    var clock = ManualClock()
    var server: DispatchServer!
    var startMs: Int64 = 0
    /// Every lease given: job → [(engine, epoch)].
    var leases: [JobID: [(Int, Int64)]] = [:]
    var leaseOrder: [String] = []
    var completions: [JobID: Int] = [:]
    var tenantOf: [JobID: String] = [:]
    var refused = 0, crashes = 0, partitions = 0, reclaimed = 0
    /// Engines waiting in a long poll (the scheduler's round serves them when jobs appear).
    var parked = Set<Int>()

    var roundScheduled = false

    /// Jobs may have become pending: one scheduler round for every parked engine.
    func wakeParked() {
        guard !roundScheduled, !parked.isEmpty else { return }
        roundScheduled = true
        schedule(random(0...200), .round)
    }

    init(seed: UInt64) {
        self.seed = seed
        rng = SplitMix(seed: seed)
    }

    var now: Int64 { clock.unixMilliseconds }

    func random(_ range: ClosedRange<Int64>) -> Int64 { Int64.random(in: range, using: &rng) }
    func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &rng) < p }

    func schedule(_ delayMs: Int64, _ a: Action) {
        seq += 1
        let e = Event(at: now + max(0, delayMs), seq: seq, action: a)
        let i = queue.firstIndex { ($0.at, $0.seq) > (e.at, e.seq) } ?? queue.count
        queue.insert(e, at: i)
    }

    struct Report { var leases = 0, completions = 0, refused = 0, crashes = 0, partitions = 0, reclaimed = 0 }

    func run() async throws -> Report {
        let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm/" : NSTemporaryDirectory()
        dir = base + "spool-fleet-\(getpid())-\(seed)"
        try? FileManager.default.removeItem(atPath: dir)
        defer { server = nil; try? FileManager.default.removeItem(atPath: dir) }
        var settings = ServerSettings()
        settings.engines.heartbeatTimeoutSeconds = Self.timeoutSeconds
        settings.scheduler.tenantWeights = "a=3,b=2,c=1"
        settings.jobs.maxAttempts = 10
        settings.jobs.retryBackoffSeconds = 1
        var logger = Logger(label: "fleet")
        logger.logLevel = .error   // leases taken back are expected here, hundreds per run
        server = try await DispatchServer.open(dataDirectory: dir, settings: LiveSettings(settings), clock: clock, logger: logger)
        startMs = now

        // Every job first (so tenants are contended from the start), then the fleet.
        for (tenant, n) in Self.jobsPerTenant.sorted(by: { $0.key < $1.key }) {
            for _ in 0..<n {
                var spec = JobSpec(inputFileID: FileID("file_01ARZ3NDEKTSV4RRFFQ69G5FAV")!, outputs: .preset("h264-720p"))
                if tenant == "gpu" { spec.requiredCapabilities = ["GPU:0"] }
                guard case .done(let job, _) = try await server.jobs.submit(tenant: tenant, spec: spec, idempotencyKey: nil,
                                                                              requestHash: "", render: { _ in [] }) else { throw SimFailure("not submitted") }
                tenantOf[job.id] = tenant
            }
        }
        for i in 0..<Self.engines {
            let gpu = i < Self.gpuEngines
            let record = try await server.engines.register(name: "sim-\(i)", host: "sim", tags: gpu ? ["GPU:0"] : [],
                                                             capabilitiesJSON: #"{"encoders":["libx264"]}"#, credential: "sim-credential-\(i)-0123456789")
            engines.append(Engine(id: record.id, gpu: gpu))
            schedule(random(0...Self.heartbeatMs), .heartbeat(i))
            schedule(random(0...500), .poll(i))
        }
        schedule(2_000, .sweepEngines)
        schedule(1_000, .sweepJobs)
        schedule(10_000, .longPollTick)

        let limit = startMs + 4 * 3_600_000
        var steps = 0
        while let e = queue.first {
            queue.removeFirst()
            if e.at > now { clock.advance(by: .milliseconds(e.at - now)) }
            try await handle(e.action)
            steps += 1
            if steps % 200 == 0, try await allCompleted() { break }
            if now > limit { throw SimFailure("not done after 4 simulated hours: \(try await server.jobs.countsByState())") }
        }
        try await check()
        if ProcessInfo.processInfo.environment["SPOOL_FLEET_VERBOSE"] != nil {
            print("seed \(seed): \(steps) events, \(server.scheduler.roundCount) rounds, \(leaseOrder.count) leases, \((now - startMs) / 1000) simulated s")
        }
        return Report(leases: leaseOrder.count, completions: completions.values.reduce(0, +), refused: refused,
                      crashes: crashes, partitions: partitions, reclaimed: reclaimed)
    }

    func allCompleted() async throws -> Bool {
        let counts = try await server.jobs.countsByState()
        return counts[.completed] == Self.jobsPerTenant.values.reduce(0, +)
    }

    func partitioned(_ i: Int) -> Bool { now < engines[i].partitionedUntil }

    func handle(_ action: Action) async throws {
        switch action {
        case .heartbeat(let i):
            guard engines[i].alive else { return }
            if !partitioned(i) {
                try await server.engines.heartbeat(engines[i].id, load: Double(engines[i].running.count), state: .online)
                let taken = try await server.scheduler.reclaim(engine: engines[i].id, listed: Set(engines[i].running.keys.map(\.text))).count
                reclaimed += taken
                if taken > 0 { wakeParked() }
                if engines[i].running.isEmpty && !parked.contains(i) { schedule(0, .poll(i)) }
            }
            schedule(Self.heartbeatMs, .heartbeat(i))

        case .poll(let i):
            // A free engine asks for work: it waits in a long poll until the next round.
            guard engines[i].alive, engines[i].running.isEmpty else { return }
            parked.insert(i)
            wakeParked()

        case .round:
            roundScheduled = false
            let online = Set(try await server.engines.list(limit: 10_000, state: .online).records.map(\.id))
            let asking = parked.sorted().filter { i in
                engines[i].alive && !partitioned(i) && engines[i].running.isEmpty && online.contains(engines[i].id)
            }
            guard !asking.isEmpty else { return }
            let answers = await server.scheduler.offer(asking.map { i in
                (engines[i].id, engines[i].gpu ? ["GPU:0", "libx264", "h264"] : ["libx264", "h264"])
            })
            for (i, answer) in zip(asking, answers) {
                guard let job = answer else { continue }   // stays parked
                parked.remove(i)
                guard job.engineID == engines[i].id, job.state == .assigned else { throw SimFailure("lease answered a job not assigned to the engine: \(job.state)") }
                if job.requiredCapabilities.contains("GPU:0") && !engines[i].gpu {
                    throw SimFailure("job \(job.id.text) requiring GPU:0 leased to an engine without it")
                }
                if let prior = leases[job.id]?.last, prior.1 >= job.leaseEpoch {
                    throw SimFailure("job \(job.id.text) leased under epoch \(job.leaseEpoch) after epoch \(prior.1)")
                }
                leases[job.id, default: []].append((i, job.leaseEpoch))
                leaseOrder.append(job.tenant)
                engines[i].running[job.id] = job.leaseEpoch
                let duration = random(2_000...30_000)
                schedule(duration, .finish(i, job.id, job.leaseEpoch, engines[i].incarnation))
                if chance(0.03) { schedule(random(0...duration), .crash(i)) }
                if chance(0.03) { schedule(random(0...duration), .partition(i)) }
            }

        case .longPollTick:
            // Long polls end every 10 s and are asked again: a round even without a wake.
            wakeParked()
            schedule(10_000, .longPollTick)

        case .finish(let i, let job, let epoch, let incarnation):
            guard engines[i].alive, engines[i].incarnation == incarnation, engines[i].running[job] == epoch else { return }
            if partitioned(i) {
                // The work is done; the report waits for the network to heal.
                schedule(engines[i].partitionedUntil - now + 1, .finish(i, job, epoch, incarnation))
                return
            }
            engines[i].running[job] = nil
            let newest = leases[job]?.last
            do {
                _ = try await server.jobs.complete(job, engine: engines[i].id, leaseEpoch: epoch, result: JobResult(outputs: []))
                server.scheduler.finished(job, measuredWork: nil)
                completions[job, default: 0] += 1
                if completions[job]! > 1 { throw SimFailure("job \(job.text) completed twice") }
                guard let newest, newest.0 == i, newest.1 == epoch else {
                    throw SimFailure("job \(job.text): a report under epoch \(epoch) from engine \(i) was accepted; the newest lease is \(String(describing: newest))")
                }
            } catch let e as ModelError where e.code == .staleLease || e.code == .invalidTransition {
                refused += 1
                // Refused is right unless the job is still this engine's under this epoch.
                if let current = try await server.jobs.get(job), current.engineID == engines[i].id, current.leaseEpoch == epoch, current.state.isLeased {
                    throw SimFailure("job \(job.text): the current holder's report under epoch \(epoch) was refused: \(e.message)")
                }
            }
            schedule(0, .poll(i))

        case .crash(let i):
            guard engines[i].alive else { return }
            crashes += 1
            engines[i].alive = false
            engines[i].incarnation += 1
            engines[i].running = [:]
            schedule(random(5_000...40_000), .restart(i))

        case .restart(let i):
            engines[i].alive = true
            schedule(0, .heartbeat(i))

        case .partition(let i):
            guard engines[i].alive, !partitioned(i) else { return }
            partitions += 1
            engines[i].partitionedUntil = now + random(5_000...60_000)

        case .sweepEngines:
            if try await !server.sweepEngines().isEmpty { wakeParked() }
            schedule(2_000, .sweepEngines)

        case .sweepJobs:
            if try await server.jobs.sweepOnce().retried > 0 { wakeParked() }
            schedule(1_000, .sweepJobs)
        }
    }

    func check() async throws {
        let counts = try await server.jobs.countsByState()
        let total = Self.jobsPerTenant.values.reduce(0, +)
        guard counts[.completed] == total else { throw SimFailure("jobs lost or stuck: \(counts)") }
        for (job, _) in tenantOf where completions[job] != 1 {
            throw SimFailure("job \(job.text) completed \(completions[job] ?? 0) times")
        }
        // Shares among a, b, c while all three had jobs waiting: leases up to the moment the
        // first of them had been leased as many times as it has jobs.
        var given: [String: Int] = [:]
        var window = 0
        for t in leaseOrder where Self.weights[t] != nil {
            given[t, default: 0] += 1
            window += 1
            if given[t]! >= Self.jobsPerTenant[t]! { break }
        }
        let weightSum = Self.weights.values.reduce(0, +)
        for (t, w) in Self.weights {
            let share = Double(given[t] ?? 0) / Double(window), expected = w / weightSum
            if abs(share - expected) > expected * 0.1 {
                throw SimFailure("tenant \(t): \(given[t] ?? 0) of \(window) leases while contended (share \(String(format: "%.3f", share)), weight share \(String(format: "%.3f", expected)))")
            }
        }
    }
}
