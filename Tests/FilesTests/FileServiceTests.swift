// FileService over LocalStorage and a real SQLite file: uploads commit a row with the
// checksum, start-up reconciles objects with rows, quotas refuse with 413/507 (counting
// uploads in flight), tenants see only their files, lists page by keyset and offset.
import Foundation
import Files
import Logging
import Persistence
import Ring
import SpoolModel
import Storage
import SpoolTestSupport
import Synchronization
import Threads
import XCTest

/// Holds the stream until `open()` is called, after telling `started` it is waiting: an
/// upload kept in flight for as long as a test needs.
final class HeldSource: AsyncByteSource {
    let data: [UInt8]
    let started: AsyncStream<Void>.Continuation
    let release: AsyncStream<Void>
    var sent = false

    init(_ data: [UInt8], started: AsyncStream<Void>.Continuation, release: AsyncStream<Void>) {
        self.data = data
        self.started = started
        self.release = release
    }

    func read(_ consume: (UnsafeRawBufferPointer) throws -> Void) async throws -> Bool {
        guard !sent else { return false }
        started.yield()
        for await _ in release { break }
        sent = true
        try data.withUnsafeBytes { try consume($0) }
        return true
    }
}

/// The settings a test changes while the service runs (a reload).
final class LimitsBox: Sendable {
    let value: Mutex<FileSettings>
    init(_ s: FileSettings) { value = Mutex(s) }
    func set(_ body: (inout FileSettings) -> Void) { var s = value.withLock { $0 }; body(&s); value.withLock { $0 = s } }
}

final class FileServiceTests: XCTestCase {
    var loop: EventLoop!
    var dir: String!
    let clock = ManualClock()
    let limits = LimitsBox(FileSettings(maxFileBytes: 1 << 30, totalQuotaBytes: 1 << 40))

