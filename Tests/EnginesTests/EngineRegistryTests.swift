// Engines: registration, heartbeats, offline after the heartbeat timeout on the injected
// clock, filtered and paged listing, and the credential kept only as a hash. On SQLite
// here; PostgresEngineRegistryTests runs every test again on PostgreSQL.
@testable import Engines
import Events
import Foundation
import JSON
import Persistence
import Relational
import SpoolModel
import Threads
import XCTest

class EngineRegistryTests: XCTestCase {
    /// The database the registry keeps its tables in (a SQLite file in a temp directory here).
    func makeDatabase() async throws -> any RelationalDatabase {
        let dir = NSTemporaryDirectory() + "spool-engines-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return try SQLiteDatabase(path: dir + "/spool.sqlite")
    }

    func makeRegistry(timeoutMs: Int64 = 30_000) async throws -> (EngineRegistry, ManualClock, any RelationalDatabase) {
        let db = try await makeDatabase()
        let clock = ManualClock()
        var settings = EngineSettings()
        settings.heartbeatTimeoutMilliseconds = timeoutMs
        let s = settings
        return (try await EngineRegistry.open(database: db, clock: clock, settings: { s }), clock, db)
    }

    /// Heartbeats, and the sweep's offline marking, are published as EngineHeartbeat events
    /// on the engine's subject after the commit.
    func testHeartbeatsAndMissedHeartbeatsArePublished() async throws {
        let db = try await makeDatabase()
        let clock = ManualClock()
        let bus = InProcessEventBus(replayWindow: { 100 })
        var settings = EngineSettings()
        settings.heartbeatTimeoutMilliseconds = 10_000
        let s = settings
        let registry = try await EngineRegistry.open(database: db, clock: clock, settings: { s }, events: bus)
        let e = try await registry.register(name: "cpu-1", host: "127.0.0.1", credential: "engine-secret-0123456789")
        clock.advance(by: .seconds(2))
        try await registry.heartbeat(e.id, load: 0.5)
        var events = bus.retained(subject: e.id.text)
        XCTAssertEqual(events.map(\.type), [.engineHeartbeat])
        let beat = try JSONDocument(parsing: events[0].payload).root
        XCTAssertEqual(try beat["state"]?.string(), "online")
        XCTAssertEqual(try beat["load"]?.double(), 0.5)
        XCTAssertEqual(try beat["missed"]?.bool(), false)
        clock.advance(by: .seconds(11))
        let swept = try await registry.sweep()
        XCTAssertEqual(swept, [e.id])
        events = bus.retained(subject: e.id.text)
        XCTAssertEqual(events.count, 2)
        let missed = try JSONDocument(parsing: events[1].payload).root
        XCTAssertEqual(try missed["state"]?.string(), "offline")
        XCTAssertEqual(try missed["missed"]?.bool(), true)
        // An offline engine carries no load (its last one is stale).
        let offline = try await registry.get(e.id)
        XCTAssertEqual(offline?.state, .offline)
        XCTAssertEqual(offline?.load, 0)
        // Nothing more to mark, nothing more published.
        _ = try await registry.sweep()
        XCTAssertEqual(bus.retained(subject: e.id.text).count, 2)
    }

    /// The heartbeat sweep reads engines not offline through its partial index, not every
    /// row (whose capabilities come before state and last_heartbeat).
    func testTheSweepReadsOnlyEnginesNotOffline() async throws {
        let (_, _, db) = try await makeRegistry()
        guard db is SQLiteDatabase else { return }   // the SQLite plan; PostgreSQL plans by its statistics
        let plan = try await db.reading { s in
            try s.query("EXPLAIN QUERY PLAN " + EngineRegistry.sweepSQL, [0]).map { try $0.string("detail") }
        }.joined(separator: "; ")
        XCTAssertTrue(plan.contains("engines_records_alive"), plan)
    }

