// AccessTests.PostgresAccessServiceTests: every AccessServiceTests test again with the
// service on a real PostgreSQL the test starts (make test requires it), a database per test;
// then what only a shared database has: a key revoked through one service (one dispatcher)
// stops authenticating on another that had it cached once that cache entry's lifetime is over.
import Access
import Postgres
import Relational
import SpoolTestSupport
import Threads
import XCTest

final class PostgresAccessServiceTests: AccessServiceTests {
    override class func tearDown() {
        PostgresServer.stopShared(by: self)
    }

    override func makeDatabase() async throws -> any RelationalDatabase {
        let pool = try await PostgresPool.open(PostgresPoolConfiguration(url: try PostgresServer.shared(by: Self.self).createDatabase("access")))
        addTeardownBlock { await pool.close() }
        return pool
    }

    override func testCreatedKeyAuthenticatesAndOnlyItsHashIsStored() async throws { try await super.testCreatedKeyAuthenticatesAndOnlyItsHashIsStored() }
    override func testRevokedKeyStopsAtOnceEvenWhenCached() async throws { try await super.testRevokedKeyStopsAtOnceEvenWhenCached() }
    override func testInvalidTenantIsRefusedWithTheFieldNamed() async throws { try await super.testInvalidTenantIsRefusedWithTheFieldNamed() }
    override func testListPagesByIdAndByOffset() async throws { try await super.testListPagesByIdAndByOffset() }
    override func testGeneratedAdminKeyIsWrittenOnceWithMode0600() async throws { try await super.testGeneratedAdminKeyIsWrittenOnceWithMode0600() }
    override func testAdminKeyFromTheEnvironmentRegistersAndRotates() async throws { try await super.testAdminKeyFromTheEnvironmentRegistersAndRotates() }
    override func testSecretsAreDistinctAndWellFormed() { super.testSecretsAreDistinctAndWellFormed() }

    func testARevocationElsewhereEndsTheCachedSuccessAfterItsLifetime() async throws {
        let (a, db) = try await makeService()
        let clock = ManualClock()
        let b = try await AccessService.open(database: db, clock: clock, cacheLifetime: .seconds(2))
        let (record, secret) = try await a.createKey(tenant: "acme", admin: false)
        let cached = try await b.authenticate(secret)
        XCTAssertNotNil(cached)
        try await a.revoke(record.id)
        clock.advance(by: .seconds(1))
        let stillCached = try await b.authenticate(secret)
        XCTAssertNotNil(stillCached, "within its lifetime the cache answers")
        clock.advance(by: .seconds(1))
        let refused = try await b.authenticate(secret)
        XCTAssertNil(refused, "past its lifetime the database answers: revoked")
    }
}
