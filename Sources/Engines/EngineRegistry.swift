// Engines.EngineRegistry: the engine records (table engines_records): id, name, host,
// tags and capabilities (JSON), load, state (online, busy, draining, offline), the last
// heartbeat and registration times (Unix ms from the injected clock), and the SHA-256 of
// the engine's credential (never returned by any read). An engine that misses heartbeats
// for longer than the timeout is marked offline by `sweep` / `markOffline(missedSince:)`.
// Every heartbeat, and every engine the sweep marks offline, is published on the event bus
// as `EngineHeartbeat` (subject: the engine id) after its commit.
// The endpoints engines call (register, heartbeat) write it through Dispatcher's EngineAPIRoutes.
import Crypto
import Events
import JSON
import Relational
import SpoolModel
import Threads

public enum EngineState: String, Sendable, CaseIterable {
    /// Takes work.
    case online
    /// Over its resource limits: takes no work for now (backpressure).
    case busy
    /// Finishing its jobs before it stops: takes no new work.
    case draining
    case offline
}

public struct EngineRecord: Sendable, Equatable {
    public var id: EngineID
    public var name: String
    public var host: String
    public var tags: [String]
    /// The capabilities document the engine reported, as JSON object text.
    public var capabilitiesJSON: String
    /// 0 = idle; 1 = fully loaded (more is overloaded).
    public var load: Double
    public var state: EngineState
    /// Unix milliseconds.
    public var lastHeartbeat: Int64
    public var registered: Int64
}

/// A join token an admin made (never its secret).
public struct JoinToken: Sendable, Equatable {
    public var id: String
    public var note: String
    /// Unix milliseconds.
    public var created: Int64
    public var expires: Int64
    public var revoked: Int64?
}

public struct EngineSettings: Sendable, Equatable {
    /// An online or draining engine silent for longer than this becomes offline.
    public var heartbeatTimeoutMilliseconds: Int64 = 30_000
    /// An offline engine silent for longer than this is forgotten (its record deleted; it
    /// registers anew if it comes back).
    public var offlineRetentionMilliseconds: Int64 = 7 * 86_400_000
    /// Records kept at most: past it a registration first forgets the engine offline the
    /// longest, and is refused (503) when every engine is still alive.
    public var maxRegistered = 10_000
    public init() {}
}

public final class EngineRegistry: Sendable {
    let database: any RelationalDatabase
    let clock: any WallClock
    let settings: @Sendable () -> EngineSettings
    let events: (any EventBus)?

    public static let migrations: [SQLMigration] = [
        SQLMigration("engines.1", sqlite: """
            CREATE TABLE engines_records (
                id TEXT PRIMARY KEY NOT NULL,
                name TEXT NOT NULL,
                host TEXT NOT NULL,
                tags TEXT NOT NULL,
                capabilities TEXT NOT NULL,
                load REAL NOT NULL,
                state TEXT NOT NULL,
                last_heartbeat INTEGER NOT NULL,
                credential_hash TEXT NOT NULL,
                registered INTEGER NOT NULL
            );
            CREATE INDEX engines_records_state ON engines_records (state, id);
            """, postgresql: """
            CREATE TABLE engines_records (
                id TEXT PRIMARY KEY NOT NULL,
                name TEXT NOT NULL,
                host TEXT NOT NULL,
                tags TEXT NOT NULL,
                capabilities TEXT NOT NULL,
                load DOUBLE PRECISION NOT NULL,
                state TEXT NOT NULL,
                last_heartbeat BIGINT NOT NULL,
                credential_hash TEXT NOT NULL,
                registered BIGINT NOT NULL
            );
            CREATE INDEX engines_records_state ON engines_records (state, id);
            """),
        // Join tokens an admin made: kept as SHA-256, with an expiry and a revocation time.
        SQLMigration("engines.2", sqlite: """
            CREATE TABLE engines_join_tokens (
                id TEXT PRIMARY KEY NOT NULL,
                token_hash TEXT NOT NULL UNIQUE,
                note TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                expires_at INTEGER NOT NULL,
                revoked_at INTEGER
            ) WITHOUT ROWID;
            """, postgresql: """
            CREATE TABLE engines_join_tokens (
                id TEXT PRIMARY KEY NOT NULL,
                token_hash TEXT NOT NULL UNIQUE,
                note TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL,
                revoked_at BIGINT
            );
            """),
        // The heartbeat sweep (every 2 s) reads only engines not offline, through this
        // index: without it each sweep read every row, and state and last_heartbeat sit
        // after the capabilities (up to 64 KiB), so every offline engine's overflow pages
        // too (an outside probe: idle CPU grew with registrations, 3.4 % at 4,000).
        SQLMigration("engines.3", sqlite: """
            CREATE INDEX engines_records_alive ON engines_records (last_heartbeat) WHERE state <> 'offline';
            """, postgresql: """
            CREATE INDEX engines_records_alive ON engines_records (last_heartbeat) WHERE state <> 'offline';
            """),
    ]