    func testRegisterAndGetRoundTrip() async throws {
        let (registry, clock, db) = try await makeRegistry()
        let e = try await registry.register(name: "gpu-1", host: "10.0.0.7", tags: ["gpu", "eu"],
                                            capabilitiesJSON: #"{"codecs":["h264","hevc"]}"#, credential: "engine-secret-0123456789")
        XCTAssertEqual(e.state, .online)
        XCTAssertEqual(e.registered, clock.unixMilliseconds)
        let got = try await registry.get(e.id)
        XCTAssertEqual(got, e)
        let stored = try await db.reading { db in try db.query("SELECT credential_hash FROM engines_records").map { try $0.string("credential_hash") } }
        XCTAssertEqual(stored.first?.count, 64)
        XCTAssertFalse(stored.first!.contains("engine-secret"))
        let good = try await registry.verifyCredential(e.id, "engine-secret-0123456789")
        let bad = try await registry.verifyCredential(e.id, "engine-secret-0123456780")
        XCTAssertTrue(good)
        XCTAssertFalse(bad)
    }

    func testBadRegistrationIsAValidationError() async throws {
        let (registry, _, _) = try await makeRegistry()
        let cases: [(String, () async throws -> Void)] = [
            ("/name", { _ = try await registry.register(name: "", host: "h", credential: "0123456789abcdef") }),
            ("/capabilities", { _ = try await registry.register(name: "n", host: "h", capabilitiesJSON: "[1]", credential: "0123456789abcdef") }),
            ("/tags/1", { _ = try await registry.register(name: "n", host: "h", tags: ["a", "b\u{1}"], credential: "0123456789abcdef") }),
            ("/credential", { _ = try await registry.register(name: "n", host: "h", credential: "short") }),
        ]
        for (field, call) in cases {
            do { try await call(); XCTFail("\(field) accepted") } catch let e as ModelError {
                XCTAssertEqual(e.code, .validationFailed)
                XCTAssertEqual(e.details.first?.0, field)
            }
        }
    }

    /// Engines offline past the retention are forgotten, and the table holds at most
    /// `maxRegistered` records: a registration at the cap makes room by forgetting the
    /// engine offline the longest, and is refused (503) while every engine is alive.
    func testOfflineEnginesAreForgottenAndRegistrationsAreCapped() async throws {
        let db = try await makeDatabase()
        let clock = ManualClock()
        var settings = EngineSettings()
        settings.heartbeatTimeoutMilliseconds = 10_000
        settings.offlineRetentionMilliseconds = 60_000
        settings.maxRegistered = 3
        let s = settings
        let registry = try await EngineRegistry.open(database: db, clock: clock, settings: { s })
        let a = try await registry.register(name: "a", host: "h", credential: "0123456789abcdef")
        clock.advance(by: .seconds(1))
        let b = try await registry.register(name: "b", host: "h", credential: "0123456789abcdef")
        clock.advance(by: .seconds(1))
        let c = try await registry.register(name: "c", host: "h", credential: "0123456789abcdef")
        // At the cap with every engine alive: refused, nothing changed.
        do {
            _ = try await registry.register(name: "d", host: "h", credential: "0123456789abcdef")
            XCTFail("a fourth engine was registered past the cap")
        } catch let e as ModelError { XCTAssertEqual(e.code, .unavailable) }
        // a and b go offline (a silent the longest); c stays alive.
        clock.advance(by: .seconds(9))
        try await registry.heartbeat(c.id, load: 0)
        clock.advance(by: .seconds(2))
        let swept = try await registry.sweep()
        XCTAssertEqual(Set(swept), [a.id, b.id])
        let d = try await registry.register(name: "d", host: "h", credential: "0123456789abcdef")
        let aNow = try await registry.get(a.id), bNow = try await registry.get(b.id)
        XCTAssertNil(aNow, "the engine offline the longest made room")
        XCTAssertNotNil(bNow)
        // Nothing is forgotten before the retention; b is, after it.
        let early = try await registry.forgetLongOffline()
        XCTAssertEqual(early, 0)
        clock.advance(by: .seconds(60))
        try await registry.heartbeat(c.id, load: 0)
        try await registry.heartbeat(d.id, load: 0)
        let late = try await registry.forgetLongOffline()
        XCTAssertEqual(late, 1)
        let left = try await registry.list(limit: 10).0.map(\.name)
        XCTAssertEqual(Set(left), ["c", "d"])
    }

    func testMissedHeartbeatsMarkOfflineOnTheInjectedClock() async throws {
        let (registry, clock, _) = try await makeRegistry(timeoutMs: 10_000)
        let a = try await registry.register(name: "a", host: "h", credential: "0123456789abcdef")
        let b = try await registry.register(name: "b", host: "h", credential: "0123456789abcdef")
        clock.advance(by: .seconds(6))
        try await registry.heartbeat(b.id, load: 0.5)
        clock.advance(by: .seconds(5))   // a: 11 s silent, b: 5 s
        let gone = try await registry.sweep()
        XCTAssertEqual(gone, [a.id])
        let aNow = try await registry.get(a.id), bNow = try await registry.get(b.id)
        XCTAssertEqual(aNow?.state, .offline)
        XCTAssertEqual(bNow?.state, .online)
        XCTAssertEqual(bNow?.load, 0.5)
        XCTAssertEqual(bNow?.lastHeartbeat, clock.unixMilliseconds - 5_000)
        let again = try await registry.sweep()
        XCTAssertEqual(again, [], "an offline engine is not reported twice")
        // A heartbeat brings it back.
        let back = try await registry.heartbeat(a.id, load: 0.1, state: .draining)
        XCTAssertEqual(back.state, .draining)
        do {
            try await registry.heartbeat(EngineID("eng_01ARZ3NDEKTSV4RRFFQ69G5FAV")!, load: 0)
            XCTFail("heartbeat of an unknown engine")
        } catch let e as ModelError { XCTAssertEqual(e.code, .notFound) }
        do {
            try await registry.heartbeat(a.id, load: .nan)
            XCTFail("NaN load accepted")
        } catch let e as ModelError { XCTAssertEqual(e.code, .validationFailed) }
    }

    func testListFiltersByStateAndPages() async throws {
        let (registry, clock, _) = try await makeRegistry()
        var ids: [EngineID] = []
        for i in 0..<5 {
            ids.append(try await registry.register(name: "e\(i)", host: "h", credential: "0123456789abcdef").id)
            clock.advance(by: .milliseconds(1))
        }
        try await registry.heartbeat(ids[1], load: 0, state: .draining)
        try await registry.heartbeat(ids[3], load: 0, state: .draining)
        let all = try await registry.list(limit: 2)
        XCTAssertEqual(all.totalCount, 5)
        XCTAssertEqual(all.records.map(\.id), Array(ids[0..<2]))
        let rest = try await registry.list(after: ids[1].text, limit: 10)
        XCTAssertEqual(rest.records.map(\.id), Array(ids[2...]))
        let draining = try await registry.list(limit: 10, state: .draining)
        XCTAssertEqual(draining.totalCount, 2)
        XCTAssertEqual(draining.records.map(\.id), [ids[1], ids[3]])
        let online = try await registry.list(offset: 1, limit: 10, state: .online)
        XCTAssertEqual(online.totalCount, 3)
        XCTAssertEqual(online.records.map(\.id), [ids[2], ids[4]])
    }
}
