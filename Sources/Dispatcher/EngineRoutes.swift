// Dispatcher.EngineRoutes: reading the engine registry over the API (any authenticated
// caller) and the admin's join tokens. The endpoints engines call are EngineAPIRoutes.
//
//   POST     /api/v1/engines/join-tokens        admin: {"expires_in_seconds","note"} → the token, once
//   GET      /api/v1/engines/join-tokens        admin: every join token (never the secret)
//   DELETE   /api/v1/engines/join-tokens/{id}   admin: revoke
//   GET      /api/v1/queues/jobs/dead-letters   admin: jobs that failed for good (the job queue's dead letters)
//   GET|HEAD /api/v1/engines/{id}
//   GET      /api/v1/engines?state=online|busy|draining|offline&limit=&cursor=|offset=
//
// No response ever carries an engine's credential or its hash.
import Engines
import JSON
import SpoolModel
import Web

extension DispatchServer {
    func installEngineRoutes(on v1: inout RouteBuilder) {
        // Before engines/:id, so "join-tokens" is not taken for an engine id.
        v1.post("engines/join-tokens", body: .buffered(max: 4_096)) { [engines] req in
            try requireAdmin(req)
            var seconds: Int64 = 86_400
            var note = ""
            if !req.body.isEmpty {
                let root = try req.json().root
                guard root.kind == .object else { throw ModelError.invalidField("", "must be an object") }
                for (key, value) in root.members {
                    switch key {
                    case "expires_in_seconds":
                        guard let n = try? value.int64() else { throw ModelError.invalidField("/expires_in_seconds", "must be an integer") }
                        seconds = n
                    case "note":
                        guard let t = try? value.string() else { throw ModelError.invalidField("/note", "must be a string") }
                        note = t
                    default:
                        throw ModelError.invalidField(String(value.pointer.prefix(80)), "unknown field")
                    }
                }
            }
            let (token, secret) = try await engines.createJoinToken(validForSeconds: seconds, note: note)
            return .json(201) { w in writeJoinToken(token, secret: secret, into: &w) }
        }
        v1.get("queues/jobs/dead-letters") { [scheduler] req in
            try requireAdmin(req)
            var limit = 100
            if let l = req.query("limit") {
                if let repeated = repeatedParameter(req, "limit") { throw repeated }
                guard let n = Int(l), (1...1_000).contains(n) else { throw ModelError.invalidField("limit", "must be 1 to 1000") }
                limit = n
            }
            let dead = try await scheduler.queue.deadLetters(topic: Scheduler.topic, limit: limit)
            return .json(200) { w in
                w.beginObject()
                w.key("data")
                w.beginArray()
                for d in dead {
                    w.beginObject()
                    w.field("message_id", d.message.id)
                    w.field("job_id", d.message.body)
                    w.field("reason", d.reason)
                    w.field("deliveries", d.message.deliveryCount)
                    w.field("at", RFC3339.format(d.at))
                    w.endObject()
                }
                w.endArray()
                w.endObject()
            }
        }
        v1.get("engines/join-tokens") { [engines] req in
            try requireAdmin(req)
            let tokens = try await engines.joinTokens()
            return .json(200) { w in
                w.beginObject()
                w.key("data")
                w.beginArray()
                for t in tokens { writeJoinToken(t, secret: nil, into: &w) }
                w.endArray()
                w.endObject()
            }
        }
        v1.delete("engines/join-tokens/:id") { [engines] req in
            try requireAdmin(req)
            try await engines.revokeJoinToken(req.pathParameters["id"] ?? "")
            return Response(status: 204)
        }
        v1.get("engines/:id") { [engines, self] req in
            _ = try req.caller()
            if let cache = recordCache, let id = req.pathParameters["id"].flatMap(EngineID.init) {
                return try await cachedEngine(id, cache: cache)
            }
            guard let id = req.pathParameters["id"].flatMap(EngineID.init), let record = try await engines.get(id) else {
                throw ModelError(.notFound, "no such engine")
            }
            return .json(200) { w in writeEngine(record, into: &w) }
        }
        v1.get("engines") { [engines, cursors] req in
            _ = try req.caller()
            let state = try listFilter(req, "state", must: "one of online, busy, draining, offline") { EngineState(rawValue: $0) != nil }
                .flatMap(EngineState.init(rawValue:))
            let filters = "engines state=\(state?.rawValue ?? "")"
            let page = try cursors.page(of: req, filters: filters)
            let (records, total) = try await engines.list(after: page.after, offset: page.offset, limit: page.limit + 1, state: state)
            let shown = records.prefix(page.limit)
            let next = records.count > page.limit
                ? nextPageURL(path: "/api/v1/engines", filters: [("state", state?.rawValue ?? "")], limit: page.limit,
                              cursor: cursors.cursor(after: shown.last!.id.text, filters: filters))
                : nil
            return Response.page(shown, total: total, next: next) { r, w in writeEngine(r, into: &w) }
        }
    }
}

func writeEngine(_ r: EngineRecord, into w: inout JSONWriter<[UInt8]>) {
    w.beginObject()
    w.field("id", r.id.text)
    w.field("name", r.name)
    w.field("host", r.host)
    w.key("tags")
    w.beginArray()
    for t in r.tags { w.string(t) }
    w.endArray()
    w.key("capabilities")
    w.rawJSON(r.capabilitiesJSON)   // validated as a JSON object when the engine registered
    w.field("load", r.load)
    w.field("state", r.state.rawValue)
    w.field("last_heartbeat_at", RFC3339.format(r.lastHeartbeat))
    w.field("registered_at", RFC3339.format(r.registered))
    w.endObject()
}

func writeJoinToken(_ t: JoinToken, secret: String?, into w: inout JSONWriter<[UInt8]>) {
    w.beginObject()
    w.field("id", t.id)
    if let secret { w.field("token", secret) }
    w.field("note", t.note)
    w.field("created_at", RFC3339.format(t.created))
    w.field("expires_at", RFC3339.format(t.expires))
    w.key("revoked_at"); t.revoked.map(RFC3339.format).encode(to: &w)
    w.endObject()
}