    public static func open(database: any RelationalDatabase, clock: any WallClock,
                            settings: @escaping @Sendable () -> EngineSettings = { EngineSettings() },
                            events: (any EventBus)? = nil) async throws -> EngineRegistry {
        try await database.migrate(migrations)
        return EngineRegistry(database: database, clock: clock, settings: settings, events: events)
    }

    init(database: any RelationalDatabase, clock: any WallClock, settings: @escaping @Sendable () -> EngineSettings, events: (any EventBus)?) {
        self.database = database
        self.clock = clock
        self.settings = settings
        self.events = events
    }

    /// EngineHeartbeat: {"engine_id","state","load","last_heartbeat","missed"}.
    private func publishHeartbeat(_ id: EngineID, state: EngineState, load: Double?, at: Int64, missed: Bool) async {
        guard let events else { return }
        await events.publish(subject: id.text, type: .engineHeartbeat) { w in
            w.beginObject()
            w.field("engine_id", id.text)
            w.field("state", state.rawValue)
            w.key("load"); if let load { w.double(load) } else { w.null() }
            w.field("last_heartbeat", RFC3339.format(at))
            w.field("missed", missed)
            w.endObject()
        }
    }

    /// Registers an engine (online, heartbeat now). `capabilitiesJSON` must be a JSON
    /// object; the credential is kept only as its SHA-256.
    public func register(name: String, host: String, tags: [String] = [], capabilitiesJSON: String = "{}",
                         credential: String) async throws -> EngineRecord {
        try Self.checkRegistration(name: name, host: host, tags: tags, capabilitiesJSON: capabilitiesJSON, credential: credential)
        let now = clock.unixMilliseconds
        var rng = SystemRandomNumberGenerator()
        let record = EngineRecord(id: EngineID.generate(milliseconds: UInt64(max(0, now)), using: &rng), name: name, host: host,
                                  tags: tags, capabilitiesJSON: capabilitiesJSON, load: 0, state: .online,
                                  lastHeartbeat: now, registered: now)
        let tagsJSON = Self.tagsJSON(tags)
        let hash = Self.hash(credential)
        let cap = max(1, settings().maxRegistered)
        let admitted = try await database.writing { db -> Bool in
            // At the cap, the engine offline the longest makes room; with none offline the
            // registration is refused (a join token must not grow the table without bound).
            if try db.one("SELECT COUNT(*) AS n FROM engines_records", []).map({ try $0.int64("n") }) ?? 0 >= Int64(cap) {
                guard try db.one(Self.forgetOldestOfflineSQL, []) != nil else { return false }
            }
            try db.execute("""
                INSERT INTO engines_records (id, name, host, tags, capabilities, load, state, last_heartbeat, credential_hash, registered)
                VALUES (?, ?, ?, ?, ?, 0, 'online', ?, ?, ?)
                """, [record.id.text, name, host, tagsJSON, capabilitiesJSON, now, hash, now])
            return true
        }
        guard admitted else {
            throw ModelError(.unavailable, "\(cap) engines are registered and none is offline (engines.max_registered)")
        }
        return record
    }

    static let forgetOldestOfflineSQL = """
        DELETE FROM engines_records WHERE id = (
            SELECT id FROM engines_records WHERE state = 'offline' ORDER BY last_heartbeat, id LIMIT 1)
        RETURNING id
        """

    /// Deletes the records of engines offline and silent since before `cutoff` (Unix ms);
    /// returns how many.
    @discardableResult
    public func forgetOffline(silentSince cutoff: Int64) async throws -> Int {
        try await database.writing { db in
            try db.query("DELETE FROM engines_records WHERE state = 'offline' AND last_heartbeat < ? RETURNING id", [cutoff]).count
        }
    }

    /// `forgetOffline` with the settings' retention, now on the injected clock.
    @discardableResult
    public func forgetLongOffline() async throws -> Int {
        try await forgetOffline(silentSince: clock.unixMilliseconds - settings().offlineRetentionMilliseconds)
    }

