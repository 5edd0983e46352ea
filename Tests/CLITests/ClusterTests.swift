// `spool cluster up|status|down` with the real parts (PostgreSQL, Redis, nginx from
// Debian's packages; make test requires them): two dispatchers and one engine come up on
// loopback and cluster.json lists them; through the gateway (TLS with the generated CA,
// curl) a request without a key is 401 and a real transcode completes; the same
// Idempotency-Key replays the first answer; a dispatcher killed with SIGKILL shows as DOWN
// in `status` (exit 1) while the gateway keeps answering from the other; `down` stops every
// part and removes cluster.json. Then the chaos run in its short form (.ci/chaos.py).
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
        XCTAssertEqual(parts.compactMap { $0["kind"] as? String }.sorted(), ["dispatcher", "dispatcher", "engine", "gateway", "postgres", "redis"])
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

    /// `.ci/chaos.py` small: 60 jobs (3 real), one SIGKILL of a dispatcher and of an
    /// engine, FLUSHALL, a Redis restart and a PostgreSQL restart while 4 clients submit
    /// through the gateway; the script checks that every acknowledged job completes once.
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
