// Dispatcher.EngineRoutes: reading the engine registry over the API (any authenticated
// caller). The endpoints engines themselves call come with the engines issue.
//
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
        v1.get("engines/:id") { [engines] req in
            _ = try req.caller()
            guard let id = req.pathParameters["id"].flatMap(EngineID.init), let record = try await engines.get(id) else {
                throw ModelError(.notFound, "no such engine")
            }
            return .json(200) { w in writeEngine(record, into: &w) }
        }
        v1.get("engines") { [engines, cursors] req in
            _ = try req.caller()
            var state: EngineState?
            if let s = req.query("state") {
                guard let parsed = EngineState(rawValue: s) else {
                    throw ModelError.invalidField("state", "must be one of online, busy, draining, offline")
                }
                state = parsed
            }
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
