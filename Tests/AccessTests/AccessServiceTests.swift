// Access: keys are stored hashed, authenticate their tenant, stop at once when revoked,
// page by id; the admin key comes from SPOOL_ADMIN_KEY or is generated once into
// DATA_DIR/admin.key with mode 0600. On SQLite here; PostgresAccessServiceTests runs every
// test again on PostgreSQL.
@testable import Access
import Foundation
import Persistence
import Relational
import SpoolModel
import Threads
import XCTest

class AccessServiceTests: XCTestCase {
    var dir = ""

    /// The database the service keeps its table in (a SQLite file in `dir` here).
    func makeDatabase() async throws -> any RelationalDatabase {
        try SQLiteDatabase(path: dir + "/spool.sqlite")
    }

    func makeService(clock: ManualClock = ManualClock(), cacheLifetime: Duration? = nil) async throws -> (AccessService, any RelationalDatabase) {
        dir = NSTemporaryDirectory() + "spool-access-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let d = dir
        addTeardownBlock { try? FileManager.default.removeItem(atPath: d) }
        let db = try await makeDatabase()
        return (try await AccessService.open(database: db, clock: clock, cacheLifetime: cacheLifetime), db)
    }

    func testCreatedKeyAuthenticatesAndOnlyItsHashIsStored() async throws {
        let (access, db) = try await makeService()
        let (record, secret) = try await access.createKey(tenant: "acme", admin: false)
        XCTAssertTrue(secret.hasPrefix("spk_"))
        XCTAssertEqual(secret.count, 44)
        XCTAssertEqual(record.last4, String(secret.suffix(4)))
        let owner = try await access.authenticate(secret)
        XCTAssertEqual(owner, KeyOwner(keyID: record.id, tenant: "acme", isAdmin: false))
        let stored = try await db.reading { db in try db.query("SELECT hash FROM access_keys").map { try $0.string("hash") } }
        XCTAssertEqual(stored, [AccessService.hash(secret)])
        let dump = try await db.reading { db in
            try db.query("SELECT id || tenant || last4 || hash AS everything FROM access_keys").map { try $0.string("everything") }
        }
        XCTAssertFalse(dump.joined().contains(secret), "the secret itself is never stored")
        // One character changed (never to itself: a secret may end in "x").
        let wrong = try await access.authenticate(secret.dropLast() + (secret.hasSuffix("x") ? "y" : "x"))
        XCTAssertNil(wrong)
        let empty = try await access.authenticate("")
        XCTAssertNil(empty)
    }

