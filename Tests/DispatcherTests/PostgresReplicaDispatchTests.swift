// The dispatcher reading from a PostgreSQL streaming replica (database.replicas), against a
// real primary and a real hot standby (pg_basebackup) the test starts:
// - reads of GETs go to the replica (one paused in its replay serves another caller a list
//   without a job just made), while the caller who made the job sees it at once (its floor
//   is its own write), as does anyone who sends the write's Spool-Consistency-Token;
// - a replica lagging past database.replica_max_lag_ms leaves the rotation and comes back
//   once it catches up; lag is on /metrics;
// - a replica killed during a read load: every read answered (from the primary), and once
//   the replica is restarted it serves reads again.
@testable import Dispatcher
import Foundation
import JSON
import Postgres
import ServerConfig
import SpoolModel
import SpoolTestSupport
import Synchronization
import XCTest

final class PostgresReplicaDispatchTests: XCTestCase {
    override class func tearDown() {
        PostgresServer.stopShared(by: self)
    }

    var replica: PostgresReplica?

    override func tearDown() async throws {
        replica?.stop()
        replica = nil
    }

    func start(maxLagMilliseconds: Int64) async throws -> (AccessHarness, PostgresReplica) {
        let server = try PostgresServer.shared(by: Self.self)
        let url = try server.createDatabase("replicated")
        let r = try PostgresReplica(of: server)
        replica = r
        let h = try await AccessHarness.start { s in
            s.database.url = url
            s.database.replicas = r.address
            s.database.replicaMaxLagMilliseconds = maxLagMilliseconds
            s.database.maxConnections = 4
        }
        return (h, r)
    }

    func monitor(_ h: AccessHarness) throws -> ReplicaMonitor {
        guard case .postgresql(let pool, _) = h.dispatch.database, let m = pool.replicas.first?.monitor else { throw XCTSkip("no replica") }
        return m
    }

