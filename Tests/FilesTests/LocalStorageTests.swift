// LocalStorage on a real event loop: streamed writes hash what they write, nothing partial
// is ever visible under objects/, failed writes and crashed ones leave no temp file.
import Crypto
import Foundation
import Ring
@testable import Storage
import SpoolTestSupport
import XCTest

/// Bytes handed out in pieces of varying sizes; optionally fails after `failAfter` bytes,
/// and runs `observe` before each piece (to look at the directories mid-stream).
final class PieceSource: AsyncByteSource {
    let data: [UInt8]
    var offset = 0
    var rng: SplitMix
    let failAfter: Int?
    let observe: (() -> Void)?
    private(set) var reads = 0

    struct Broken: Error {}

    init(_ data: [UInt8], seed: UInt64 = 1, failAfter: Int? = nil, observe: (() -> Void)? = nil) {
        self.data = data
        self.rng = SplitMix(seed: seed)
        self.failAfter = failAfter
        self.observe = observe
    }

    func read(_ consume: (UnsafeRawBufferPointer) throws -> Void) async throws -> Bool {
        reads += 1
        observe?()
        if let f = failAfter, offset >= f { throw Broken() }
        guard offset < data.count else { return false }
        // Sizes from 0 to 100 000: empty pieces, pieces smaller and larger than a pool buffer.
        let n = min(data.count - offset, Int(rng.next() % 100_001))
        try data.withUnsafeBytes { try consume(UnsafeRawBufferPointer(rebasing: $0[offset..<(offset + n)])) }
        offset += n
        return true
    }
}

func sha256Hex(_ data: [UInt8]) -> String {
    SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
}

func temporaryDirectory(_ name: String) -> String {
    NSTemporaryDirectory() + "spool-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
}

final class LocalStorageTests: XCTestCase {
    var loop: EventLoop!
    var root: String!

    override func setUp() async throws {
        loop = try EventLoop.start(id: 31)
        root = temporaryDirectory("storage")
    }

    override func tearDown() async throws {
        loop.shutdown()
        try? FileManager.default.removeItem(atPath: root)
    }

    func testStreamedWriteStoresTheBytesAndTheirSHA256() async throws {
        let data = pattern(seed: 11, count: (3 << 20) + 12_345)
        let store = try await LocalStorage.open(root: root)
        let object = try await loop.run { try await store.write(key: "file_A", from: PieceSource(data)) }
        XCTAssertEqual(object.size, Int64(data.count))
        XCTAssertEqual(object.sha256, sha256Hex(data))
        XCTAssertEqual(Array(try Data(contentsOf: URL(fileURLWithPath: store.path(of: "file_A")))), data)
        XCTAssertEqual(try store.temporaryFiles(), [], "the temp file was renamed, not copied")
        let mode = try FileManager.default.attributesOfItem(atPath: store.path(of: "file_A"))[.posixPermissions] as? Int
        XCTAssertEqual(mode, 0o600)
        let got1 = try await store.list()
        XCTAssertEqual(got1, [StoredObjectInfo(key: "file_A", size: Int64(data.count))])
        let got2 = try await store.download(key: "file_A")
        XCTAssertEqual(got2, .localFile(path: root + "/objects/file_A"))
    }

