// Simulation.Simulator: runs one seeded scenario on a real EventLoop over a SimBackend and
// says how it ended.
//
// The loop is started with the simulated backend injected (EventLoop.Configuration's
// `makeBackend`); the scenario runs as one task on that loop, so every task it starts (a
// server, clients) runs on the loop thread and nothing depends on thread timing. The
// calling thread only waits. A run ends passed, failed (the scenario threw: a checker's
// verdict), or hung: the simulated world stalled (nothing scheduled while tasks wait) or
// passed its simulated-time bound. The trace hash lets a caller check that a seed replays
// identically.
// Non-goals: running several loops (their threads would interleave nondeterministically).
import BufferPool
import Logging
import Ring
import Threads

/// What a scenario gets: the loop it runs on, the simulated backend, and its own random
/// stream (independent of the backend's fault draws). Loop-confined.
package final class SimContext: @unchecked Sendable {
    package let loop: EventLoop
    package let backend: SimBackend
    package var rng: SimRandom

    init(loop: EventLoop, backend: SimBackend) {
        self.loop = loop
        self.backend = backend
        rng = SimRandom(seed: backend.seed ^ 0x5EED_5EED_5EED_5EED)
    }
}

package enum Simulator {
    package struct Outcome: Sendable {
        package enum Verdict: Sendable, Equatable { case passed, failed(String), hung(String) }
        package var seed: UInt64
        package var verdict: Verdict
        package var faults: FaultWeights
        package var injected: SimBackend.InjectedFaults
        package var traceHash: UInt64
        package var completions: Int
        package var simulatedNanos: Int64
        /// The loop could not be stopped (it never returned to the backend); its thread still runs.
        package var loopAbandoned = false

        package var passed: Bool { verdict == .passed }

        /// One paragraph for a failure report, with how to replay the run.
        package func report(replay: String) -> String {
            let what: String
            switch verdict {
            case .passed: what = "passed"
            case .failed(let why): what = "FAILED: \(why)"
            case .hung(let why): what = "HUNG: \(why)"
            }
            return """
            simulation seed=\(seed) \(what)
              faults: \(faults)
              injected: \(injected); \(completions) completions; simulated \(simulatedNanos / 1_000_000) ms; trace \(String(traceHash, radix: 16))
              replay: \(replay)
            """
        }
    }

    private final class Holder: @unchecked Sendable {
        var backend: SimBackend?
    }

    /// The loop configuration the simulator uses (a small pool so receives run dry).
    package static func loopConfiguration() -> EventLoop.Configuration {
        var c = EventLoop.Configuration()
        c.pool = BufferPoolConfiguration(bufferSizeBytes: 4096, memoryCapBytes: 64 * 4096)
        c.slotsMax = 1024
        return c
    }

    /// Runs `scenario` with `seed`. Blocks the calling thread (never call it on a loop).
    /// `replay` is printed if the run crashes the process (a trap in the code under test).
    package static func run(seed: UInt64, configuration: EventLoop.Configuration = loopConfiguration(),
                            timeLimitSeconds: Int64 = 600, wallLimitSeconds: Int64 = 60, replay: String = "",
                            _ scenario: @escaping @Sendable (SimContext) async throws -> Void) -> Outcome {
        CrashReport.arm("simulation seed=\(seed) CRASHED (a trap in the code under test; its message is above)\n  replay: \(replay)")
        defer { CrashReport.disarm() }
        let holder = Holder()
        var config = configuration
        config.makeBackend = { pool throws(RingError) in
            let b = SimBackend(seed: seed, pool: pool)
            b.timeLimitNanos = timeLimitSeconds * 1_000_000_000
            holder.backend = b
            return b
        }
        var quiet = Logger(label: "spool.sim")
        quiet.logLevel = .critical
        let loop: EventLoop
        do {
            loop = try EventLoop.start(configuration: config, logger: quiet)
        } catch {
            return Outcome(seed: seed, verdict: .failed("the loop did not start: \(error)"), faults: FaultWeights(),
                           injected: .init(), traceHash: 0, completions: 0, simulatedNanos: 0)
        }
        let backend = holder.backend!
        let context = SimContext(loop: loop, backend: backend)
        let end = ConditionLock<Outcome.Verdict?>(nil)
        let figures = ConditionLock<(trace: UInt64, completions: Int, now: Int64)?>(nil)
        loop.spawn {
            let backend = context.backend
            backend.onStall = { why in end.change { $0 = $0 ?? .hung("\(why); \(backend.pendingSummary)") } }
            backend.idleIsExpected = false
            var verdict = Outcome.Verdict.passed
            do { try await scenario(context) } catch { verdict = .failed("\(error)") }
            backend.idleIsExpected = true
            // What the run did, taken before the loop idles (after this, only the harness's
            // wake-up and leftover no-op events happen, at no fixed point).
            figures.change { $0 = (backend.traceHash, backend.completionCount, backend.nowNanos) }
            end.change { $0 = $0 ?? verdict }
        }
        let verdict = end.wait(until: { $0 != nil }, timeoutNanos: wallLimitSeconds * 1_000_000_000) { v, _ in v }
        guard let verdict else {
            // The loop thread never came back to the simulator (a task spinning without
            // suspending): it cannot be stopped, so it is abandoned (the caller should stop).
            return Outcome(seed: seed, verdict: .hung("no verdict after \(wallLimitSeconds) s of wall-clock time: the loop thread is busy and never returns to the backend (a task spinning without suspending)"),
                           faults: backend.faults, injected: .init(), traceHash: 0, completions: 0, simulatedNanos: 0, loopAbandoned: true)
        }
        loop.shutdown()
        let f = figures.withLock { $0 } ?? (trace: backend.traceHash, completions: backend.completionCount, now: backend.nowNanos)
        return Outcome(seed: seed, verdict: verdict, faults: backend.faults, injected: backend.injected,
                       traceHash: f.trace, completions: f.completions, simulatedNanos: f.now - SimBackend.epochNanos)
    }
}

extension SimBackend {
    /// What is still waiting, for a hang report.
    package var pendingSummary: String {
        var timers = 0, files = 0, socketOps = 0
        for p in pending.values {
            switch p {
            case .timer: timers += 1
            case .file: files += 1
            case .socket: socketOps += 1
            }
        }
        return "pending: \(socketOps) socket operations, \(timers) timers, \(files) file operations; \(sockets.count) sockets and \(openFiles.count) files open"
    }
}
