// Dispatcher.JobRoutes: /api/v1/jobs over the JobService.
//   POST /jobs                 Idempotency-Key required; 201 + Location, or the first answer
//                              replayed byte for byte with `Idempotent-Replayed: true`
//   GET|HEAD /jobs/{id}        ETag (state + update time), Last-Modified, 304 on If-None-Match
//   GET /jobs                  ?state= &tenant= (admins) &limit= &cursor= | &offset=
//   POST /jobs/{id}/cancel     409 invalid_transition when already finished
//   POST /jobs/{id}/retry      failed → pending; Idempotency-Key optional (same replay rules)
//   GET /jobs/{id}/events      SSE, resumable with Last-Event-ID; ends after the job finishes
//                              (or when its key is revoked, or its reader falls too far behind)
// A job id that is not one, or another tenant's job, is a 404.
import Crypto
import Events
import JSON
import Jobs
import ServerConfig
import SpoolAPI
import SpoolModel
import Web

extension DispatchServer {
    /// `fastLane`: only for the router `makeRouter` builds, whose middleware (request id,
    /// metrics, bearer-key authentication) the fast lane answers for (FastReads.swift); a
    /// router with other middleware must not let requests past it.
    func installJobRoutes(on v1: inout RouteBuilder, fastLane: Bool = false) {
        v1.post("jobs") { [self] req in try await createJob(req) }
        v1.get("jobs") { [self] req in try await listJobs(req) }
        if fastLane, let fast = fastJobRead() {
            v1.get("jobs/:id", fast: fast) { [self] req in try await getJob(req) }
        } else {
            v1.get("jobs/:id") { [self] req in try await getJob(req) }
        }
        v1.post("jobs/:id/cancel") { [self] req in try await cancelJob(req) }
        v1.post("jobs/:id/retry") { [self] req in try await retryJob(req) }
        v1.get("jobs/:id/events") { [self] req in try await jobEvents(req) }
    }

    func createJob(_ req: Request) async throws -> Response {
        let caller = try req.caller()
        guard let key = try idempotencyKey(req) else {
            throw APIError(status: 400, code: "idempotency_key_required",
                           message: "POST /jobs needs an Idempotency-Key header (1 to 255 printable ASCII characters)")
        }
        let hash = sha256Hex(req.body)
        // A key used before is answered with its first response even when the request
        // would now be refused (the input deleted since, a limit lowered by a reload). The
        // stored answer is looked up only then: a request that passes the checks goes
        // straight to `submit`, whose transaction finds a stored answer itself.
        let replay = { [jobs] () async throws -> Response? in
            try await jobs.replay(tenant: caller.tenant, idempotencyKey: key, requestHash: hash).map { self.replayed($0) }
        }
        let spec: JobSpec
        do {
            spec = try JobSpec.decode(req.body)
        } catch {
            if let r = try await replay() { return r }
            throw error
        }
        // An unreachable database is an error (503, try again), never "no file": a client
        // told 422 would drop a job it may submit again.
        guard try await files.exists(id: spec.inputFileID, tenant: caller.tenant) else {
            if let r = try await replay() { return r }
            throw ModelError.invalidField("/input/file_id", "no file \(spec.inputFileID.text)")
        }
        switch try await jobs.submit(tenant: caller.tenant, spec: spec, idempotencyKey: key, requestHash: hash, render: { $0.jsonBytes }) {
        case .done(let job, let body):
            return Response(status: 201, headers: [("Content-Type", "application/json"), ("Location", jobPath(job.id.text))], body: body)
        case .replayed(let stored):
            return replayed(stored)
        }
    }

    func getJob(_ req: Request) async throws -> Response {
        let (id, tenant) = try requestedJob(req)
        if let cache = recordCache { return try await cachedJob(id, visibleTo: tenant, cache: cache) }
        let (job, json) = try await jobs.representation(id, visibleTo: tenant)
        // Room for the server's own fields too (Date, Connection): one allocation.
        var headers: [(name: String, value: String)] = []
        headers.reserveCapacity(6)
        headers.append(("Content-Type", "application/json"))
        headers.append(("ETag", jobETag(job)))
        headers.append(("Last-Modified", HTTPDate.format(job.updatedAt / 1000)))
        return Response(status: 200, headers: headers, body: json)
    }