    /// Records a heartbeat: load, state, the time, and the capabilities when they changed.
    /// Unknown engine: not_found.
    @discardableResult
    public func heartbeat(_ id: EngineID, load: Double, state: EngineState = .online, capabilitiesJSON: String? = nil) async throws -> EngineRecord {
        guard load.isFinite, load >= 0, load <= 1_000 else { throw ModelError.invalidField("/load", "must be a number from 0 to 1000") }
        if let c = capabilitiesJSON { try Self.checkCapabilities(c) }
        let now = clock.unixMilliseconds
        // An engine saying it goes offline (a graceful stop) keeps no load, as one swept is.
        let stored = state == .offline ? 0 : load
        let record = try await database.writing { db -> EngineRecord? in
            try db.one("""
                UPDATE engines_records SET load = ?, state = ?, last_heartbeat = ?, capabilities = COALESCE(?, capabilities)
                WHERE id = ? RETURNING *
                """, [stored, state.rawValue, now, capabilitiesJSON, id.text]).flatMap(Self.record)
        }
        guard let record else { throw ModelError(.notFound, "no engine \(id.text)") }
        await publishHeartbeat(id, state: record.state, load: record.load, at: now, missed: false)
        return record
    }

    /// A known engine registering again (it restarted and kept its id): new name, host,
    /// tags, capabilities and credential; online, heartbeat now.
    public func reregister(_ id: EngineID, name: String, host: String, tags: [String], capabilitiesJSON: String,
                           credential: String) async throws -> EngineRecord {
        try Self.checkRegistration(name: name, host: host, tags: tags, capabilitiesJSON: capabilitiesJSON, credential: credential)
        let now = clock.unixMilliseconds
        let record = try await database.writing { db -> EngineRecord? in
            try db.one("""
                UPDATE engines_records SET name = ?, host = ?, tags = ?, capabilities = ?, load = 0, state = 'online',
                last_heartbeat = ?, credential_hash = ? WHERE id = ? RETURNING *
                """, [name, host, Self.tagsJSON(tags), capabilitiesJSON, now, Self.hash(credential), id.text]).flatMap(Self.record)
        }
        guard let record else { throw ModelError(.notFound, "no engine \(id.text)") }
        await publishHeartbeat(id, state: .online, load: 0, at: now, missed: false)
        return record
    }

    /// Engines not offline whose last heartbeat is before `cutoff` (Unix ms) become
    /// offline; returns their ids. One statement, so of several dispatchers sweeping at
    /// once, each engine is marked (and announced) by one.
    @discardableResult
    public func markOffline(missedSince cutoff: Int64) async throws -> [EngineID] {
        let gone = try await database.writing { db -> [(EngineID, Int64)] in
            try db.query(Self.sweepSQL, [cutoff]).compactMap { row in
                try EngineID(row.string("id")).map { ($0, try row.int64("last_heartbeat")) }
            }.sorted { $0.0 < $1.0 }
        }
        for (id, last) in gone { await publishHeartbeat(id, state: .offline, load: nil, at: last, missed: true) }
        return gone.map(\.0)
    }

    /// The sweep's statement: through engines_records_alive, it reads only engines not offline.
    static let sweepSQL = """
        UPDATE engines_records SET state = 'offline', load = 0 WHERE state <> 'offline' AND last_heartbeat < ?
        RETURNING id, last_heartbeat
        """

    /// `markOffline` with the settings' heartbeat timeout, now on the injected clock.
    @discardableResult
    public func sweep() async throws -> [EngineID] {
        try await markOffline(missedSince: clock.unixMilliseconds - settings().heartbeatTimeoutMilliseconds)
    }

    public func get(_ id: EngineID) async throws -> EngineRecord? {
        try await database.reading { db in
            try db.one("SELECT * FROM engines_records WHERE id = ?", [id.text]).flatMap(Self.record)
        }
    }

    /// True when `credential` is the one `id` registered with.
    public func verifyCredential(_ id: EngineID, _ credential: String) async throws -> Bool {
        let stored = try await database.reading { db in
            try db.one("SELECT credential_hash FROM engines_records WHERE id = ?", [id.text])?.string("credential_hash")
        }
        guard let stored else { return false }
        let given = Self.hash(credential)
        var diff: UInt8 = 0
        for (a, b) in zip(stored.utf8, given.utf8) { diff |= a ^ b }
        return diff == 0 && stored.utf8.count == given.utf8.count
    }

    /// Engines in id (registration) order, optionally of one state: after `after` (a
    /// cursor's id), else from `offset`. `totalCount` counts every match.
    public func list(after: String? = nil, offset: Int = 0, limit: Int, state: EngineState? = nil) async throws
        -> (records: [EngineRecord], totalCount: Int) {
        try await database.reading { db in
            // (A "? IS NULL" test would leave PostgreSQL unable to type the parameter.)
            var filter = " WHERE 1 = 1"
            var arguments: [(any SQLConvertible)?] = []
            if let state {
                filter += " AND state = ?"
                arguments.append(state.rawValue)
            }
            let total = Int(try db.integer("SELECT COUNT(*) FROM engines_records" + filter, arguments) ?? 0)
            let rows: [SQLRow]
            if let after {
                rows = try db.query("SELECT * FROM engines_records" + filter + " AND id > ? ORDER BY id LIMIT ?", arguments + [after, limit])
            } else {
                rows = try db.query("SELECT * FROM engines_records" + filter + " ORDER BY id LIMIT ? OFFSET ?", arguments + [limit, offset])
            }
            return (try rows.compactMap(Self.record), total)
        }
    }

