// `spool cluster up|status|down` with the real parts (PostgreSQL and its streaming replica, Redis, nginx from
// Debian's packages; make test requires them): two dispatchers and one engine come up on
// loopback and cluster.json lists them; through the gateway (TLS with the generated CA,
// curl) a request without a key is 401 and a real transcode completes; the same
// Idempotency-Key replays the first answer; a dispatcher killed with SIGKILL shows as DOWN
// in `status` (exit 1) while the gateway keeps answering from the other; `down` stops every
// part and removes cluster.json; the dispatchers read from the replica. Then the chaos run in its short form (.ci/chaos.py).
import Foundation
import SpoolTestSupport
import XCTest

final class ClusterTests: XCTestCase {
    func spoolBinary() throws -> String {
        let bin = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("spool").path
        guard FileManager.default.isExecutableFile(atPath: bin) else { throw XCTSkip("spool not built next to the tests") }
        return bin
    }

    func curl(_ args: [String]) throws -> (status: Int, body: String) {
        let r = try ServiceProcess.run(["/usr/bin/curl", "-s", "-w", "\n%{http_code}", "--max-time", "20"] + args)
        let lines = r.output.split(separator: "\n", omittingEmptySubsequences: false)
        return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
    }

    func json(_ text: String) throws -> [String: Any] {
        try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], text)
    }

    func testUpStatusDownWithAJobThroughTheGateway() throws {
        for tool in ["nginx", "redis-server", "openssl", "curl"] where ServiceProcess.find(tool) == nil {
            throw ServiceProcess.missing(tool)
        }
        guard FileManager.default.fileExists(atPath: "/usr/lib/postgresql") else { throw ServiceProcess.missing("PostgreSQL") }
        let spool = try spoolBinary()
        let dir = NSTemporaryDirectory() + "spool-cluster-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        addTeardownBlock {
            _ = try? ServiceProcess.run([spool, "cluster", "down", "--data-dir", dir])
            try? FileManager.default.removeItem(atPath: dir)
        }
        let gateway = "127.0.0.1:\(ServiceProcess.freePort())"
        let up = try ServiceProcess.run([spool, "cluster", "up", "--data-dir", dir, "--dispatchers", "2", "--engines", "1", "--gateway", gateway])
        XCTAssertEqual(up.status, 0, up.output)
        guard up.status == 0 else { return }

        let manifest = try json(try String(contentsOfFile: dir + "/cluster.json", encoding: .utf8))
        let parts = try XCTUnwrap(manifest["parts"] as? [[String: Any]])
        XCTAssertEqual(parts.compactMap { $0["kind"] as? String }.sorted(), ["dispatcher", "dispatcher", "engine", "gateway", "postgres", "redis", "replica"])
        XCTAssertEqual(manifest["gateway_url"] as? String, "https://" + gateway)
        for p in parts where p["kind"] as? String != "engine" {
            XCTAssertTrue((p["address"] as? String ?? "").hasPrefix("127.0.0.1:"), "\(p): loopback only")
        }
        for p in parts { XCTAssertEqual(kill(Int32(p["pid"] as? Int ?? 0), 0), 0, "\(p) runs") }
        let ca = try XCTUnwrap(manifest["ca_certificate"] as? String)
        let key = try String(contentsOfFile: try XCTUnwrap(manifest["admin_key_file"] as? String), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let base = "https://\(gateway)/api/v1"
        let auth = ["-H", "Authorization: Bearer " + key]

        let noKey = try curl(["--cacert", ca, base + "/jobs"])
        XCTAssertEqual(noKey.status, 401, noKey.body)
        let clip = dir + "/clip.mp4"
        let made = try ServiceProcess.run([spool, "synthesize", clip, "--width", "320", "--height", "240", "--seconds", "1", "--fps", "25"])
        XCTAssertEqual(made.status, 0, made.output)
        let file = try curl(["--cacert", ca] + auth + ["--data-binary", "@" + clip, base + "/files"])
        XCTAssertEqual(file.status, 201, file.body)
        let fileID = try XCTUnwrap(try json(file.body)["id"] as? String)
        let body = #"{"input":{"file_id":"\#(fileID)"},"preset":"h264-360p"}"#
        let submit = ["--cacert", ca] + auth + ["-H", "Idempotency-Key: cluster-1", "-H", "Content-Type: application/json", "-d", body, base + "/jobs"]
        let first = try curl(submit)
        XCTAssertEqual(first.status, 201, first.body)
        let jobID = try XCTUnwrap(try json(first.body)["id"] as? String)
        for _ in 0..<4 {
            let replay = try curl(submit)
            XCTAssertEqual(try json(replay.body)["id"] as? String, jobID, "a replay through either dispatcher: \(replay.body)")
        }
        var state = ""
        for _ in 0..<240 where state != "completed" && state != "failed" {
            usleep(250_000)
            state = (try json(try curl(["--cacert", ca] + auth + [base + "/jobs/" + jobID]).body)["state"] as? String) ?? ""
        }
        XCTAssertEqual(state, "completed")

        // The streaming replica is in the dispatchers' rotation and served reads (the polls
        // above, once replayed past the admin's writes).
        let replica = try XCTUnwrap(parts.first { $0["kind"] as? String == "replica" }?["address"] as? String)
        var served = false
        for _ in 0..<40 where !served {
            for d in parts where d["kind"] as? String == "dispatcher" {
                let m = try curl(["http://\(d["address"] as? String ?? "")/metrics"]).body
                let reads = m.split(separator: "\n").first { $0.hasPrefix(#"spool_db_replica_reads{replica="\#(replica)"}"#) }
                if m.contains(#"spool_db_replica_in_rotation{replica="\#(replica)"} 1"#), let r = reads, !r.hasSuffix(" 0") { served = true }
            }
            if !served {
                _ = try curl(["--cacert", ca] + auth + [base + "/jobs?limit=5"])
                usleep(250_000)
            }
        }
        XCTAssertTrue(served, "no dispatcher read from the replica \(replica)")

        // One dispatcher dies: status says so; the gateway answers from the other.
        let victim = try XCTUnwrap(parts.first { $0["name"] as? String == "dispatcher-1" }?["pid"] as? Int)
        kill(Int32(victim), SIGKILL)
        usleep(300_000)
        let status = try ServiceProcess.run([spool, "cluster", "status", "--data-dir", dir])
        XCTAssertEqual(status.status, 1, status.output)
        XCTAssertTrue(status.output.contains("DOWN"), status.output)
        for _ in 0..<6 {
            let r = try curl(["--cacert", ca] + auth + [base + "/jobs/" + jobID])
            XCTAssertEqual(r.status, 200, r.body)
        }

        let down = try ServiceProcess.run([spool, "cluster", "down", "--data-dir", dir])
        XCTAssertEqual(down.status, 0, down.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/cluster.json"))
        for p in parts {
            let pid = Int32(p["pid"] as? Int ?? 0)
            let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
            XCTAssertTrue(stat.isEmpty || stat.contains(") Z"), "\(p) still runs after down")
        }
        let after = try ServiceProcess.run([spool, "cluster", "status", "--data-dir", dir])
        XCTAssertEqual(after.status, 1, after.output)
    }

    /// `--storage s3`: moto's S3 server is a part of its own (cluster.json lists it), files
    /// and outputs go to its bucket, and job results publish outputs under the gateway's
    /// media edge: signed (403 when tampered with, 410 past the expiry, 405 for a POST),
    /// fetched from the bucket once and then answered from nginx's cache (ranges too).
    func testS3StorageBehindTheMediaEdge() throws {
        for tool in ["nginx", "redis-server", "openssl", "curl"] where ServiceProcess.find(tool) == nil {
            throw ServiceProcess.missing(tool)
        }
        guard FileManager.default.fileExists(atPath: "/usr/lib/postgresql") else { throw ServiceProcess.missing("PostgreSQL") }
        let env = ProcessInfo.processInfo.environment
        let moto = [env["SPOOL_MOTO_SERVER"], env["SPOOL_TEST_PYTHON"].map { URL(fileURLWithPath: $0).deletingLastPathComponent().path + "/moto_server" },
                    ServiceProcess.find("moto_server")].compactMap { $0 }.first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let moto else { throw ServiceProcess.missing("moto_server (moto[s3] from Tests/External/requirements.txt)") }
        setenv("SPOOL_MOTO_SERVER", moto, 1)
        let spool = try spoolBinary()
        let dir = NSTemporaryDirectory() + "spool-cluster-s3-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        addTeardownBlock {
            _ = try? ServiceProcess.run([spool, "cluster", "down", "--data-dir", dir])
            try? FileManager.default.removeItem(atPath: dir)
        }
        let gateway = "127.0.0.1:\(ServiceProcess.freePort())"
        let up = try ServiceProcess.run([spool, "cluster", "up", "--data-dir", dir, "--dispatchers", "1", "--engines", "1",
                                         "--gateway", gateway, "--storage", "s3"])
        XCTAssertEqual(up.status, 0, up.output)
        guard up.status == 0 else { return }
        let manifest = try json(try String(contentsOfFile: dir + "/cluster.json", encoding: .utf8))
        let parts = try XCTUnwrap(manifest["parts"] as? [[String: Any]])
        XCTAssertEqual(parts.compactMap { $0["kind"] as? String }.sorted(), ["dispatcher", "engine", "gateway", "postgres", "redis", "replica", "s3"])
        XCTAssertEqual(manifest["storage"] as? String, "s3")
        XCTAssertEqual(manifest["media_url"] as? String, "https://\(gateway)/media")
        let endpoint = try XCTUnwrap(manifest["s3_endpoint"] as? String)
        XCTAssertTrue(endpoint.hasPrefix("http://127.0.0.1:"), endpoint)
        let ca = try XCTUnwrap(manifest["ca_certificate"] as? String)
        let key = try String(contentsOfFile: try XCTUnwrap(manifest["admin_key_file"] as? String), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let base = "https://\(gateway)/api/v1"
        let auth = ["--cacert", ca, "-H", "Authorization: Bearer " + key]

        let clip = dir + "/clip.mp4"
        let made = try ServiceProcess.run([spool, "synthesize", clip, "--width", "320", "--height", "240", "--seconds", "1", "--fps", "25"])
        XCTAssertEqual(made.status, 0, made.output)
        let file = try curl(auth + ["--data-binary", "@" + clip, base + "/files"])
        XCTAssertEqual(file.status, 201, file.body)
        let fileID = try XCTUnwrap(try json(file.body)["id"] as? String)
        let submitted = try curl(auth + ["-H", "Idempotency-Key: s3-1", "-H", "Content-Type: application/json",
                                         "-d", #"{"input":{"file_id":"\#(fileID)"},"preset":"h264-360p"}"#, base + "/jobs"])
        XCTAssertEqual(submitted.status, 201, submitted.body)
        let jobID = try XCTUnwrap(try json(submitted.body)["id"] as? String)
        var job: [String: Any] = [:]
        for _ in 0..<240 where !["completed", "failed"].contains(job["state"] as? String ?? "") {
            usleep(250_000)
            job = try json(try curl(auth + [base + "/jobs/" + jobID]).body)
        }
        XCTAssertEqual(job["state"] as? String, "completed", "\(job)")
        let output = try XCTUnwrap(((job["result"] as? [String: Any])?["outputs"] as? [[String: Any]])?.first)
        let media = try XCTUnwrap(output["url"] as? String)
        XCTAssertTrue(media.hasPrefix("https://\(gateway)/media/") && media.contains("?md5=") && media.contains("&expires="), media)

        // The same bytes as the API's (a 302 to a presigned URL of the bucket), cached after the first.
        let viaAPI = dir + "/via-api.mp4", first = dir + "/first.mp4", second = dir + "/second.mp4"
        let api = try curl(auth + ["-L", "-o", viaAPI, base + "/files/" + (output["file_id"] as? String ?? "")])
        XCTAssertEqual(api.status, 200, api.body)
        let headers = dir + "/headers"
        XCTAssertEqual(try curl(["--cacert", ca, "-D", headers, "-o", first, media]).status, 200)
        XCTAssertTrue(try String(contentsOfFile: headers, encoding: .utf8).contains("X-Cache-Status: MISS"))
        XCTAssertEqual(try curl(["--cacert", ca, "-D", headers, "-o", second, media]).status, 200)
        XCTAssertTrue(try String(contentsOfFile: headers, encoding: .utf8).contains("X-Cache-Status: HIT"))
        let bytes = try Data(contentsOf: URL(fileURLWithPath: viaAPI))
        XCTAssertGreaterThan(bytes.count, 1000)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: first)), bytes)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: second)), bytes)
        let range = try curl(["--cacert", ca, "-H", "Range: bytes=0-99", "-D", headers, "-o", "/dev/null", media])
        XCTAssertEqual(range.status, 206)
        XCTAssertTrue(try String(contentsOfFile: headers, encoding: .utf8).contains("Content-Range: bytes 0-99/\(bytes.count)"))

        // Tampered, expired (signed with the cluster's secret, an expiry in the past), POST.
        let tampered = try curl(["--cacert", ca, media.replacingOccurrences(of: "md5=", with: "md5=x")])
        XCTAssertEqual(tampered.status, 403, tampered.body)
        let path = String(media.dropFirst("https://\(gateway)".count).prefix { $0 != "?" })
        let secret = try String(contentsOfFile: dir + "/secrets/media.secret", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let token = try ServiceProcess.run(["/bin/sh", "-c", "printf '%s' '1000\(path) \(secret)' | openssl md5 -binary | openssl base64 | tr +/ -_ | tr -d '='"])
        let expired = try curl(["--cacert", ca, "https://\(gateway)\(path)?md5=\(token.output.trimmingCharacters(in: .whitespacesAndNewlines))&expires=1000"])
        XCTAssertEqual(expired.status, 410, expired.body)
        XCTAssertEqual(try json(expired.body)["error"].flatMap { ($0 as? [String: Any])?["code"] as? String }, "expired")
        XCTAssertEqual(try curl(["--cacert", ca, "-X", "POST", media]).status, 405)

        let down = try ServiceProcess.run([spool, "cluster", "down", "--data-dir", dir])
        XCTAssertEqual(down.status, 0, down.output)
        for p in parts {
            let pid = Int32(p["pid"] as? Int ?? 0)
            let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
            XCTAssertTrue(stat.isEmpty || stat.contains(") Z"), "\(p) still runs after down")
        }
    }

    /// `.ci/chaos.py` small: 60 jobs (3 real), one SIGKILL of a dispatcher and of an
    /// engine, FLUSHALL, a Redis restart, a PostgreSQL restart and a kill of its replica
    /// while 4 clients submit through the gateway; the script checks that every
    /// acknowledged job completes once, and prints the replica's lag.
    func testShortChaosRun() throws {
        for tool in ["nginx", "redis-server", "redis-cli", "ffprobe", "python3"] where ServiceProcess.find(tool) == nil {
            throw ServiceProcess.missing(tool)
        }
        let spool = try spoolBinary()
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent(".ci/chaos.py").path
        let r = try ServiceProcess.run(["/usr/bin/python3", script, "--spool", spool, "--jobs", "60", "--real", "3", "--kills", "1",
                                        "--timeout", "300"])
        print(r.output)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("ok: every acknowledged job completed exactly once"), r.output)
    }
}
