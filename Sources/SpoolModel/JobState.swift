// SpoolModel.JobState: the life of a job and the one table of legal transitions. Every
// service that moves a job (the API, the scheduler, engines reporting, expiry, retries)
// asks this table; a move it does not list is an error (409 `invalid_transition`).
//
//   pending ──► assigned ──► transcoding ──► completing ──► completed
//      │  ▲         │             │               │
//      │  └─ retrying ◄── failed ◄┴───────────────┘   (failed → retrying while attempts remain)
//      └──────────────┴──► cancelled / failed (expired)
public enum JobState: String, Sendable, CaseIterable, Hashable {
    /// Accepted and committed; waiting for an engine.
    case pending
    /// Leased to an engine (with a lease epoch); the engine has not started yet.
    case assigned
    /// The engine reports progress.
    case transcoding
    /// Outputs are being uploaded and checked.
    case completing
    /// Done: outputs stored. Terminal.
    case completed
    /// Ended with a reason. Terminal unless attempts remain (then it moves to retrying).
    case failed
    /// Waiting out its backoff before it is pending again.
    case retrying
    /// Cancelled by a user. Terminal.
    case cancelled

    /// No transition leaves a terminal state, except failed → retrying (an explicit retry,
    /// or the automatic one while attempts remain).
    public var isTerminal: Bool { self == .completed || self == .failed || self == .cancelled }

    /// States an engine holds the job in (a lease is live).
    public var isLeased: Bool { self == .assigned || self == .transcoding || self == .completing }

    /// The states this one may move to.
    public var successors: Set<JobState> { JobState.table[self] ?? [] }

    /// True when `self → next` is legal.
    public func canMove(to next: JobState) -> Bool { successors.contains(next) }

    /// The transition, or the error the API answers with (409 invalid_transition).
    public func move(to next: JobState) throws(ModelError) -> JobState {
        guard canMove(to: next) else {
            throw ModelError(.invalidTransition, "\(rawValue.first.map { "aeiou".contains($0) } == true ? "an" : "a") \(rawValue) job cannot become \(next.rawValue)",
                             details: ["from": rawValue, "to": next.rawValue])
        }
        return next
    }

    private static let table: [JobState: Set<JobState>] = [
        .pending: [.assigned, .cancelled, .failed],
        // A lease lost (engine offline, lease expired) puts the job back to pending.
        .assigned: [.transcoding, .pending, .failed, .cancelled],
        .transcoding: [.completing, .pending, .failed, .cancelled],
        .completing: [.completed, .failed, .cancelled],
        .completed: [],
        .failed: [.retrying],
        .retrying: [.pending, .cancelled],
        .cancelled: [],
    ]
}
