// Scheduling.FairShare: which pending job a free engine gets. Pure policy (no I/O, no
// clock), so the dispatcher's scheduler and the seeded simulation run the same code.
//
// Weighted fair queuing across tenants by virtual service (start-time fair queuing):
// each tenant has a virtual time, the work it was given divided by its weight; the free
// engine goes to the backlogged tenant with the least virtual time that has a job the
// engine can run. A tenant that was idle and comes back starts at the system's virtual
// time (where the last chosen job started), so idleness earns no credit to burst with
// later and no tenant waits behind another's history (no starvation: every charge raises
// the charged tenant's time, so a waiting tenant's turn always comes). Within a tenant, jobs go in
// the order given (priority high to low, then oldest first).
//
// A job's cost is the work it asks for, pixels × frames, not 1: an estimate at
// assignment (`Candidate.cost`), corrected with what the engine measured when the job
// ends (`correct`), so tenants submitting long 4K jobs and short clips share by work.

/// A pending job as the policy sees it.
public struct Candidate: Sendable, Equatable {
    public var id: String
    public var tenant: String
    /// Estimated work (pixels × frames); at least 1.
    public var cost: Double
    /// Every one must be among the engine's capabilities (codecs, hardware, tags).
    public var requires: [String]
    public init(id: String, tenant: String, cost: Double, requires: [String]) {
        self.id = id; self.tenant = tenant; self.cost = max(1, cost.isFinite ? cost : 1); self.requires = requires
    }
}

public struct FairShare: Sendable {
    /// Weight per tenant (missing: `defaultWeight`). Weights are positive.
    public var weights: [String: Double]
    public var defaultWeight: Double
    /// Virtual time per tenant: work given / weight.
    public private(set) var virtualTime: [String: Double] = [:]
    /// Tenants that had pending work at the previous choice.
    private var backlogged: Set<String> = []
    /// The virtual time at which the last chosen job started (its tenant's, before the charge).
    public private(set) var systemTime: Double = 0

    public init(weights: [String: Double] = [:], defaultWeight: Double = 1) {
        self.weights = weights.filter { $0.value > 0 && $0.value.isFinite }
        self.defaultWeight = defaultWeight > 0 ? defaultWeight : 1
    }

    public func weight(of tenant: String) -> Double { weights[tenant] ?? defaultWeight }

    /// The job for an engine with `capabilities`, from `pending` (each tenant's jobs in its
    /// own order; tenants may interleave), charged to its tenant; nil when none fits.
    public mutating func choose(from pending: [Candidate], capabilities: Set<String>) -> Candidate? {
        var firstFit: [String: Candidate] = [:]
        var waiting: Set<String> = []
        for c in pending {
            waiting.insert(c.tenant)
            if firstFit[c.tenant] == nil && c.requires.allSatisfy(capabilities.contains) { firstFit[c.tenant] = c }
        }
        admit(waiting)
        guard let pick = firstFit.values.min(by: { a, b in
            let va = virtualTime[a.tenant] ?? 0, vb = virtualTime[b.tenant] ?? 0
            return va != vb ? va < vb : a.tenant < b.tenant
        }) else { return nil }
        systemTime = max(systemTime, virtualTime[pick.tenant] ?? 0)
        charge(pick.tenant, cost: pick.cost)
        return pick
    }

    /// Tenants newly waiting start no earlier than the system's virtual time.
    mutating func admit(_ waiting: Set<String>) {
        for t in waiting where !backlogged.contains(t) {
            virtualTime[t] = max(virtualTime[t] ?? 0, systemTime)
        }
        backlogged = waiting
    }

    public mutating func charge(_ tenant: String, cost: Double) {
        virtualTime[tenant, default: 0] += max(0, cost) / weight(of: tenant)
    }

    /// Replaces an estimate charged earlier with the measured cost (either may be larger).
    public mutating func correct(_ tenant: String, estimated: Double, measured: Double) {
        guard estimated.isFinite, measured.isFinite, measured > 0 else { return }
        virtualTime[tenant, default: 0] = max(0, (virtualTime[tenant] ?? 0) + (measured - estimated) / weight(of: tenant))
    }

    /// Parses "tenant=weight,tenant=weight" (weights positive numbers); nil with the reason.
    public static func parseWeights(_ text: String) -> Result<[String: Double], WeightsError> {
        var out: [String: Double] = [:]
        for part in text.split(separator: ",", omittingEmptySubsequences: true) {
            let kv = part.split(separator: "=", maxSplits: 1)
            guard kv.count == 2, !kv[0].trimmed.isEmpty, let w = Double(kv[1].trimmed), w > 0, w.isFinite, w <= 1_000_000 else {
                return .failure(WeightsError(entry: String(part)))
            }
            out[kv[0].trimmed] = w
        }
        return .success(out)
    }
}

public struct WeightsError: Error, Sendable, Equatable, CustomStringConvertible {
    public var entry: String
    public var description: String { "\"\(entry)\" is not TENANT=WEIGHT with a weight above 0" }
}

extension Substring {
    var trimmed: String { String(drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed()) }
}