    /// Waits (bounded) until `condition` holds of the replica's status.
    func wait(_ h: AccessHarness, seconds: Double = 20, _ what: String, _ condition: (ReplicaStatus) -> Bool) async throws {
        let m = try monitor(h)
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition(m.status) { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        XCTFail("\(what) within \(seconds) s; status \(m.status)")
    }

    func tenantKey(_ h: AccessHarness, admin: String) async throws -> String {
        let made = try await h.call("POST", "/api/v1/keys", key: admin, body: #"{"tenant":"acme"}"#)
        XCTAssertEqual(made.status, 201, made.text)
        return try json(made.text)["secret"]!.string()
    }

    func testReadsUseTheReplicaButNeverHideACallersOwnWrite() async throws {
        let (h, r) = try await start(maxLagMilliseconds: 60_000)
        let admin = try await h.adminKey()
        let tenant = try await tenantKey(h, admin: admin)
        let up = try await h.call("POST", "/api/v1/files", key: tenant, body: "input bytes")
        XCTAssertEqual(up.status, 201, up.text)
        let fileID = try json(up.text)["id"]!.string()
        let uploaded = try XCTUnwrap(up.headers.first { $0.name == "Spool-Consistency-Token" }.flatMap { WALPosition(text: $0.value) })
        // Everything so far replayed (as a poll saw it); then the replica stops replaying
        // (it stays in rotation: the lag bound is 60 s).
        try await wait(h, "caught up") { s in s.inRotation && s.replayed.map { $0 >= uploaded } == true }
        _ = try r.sql("SELECT pg_wal_replay_pause()")

        let made = try await h.call("POST", "/api/v1/jobs", key: tenant, body: #"{"input":{"file_id":"\#(fileID)"},"preset":"h264-720p"}"#,
                                    headers: [("Idempotency-Key", "replica-1")])
        XCTAssertEqual(made.status, 201, made.text)
        let jobID = try json(made.text)["id"]!.string()
        let token = try XCTUnwrap(made.headers.first { $0.name == "Spool-Consistency-Token" }?.value, "a write answers with its token")
        XCTAssertNotNil(WALPosition(text: token), token)

        // The writer sees its job at once, by id and in its list.
        for _ in 0..<5 {
            let own = try await h.call("GET", "/api/v1/jobs/\(jobID)", key: tenant)
            XCTAssertEqual(own.status, 200, "the caller's own write hidden: \(own.text)")
            let list = try await h.call("GET", "/api/v1/jobs", key: tenant)
            XCTAssertTrue(list.text.contains(jobID), list.text)
        }
        // Once a poll has seen the replica behind: another caller reads there, and it has
        // not replayed the job.
        try await wait(h, "seen lagging") { $0.lagBytes > 0 && $0.inRotation }
        let readsBefore = try monitor(h).status.reads
        let other = try await h.call("GET", "/api/v1/jobs?tenant=acme", key: admin)
        XCTAssertEqual(other.status, 200, other.text)
        XCTAssertFalse(other.text.contains(jobID), "the paused replica served this list: it cannot hold the job yet")
        XCTAssertGreaterThan(try monitor(h).status.reads, readsBefore)
        // With the writer's token, any caller sees the write.
        let withToken = try await h.call("GET", "/api/v1/jobs/\(jobID)", key: admin, headers: [("Spool-Consistency-Token", token)])
        XCTAssertEqual(withToken.status, 200, withToken.text)
        // Lag shows on /metrics.
        let scrape = try await h.call("GET", "/metrics")
        XCTAssertTrue(scrape.text.contains(#"spool_db_replica_in_rotation{replica="\#(r.address)"} 1"#), scrape.text)
        XCTAssertTrue(scrape.text.contains("spool_db_replica_lag_seconds"), scrape.text)
        XCTAssertFalse(scrape.text.contains(#"spool_db_replica_lag_bytes{replica="\#(r.address)"} 0"#) , "a paused replica lags in bytes")

        _ = try r.sql("SELECT pg_wal_replay_resume()")
        try await wait(h, "caught up after resuming") { $0.lagBytes == 0 && $0.inRotation }
        let later = try await h.call("GET", "/api/v1/jobs/\(jobID)", key: admin)
        XCTAssertEqual(later.status, 200, later.text)
        await h.dispatch.database.close()
        await h.stop()
    }

    func testAReplicaLaggingPastTheBoundLeavesTheRotationUntilItCatchesUp() async throws {
        let (h, r) = try await start(maxLagMilliseconds: 1_000)
        let admin = try await h.adminKey()
        let tenant = try await tenantKey(h, admin: admin)
        try await wait(h, "caught up") { $0.inRotation && $0.lagBytes == 0 }
        _ = try r.sql("SELECT pg_wal_replay_pause()")
        let up = try await h.call("POST", "/api/v1/files", key: tenant, body: "written while the replica is paused")
        XCTAssertEqual(up.status, 201, up.text)
        let fileID = try json(up.text)["id"]!.string()
        try await wait(h, "out of rotation") { !$0.inRotation && $0.lagMilliseconds > 1_000 }
        // Out of rotation: another caller's read is on the primary and sees the file.
        let list = try await h.call("GET", "/api/v1/files?tenant=acme", key: admin)
        XCTAssertEqual(list.status, 200, list.text)
        XCTAssertTrue(list.text.contains(fileID), list.text)
        let scrape = try await h.call("GET", "/metrics")
        XCTAssertTrue(scrape.text.contains(#"spool_db_replica_in_rotation{replica="\#(r.address)"} 0"#), scrape.text)
        _ = try r.sql("SELECT pg_wal_replay_resume()")
        try await wait(h, "back in rotation") { $0.inRotation && $0.lagBytes == 0 }
        await h.dispatch.database.close()
        await h.stop()
    }

    func testAReplicaKilledDuringAReadLoadCostsNoClientAnError() async throws {
        let (h, r) = try await start(maxLagMilliseconds: 5_000)
        let admin = try await h.adminKey()
        let tenant = try await tenantKey(h, admin: admin)
        let up = try await h.call("POST", "/api/v1/files", key: tenant, body: "input bytes")
        let fileID = try json(up.text)["id"]!.string()
        var jobs: [String] = []
        var last: WALPosition?
        for i in 0..<10 {
            let j = try await h.call("POST", "/api/v1/jobs", key: tenant, body: #"{"input":{"file_id":"\#(fileID)"},"preset":"h264-720p"}"#,
                                     headers: [("Idempotency-Key", "load-\(i)")])
            jobs.append(try json(j.text)["id"]!.string())
            last = j.headers.first { $0.name == "Spool-Consistency-Token" }.flatMap { WALPosition(text: $0.value) }
        }
        // Caught up means a poll has seen the replica replay past the last write: a status
        // with no lag from a poll made before these writes would send the first reads of a
        // fast load to the primary (the admin's floor, its key write, is not yet known to be
        // replayed), and on a slow machine all of them.
        let written = try XCTUnwrap(last, "a write answers with its token")
        try await wait(h, "caught up") { s in s.inRotation && s.replayed.map { $0 >= written } == true }
        let m = try monitor(h)

        /// `readers` clients, each `count` reads by the admin (never a writer: all on the replica while it serves).
        func load(count: Int) async throws -> (ok: Int, errors: [String]) {
            try await withThrowingTaskGroup(of: (Int, [String]).self) { group in
                for c in 0..<6 {
                    let ids = jobs
                    group.addTask {
                        var ok = 0
                        var errors: [String] = []
                        for i in 0..<count {
                            let path = i % 2 == 0 ? "/api/v1/jobs/\(ids[(c + i) % ids.count])" : "/api/v1/jobs?tenant=acme&limit=5"
                            let res = try await h.call("GET", path, key: admin)
                            if res.status == 200 { ok += 1 } else { errors.append("\(res.status) \(res.text.prefix(200))") }
                        }
                        return (ok, errors)
                    }
                }
                var total = (ok: 0, errors: [String]())
                for try await (ok, errors) in group { total.ok += ok; total.errors += errors }
                return total
            }
        }

        let before = try await load(count: 20)
        XCTAssertEqual(before.errors, [])
        let servedBefore = m.status.reads
        XCTAssertGreaterThan(servedBefore, 0, "the replica served none of the first reads")
        // Killed in the middle of the next load.
        let killer = Task {
            try await Task.sleep(for: .milliseconds(150))
            r.halt()
        }
        let during = try await load(count: 60)
        try await killer.value
        XCTAssertEqual(during.errors, [], "a client saw an error while the replica died")
        XCTAssertEqual(during.ok, 360)
        try await wait(h, "out of rotation after the kill") { !$0.inRotation }
        let after = try await load(count: 10)
        XCTAssertEqual(after.errors, [])
        let servedWhileDown = m.status.reads
        XCTAssertEqual(m.status.reads, servedWhileDown, "reads went to a dead replica")

        try r.start()
        try await wait(h, "back in rotation after the restart") { $0.inRotation }
        let back = try await load(count: 10)
        XCTAssertEqual(back.errors, [])
        XCTAssertGreaterThan(m.status.reads, servedWhileDown, "the restarted replica serves reads again")
        print("replica kill: fallbacks \(m.status.fallbacks), replica reads \(m.status.reads)")
        await h.dispatch.database.close()
        await h.stop()
    }
}