    static func record(_ row: SQLRow) throws -> EngineRecord? {
        guard let id = EngineID(try row.string("id")), let state = EngineState(rawValue: try row.string("state")) else { return nil }
        let tagsText = try row.string("tags")
        let tags = (try? JSONDocument(parsing: tagsText).root.elements.compactMap { try? $0.string() }) ?? []
        return EngineRecord(id: id, name: try row.string("name"), host: try row.string("host"), tags: tags,
                            capabilitiesJSON: try row.string("capabilities"), load: try row.optionalDouble("load") ?? 0, state: state,
                            lastHeartbeat: try row.int64("last_heartbeat"), registered: try row.int64("registered"))
    }

    // MARK: Join tokens

    /// A new join token valid for `seconds`; the secret is returned once and kept as its SHA-256.
    public func createJoinToken(validForSeconds seconds: Int64, note: String = "") async throws -> (JoinToken, secret: String) {
        guard (60...31_536_000).contains(seconds) else { throw ModelError.invalidField("/expires_in_seconds", "must be 60 to 31536000") }
        guard note.utf8.count <= 200, note.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F }) else {
            throw ModelError.invalidField("/note", "must be at most 200 bytes without control characters")
        }
        let token = JoinToken(id: "jt_" + Hex.random(bytes: 8), note: note, created: clock.unixMilliseconds,
                              expires: clock.unixMilliseconds + seconds * 1000, revoked: nil)
        let secret = "sjt_" + Hex.random(bytes: 24)
        try await database.writing { db in
            try db.execute("INSERT INTO engines_join_tokens (id, token_hash, note, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                           [token.id, Self.hash(secret), note, token.created, token.expires])
        }
        return (token, secret)
    }

    /// True when `secret` is a join token made here, not expired and not revoked.
    public func acceptsJoinToken(_ secret: String) async throws -> Bool {
        guard secret.hasPrefix("sjt_") else { return false }
        let now = clock.unixMilliseconds
        return try await database.reading { db in
            try db.exists("SELECT 1 FROM engines_join_tokens WHERE token_hash = ? AND revoked_at IS NULL AND expires_at > ?",
                          [Self.hash(secret), now])
        }
    }

    public func joinTokens() async throws -> [JoinToken] {
        try await database.reading { db in
            try db.query("SELECT * FROM engines_join_tokens ORDER BY created_at, id").map { r in
                JoinToken(id: try r.string("id"), note: try r.string("note"), created: try r.int64("created_at"),
                          expires: try r.int64("expires_at"), revoked: try r.optionalInt64("revoked_at"))
            }
        }
    }

    /// Revokes a join token (engines already registered keep their own tokens). 404 when unknown.
    public func revokeJoinToken(_ id: String) async throws {
        let now = clock.unixMilliseconds
        let changed = try await database.writing { db -> Int in
            try db.execute("UPDATE engines_join_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?", [now, id])
        }
        guard changed > 0 else { throw ModelError(.notFound, "no join token \(id.prefix(64))") }
    }

    static func checkRegistration(name: String, host: String, tags: [String], capabilitiesJSON: String, credential: String) throws {
        try check(name, "/name", max: 128)
        try check(host, "/host", max: 255)
        guard tags.count <= 64 else { throw ModelError.invalidField("/tags", "at most 64 tags") }
        for (i, t) in tags.enumerated() { try check(t, "/tags/\(i)", max: 64) }
        try checkCapabilities(capabilitiesJSON)
        guard credential.utf8.count >= 16 else { throw ModelError.invalidField("/credential", "must be at least 16 characters") }
    }

    static func checkCapabilities(_ json: String) throws {
        guard json.utf8.count <= 64 << 10, let doc = try? JSONDocument(parsing: json), doc.root.kind == .object else {
            throw ModelError.invalidField("/capabilities", "must be a JSON object of at most 64 KiB")
        }
    }

    static func tagsJSON(_ tags: [String]) -> String {
        var w = JSONWriter()
        w.beginArray()
        for t in tags { w.string(t) }
        w.endArray()
        return w.text
    }

    static func check(_ s: String, _ field: String, max: Int) throws {
        guard (1...max).contains(s.utf8.count), s.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F }) else {
            throw ModelError.invalidField(field, "must be 1 to \(max) bytes without control characters")
        }
    }

    static func hash(_ s: String) -> String { Hex.encode(SHA256.hash(data: Array(s.utf8))) }
}
