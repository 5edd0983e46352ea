// SimulationTests: seeded runs of the real event loop, HTTP server and client on the
// simulator (Sources/Simulation), checked by the scenario's invariants.
//
// Seeds: by default 1...SPOOL_SIM_SEEDS (300), so `make test` is reproducible;
// SPOOL_SIM_SEED=N runs that one seed (replaying a failure); SPOOL_SIM_RANDOM=1 starts
// from a random base seed (printed) to explore new ones (`make simulate SEEDS=N`). Every
// failure prints its seed, what broke and the command that replays it.
// Non-goals: measuring anything (simulated time is not wall time).
import Foundation
import Simulation
import XCTest

final class SimulationTests: XCTestCase {
    static func seeds() -> [UInt64] {
        let env = ProcessInfo.processInfo.environment
        if let one = env["SPOOL_SIM_SEED"].flatMap({ UInt64($0) }) { return [one] }
        let count = env["SPOOL_SIM_SEEDS"].flatMap { Int($0) } ?? 300
        if env["SPOOL_SIM_RANDOM"] == "1" {
            var base: UInt64 = 0
            while base == 0 { base = UInt64.random(in: 1...(UInt64.max / 2)) }
            print("simulation: random seeds from base \(base)")
            return (0..<UInt64(count)).map { base + $0 }
        }
        return (1...UInt64(max(1, count))).map { $0 }
    }

    static func replay(_ seed: UInt64, test: String) -> String {
        "SPOOL_SIM_SEED=\(seed) swift test --filter SimulationTests.SimulationTests/\(test)   (or: make simulate SEED=\(seed))"
    }

    /// Server and clients over every seed; stops after a few failures.
    func testHTTPTrafficOverSeeds() {
        let started = Date()
        var failed: [UInt64] = []
        var passed = 0
        for seed in Self.seeds() {
            let replay = Self.replay(seed, test: "testHTTPTrafficOverSeeds")
            let outcome = Simulator.run(seed: seed, replay: replay, TrafficScenario.run)
            if outcome.passed {
                passed += 1
                continue
            }
            failed.append(seed)
            print(outcome.report(replay: replay))
            if failed.count >= 3 || outcome.loopAbandoned { break }
        }
        let seconds = Date().timeIntervalSince(started)
        print("simulation: \(passed) seeds passed, \(failed.count) failed, in \(String(format: "%.1f", seconds)) s")
        XCTAssertTrue(failed.isEmpty, "simulation failed for seeds \(failed.map(String.init).joined(separator: ", ")); each printed its replay command above")
    }

    /// A seed replays exactly: the same completions at the same simulated times.
    func testASeedReplaysIdentically() {
        for seed: UInt64 in [7, 42, 1234] {
            let a = Simulator.run(seed: seed, TrafficScenario.run)
            let b = Simulator.run(seed: seed, TrafficScenario.run)
            XCTAssertEqual(a.traceHash, b.traceHash, "seed \(seed) did not replay identically (\(a.completions) vs \(b.completions) completions)")
            XCTAssertEqual(a.verdict, b.verdict)
        }
    }
}
