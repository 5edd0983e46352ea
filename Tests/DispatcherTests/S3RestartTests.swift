// A 1 GiB output written by an engine straight into the store (DirectOutputUpload, the
// engine's own code, through the dispatcher's real routes) while the S3 server is killed
// and started again mid-way. The server is rclone's `serve s3` (RcloneS3Server): it checks
// every presigned part's signature and keeps its buckets on disk, but forgets multipart
// uploads in progress, as a restarted store may. The engine rides out the outage (its part
// is retried until the server is back), learns the upload is gone (404 NoSuchUpload),
// abandons it and writes the output again from its file; the object the server ends up
// with has the file's SHA-256, and the dispatcher's record agrees.
import Crypto
import EngineRuntime
import Foundation
import Logging
import Ring
import SpoolModel
import SpoolTestSupport
import Threads
import Web
import XCTest

final class S3RestartTests: XCTestCase {
    func testAGiBOutputCompletesAcrossARestartOfTheStore() async throws {
        let s3 = try RcloneS3Server.start()
        defer { s3.stop() }
        let bucket = "spool-restart"
        // A bucket of rclone's local backend is a directory of the served one.
        try FileManager.default.createDirectory(atPath: s3.dataDirectory + "/" + bucket, withIntermediateDirectories: true)
        // rclone refuses requests signed more than 15 minutes from its time: the dispatcher's
        // clock reads now (and stands still for the test's few seconds).
        let clock = ManualClock(unixMilliseconds: Int64(Date().timeIntervalSince1970 * 1000))
        let h = try await AccessHarness.start(clock: clock) { s in
            s.useS3(endpoint: s3.endpoint, bucket: bucket, accessKeyID: s3.accessKeyID, secretAccessKey: s3.secretAccessKey, partMiB: 16)
            s.files.maxFileBytes = 2 << 30
            s.files.totalQuotaBytes = 4 << 30
        }
        let key = try await h.adminKey()
        let e = try await h.registerEngine(name: "e1")
        let jobID = try await h.submitJob(key: key, bytes: "input")
        let leased = try await h.leaseJob(e)
        XCTAssertEqual(leased.status, 200, leased.text)

        // The output: 1 GiB on disk, written and hashed in 8 MiB pieces.
        let path = NSTemporaryDirectory() + "spool-output-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).mp4"
        defer { unlink(path) }
        let size = 1 << 30
        var hasher = SHA256()
        do {
            guard FileManager.default.createFile(atPath: path, contents: nil), let out = FileHandle(forWritingAtPath: path) else {
                return XCTFail("cannot create \(path)")
            }
            var rng = SplitMix(seed: 42)
            var piece = [UInt8](repeating: 0, count: 8 << 20)
            for _ in 0..<(size / piece.count) {
                piece.withUnsafeMutableBytes { raw in
                    let words = raw.bindMemory(to: UInt64.self)
                    for i in words.indices { words[i] = rng.next() }
                }
                hasher.update(data: piece)
                try out.write(contentsOf: piece)
            }
            try out.close()
        }
        let sha = Hex.encode(hasher.finalize())

        // Kill and restart the store once 400 MiB of the output's parts have reached it.
        let restart = RestartWatch()
        Thread.detachNewThread {
            let deadline = Date().addingTimeInterval(300)
            while Date() < deadline && !restart.stopped {
                if s3.multipartBytesInProgress(bucket: bucket) >= 400 << 20 {
                    do { try s3.restart(); restart.finish(nil) } catch { restart.finish("\(error)") }
                    return
                }
                usleep(10_000)
            }
            restart.finish("the upload never reached 400 MiB")
        }
        defer { restart.stop() }

        let upload = DirectOutputUpload(uploadsURL: h.base + "/api/v1/engines/\(e.0)/jobs/\(jobID)/output-uploads",
                                        leaseEpoch: 1, token: e.1, logger: Logger(label: "test.engine"))
        let started = Date()
        let fileID = try await h.client.run { () async throws -> String? in
            let c = HTTPClient()
            do {
                let id = try await upload.run(c, path: path, name: "out/big.mp4", jobID: jobID)
                await c.shutdown()
                return id
            } catch {
                await c.shutdown()
                throw error
            }
        }
        let id = try XCTUnwrap(fileID, "the dispatcher took no direct upload")
        XCTAssertEqual(restart.outcome, .some(nil), "the store was not restarted mid-way: \(String(describing: restart.outcome))")
        print("S3RestartTests: 1 GiB output stored across a restart of the store in \(String(format: "%.1f", Date().timeIntervalSince(started))) s")

        // The dispatcher's record: the output's size and checksum.
        let file = try await h.call("GET", "/api/v1/files/\(id)", key: key)
        XCTAssertEqual(file.status, 302, file.text)
        XCTAssertEqual(file.headers.first { $0.name == "ETag" }?.value, "\"\(sha)\"")
        // The object the server holds (the location's path names it): the same bytes.
        let location = try XCTUnwrap(file.headers.first { $0.name == "Location" }?.value)
        let objectKey = try XCTUnwrap(URLComponents(string: location)?.path.split(separator: "/").dropFirst().joined(separator: "/"))
        let stored = s3.objectPath(bucket: bucket, key: objectKey)
        let attributes = try FileManager.default.attributesOfItem(atPath: stored)
        XCTAssertEqual((attributes[.size] as? NSNumber)?.intValue, size)
        var back = SHA256()
        let handle = try XCTUnwrap(FileHandle(forReadingAtPath: stored))
        while let chunk = try handle.read(upToCount: 8 << 20), !chunk.isEmpty { back.update(data: chunk) }
        try handle.close()
        XCTAssertEqual(Hex.encode(back.finalize()), sha, "the stored object differs from the output")
        XCTAssertEqual(h.dispatch.files.directUploadsInFlight, 0)
        await h.dispatch.closeStorage()
        await h.stop()
    }
}

/// The restarting thread's outcome: nil once restarted, else why not.
final class RestartWatch: @unchecked Sendable {
    private let lock = NSLock()
    private var result: String??
    private var halted = false
    func finish(_ problem: String?) { lock.withLock { if result == nil { result = .some(problem) } } }
    func stop() { lock.withLock { halted = true } }
    var stopped: Bool { lock.withLock { halted } }
    var outcome: String?? { lock.withLock { result } }
}