    override func setUp() async throws {
        loop = try EventLoop.start(id: 32)
        dir = temporaryDirectory("files")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() async throws {
        loop.shutdown()
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// The database of the last service opened (closed before a restart: see `restart`).
    var db: SQLiteDatabase?

    func openService() async throws -> FileService {
        let db = try SQLiteDatabase(path: dir + "/spool.sqlite")
        self.db = db
        let storage = try await LocalStorage.open(root: dir + "/files")
        let limits = self.limits
        return try await FileService.open(database: db, storage: storage, settings: { limits.value.withLock { $0 } }, clock: clock)
    }

    /// A restart in this process: the old database lets go of its file and lock first (a
    /// blocking-pool thread may hold a finished closure that captured it for a moment).
    func restart() async throws -> FileService {
        try await db?.close()
        return try await openService()
    }

    func upload(_ files: FileService, _ data: [UInt8], tenant: String = "acme", declared: Bool = true) async throws -> FileRecord {
        try await loop.run {
            try await files.upload(tenant: tenant, contentType: "video/mp4", declaredLength: declared ? UInt64(data.count) : nil,
                                   from: PieceSource(data))
        }
    }

    func expectError(_ code: ModelError.Code, _ body: () async throws -> Void, file: StaticString = #filePath, line: UInt = #line) async {
        do {
            try await body()
            XCTFail("no error; expected \(code)", file: file, line: line)
        } catch let e as ModelError {
            XCTAssertEqual(e.code, code, "\(e)", file: file, line: line)
        } catch {
            XCTFail("\(error); expected \(code)", file: file, line: line)
        }
    }

    func testUploadCommitsTheRecordWithTheChecksum() async throws {
        var files: FileService! = try await openService()
        let data = pattern(seed: 5, count: (2 << 20) + 77)
        let r = try await upload(files, data, declared: false)
        XCTAssertEqual(r.size, Int64(data.count))
        XCTAssertEqual(r.sha256, sha256Hex(data))
        XCTAssertEqual(r.contentType, "video/mp4")
        XCTAssertEqual(r.createdMilliseconds, clock.unixMilliseconds)
        XCTAssertEqual(r.storageKey, r.id.text)
        let got1 = try await files.metadata(id: r.id, tenant: "acme")
        XCTAssertEqual(got1, r)
        let got2 = try await files.exists(id: r.id, tenant: "acme")
        XCTAssertTrue(got2)
        let got3 = try await files.totalBytes()
        XCTAssertEqual(got3, Int64(data.count))
        guard case .localFile(let path) = try await files.location(of: r) else { return XCTFail() }
        XCTAssertEqual(Array(try Data(contentsOf: URL(fileURLWithPath: path))), data)
        // While it is open, no second service may open the same database.
        do {
            _ = try await openService()
            XCTFail("a second service opened the same database")
        } catch let e as PersistenceError {
            XCTAssertTrue(e.message.contains("in use by another process"), e.message)
        }
        // A second service on the same directory (a restart) finds it, and removes nothing.
        files = nil
        let reopened = try await restart()
        XCTAssertEqual(reopened.removedOrphans, [])
        XCTAssertEqual(reopened.missingObjects, [])
        let got4 = try await reopened.metadata(id: r.id, tenant: "acme")
        XCTAssertEqual(got4, r)
    }

    func testStartRemovesObjectsWithoutRowsAndReportsRowsWithoutObjects() async throws {
        var files: FileService! = try await openService()
        let kept = try await upload(files, [1, 2, 3])
        let lost = try await upload(files, [4, 5])
        // An object renamed into place whose row never committed (a crash in between).
        var rng = SplitMix(seed: 99)
        let orphan = FileID.generate(milliseconds: 1, using: &rng).text
        let storage = files.storage
        _ = try await loop.run { try await storage.write(key: orphan, from: PieceSource([9, 9])) }
        try FileManager.default.removeItem(atPath: dir + "/files/objects/" + lost.storageKey)
        files = nil
        let reopened = try await restart()
        XCTAssertEqual(reopened.removedOrphans, [orphan])
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/files/objects/" + orphan))
        XCTAssertEqual(reopened.missingObjects, [lost.id])
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/files/objects/" + kept.storageKey))
    }

    func testDeclaredLengthOverTheFileLimitIsRefusedBeforeReading() async throws {
        limits.set { $0.maxFileBytes = 1000 }
        let files = try await openService()
        let reads = try await loop.run { () -> Int in
            let source = PieceSource([UInt8](repeating: 7, count: 1001))
            do {
                _ = try await files.upload(tenant: "acme", contentType: "a/b", declaredLength: 1001, from: source)
            } catch let e as ModelError where e.code == .payloadTooLarge {}
            return source.reads
        }
        XCTAssertEqual(reads, 0, "the body was read although its declared length was over the limit")
        _ = try await upload(files, [UInt8](repeating: 7, count: 1000))   // exactly the limit passes
    }

    /// A store that takes no writes is the server's trouble, told as such: 503, not a 500
    /// (an outside probe found an unwritable files/tmp gave `internal`). Made immutable
    /// with chattr, which stops root too; skipped where the file system has no such flag.
    func testAStoreThatTakesNoWritesIsUnavailableNotAnInternalError() async throws {
        let files = try await openService()
        let tmp = dir + "/files/tmp"
        guard run("/usr/bin/chattr", ["+i", tmp]) == 0 else { throw XCTSkip("chattr +i does not work here") }
        defer { _ = run("/usr/bin/chattr", ["-i", tmp]) }
        let code = try await loop.run { () -> ModelError.Code? in
            do {
                _ = try await files.upload(tenant: "acme", contentType: "a/b", declaredLength: 3, from: PieceSource([1, 2, 3]))
                return nil
            } catch let e as ModelError { return e.code }
        }
        XCTAssertEqual(code, .unavailable)
        _ = run("/usr/bin/chattr", ["-i", tmp])
        _ = try await upload(files, [1, 2, 3])   // and uploads work again once it does
    }

    private func run(_ tool: String, _ args: [String]) -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = args
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return -1 }
        p.waitUntilExit()
        return p.terminationStatus
    }

    func testChunkedBodyIsStoppedAtTheByteThatCrossesTheFileLimit() async throws {
        limits.set { $0.maxFileBytes = 150_000 }
        let files = try await openService()
        await expectError(.payloadTooLarge) { _ = try await upload(files, pattern(seed: 1, count: 150_001), declared: false) }
        XCTAssertEqual(files.reservedBytes, 0, "a refused upload keeps no reservation")
        XCTAssertEqual(try (files.storage as! LocalStorage).temporaryFiles(), [])
        let got5 = try await files.storage.list()
        XCTAssertEqual(got5, [])
        let got6 = try await files.list(tenant: nil, after: nil, offset: 0, limit: 10).totalCount
        XCTAssertEqual(got6, 0)
        let ok = try await upload(files, pattern(seed: 1, count: 150_000), declared: false)
        XCTAssertEqual(ok.size, 150_000)
    }

