// Dispatcher.EngineCalls: who an engine call is from and what it carries, for the routes
// of EngineAPIRoutes.swift and EngineUploadRoutes.swift: the registration body, the engine
// token (compared in constant time, kept as a hash by the registry), the leased job and its
// epoch (the fencing of X5), and the reading of engine bodies, which names every bad field
// in one 422 (BodyProblems).
import Engines
import Jobs
import JSON
import SpoolModel
import Web

/// What `POST /engines/register` carries.
struct EngineRegistration {
    var name: String
    var host: String
    var tags: [String] = []
    var capabilitiesJSON = "{}"
    /// A restarted engine's previous id and token: it keeps its id.
    var engineID: EngineID?
    var previousToken: String?

    init(_ root: JSONValue) throws {
        var problems = BodyProblems()
        problems.onlyKnown(root, ["name", "host", "addresses", "version", "tags", "capabilities", "engine_id", "token"])
        try problems.check()
        guard let n = try? root["name"]?.string() else { throw ModelError.invalidField("/name", "is required (a string)") }
        name = n
        host = n
        if let h = root["host"] {
            guard let text = try? h.string() else { throw ModelError.invalidField("/host", "must be a string") }
            host = text
        }
        if let t = root["tags"] {
            guard t.kind == .array else { throw ModelError.invalidField("/tags", "must be an array of strings") }
            tags = try t.elements.enumerated().map { i, v in
                guard let s = try? v.string() else { throw ModelError.invalidField("/tags/\(i)", "must be a string") }
                return s
            }
        }
        if let c = root["capabilities"] {
            guard c.kind == .object else { throw ModelError.invalidField("/capabilities", "must be an object") }
            capabilitiesJSON = c.rawText
        }
        if let e = root["engine_id"] {
            guard let text = try? e.string() else { throw ModelError.invalidField("/engine_id", "must be a string") }
            engineID = EngineID(text)
        }
        if let t = root["token"] {
            guard let text = try? t.string() else { throw ModelError.invalidField("/token", "must be a string") }
            previousToken = text
        }
    }
}

/// The engine named in the path, if the bearer is its token.
func authenticatedEngine(_ req: Request, _ engines: EngineRegistry) async throws -> EngineRecord {
    guard let id = req.pathParameters["id"].flatMap(EngineID.init), let token = bearer(req),
          try await engines.verifyCredential(id, token), let record = try await engines.get(id) else {
        throw APIError(status: 401, code: "unauthorized", message: "missing or invalid engine credentials")
    }
    return record
}

/// The job in the path, held by the calling engine under the presented epoch (409 otherwise).
func leasedJob(_ req: Request, _ engines: EngineRegistry, _ jobs: JobService) async throws -> (EngineRecord, Job) {
    let engine = try await authenticatedEngine(req, engines)
    guard let id = req.pathParameters["job"].flatMap(JobID.init), let job = try await jobs.get(id) else {
        throw ModelError(.notFound, "no such job")
    }
    var epoch: Int64?
    if let q = req.query("lease_epoch") { epoch = Int64(q) }
    if epoch == nil, req.method == "POST", !req.body.isEmpty {
        // A body that does not parse is said as such (400 invalid_json, or the duplicate-key
        // 422), not as a missing epoch; an epoch of the wrong type names its type.
        if let v = try req.json().root["lease_epoch"], !v.isNull {
            guard let n = try? v.int64() else { throw ModelError.invalidField("/lease_epoch", "must be an integer") }
            epoch = n
        }
    }
    guard let epoch else { throw ModelError.invalidField("lease_epoch", "is required (the epoch the lease was given with)") }
    guard job.engineID == engine.id, job.leaseEpoch == epoch, job.state.isLeased else {
        throw ModelError(.staleLease, "job \(id.text) is not held by this engine under lease epoch \(epoch) (now: \(job.state.rawValue), epoch \(job.leaseEpoch))",
                         details: [("lease_epoch", String(job.leaseEpoch))])
    }
    return (engine, job)
}


/// What is wrong with an engine body, collected so that one 422 names every bad field:
/// each unknown member, each field of the wrong type or out of range (the API's rule; a
/// misspelt "requeue" used to be ignored, and only the first of several problems was
/// named). At most 50 are listed; the message counts the rest.
struct BodyProblems {
    private(set) var list: [(String, String)] = []
    private var more = 0

    mutating func add(_ pointer: String, _ problem: String) {
        guard !list.contains(where: { $0.0 == pointer }) else { return }
        if list.count < 50 { list.append((pointer, problem)) } else { more += 1 }
    }

    /// Records every member of `object` not in `known`; false (recorded) when `object`
    /// is not an object at all.
    @discardableResult
    mutating func onlyKnown(_ object: JSONValue, _ known: Set<String>) -> Bool {
        guard object.kind == .object else {
            add(object.pointer, "must be an object")
            return false
        }
        for (key, value) in object.members where !known.contains(key) { add(value.pointer, "unknown field \"\(key.prefix(64))\"") }
        return true
    }

    /// The value `read` gives, or nil with its problem recorded (a ModelError's fields).
    mutating func read<T>(_ read: () throws -> T) -> T? {
        do {
            return try read()
        } catch let e as ModelError {
            if e.details.isEmpty { add("", e.message) } else { for (k, v) in e.details { add(k, v) } }
        } catch {
            add("", "\(error)")
        }
        return nil
    }

    /// Throws the 422 naming every problem, if there is one.
    func check() throws {
        guard let first = list.first else { return }
        let others = list.count - 1 + more
        throw ModelError(.validationFailed, "\(first.0.isEmpty ? "/" : first.0): \(first.1)" + (others > 0 ? " (and \(others) more)" : ""),
                         details: list)
    }
}

func bearer(_ req: Request) -> String? {
    guard let h = req.header("Authorization"), h.count > 7, h.prefix(7).lowercased() == "bearer " else { return nil }
    return String(h.dropFirst(7))
}

func number(_ root: JSONValue, _ key: String) throws -> Double? {
    guard let v = root[key], !v.isNull else { return nil }
    guard let d = try? v.double(), d.isFinite else { throw ModelError.invalidField("/" + key, "must be a number") }
    return d
}

/// `number`, which must also lie in `range` (422 naming the field otherwise).
func number(_ root: JSONValue, _ key: String, in range: ClosedRange<Double>) throws -> Double? {
    guard let d = try number(root, key) else { return nil }
    guard range.contains(d) else {
        throw ModelError.invalidField("/" + key, "must be a number from \(range.lowerBound.plainText) to \(range.upperBound.plainText)")
    }
    return d
}

fileprivate extension Double {
    /// 100 rather than 100.0; 1e9 as 1000000000.
    var plainText: String { self == rounded() && abs(self) < 1e15 ? String(Int64(self)) : String(self) }
}

func constantTimeEqual(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8), y = Array(b.utf8)
    var diff = UInt8(x.count == y.count ? 0 : 1)
    for i in 0..<min(x.count, y.count) { diff |= x[i] ^ y[i] }
    return diff == 0
}


/// A relative output path: segments of [A-Za-z0-9._-], none empty, "." or "..", at most 255 bytes.
func isSafeOutputName(_ name: String) -> Bool {
    guard (1...255).contains(name.utf8.count) else { return false }
    for seg in name.split(separator: "/", omittingEmptySubsequences: false) {
        guard !seg.isEmpty, seg != ".", seg != "..",
              seg.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A) || $0 == 0x2E || $0 == 0x2D || $0 == 0x5F })
        else { return false }
    }
    return true
}

