// EnginesTests.PostgresEngineRegistryTests: every EngineRegistryTests test again with the
// registry on a real PostgreSQL the test starts (make test requires it), a database per
// test; then two registries (two dispatchers) sweeping one database at once: each engine
// that missed its heartbeats is marked offline, and announced, by exactly one of them.
import Engines
import Events
import Postgres
import Relational
import SpoolModel
import SpoolTestSupport
import Threads
import XCTest

final class PostgresEngineRegistryTests: EngineRegistryTests {
    override class func tearDown() {
        PostgresServer.stopShared(by: self)
    }

    override func makeDatabase() async throws -> any RelationalDatabase {
        var config = PostgresPoolConfiguration(url: try PostgresServer.shared(by: Self.self).createDatabase("engines"))
        config.maxConnections = 8
        let pool = try await PostgresPool.open(config)
        addTeardownBlock { await pool.close() }
        return pool
    }

    override func testHeartbeatsAndMissedHeartbeatsArePublished() async throws { try await super.testHeartbeatsAndMissedHeartbeatsArePublished() }
    override func testRegisterAndGetRoundTrip() async throws { try await super.testRegisterAndGetRoundTrip() }
    override func testBadRegistrationIsAValidationError() async throws { try await super.testBadRegistrationIsAValidationError() }
    override func testMissedHeartbeatsMarkOfflineOnTheInjectedClock() async throws { try await super.testMissedHeartbeatsMarkOfflineOnTheInjectedClock() }
    override func testListFiltersByStateAndPages() async throws { try await super.testListFiltersByStateAndPages() }

    func testTwoSweepersMarkEachEngineOnce() async throws {
        let (a, clock, db) = try await makeRegistry(timeoutMs: 10_000)
        let b = try await EngineRegistry.open(database: db, clock: clock, settings: {
            var s = EngineSettings()
            s.heartbeatTimeoutMilliseconds = 10_000
            return s
        })
        var ids: [EngineID] = []
        for i in 0..<20 { ids.append(try await a.register(name: "e\(i)", host: "127.0.0.1", credential: "engine-secret-0123456789").id) }
        clock.advance(by: .seconds(11))
        let swept = try await withThrowingTaskGroup(of: [EngineID].self) { group in
            for _ in 0..<4 {
                group.addTask { try await a.sweep() }
                group.addTask { try await b.sweep() }
            }
            var all: [EngineID] = []
            for try await part in group { all += part }
            return all
        }
        XCTAssertEqual(swept.sorted(), ids.sorted(), "each engine marked once, by one sweeper")
    }
}