    /// Both ways of writing store the same bytes: O_DIRECT (the default where the file
    /// system takes it) and through the page cache. The sizes cover a stream that ends on a
    /// buffer boundary, one whose last batch is not block-aligned (written after lifting
    /// O_DIRECT), and one shorter than a block.
    func testDirectAndBufferedWritesStoreTheSameBytes() async throws {
        let probe = File.directWritesWork(in: NSTemporaryDirectory(), name: ".probe-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        let direct = try await LocalStorage.open(root: root + "/direct")
        XCTAssertEqual(direct.writesDirect, probe, "the store writes O_DIRECT exactly where a probe write works")
        let buffered = try await LocalStorage.open(root: root + "/buffered", directWrites: false)
        XCTAssertFalse(buffered.writesDirect)
        for (i, count) in [16 << 20, (5 << 20) + 4096 + 17, 4095, 128 << 10].enumerated() {
            let data = pattern(seed: UInt64(20 + i), count: count)
            for store in [direct, buffered] {
                let object = try await loop.run { try await store.write(key: "file_\(i)", from: PieceSource(data, seed: UInt64(i))) }
                XCTAssertEqual(object.size, Int64(count))
                XCTAssertEqual(object.sha256, sha256Hex(data))
                XCTAssertEqual(Array(try Data(contentsOf: URL(fileURLWithPath: store.path(of: "file_\(i)")))), data, "\(count) bytes, direct: \(store.writesDirect)")
                XCTAssertEqual(try store.temporaryFiles(), [])
            }
        }
        let l: EventLoop = loop
        let held = try await l.run { l.pool.userHeldBuffers }
        XCTAssertEqual(held, 0, "every buffer of every batch is back in the pool")
    }

    func testEmptyObject() async throws {
        let store = try await LocalStorage.open(root: root)
        let object = try await loop.run { try await store.write(key: "empty", from: PieceSource([])) }
        XCTAssertEqual(object.size, 0)
        XCTAssertEqual(object.sha256, sha256Hex([]))
    }

    func testObjectAppearsOnlyAfterTheWholeStreamIsWritten() async throws {
        let store = try await LocalStorage.open(root: root)
        let objects = root + "/objects"
        final class Seen: @unchecked Sendable { var objectVisible = false; var tempFiles: [Int] = [] }
        let seen = Seen()
        let reads = try await loop.run {
            let source = PieceSource(pattern(seed: 3, count: 1 << 20), observe: {
                if FileManager.default.fileExists(atPath: objects + "/file_B") { seen.objectVisible = true }
                seen.tempFiles.append((try? store.temporaryFiles().count) ?? -1)
            })
            _ = try await store.write(key: "file_B", from: source)
            return source.reads
        }
        XCTAssertGreaterThan(reads, 5)
        XCTAssertFalse(seen.objectVisible, "a partial object was visible under objects/")
        XCTAssertEqual(Set(seen.tempFiles), [1], "the bytes went to exactly one temp file while streaming")
        XCTAssertTrue(FileManager.default.fileExists(atPath: objects + "/file_B"))
    }

    func testFailedStreamLeavesNothing() async throws {
        let store = try await LocalStorage.open(root: root)
        let source = PieceSource(pattern(seed: 4, count: 2 << 20), failAfter: 1 << 20)
        do {
            _ = try await loop.run { try await store.write(key: "file_C", from: source) }
            XCTFail("the write succeeded")
        } catch is PieceSource.Broken {}
        XCTAssertEqual(try store.temporaryFiles(), [])
        let got3 = try await store.list()
        XCTAssertEqual(got3, [])
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/objects/file_C"))
    }

    /// Uploads leave `reserveBytes` free for the database: one that would go below it is
    /// refused as `.full` (507) before it starts or part-way, and leaves no temp file.
    func testUploadsLeaveTheReserveFree() async throws {
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        var fs = statvfs()
        XCTAssertEqual(statvfs(root, &fs), 0)
        let free = Int64(fs.f_bavail) * Int64(fs.f_frsize)
        // More than is free: not even one byte goes in.
        let none = try await LocalStorage.open(root: root, reserveBytes: free + (1 << 30))
        do {
            _ = try await loop.run { try await none.write(key: "file_R", from: PieceSource([1, 2, 3])) }
            XCTFail("the write succeeded")
        } catch let e as StorageError {
            XCTAssertEqual(e.kind, .full, "\(e)")
        }
        let problem = await none.problem()
        XCTAssertTrue(problem?.contains("kept for the database") == true, "readiness says why uploads are refused: \(problem ?? "nil")")
        // 16 MiB below what is free: the first check passes, and a 64 MiB upload crosses
        // the reserve part-way.
        let some = try await LocalStorage.open(root: root, reserveBytes: free - (16 << 20))
        let source = PieceSource(pattern(seed: 5, count: 64 << 20))
        do {
            _ = try await loop.run { try await some.write(key: "file_S", from: source) }
            XCTFail("the write succeeded")
        } catch let e as StorageError {
            XCTAssertEqual(e.kind, .full, "\(e)")
        }
        XCTAssertEqual(try some.temporaryFiles(), [])
        let listed = try await some.list()
        XCTAssertEqual(listed, [])
        // The default: 64 MiB, a sixteenth of a small file system, never under 4 MiB.
        XCTAssertEqual(LocalStorage.defaultReserve(fileSystemBytes: 100 << 30), 64 << 20)
        XCTAssertEqual(LocalStorage.defaultReserve(fileSystemBytes: 256 << 20), 16 << 20)
        XCTAssertEqual(LocalStorage.defaultReserve(fileSystemBytes: 32 << 20), 4 << 20)
    }

    func testOpenRemovesTempFilesOfInterruptedUploads() async throws {
        _ = try await LocalStorage.open(root: root)
        let leftover = root + "/tmp/.upload-deadbeef"
        XCTAssertTrue(FileManager.default.createFile(atPath: leftover, contents: Data([1, 2, 3])))
        let store = try await LocalStorage.open(root: root)
        XCTAssertFalse(FileManager.default.fileExists(atPath: leftover))
        XCTAssertEqual(try store.temporaryFiles(), [])
    }

    func testDeleteAndKeysThatAreNotIDs() async throws {
        let store = try await LocalStorage.open(root: root)
        _ = try await loop.run { try await store.write(key: "file_D", from: PieceSource([1, 2, 3])) }
        try await store.delete(key: "file_D")
        try await store.delete(key: "file_D")   // already gone: not an error
        let got4 = try await store.list()
        XCTAssertEqual(got4, [])
        for bad in ["", "../x", "a/b", ".upload-1", String(repeating: "a", count: 65)] {
            XCTAssertFalse(isValidStorageKey(bad), bad)
            do {
                _ = try await loop.run { try await store.write(key: bad, from: PieceSource([1])) }
                XCTFail("wrote under \(bad)")
            } catch is StorageError {}
        }
    }
}