    func listJobs(_ req: Request) async throws -> Response {
        let caller = try req.caller()
        let names = JobState.allCases.map(\.rawValue).joined(separator: ", ")
        let stateParam = try listFilter(req, "state", must: "one of \(names)") { JobState(rawValue: $0) != nil } ?? ""
        let state = JobState(rawValue: stateParam)
        let tenantParam = try tenantFilter(req) ?? ""
        let tenant: String?
        if caller.isAdmin {
            tenant = tenantParam.isEmpty ? nil : tenantParam
        } else {
            guard tenantParam.isEmpty || tenantParam == caller.tenant else {
                throw ModelError(.forbidden, "a tenant key lists only its own tenant's jobs", details: [("tenant", "not your tenant")])
            }
            tenant = caller.tenant
        }
        // The cursor is signed for these filters and this caller: it cannot be replayed elsewhere.
        let filters = "jobs\nstate=\(stateParam)\ntenant=\(tenantParam)\ncaller=\(caller.principal)"
        let page = try cursors.page(of: req, filters: filters)
        // A cursor carries the last job's id, or with sharded jobs each shard's position.
        var after: JobID?
        var positions: ShardPositions?
        if let a = page.after {
            if let id = JobID(a) {
                after = id
            } else if let p = ShardPositions(text: a) {
                positions = p
            } else {
                throw APIError(status: 400, code: "invalid_cursor", message: "the cursor does not name a job")
            }
        }
        let result = try await jobs.list(JobQuery(tenant: tenant, state: state, after: after, offset: page.offset, limit: page.limit,
                                                  positions: positions))
        var next: String?
        if result.hasMore, let last = result.jobs.last {
            next = nextPageURL(path: "/api/" + apiVersion + "/jobs", filters: [("state", stateParam), ("tenant", tenantParam)],
                               limit: page.limit, cursor: cursors.cursor(after: result.positions?.text ?? last.id.text, filters: filters))
        }
        return Response.page(result.jobs, total: result.totalCount, next: next) { job, w in job.encode(to: &w) }
    }

    func cancelJob(_ req: Request) async throws -> Response {
        let job = try await visibleJob(req)
        return .json(200, encoding: try await jobs.cancel(job.id))
    }

    func retryJob(_ req: Request) async throws -> Response {
        let caller = try req.caller()
        let job = try await visibleJob(req)
        var claim: IdempotencyClaim?
        if let key = try idempotencyKey(req) {
            // Bound to this job: the same key on another job's retry is a reuse.
            let claimed = IdempotencyClaim(tenant: caller.tenant, key: key, requestHash: sha256Hex(Array("retry \(job.id.text)\n".utf8) + req.body))
            if let stored = try await jobs.replay(tenant: claimed.tenant, idempotencyKey: key, requestHash: claimed.requestHash) { return replayed(stored) }
            claim = claimed
        }
        switch try await jobs.retry(job.id, claim: claim, render: { $0.jsonBytes }) {
        case .done(_, let body): return Response(status: 200, headers: [("Content-Type", "application/json")], body: body)
        case .replayed(let stored): return replayed(stored)
        }
    }

    /// SSE: the retained events after Last-Event-ID (all retained without it), then live
    /// ones; the stream ends after the event of the job's finish. A job that finished
    /// before its events were retained (a restart) gets one JobFinished without an id; a
    /// client resuming after the last event of a finished job gets 204 (EventSource then
    /// stops reconnecting). Every `events.keepalive_seconds` (read again each time, so a
    /// reload applies) the stream gets a `: keep-alive` comment line.
    func jobEvents(_ req: Request) async throws -> Response {
        let job = try await visibleJob(req)
        var after: UInt64?
        if let h = req.header("Last-Event-ID") {
            // Decimal digits only (no sign, at most 20), and one field: as the server writes them.
            guard req.headerCount("Last-Event-ID") == 1, (1...20).contains(h.utf8.count),
                  h.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let n = UInt64(h) else {
                throw APIError(status: 400, code: "bad_request", message: "Last-Event-ID must be an event id this server sent",
                               details: [("Last-Event-ID", "must be a decimal event id")])
            }
            after = n
        }
        let sub = await events.subscribe(subject: job.id.text, after: after)
        let current = try await jobs.get(job.id) ?? job
        let finished = current.state.isTerminal
        let hasReplay = sub.replayedThrough > (after ?? 0)
        // A finished job whose JobFinished the bus no longer holds (a restart, a subject
        // forgotten) is told its end with this id: the first of its last update's
        // millisecond, at or below the id its real JobFinished got (JobService publishes a
        // job's events at or above it). A client that saw either has nothing more to get:
        // 204, which tells EventSource to stop. So has one at or past the newest event the
        // bus holds for the finished job (its JobFinished).
        let finishID = Event.firstID(atUnixMilliseconds: current.updatedAt)
        if finished, !hasReplay, let after, sub.replayedThrough > 0 || after >= finishID { return Response(status: 204) }
        let finalPayload = JobService.eventPayload(current)
        let settings = self.settings
        // What waits for a slow reader: past this the stream ends, and the client resumes
        // from its Last-Event-ID (the bus keeps the window), rather than the server
        // holding every event for a reader that stopped reading.
        let backlog = max(64, settings.current.events.replayWindow)
        return .events { w in
            var replayPending = hasReplay
            if !replayPending && finished {
                try await w.write(sse(EventType.jobFinished.rawValue, id: finishID, data: finalPayload))
                return
            }
            // The bus's events and keep-alive ticks, merged into one stream read here.
            let (merged, feed) = AsyncStream<Event?>.makeStream(bufferingPolicy: .bufferingOldest(backlog))
            let forward = Task {
                for await e in sub.events {
                    if case .dropped = feed.yield(e) { break }
                }
                feed.finish()
            }
            let ticks = Task {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(settings.current.events.keepAliveSeconds))
                    if Task.isCancelled { break }
                    if case .dropped = feed.yield(nil) { feed.finish(); break }
                }
            }
            defer { forward.cancel(); ticks.cancel(); feed.finish() }
            // A graceful stop ends the stream with its last chunk; the client resumes from
            // its Last-Event-ID (on another dispatcher, or this one restarted).
            w.onStop { feed.finish() }
            for await item in merged {
                // A key revoked (or expired) while the stream is open ends it: it reads
                // nothing more than a new request with it could.
                guard await self.credentialsStillHold(req) else { return }
                guard let e = item else {
                    try await w.write(Array(": keep-alive\n\n".utf8))
                    continue
                }
                try await w.write(sse(e.type.rawValue, id: e.id, data: e.payload))
                if e.type == .jobFinished && e.id >= sub.replayedThrough { return }
                if replayPending && e.id >= sub.replayedThrough {
                    replayPending = false
                    if finished {
                        try await w.write(sse(EventType.jobFinished.rawValue, id: finishID, data: finalPayload))
                        return
                    }
                }
            }
        }
    }

    // MARK: Helpers

    /// The job named by the path when the caller may see it; 404 otherwise.
    func visibleJob(_ req: Request) async throws -> Job {
        let (id, tenant) = try requestedJob(req)
        return try await jobs.get(id, visibleTo: tenant)
    }

    /// The job id in the path (404 when it is not one) and the tenant whose jobs the caller
    /// may see (nil: an admin sees every tenant's).
    func requestedJob(_ req: Request) throws -> (id: JobID, tenant: String?) {
        let caller = try req.caller()
        guard let id = JobID(req.pathParameters["id"] ?? "") else {
            throw ModelError(.notFound, "no job \(req.pathParameters["id"] ?? "")")
        }
        return (id, caller.isAdmin ? nil : caller.tenant)
    }

    func replayed(_ stored: StoredResponse) -> Response {
        var headers = [("Content-Type", "application/json"), ("Idempotent-Replayed", "true")]
        if stored.status == 201 { headers.append(("Location", jobPath(stored.jobID))) }
        return Response(status: stored.status, headers: headers, body: stored.body)
    }

    func jobPath(_ id: String) -> String { "/api/" + apiVersion + "/jobs/" + id }

    var apiVersion: String { SpoolAPI.version }
}