    func testTotalQuotaCountsStoredFilesAndUploadsInFlight() async throws {
        limits.set { $0.totalQuotaBytes = 10_000 }
        let files = try await openService()
        _ = try await upload(files, [UInt8](repeating: 1, count: 3000))
        // Upload A declares 6000 and is held in flight: 9000 of 10 000 bytes are taken.
        let (started, startedC) = AsyncStream<Void>.makeStream()
        let (release, releaseC) = AsyncStream<Void>.makeStream()
        let inFlight = loop.spawn {
            try await files.upload(tenant: "acme", contentType: "a/b", declaredLength: 6000,
                                   from: HeldSource([UInt8](repeating: 2, count: 6000), started: startedC, release: release))
        }
        for await _ in started { break }
        XCTAssertEqual(files.reservedBytes, 6000)
        await expectError(.insufficientStorage) { _ = try await upload(files, [UInt8](repeating: 3, count: 1001)) }
        await expectError(.insufficientStorage) { _ = try await upload(files, [UInt8](repeating: 3, count: 1001), declared: false) }
        _ = try await upload(files, [UInt8](repeating: 3, count: 1000), declared: false)   // exactly the rest fits
        releaseC.yield()
        let a = try await inFlight.value
        XCTAssertEqual(a.size, 6000)
        XCTAssertEqual(files.reservedBytes, 0)
        let got7 = try await files.totalBytes()
        XCTAssertEqual(got7, 10_000)
        await expectError(.insufficientStorage) { _ = try await upload(files, [1], declared: false) }
        // Deleting frees its bytes at once.
        try await files.delete(id: a.id, tenant: "acme")
        _ = try await upload(files, [UInt8](repeating: 4, count: 6000))
    }

    func testTenantsSeeOnlyTheirOwnFilesAndDeleteRemovesBoth() async throws {
        let files = try await openService()
        let mine = try await upload(files, [1, 2, 3], tenant: "acme")
        await expectError(.notFound) { _ = try await files.metadata(id: mine.id, tenant: "globex") }
        await expectError(.notFound) { try await files.delete(id: mine.id, tenant: "globex") }
        let got8 = try await files.exists(id: mine.id, tenant: "globex")
        XCTAssertFalse(got8)
        let got9 = try await files.metadata(id: mine.id, tenant: nil)
        XCTAssertEqual(got9, mine, "nil tenant: an admin sees every file")
        try await files.delete(id: mine.id, tenant: "acme")
        await expectError(.notFound) { _ = try await files.metadata(id: mine.id, tenant: "acme") }
        await expectError(.notFound) { try await files.delete(id: mine.id, tenant: "acme") }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/files/objects/" + mine.storageKey))
        let got10 = try await files.totalBytes()
        XCTAssertEqual(got10, 0)
    }

    func testListPagesByKeysetAndOffset() async throws {
        let files = try await openService()
        var ids: [FileID] = []
        for i in 0..<5 {
            clock.advance(by: .milliseconds(1))
            ids.append(try await upload(files, [UInt8(i)], tenant: "acme").id)
            _ = try await upload(files, [UInt8(i)], tenant: "globex")
        }
        let first = try await files.list(tenant: "acme", after: nil, offset: 0, limit: 2)
        XCTAssertEqual(first.records.map(\.id), Array(ids[0..<2]))
        XCTAssertEqual(first.totalCount, 5)
        let second = try await files.list(tenant: "acme", after: ids[1].text, offset: 0, limit: 2)
        XCTAssertEqual(second.records.map(\.id), Array(ids[2..<4]))
        let byOffset = try await files.list(tenant: "acme", after: nil, offset: 3, limit: 10)
        XCTAssertEqual(byOffset.records.map(\.id), Array(ids[3...]))
        let got11 = try await files.list(tenant: nil, after: nil, offset: 0, limit: 100).totalCount
        XCTAssertEqual(got11, 10)
    }
}
