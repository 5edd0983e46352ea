// Dispatcher.CachedReads: GET /jobs/{id} and GET /engines/{id} through the Redis record
// cache (RedisEvents.RedisRecordCache; docs/adr/0014-redis-record-cache.md). A hit answers
// from Redis alone; a miss reads the record on the primary (never a replica: a lagging
// replica's older record must not be stored where every dispatcher would serve it) and
// fills the cache if nothing changed since the lookup. A job's entry keeps its tenant, so
// a tenant key is refused another tenant's job exactly as without the cache.
import Engines
import Jobs
import Postgres
import RedisEvents
import SpoolModel
import Web

/// What a job's cache entry holds: "TENANT\nUPDATED_AT_MS\nSTATE\n" + the job's JSON.
struct CachedJob: Equatable {
    var tenant: String
    var updatedAt: Int64
    var state: String
    var json: [UInt8]

    init(tenant: String, updatedAt: Int64, state: String, json: [UInt8]) {
        self.tenant = tenant; self.updatedAt = updatedAt; self.state = state; self.json = json
    }

    init?(_ bytes: [UInt8]) {
        var lines: [[UInt8]] = []
        var start = 0
        for (i, b) in bytes.enumerated() where b == 0x0A && lines.count < 3 {
            lines.append(Array(bytes[start..<i]))
            start = i + 1
        }
        guard lines.count == 3, let ms = Int64(String(decoding: lines[1], as: UTF8.self)) else { return nil }
        tenant = String(decoding: lines[0], as: UTF8.self)
        updatedAt = ms
        state = String(decoding: lines[2], as: UTF8.self)
        json = Array(bytes[start...])
    }

    var bytes: [UInt8] { Array("\(tenant)\n\(updatedAt)\n\(state)\n".utf8) + json }
    var etag: String { entityTag(of: Array("\(state)|\(updatedAt)".utf8)) }
}

extension DispatchServer {
    /// Reads on the primary only, whatever the request's replica routing says.
    func onPrimary<T: Sendable>(_ body: () async throws -> T) async rethrows -> T {
        try await ReadRouting.$session.withValue(ReadSession(replicaAllowed: false, notBefore: nil)) { try await body() }
    }

    /// GET /jobs/{id} through the cache.
    func cachedJob(_ id: JobID, visibleTo tenant: String?, cache: RedisRecordCache) async throws -> Response {
        var generation: String?
        switch await cache.lookup(id.text) {
        case .hit(let bytes):
            if let entry = CachedJob(bytes) { return try jobResponse(entry, visibleTo: tenant, id: id) }
            generation = nil
        case .miss(let g):
            generation = g
        }
        let (job, json) = try await onPrimary { try await jobs.representation(id, visibleTo: nil) }
        let entry = CachedJob(tenant: job.tenant, updatedAt: job.updatedAt, state: job.state.rawValue, json: json)
        await cache.fill(id.text, entry.bytes, generation: generation)
        return try jobResponse(entry, visibleTo: tenant, id: id)
    }

    private func jobResponse(_ entry: CachedJob, visibleTo tenant: String?, id: JobID) throws -> Response {
        guard tenant.map({ $0 == entry.tenant }) ?? true else { throw ModelError(.notFound, "no job \(id.text)") }
        return Response(status: 200, headers: [("Content-Type", "application/json"), ("ETag", entry.etag),
                                               ("Last-Modified", HTTPDate.format(entry.updatedAt / 1000))], body: entry.json)
    }

    /// GET /engines/{id} through the cache.
    func cachedEngine(_ id: EngineID, cache: RedisRecordCache) async throws -> Response {
        var generation: String?
        switch await cache.lookup(id.text) {
        case .hit(let json):
            return Response(status: 200, headers: [("Content-Type", "application/json")], body: json)
        case .miss(let g):
            generation = g
        }
        guard let record = try await onPrimary({ try await engines.get(id) }) else { throw ModelError(.notFound, "no such engine") }
        let response = Response.json(200) { w in writeEngine(record, into: &w) }
        await cache.fill(id.text, response.body, generation: generation)
        return response
    }
}
