// JobsTests.JobCacheTests: the record cache behind SQLiteJobStore.get. What would break if
// it were wrong: a read answering an older record than the database holds (a fill racing a
// write, a put out of commit order, a failed change kept), or the cache growing without bound.
import Foundation
@testable import Jobs
import Persistence
import SpoolModel
import SpoolTestSupport
import Threads
import XCTest

final class JobCacheTests: XCTestCase {
    var dir: String!
    var db: SQLiteDatabase!
    var store: SQLiteJobStore!
    /// The same database without a cache: what is really committed.
    var truth: SQLiteJobStore!

    override func setUp() async throws {
        dir = NSTemporaryDirectory() + "spool-jobcache-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        db = try SQLiteDatabase(path: dir + "/spool.sqlite")
        store = SQLiteJobStore(database: db, cacheCapacity: 64)
        truth = SQLiteJobStore(database: db, cacheCapacity: 0)
        try await store.migrate()
    }

    override func tearDown() async throws {
        store = nil; truth = nil; db = nil
        try? FileManager.default.removeItem(atPath: dir)
    }

    static let file = FileID("file_01J00000000000000000000000")!

    func job(_ n: UInt64, progress: Double = 0) -> Job {
        var rng = SplitMix(seed: n)
        let now: Int64 = 1_700_000_000_000
        return Job(id: JobID.generate(milliseconds: UInt64(now) + n, using: &rng), tenant: "acme", priority: 5, inputFileID: Self.file,
                   outputs: .preset("h264-720p"), requiredCapabilities: [], webhookURL: nil, ttlSeconds: 60, metadata: [:],
                   createdAt: now, updatedAt: now, expiresAt: now + 60_000, attempts: 0, maxAttempts: 3, state: .pending,
                   reason: nil, progress: progress, leaseEpoch: 0, engineID: nil, nextAttemptAt: nil, result: nil)
    }

    func insert(_ j: Job) async throws {
        _ = try await store.insert(claim: nil, status: 201, now: 0, retentionMilliseconds: 0, make: { j }, render: { _ in [] })
    }

    func setProgress(_ id: JobID, _ p: Double) async throws {
        _ = try await store.update(id, claim: nil, status: 200, now: 0, retentionMilliseconds: 0, render: nil) { $0.progress = p }
    }

    func testReadsAnswerTheLatestCommitFromMemory() async throws {
        let j = job(1)
        try await insert(j)
        let before = store.cacheCounts
        let got = try await store.get(j.id)
        XCTAssertEqual(got, j)
        XCTAssertEqual(store.cacheCounts.hits, before.hits + 1, "the insert put the record in the cache")
        try await setProgress(j.id, 42)
        let after = try await store.get(j.id)
        XCTAssertEqual(after?.progress, 42)
        let committed = try await truth.get(j.id)
        XCTAssertEqual(after, committed)
        // The JSON kept with the entry is the new record's, not the one rendered before.
        let r1 = try await store.representation(j.id)
        XCTAssertEqual(r1?.json, committed?.jsonBytes)
        try await setProgress(j.id, 43)
        let r2 = try await store.representation(j.id)
        XCTAssertEqual(r2?.job.progress, 43)
        XCTAssertEqual(r2?.json, r2?.job.jsonBytes)
    }

    func testAChangeThatThrowsLeavesTheCachedRecordAsCommitted() async throws {
        let j = job(2)
        try await insert(j)
        do {
            _ = try await store.update(j.id, claim: nil, status: 200, now: 0, retentionMilliseconds: 0, render: nil) { job in
                job.progress = 99
                throw ModelError(.invalidTransition, "refused")
            }
            XCTFail("the change should have thrown")
        } catch let e as ModelError {
            XCTAssertEqual(e.code, .invalidTransition)
        }
        let got = try await store.get(j.id)
        XCTAssertEqual(got?.progress, 0)
    }

