// Files through the ring: a 256 MiB write in pool-buffer chunks, fsync, rename, read back
// through mmap and through ring reads (fixed buffers on io_uring); errors for bad paths.
import BufferPool
import Foundation
@testable import Ring
import SpoolTestSupport
import XCTest

final class FileTests: XCTestCase {
    var dir: String!

    override func setUp() {
        dir = NSTemporaryDirectory() + "spool-file-tests-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// Fills `count` bytes with words derived from (chunk, word) and folds them into a checksum.
    static func fill(_ p: UnsafeMutableRawBufferPointer, chunk: Int) -> UInt64 {
        let words = p.count / 8
        var h: UInt64 = 0
        let base = UInt64(chunk) << 32
        for j in 0..<words {
            var z = (base | UInt64(j)) &* 0x9E37_79B9_7F4A_7C15
            z ^= z >> 29
            p.storeBytes(of: z, toByteOffset: j * 8, as: UInt64.self)
            h = (h ^ z) &* 0x100_0000_01B3 &+ UInt64(j)
        }
        return h
    }

    static func checksum(_ p: UnsafeRawBufferPointer) -> UInt64 {
        var h: UInt64 = 0
        for j in 0..<(p.count / 8) {
            h = (h ^ p.load(fromByteOffset: j * 8, as: UInt64.self)) &* 0x100_0000_01B3 &+ UInt64(j)
        }
        return h
    }

    func testWrite256MiBFsyncRenameReadBack() async throws {
        let dirPath: String = self.dir
        let chunk = 256 * 1024
        let chunks = 1024                    // 256 MiB
        let loop = try EventLoop.start(configuration: loopConfiguration(bufferSize: chunk, cap: 64 * chunk))
        defer { loop.shutdown() }
        let tmp = dir + "/video.tmp", final = dir + "/video.mp4"
        let (written, sums) = try await loop.run { () -> (Int, [UInt64]) in
            let file = try await File.open(tmp, .createExclusive)
            let f = Unchecked(file)
            var sums = [UInt64](repeating: 0, count: chunks)
            let s = Unchecked(UnsafeMutableBufferPointer<UInt64>.allocate(capacity: chunks))
            defer { s.value.deallocate() }
            // Eight writers keep eight writes in flight.
            var writers: [Task<Int, any Error>] = []
            for w in 0..<8 {
                writers.append(loop.spawn {
                    var n = 0
                    for k in stride(from: w, to: chunks, by: 8) {
                        var b = await loop.pool.acquire()
                        s.value[k] = b.withUnsafeMutableBytes { FileTests.fill($0, chunk: k) }
                        b.count = chunk
                        let r = await f.value.write(b, at: UInt64(k * chunk))
                        n += try r.result.get()
                    }
                    return n
                })
            }
            var total = 0
            for t in writers { total += try await t.value }
            try await file.sync()
            try await file.close()
            try await FileSystem.rename(tmp, to: final)
            try await FileSystem.syncDirectory(dirPath)
            for k in 0..<chunks { sums[k] = s.value[k] }
            return (total, sums)
        }
        XCTAssertEqual(written, chunks * chunk)

        let status = try await loop.run { try await FileSystem.status(final) }
        XCTAssertEqual(status.size, UInt64(chunks * chunk))
        XCTAssertFalse(FileManager.default.fileExists(atPath: tmp))

        // Read back through mmap.
        let mapped = try MappedFile(readingFrom: final)
        XCTAssertEqual(mapped.count, chunks * chunk)
        let mmapSums = mapped.withUnsafeBytes { all in
            (0..<chunks).map { k in FileTests.checksum(UnsafeRawBufferPointer(rebasing: all[(k * chunk)..<((k + 1) * chunk)])) }
        }
        XCTAssertEqual(mmapSums, sums)

        // And through ring reads into pool buffers (READ_FIXED when registered).
        let ringSums = try await loop.run { () -> [UInt64] in
            let file = try await File.open(final, .read)
            var out: [UInt64] = []
            for k in 0..<chunks {
                let b = await loop.pool.acquire()
                let r = await file.read(into: b, at: UInt64(k * chunk))
                XCTAssertEqual(try r.result.get(), chunk)
                out.append(r.buffer.withUnsafeBytes { FileTests.checksum($0) })
            }
            // Past the end: a read of 0 bytes, not an error.
            let b = await loop.pool.acquire()
            let end = await file.read(into: b, at: UInt64(chunks * chunk))
            XCTAssertEqual(try end.result.get(), 0)
            try await file.close()
            return out
        }
        XCTAssertEqual(ringSums, sums)
        try await FileSystemCheck.remove(final, on: loop)
        XCTAssertFalse(FileManager.default.fileExists(atPath: final))
        try await assertQuiescent(loop)
    }

    /// A list longer than one gathered write (vectorMax), with partly filled and empty
    /// buffers, lands in order at the offset, and every buffer goes back to the pool.
    func testGatheredWriteOfABufferListLandsInOrder() async throws {
        let loop = try EventLoop.start(configuration: loopConfiguration(bufferSize: 4096, cap: 256 * 4096))
        defer { loop.shutdown() }
        let path = dir + "/gathered"
        let sizes = [4096, 100, 0, 4096, 1, 4000, 4096, 4096, 17, 4096, 2048, 4096, 5]
        var expected = [UInt8](repeating: 0xEE, count: 10)
        for (i, n) in sizes.enumerated() { expected += (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ i) } }
        let written = try await loop.run { () -> Int in
            let file = try await File.open(path, .createExclusive)
            var head = await loop.pool.acquire()
            head.count = 0
            _ = [UInt8](repeating: 0xEE, count: 10).withUnsafeBytes { head.append(contentsOf: $0) }
            _ = try await file.write(head, at: 0).result.get()
            var list = PooledBufferList()
            for (i, n) in sizes.enumerated() {
                var b = await loop.pool.acquire()
                b.count = 0
                _ = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ i) }.withUnsafeBytes { b.append(contentsOf: $0) }
                list.append(b)
            }
            let n = try await file.write(list, at: 10)
            try await file.sync()
            try await file.close()
            return n
        }
        XCTAssertEqual(written, sizes.reduce(0, +))
        XCTAssertEqual(Array(try Data(contentsOf: URL(fileURLWithPath: path))), expected)
        let held = try await loop.run { loop.pool.userHeldBuffers }
        XCTAssertEqual(held, 0, "every buffer is back in the pool")
    }

    /// Batches handed to a WriteBehind land at their offsets whatever order the kernel
    /// finishes them in, no more than `depth` are in flight, and every buffer comes back.
    func testWriteBehindLandsEveryBatchAtItsOffset() async throws {
        let loop = try EventLoop.start(configuration: loopConfiguration(bufferSize: 4096, cap: 64 * 4096))
        defer { loop.shutdown() }
        let path = dir + "/behind"
        let batches = 40, perBatch = 3
        var expected: [UInt8] = []
        for k in 0..<(batches * perBatch) { expected += (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ k) } }
        let written = try await loop.run { () -> Int in
            let file = try await File.open(path, .createExclusive)
            let writer = File.WriteBehind(file, depth: 3)
            // Later batches first: the offsets, not the order, place the bytes.
            for b in (0..<batches).reversed() {
                var list = PooledBufferList()
                for j in 0..<perBatch {
                    var buf = await loop.pool.acquire()
                    buf.count = 0
                    _ = (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ (b * perBatch + j)) }.withUnsafeBytes { buf.append(contentsOf: $0) }
                    list.append(buf)
                }
                try await writer.write(list, at: UInt64(b * perBatch * 4096))
                XCTAssertLessThanOrEqual(loop.pool.userHeldBuffers, 4 * perBatch, "at most depth batches (and the one being filled) hold buffers")
            }
            try await writer.finish()
            try await file.close()
            return writer.written
        }
        XCTAssertEqual(written, expected.count)
        XCTAssertEqual(Array(try Data(contentsOf: URL(fileURLWithPath: path))), expected)
        let held = try await loop.run { loop.pool.userHeldBuffers }
        XCTAssertEqual(held, 0)
    }

    /// A failed batch is thrown at the next call, and the buffers of every batch, failed
    /// or not, still come back to the pool. (/dev/full refuses every write: ENOSPC.)
    func testWriteBehindThrowsAFailedBatchAndKeepsNoBuffer() async throws {
        let loop = try EventLoop.start(configuration: loopConfiguration(bufferSize: 4096, cap: 64 * 4096))
        defer { loop.shutdown() }
        let outcome = try await loop.run { () -> (code: String, batches: Int) in
            let file = try await File.open("/dev/full", .readWrite)
            let writer = File.WriteBehind(file, depth: 2)
            var code = "none"
            var batches = 0
            do {
                for b in 0..<5 {
                    var list = PooledBufferList()
                    var buf = await loop.pool.acquire()
                    buf.count = 100
                    list.append(buf)
                    try await writer.write(list, at: UInt64(b * 100))
                    batches += 1
                }
                try await writer.finish()
            } catch let e as RingError {
                code = "\(e.code)"
                try? await writer.finish()
            }
            try await file.close()
            return (code, batches)
        }
        XCTAssertNotEqual(outcome.code, "none", "writes to /dev/full failed")
        XCTAssertLessThan(outcome.batches, 5, "the failure was thrown at a later write, not only at finish")
        let held = try await loop.run { loop.pool.userHeldBuffers }
        XCTAssertEqual(held, 0)
    }

    /// O_DIRECT, where the file system takes it: an aligned write goes through, a
    /// misaligned one is refused (EINVAL), and after setDirect(false) the same write works.
    func testDirectWritesNeedAlignmentUntilLifted() async throws {
        let dirPath: String = self.dir
        try XCTSkipUnless(File.directWritesWork(in: dirPath, name: "probe"), "this file system takes no O_DIRECT writes")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dirPath + "/probe"), "the probe file is removed")
        let loop = try EventLoop.start(configuration: loopConfiguration(bufferSize: 4096, cap: 64 * 4096))
        defer { loop.shutdown() }
        let path = dir + "/direct"
        let outcome = try await loop.run { () -> [String] in
            var out: [String] = []
            let file = try await File.open(path, File.Mode.createExclusive.direct)
            var whole = await loop.pool.acquire()
            whole.count = 4096
            out.append("\(try await file.write(whole, at: 0).result.get())")
            var odd = await loop.pool.acquire()
            odd.count = 10
            do { _ = try await file.write(odd, at: 4096).result.get(); out.append("odd written") } catch let e as RingError { out.append("\(e.code)") }
            try file.setDirect(false)
            var again = await loop.pool.acquire()
            again.count = 10
            out.append("\(try await file.write(again, at: 4096).result.get())")
            try await file.sync()
            try await file.close()
            return out
        }
        XCTAssertEqual(outcome[0], "4096")
        // The file system the directory is on: the longest mount point that prefixes it.
        let mounts = (try String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)).split(separator: "\n").map { $0.split(separator: " ") }
        let fsType = mounts.filter { $0.count > 2 && dirPath.hasPrefix(String($0[1])) }.max { $0[1].count < $1[1].count }.map { String($0[2]) }
        if fsType == "ext4" || fsType == "xfs" {   // these enforce the alignment
            XCTAssertNotEqual(outcome[1], "odd written", "a 10-byte O_DIRECT write was refused")
        }
        XCTAssertEqual(outcome[2], "10")
        let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int
        XCTAssertEqual(size, 4106)
    }

    /// A scattered read fills the list's buffers in order up to the limit (several preadv
    /// when the list is longer than vectorMax) and stops short only at the end of the file.
    func testScatteredReadIntoABufferList() async throws {
        let loop = try EventLoop.start(configuration: loopConfiguration(bufferSize: 4096, cap: 256 * 4096))
        defer { loop.shutdown() }
        let path = dir + "/scattered"
        let content = (0..<(100_000 + 5)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        try Data(content).write(to: URL(fileURLWithPath: path))
        let (mid, midBytes, tail, tailBytes) = try await loop.run { () -> (Int, [UInt8], Int, [UInt8]) in
            let file = try await File.open(path, .read)
            var list = PooledBufferList()
            for _ in 0..<11 { list.append(await loop.pool.acquire()) }
            let mid = try await file.read(into: &list, at: 7, limit: 30_000)
            let midBytes = list.bytes
            var last = PooledBufferList()
            for _ in 0..<3 { last.append(await loop.pool.acquire()) }
            let tail = try await file.read(into: &last, at: 99_000, limit: 3 * 4096)
            let tailBytes = last.bytes
            try await file.close()
            return (mid, midBytes, tail, tailBytes)
        }
        XCTAssertEqual(mid, 30_000)
        XCTAssertTrue(midBytes == Array(content[7..<30_007]), "the scattered read differs")
        XCTAssertEqual(tail, 1_005, "a read past the end stops there")
        XCTAssertTrue(tailBytes == Array(content[99_000...]))
        let held = try await loop.run { loop.pool.userHeldBuffers }
        XCTAssertEqual(held, 0)
    }

    func testFileErrorsAreTyped() async throws {
        let dirPath: String = self.dir
        let loop = try EventLoop.start(configuration: loopConfiguration())
        defer { loop.shutdown() }
        let outcomes = try await loop.run { () -> [String] in
            var out: [String] = []
            do { _ = try await File.open(dirPath + "/missing/x", .read) } catch let e as RingError { out.append("\(e.code)") }
            do { try await FileSystem.rename(dirPath + "/nope", to: dirPath + "/nope2") } catch let e as RingError { out.append("\(e.code)") }
            do { _ = try await FileSystem.status(dirPath + "/nope") } catch let e as RingError { out.append("\(e.code)") }
            let f = try await File.open(dirPath + "/a", .createExclusive)
            try await f.close()
            do { _ = try await File.open(dirPath + "/a", .createExclusive) } catch let e as RingError { out.append("\(e.code)") }
            return out
        }
        XCTAssertEqual(outcomes, ["notFound", "notFound", "notFound", "exists"])
        try await assertQuiescent(loop)
    }

    func testMappedFileCreateAndSync() throws {
        let path = dir + "/mapped.bin"
        let m = try MappedFile(creating: path, size: 1 << 20)
        m.withUnsafeMutableBytes { p in for i in 0..<p.count { p[i] = UInt8(truncatingIfNeeded: i * 31) } }
        try m.sync()
        let r = try MappedFile(readingFrom: path)
        r.withUnsafeBytes { p in
            XCTAssertEqual(p.count, 1 << 20)
            XCTAssertEqual(p[12345], UInt8(truncatingIfNeeded: 12345 * 31))
        }
        let empty = dir + "/empty.bin"
        FileManager.default.createFile(atPath: empty, contents: Data())
        XCTAssertEqual(try MappedFile(readingFrom: empty).count, 0)
    }
}

enum FileSystemCheck {
    static func remove(_ path: String, on loop: EventLoop) async throws {
        try await loop.run { try await FileSystem.remove(path) }
    }
}
