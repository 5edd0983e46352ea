// Dispatcher.FastReads: GET /api/v1/jobs/{id} on the HTTP server's synchronous lane
// (Web/FastLane.swift, ADR 0019). A poll for a job whose record and JSON are in this
// process's memory (Jobs.JobCache, embedded SQLite), from a key this process has already
// checked (AccessService's cache), is answered in the connection's receive path, with the
// headers the full path gives it: Content-Type, ETag, Last-Modified, X-Request-Id (the
// request-id middleware's rule), and the request counted and timed in the metrics as the
// metrics middleware would. Anything else declines to the full path, which answers it
// (and fills the caches for the next poll): a conditional request, a key or a job not in
// memory, another tenant's job, a malformed id. An answer may be replayed for the same
// request bytes on the same connection while the job's rendering and the key's cached
// authentication stand (Web/LaneShortcut.swift).
// Not installed when reads go elsewhere: with a Redis record cache or read replicas (their
// middleware and caches decide), or when the store keeps nothing in memory (PostgreSQL).
import Access
import Jobs
import Ring
import SpoolAPI
import SpoolModel
import Threads
import Web

extension DispatchServer {
    /// The fast lane for GET /jobs/{id}, or nil where this configuration reads elsewhere.
    func fastJobRead() -> FastHandler? {
        guard recordCache == nil, !database.hasReplicas, jobs.keepsRenderings else { return nil }
        let noAuth = settings.current.insecureNoAuth
        let clock: any MonotonicClock = clock
        // The lane answers one kind only (GET, this route, 200): its metrics, looked up once.
        let recorder = metrics.requestRecorder(method: "GET", route: "/api/" + SpoolAPI.version + "/jobs/:id", status: 200)
        // A replay (the same request's bytes again on a connection) stands while the job's
        // rendering is the cache's and the key's cached authentication is unchanged: the
        // answer is a function of those and of the bytes. It is counted and timed here.
        // Its duration is the lane's (`elapsed`: since the loop turned to the request).
        let replayCheck: FastReplayCheck = { [access] replay, elapsed in
            guard let job = replay.anchor as? JobRendering, job.isCurrent,
                  noAuth || access.stillCurrent(CacheStamp(epoch: replay.stamp0, until: replay.stamp1)) else { return false }
            recorder.record(nanoseconds: elapsed())
            return true
        }
        // The same for the replays the io_uring reap answers by itself (guarded by the
        // rendering's and the key cache's words, which is what `replayCheck` reads).
        let reapRecorder = FastReplayRecorder { count, nanoseconds in recorder.record(count: count, totalNanoseconds: nanoseconds) }
        return { [jobs, access] request, response in
            let started = clock.now
            var tenant: String?
            var stamp = CacheStamp(epoch: 0, until: .max)
            if !noAuth {
                guard let token = bearerToken(request), let (owner, s) = access.cachedOwnerStamped(secret: token) else { return false }
                tenant = owner.isAdmin ? nil : owner.tenant
                stamp = s
            }
            guard let bits = JobID.bits(of: request.parameterBytes(0)), let job = jobs.cachedRendering(bits: bits, visibleTo: tenant) else {
                return false
            }
            response.header("Content-Type", "application/json")
            response.header("ETag", entityTagHash: jobETagHash(state: job.state, updatedAt: job.updatedAt))
            response.header("Last-Modified", httpDate: job.updatedAt / 1000)
            response.body = job.json
            StandardMiddleware.requestID(request, &response)
            // A key cache entry with a lifetime is checked against the wall clock: only the
            // Swift check can do that.
            let guards = stamp.until != .max ? nil
                : noAuth ? [ReplayGuard(job.superseded, equals: 0)]
                : [ReplayGuard(job.superseded, equals: 0), ReplayGuard(access.removals, equals: stamp.epoch)]
            response.replay = FastReplay(anchor: job, stamp0: stamp.epoch, stamp1: stamp.until, check: replayCheck,
                                         reapGuards: guards, recorder: reapRecorder)
            recorder.record(nanoseconds: clock.now.nanoseconds &- started.nanoseconds)
            return true
        }
    }
}

/// The token of `Authorization: Bearer TOKEN` (scheme in any case), as the bearer-token
/// middleware takes it; nil for anything else (two Authorization fields too), or for a
/// token with a byte that is not visible ASCII (keys never have one; the full path
/// refuses such a request itself).
func bearerToken(_ request: FastRequest) -> ArraySlice<UInt8>? {
    guard request.count("Authorization") == 1, let value = request.header("Authorization"), value.count > 7 else { return nil }
    var i = value.startIndex
    for b in "bearer ".utf8 {
        let c = value[i]
        guard (c >= 0x41 && c <= 0x5A ? c | 0x20 : c) == b else { return nil }
        i += 1
    }
    var token = value[i...]
    while let f = token.first, f == 0x20 || f == 0x09 { token = token.dropFirst() }
    guard !token.isEmpty, token.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { return nil }
    return token
}