    /// A reader that missed, then lost the race to a writer, must not put its older record back.
    func testAFillAfterACommitIsDropped() {
        let cache = JobCache(capacity: 8)
        let old = job(3, progress: 1), new = job(3, progress: 2)
        let readStarted = cache.generation
        cache.committed([new])
        cache.fill(old, readAt: readStarted)
        XCTAssertEqual(cache.get(new.id)?.progress, 2)
        // Even with no entry (evicted meanwhile): a commit since the read began voids the fill.
        let other = JobCache(capacity: 8)
        let g = other.generation
        other.committed([job(4)])
        other.fill(old, readAt: g)
        XCTAssertNil(other.get(old.id))
        // A quiet fill is kept.
        other.fill(old, readAt: other.generation)
        XCTAssertEqual(other.get(old.id)?.progress, 1)
        // JSON attached to an entry that was replaced is dropped.
        let e = other.entry(old.id)!
        other.committed([new])
        other.attach([1, 2, 3], to: old.id, sequence: e.sequence)
        XCTAssertNil(other.entry(old.id)?.json)
    }

    /// A rendering a reader kept (the HTTP server's answer replay) must say so the moment the
    /// cache stops holding it: replaced by a newer record, by another rendering of the same
    /// record, evicted, or forgotten after a failure. While it is held it stays current.
    func testARenderingIsCurrentExactlyWhileTheCacheHoldsIt() {
        let cache = JobCache(capacity: 2)
        let a = job(5), b = job(6), c = job(7)
        func render(_ j: Job) -> JobRendering {
            let e = cache.entry(j.id)!
            cache.attach(j.jsonBytes, to: j.id, sequence: e.sequence)
            return cache.rendering(bits: j.id.bits)!
        }
        cache.committed([a])
        let first = render(a)
        XCTAssertTrue(first.isCurrent)
        XCTAssertTrue(cache.rendering(bits: a.id.bits) === first)
        XCTAssertTrue(first.isCurrent, "reading it again changes nothing")
        // Another rendering of the same entry replaces it.
        let second = render(a)
        XCTAssertFalse(first.isCurrent)
        XCTAssertTrue(second.isCurrent)
        // A newer record of the job.
        var changed = a
        changed.progress = 50
        cache.committed([changed])
        XCTAssertFalse(second.isCurrent)
        let third = render(changed)
        // A commit of another job leaves it alone; an eviction does not (capacity 2).
        cache.committed([b])
        XCTAssertTrue(third.isCurrent)
        let bRendering = render(b)
        cache.committed([c])
        XCTAssertEqual([third, bRendering].filter(\.isCurrent).count, 1, "one of the two was evicted for the third job")
        let kept = third.isCurrent ? changed : b
        let keptRendering = third.isCurrent ? third : bRendering
        // Forgotten after a failure.
        cache.forget([kept.id])
        XCTAssertFalse(keptRendering.isCurrent)
        XCTAssertNil(cache.rendering(bits: kept.id.bits))
    }

    func testTheCacheStaysWithinItsCapacity() async throws {
        for n in 10..<110 { try await insert(job(UInt64(n))) }
        XCTAssertLessThanOrEqual(store.cacheCounts.entries, 64)
        // Evicted records are read from the database again, correctly.
        for n in 10..<110 {
            let j = job(UInt64(n))
            let got = try await store.get(j.id)
            XCTAssertEqual(got, j)
        }
        XCTAssertLessThanOrEqual(store.cacheCounts.entries, 64)
    }

    /// Many concurrent writers and readers on a few jobs: afterwards every cached answer is
    /// exactly what the database holds.
    func testConcurrentWritesAndReadsEndInAgreementWithTheDatabase() async throws {
        let jobs = (20..<26).map { job(UInt64($0)) }
        for j in jobs { try await insert(j) }
        let store = self.store!
        try await withThrowingTaskGroup(of: Void.self) { group in
            for w in 0..<6 {
                group.addTask {
                    for i in 0..<40 {
                        let id = jobs[(w + i) % jobs.count].id
                        if i % 3 == 0 {
                            _ = try await store.get(id)
                        } else {
                            _ = try await store.update(id, claim: nil, status: 200, now: 0, retentionMilliseconds: 0, render: nil) {
                                $0.progress = Double((w * 40 + i) % 100)
                            }
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        for j in jobs {
            let cached = try await store.get(j.id)
            let committed = try await truth.get(j.id)
            XCTAssertEqual(cached, committed)
        }
    }
}