    func testSecretsAreDistinctAndWellFormed() {
        let secrets = (0..<200).map { _ in AccessService.generateSecret() }
        XCTAssertEqual(Set(secrets).count, 200)
        for s in secrets {
            XCTAssertTrue(s.dropFirst(4).utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x32 && $0 <= 0x37) }, s)
        }
    }

    func testRevokedKeyStopsAtOnceEvenWhenCached() async throws {
        let (access, _) = try await makeService()
        let (record, secret) = try await access.createKey(tenant: "acme", admin: true)
        let first = try await access.authenticate(secret)
        XCTAssertNotNil(first)   // now cached
        // The last admin key in force is kept; with another one it can go.
        do {
            try await access.revoke(record.id)
            XCTFail("the last admin key was revoked")
        } catch let e as ModelError {
            XCTAssertEqual(e.code, .conflict)
        }
        let stillThere = try await access.authenticate(secret)
        XCTAssertNotNil(stillThere)
        _ = try await access.createKey(tenant: "ops", admin: true)
        try await access.revoke(record.id)
        let after = try await access.authenticate(secret)
        XCTAssertNil(after)
        try await access.revoke(record.id)   // again: no-op
        let listed = try await access.get(record.id)
        XCTAssertNotNil(listed?.revokedAt)
        do {
            try await access.revoke(AccessKeyID("key_01ARZ3NDEKTSV4RRFFQ69G5FAV")!)
            XCTFail("revoking an unknown key succeeded")
        } catch let e as ModelError {
            XCTAssertEqual(e.code, .notFound)
        }
    }

    /// `cachedOwner` (the HTTP fast lane's check) knows only keys `authenticate` accepted,
    /// byte for byte, and forgets them when they are revoked or their entry expires.
    func testCachedOwnerKnowsOnlyFreshAuthenticatedKeys() async throws {
        let clock = ManualClock()
        let (access, _) = try await makeService(clock: clock, cacheLifetime: .seconds(30))
        let (record, secret) = try await access.createKey(tenant: "acme", admin: false)
        let (_, other) = try await access.createKey(tenant: "acme", admin: false)
        let bytes = ArraySlice(Array(secret.utf8))
        XCTAssertNil(access.cachedOwner(secret: bytes), "not authenticated yet")
        _ = try await access.authenticate(secret)
        XCTAssertEqual(access.cachedOwner(secret: bytes), KeyOwner(keyID: record.id, tenant: "acme", isAdmin: false))
        XCTAssertNil(access.cachedOwner(secret: ArraySlice(Array(other.utf8))), "another key of the same tenant")
        var changed = Array(secret.utf8)
        changed[changed.count - 1] ^= 1
        XCTAssertNil(access.cachedOwner(secret: ArraySlice(changed)))
        XCTAssertNil(access.cachedOwner(secret: bytes.dropLast()))
        clock.advance(by: .seconds(31))
        XCTAssertNil(access.cachedOwner(secret: bytes), "an expired entry")
        _ = try await access.authenticate(secret)
        XCTAssertNotNil(access.cachedOwner(secret: bytes))
        try await access.revoke(record.id)
        XCTAssertNil(access.cachedOwner(secret: bytes), "a revoked key")
    }

    /// The stamp `cachedOwnerStamped` gives (what the HTTP server's answer replay checks
    /// instead of looking the key up again) holds exactly as long as `cachedOwner` would
    /// still give the same owner: not past the entry's lifetime, not after a revocation or
    /// an invalidation of the cache.
    func testACacheStampHoldsExactlyWhileTheCachedOwnerWould() async throws {
        let clock = ManualClock()
        let (access, _) = try await makeService(clock: clock, cacheLifetime: .seconds(30))
        let (record, secret) = try await access.createKey(tenant: "acme", admin: false)
        let (otherRecord, other) = try await access.createKey(tenant: "acme", admin: false)
        let bytes = ArraySlice(Array(secret.utf8)), otherBytes = ArraySlice(Array(other.utf8))
        XCTAssertNil(access.cachedOwnerStamped(secret: bytes))
        _ = try await access.authenticate(secret)
        let (owner, stamp) = try XCTUnwrap(access.cachedOwnerStamped(secret: bytes))
        XCTAssertEqual(owner, KeyOwner(keyID: record.id, tenant: "acme", isAdmin: false))
        XCTAssertTrue(access.stillCurrent(stamp))
        // Another key authenticating (a new entry) leaves it standing.
        _ = try await access.authenticate(other)
        XCTAssertTrue(access.stillCurrent(stamp))
        // The entry's lifetime: the stamp ends with it, to the millisecond.
        clock.advance(by: .milliseconds(29_999))
        XCTAssertTrue(access.stillCurrent(stamp))
        XCTAssertNotNil(access.cachedOwner(secret: bytes))
        clock.advance(by: .milliseconds(1))
        XCTAssertFalse(access.stillCurrent(stamp))
        XCTAssertNil(access.cachedOwner(secret: bytes))
        // Revoking another key ends every stamp (the check is cheap, not precise), and the
        // revoked key gets none.
        _ = try await access.authenticate(secret)
        _ = try await access.authenticate(other)
        let fresh = try XCTUnwrap(access.cachedOwnerStamped(secret: bytes)).stamp
        let revokedStamp = try XCTUnwrap(access.cachedOwnerStamped(secret: otherBytes)).stamp
        try await access.revoke(otherRecord.id)
        XCTAssertFalse(access.stillCurrent(revokedStamp))
        XCTAssertFalse(access.stillCurrent(fresh))
        XCTAssertNil(access.cachedOwnerStamped(secret: otherBytes))
        // A stamp taken after the revocation holds again; an invalidation ends it.
        let after = try XCTUnwrap(access.cachedOwnerStamped(secret: bytes)).stamp
        XCTAssertTrue(access.stillCurrent(after))
        access.invalidateCache()
        XCTAssertFalse(access.stillCurrent(after))
    }

    func testInvalidTenantIsRefusedWithTheFieldNamed() async throws {
        let (access, _) = try await makeService()
        for bad in ["", "Acme", "a b", String(repeating: "a", count: 65), "é", "a/b"] {
            do {
                _ = try await access.createKey(tenant: bad, admin: false)
                XCTFail("tenant \(bad) was accepted")
            } catch let e as ModelError {
                XCTAssertEqual(e.code, .validationFailed)
                XCTAssertEqual(e.details.first?.0, "/tenant")
            }
        }
        _ = try await access.createKey(tenant: String(repeating: "a", count: 64), admin: false)
        _ = try await access.createKey(tenant: "a_b-9", admin: false)
    }

    func testListPagesByIdAndByOffset() async throws {
        let (access, _) = try await makeService()
        var ids: [String] = []
        for i in 0..<5 { ids.append(try await access.createKey(tenant: "t\(i)", admin: false).record.id.text) }
        ids.sort()
        let first = try await access.list(after: nil, offset: 0, limit: 2)
        XCTAssertEqual(first.totalCount, 5)
        XCTAssertEqual(first.records.map(\.id.text), Array(ids[0..<2]))
        let next = try await access.list(after: ids[1], offset: 0, limit: 2)
        XCTAssertEqual(next.records.map(\.id.text), Array(ids[2..<4]))
        let byOffset = try await access.list(after: nil, offset: 4, limit: 2)
        XCTAssertEqual(byOffset.records.map(\.id.text), [ids[4]])
    }

    func testGeneratedAdminKeyIsWrittenOnceWithMode0600() async throws {
        let (access, _) = try await makeService()
        guard let secret = try await access.ensureAdminKey(fromEnvironment: nil, dataDirectory: dir) else {
            return XCTFail("no admin key was generated")
        }
        let file = try String(contentsOfFile: dir + "/admin.key", encoding: .utf8)
        XCTAssertEqual(file, secret + "\n")
        let mode = try FileManager.default.attributesOfItem(atPath: dir + "/admin.key")[.posixPermissions] as? Int
        XCTAssertEqual(mode, 0o600)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/admin.key.tmp"))
        let owner = try await access.authenticate(secret)
        XCTAssertEqual(owner?.isAdmin, true)
        let again = try await access.ensureAdminKey(fromEnvironment: nil, dataDirectory: dir)
        XCTAssertNil(again, "an admin key exists: nothing new is generated or printed")
    }

    func testALoosenedAdminKeyFileIsWarnedAbout() async throws {
        let (access, _) = try await makeService()
        XCTAssertNil(adminKeyFileWarning(dataDirectory: dir), "no file, no warning")
        _ = try await access.ensureAdminKey(fromEnvironment: nil, dataDirectory: dir)
        XCTAssertNil(adminKeyFileWarning(dataDirectory: dir), "0600 as written")
        XCTAssertEqual(chmod(dir + "/admin.key", 0o644), 0)
        let warning = try XCTUnwrap(adminKeyFileWarning(dataDirectory: dir))
        XCTAssertTrue(warning.contains("mode 644") && warning.contains("chmod 600"), warning)
        XCTAssertEqual(chmod(dir + "/admin.key", 0o620), 0)
        XCTAssertNotNil(adminKeyFileWarning(dataDirectory: dir), "writable by the group")
    }

    func testAdminKeyFromTheEnvironmentRegistersAndRotates() async throws {
        let (access, _) = try await makeService()
        let k1 = "env-admin-key-one-0123456789abcdefghij", k2 = "env-admin-key-two-0123456789abcdefghij"
        let printed = try await access.ensureAdminKey(fromEnvironment: k1, dataDirectory: dir)
        XCTAssertNil(printed)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/admin.key"))
        let a1 = try await access.authenticate(k1)
        XCTAssertEqual(a1?.isAdmin, true)
        _ = try await access.ensureAdminKey(fromEnvironment: k1, dataDirectory: dir)   // same: no second record
        let count = try await access.list(after: nil, offset: 0, limit: 10).totalCount
        XCTAssertEqual(count, 1)
        _ = try await access.ensureAdminKey(fromEnvironment: k2, dataDirectory: dir)
        let old = try await access.authenticate(k1), new = try await access.authenticate(k2)
        XCTAssertNil(old, "a changed SPOOL_ADMIN_KEY revokes the previous one")
        XCTAssertEqual(new?.isAdmin, true)
        do {
            _ = try await access.ensureAdminKey(fromEnvironment: "short", dataDirectory: dir)
            XCTFail("a short SPOOL_ADMIN_KEY was accepted")
        } catch let e as AccessSetupError {
            XCTAssertTrue(e.description.contains("SPOOL_ADMIN_KEY"))
        }
    }
}