/// One SSE message. Payloads are compact JSON from JSONWriter, which escapes every control
/// character, so `data` is one line.
func sse(_ event: String, id: UInt64?, data: String) -> String {
    (id.map { "id: \($0)\n" } ?? "") + "event: \(event)\ndata: \(data)\n\n"
}

/// The request's Idempotency-Key, checked (nil when it has none); two of them are a 400:
/// which one the first answer was stored under would be a guess.
func idempotencyKey(_ req: Request) throws(APIError) -> String? {
    guard let key = req.header("Idempotency-Key") else { return nil }
    guard req.headerCount("Idempotency-Key") == 1 else {
        throw APIError(status: 400, code: "invalid_idempotency_key", message: "give one Idempotency-Key header, not several",
                       details: [("Idempotency-Key", "given more than once")])
    }
    try checkIdempotencyKey(key)
    return key
}

/// 1 to 255 printable ASCII characters, or a 400.
func checkIdempotencyKey(_ key: String) throws(APIError) {
    guard (1...255).contains(key.utf8.count), key.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else {
        throw APIError(status: 400, code: "invalid_idempotency_key", message: "Idempotency-Key must be 1 to 255 printable ASCII characters",
                       details: [("Idempotency-Key", "must be 1 to 255 printable ASCII characters")])
    }
}

/// A job's validator: its state and update time (every change moves the update time).
func jobETag(_ job: Job) -> String { entityTag(hash: jobETagHash(state: job.state, updatedAt: job.updatedAt)) }

/// FNV-1a over "STATE|UPDATED_AT" (the update time in milliseconds, in decimal).
func jobETagHash(state: JobState, updatedAt: Int64) -> UInt64 {
    var h = FNV1a()
    h.combine(state.rawValue)
    h.combine(byte: 0x7C)
    h.combine(decimal: updatedAt)
    return h.value
}

func sha256Hex(_ bytes: [UInt8]) -> String {
    SHA256.hash(data: bytes).withUnsafeBytes { Hex.encode(contiguous: $0) }
}

extension JobSettings {
    /// The jobs part of the server's settings.
    init(_ s: ServerSettings.Jobs) {
        self.init()
        defaultTTLSeconds = s.defaultTTLSeconds
        maxAttempts = s.maxAttempts
        retryBackoffSeconds = s.retryBackoffSeconds
        retryBackoffMaxSeconds = s.retryBackoffMaxSeconds
        idempotencyRetentionSeconds = s.idempotencyRetentionSeconds
        expiryIntervalMilliseconds = s.expiryIntervalMilliseconds
        retryJitter = Double(s.retryJitterPercent) / 100
    }
}
