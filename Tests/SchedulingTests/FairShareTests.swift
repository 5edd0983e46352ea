// Scheduling.FairShare as pure policy: weighted shares while tenants are all waiting, no
// credit hoarded while idle, cost by work, capability filtering, priority order kept,
// the weights setting's parser.
import Scheduling
import XCTest

final class FairShareTests: XCTestCase {
    /// Tenants always backlogged with equal-cost jobs: each tenant's share of the picks is
    /// its weight's share, within 10 % (it is exact up to one job here).
    func testSharesFollowTheWeightsWhileContended() {
        var fair = FairShare(weights: ["a": 3, "b": 2, "c": 1])
        var given: [String: Int] = [:]
        var seq = 0
        var pending: [Candidate] = []
        func refill() {
            for t in ["a", "b", "c"] where !pending.contains(where: { $0.tenant == t }) {
                for _ in 0..<5 { seq += 1; pending.append(Candidate(id: "\(t)\(seq)", tenant: t, cost: 100, requires: [])) }
            }
        }
        for _ in 0..<600 {
            refill()
            guard let c = fair.choose(from: pending, capabilities: []) else { return XCTFail("nothing chosen") }
            pending.removeAll { $0.id == c.id }
            given[c.tenant, default: 0] += 1
        }
        for (t, w) in [("a", 3.0), ("b", 2.0), ("c", 1.0)] {
            let share = Double(given[t] ?? 0) / 600, expected = w / 6
            XCTAssertEqual(share, expected, accuracy: expected * 0.1, "tenant \(t): \(given)")
        }
    }

    /// Cost is work: a tenant of 4×-costly jobs gets a quarter as many at equal weights.
    func testCostIsWorkNotJobs() {
        var fair = FairShare()
        var given: [String: Int] = [:]
        var n = 0
        for _ in 0..<500 {
            n += 1
            let pending = [Candidate(id: "big\(n)", tenant: "big", cost: 400, requires: []),
                           Candidate(id: "small\(n)", tenant: "small", cost: 100, requires: [])]
            given[fair.choose(from: pending, capabilities: [])!.tenant, default: 0] += 1
        }
        XCTAssertEqual(Double(given["small"]!) / Double(given["big"]!), 4, accuracy: 0.4, "\(given)")
    }

    /// A tenant idle for a long time does not come back with a burst of saved credit.
    func testIdleTenantEarnsNoCredit() {
        var fair = FairShare()
        for i in 0..<1_000 {
            _ = fair.choose(from: [Candidate(id: "a\(i)", tenant: "a", cost: 1, requires: [])], capabilities: [])
        }
        var run = 0, longest = 0, last = ""
        for i in 0..<100 {
            let c = fair.choose(from: [Candidate(id: "a-\(i)", tenant: "a", cost: 1, requires: []),
                                       Candidate(id: "b-\(i)", tenant: "b", cost: 1, requires: [])], capabilities: [])!
            run = c.tenant == last ? run + 1 : 1
            last = c.tenant
            longest = max(longest, run)
        }
        XCTAssertLessThanOrEqual(longest, 2, "b came back and alternated with a instead of taking over")
    }

    /// Only jobs whose requirements the engine has; within a tenant, the given order.
    func testCapabilitiesAndOrderWithinATenant() {
        var fair = FairShare()
        let pending = [Candidate(id: "j1", tenant: "a", cost: 1, requires: ["hevc", "GPU:0"]),
                       Candidate(id: "j2", tenant: "a", cost: 1, requires: ["h264"]),
                       Candidate(id: "j3", tenant: "a", cost: 1, requires: [])]
        XCTAssertEqual(fair.choose(from: pending, capabilities: ["hevc"])?.id, "j3")
        XCTAssertEqual(fair.choose(from: pending, capabilities: ["hevc", "GPU:0", "h264"])?.id, "j1")
        XCTAssertEqual(fair.choose(from: pending, capabilities: ["h264"])?.id, "j2")
        XCTAssertNil(fair.choose(from: [pending[0]], capabilities: ["GPU:0"]))
    }

    func testWeightsParser() throws {
        XCTAssertEqual(try FairShare.parseWeights("a=3, b=0.5,c=1").get(), ["a": 3, "b": 0.5, "c": 1])
        XCTAssertEqual(try FairShare.parseWeights("").get(), [:])
        for bad in ["a", "a=0", "a=-1", "=2", "a=x", "a=inf"] {
            XCTAssertThrowsError(try FairShare.parseWeights(bad).get(), bad)
        }
    }
}
