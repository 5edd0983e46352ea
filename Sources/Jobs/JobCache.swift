// Jobs.JobCache: the latest committed record of recently touched jobs, so reading a job
// (GET /api/v1/jobs/{id}, an engine's progress poll) costs no database round trip and no
// hop to the blocking pool. Sound only because one process owns the SQLite file
// (Persistence holds an exclusive lock on it) and every write to `jobs_jobs` goes through
// SQLiteJobStore:
//  - writes put their jobs after the commit, on the single writer, so puts land in
//    commit order and the cache never holds an uncommitted or superseded record;
//  - a read that missed fills the cache only if no write committed since the read began
//    (`generation`), so a slow reader can never put back an older record over a newer one.
// An entry also keeps the job's JSON once something rendered it (`attach`), so repeated
// reads of an unchanged job skip the encoder; a newer record replaces the entry, JSON and all,
// and marks the rendering it dropped as superseded (`JobRendering.isCurrent`).
// Bounded: past `capacity` entries an arbitrary one is evicted (a miss only costs a read).
import Synchronization
import SpoolModel
import Threads

final class JobCache: Sendable {
    struct Entry: Sendable {
        let job: Job
        /// Which put made this entry: `attach` adds JSON only to the entry it was made from.
        let sequence: UInt64
        var rendering: JobRendering?
        var json: [UInt8]? { rendering?.json }
    }
    private struct State {
        var jobs: [UInt128: Entry] = [:]   // by JobID.bits: no String hashed
        var sequence: UInt64 = 0
        var generation: UInt64 = 0
        var hits: UInt64 = 0
        var misses: UInt64 = 0
    }
    private let state = Mutex(State())
    let capacity: Int

    init(capacity: Int) { self.capacity = max(0, capacity) }

    func get(_ id: JobID) -> Job? { entry(id)?.job }

    func entry(_ id: JobID) -> Entry? { entry(bits: id.bits) }

    /// The entry for the job whose id has these bits (`JobID.bits`).
    func entry(bits: UInt128) -> Entry? {
        state.withLock { s in
            if let j = s.jobs[bits] { s.hits &+= 1; return j }
            s.misses &+= 1
            return nil
        }
    }

    /// The rendering of the job whose id has these bits (`JobID.bits`), once a read made
    /// one: a reference, so a hot read copies no `Job` (two dozen fields to retain).
    func rendering(bits: UInt128) -> JobRendering? {
        state.withLock { s in
            if let r = s.jobs[bits]?.rendering { s.hits &+= 1; return r }
            s.misses &+= 1
            return nil
        }
    }

    /// The write generation to pass back to `fill` after reading from the database.
    var generation: UInt64 { state.withLock { $0.generation } }

    /// After a read that missed: keeps `job` unless a write committed since `generation`.
    func fill(_ job: Job, readAt generation: UInt64) {
        state.withLock { s in
            guard s.generation == generation, s.jobs[job.id.bits] == nil else { return }
            Self.insert(job, into: &s, capacity: capacity)
        }
    }

    /// After a commit (on the writer, in commit order): these are the records now.
    func committed(_ jobs: [Job]) {
        state.withLock { s in
            s.generation &+= 1
            for j in jobs { Self.insert(j, into: &s, capacity: capacity) }
        }
    }

    /// After a rollback or a failure whose outcome is unknown: forget these ids.
    func forget(_ ids: [JobID]) {
        state.withLock { s in
            s.generation &+= 1
            for id in ids { s.jobs.removeValue(forKey: id.bits)?.rendering?.supersede() }
        }
    }

    /// Keeps `json` (the rendering of the entry `sequence` named) unless the entry changed.
    func attach(_ json: [UInt8], to id: JobID, sequence: UInt64) {
        let key = id.bits
        state.withLock { s in
            guard let e = s.jobs[key], e.sequence == sequence else { return }
            e.rendering?.supersede()
            s.jobs[key]?.rendering = JobRendering(e.job, json: json)
        }
    }

    var counts: (entries: Int, hits: UInt64, misses: UInt64) {
        state.withLock { ($0.jobs.count, $0.hits, $0.misses) }
    }

    private static func insert(_ job: Job, into s: inout State, capacity: Int) {
        guard capacity > 0 else { return }
        let key = job.id.bits
        if let old = s.jobs[key] {
            old.rendering?.supersede()
        } else if s.jobs.count >= capacity {
            s.jobs.remove(at: s.jobs.startIndex).value.rendering?.supersede()
        }
        s.sequence &+= 1
        s.jobs[key] = Entry(job: job, sequence: s.sequence, rendering: nil)
    }
}

/// A committed job's JSON and what a reader of it needs beside (who may see it, the
/// validators), kept with the cache entry it was rendered from.
public final class JobRendering: Sendable {
    public let json: [UInt8]
    public let tenant: String
    public let state: JobState
    /// Milliseconds since the epoch.
    public let updatedAt: Int64
    /// Set once the cache no longer holds this rendering for its job (a newer record
    /// replaced it, or the entry was evicted or forgotten); never cleared.
    /// 0 while current, 1 after: a `SharedWord`, so the HTTP server's replay in the reap
    /// can check it too (ADR 0019, addendum 5).
    public let superseded = SharedWord()

    /// Whether this is still the cache's rendering of its job: a reader that kept it
    /// (the HTTP server's answer replay, ADR 0019) may keep using it while this holds.
    public var isCurrent: Bool { superseded.load() == 0 }

    func supersede() { superseded.store(1) }

    init(_ job: Job, json: [UInt8]) {
        self.json = json
        tenant = job.tenant
        state = job.state
        updatedAt = job.updatedAt
    }
}
