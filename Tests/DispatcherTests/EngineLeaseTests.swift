// The engine endpoints over real loopback HTTP: registration with the join token, leases
// with fencing (a stale epoch is refused everywhere), the data path (input down, outputs
// up, completion into the job's result), leases taken back from engines that stop listing
// a job or go offline, capability matching, draining engines getting no work.
import Dispatcher
import Foundation
import JSON
import SpoolModel
import XCTest

class EngineLeaseTests: XCTestCase {
    static let join = "join-token-for-the-tests-0123456789"

    func start() async throws -> AccessHarness {
        try await AccessHarness.start { $0.engines.joinToken = Self.join }
    }

    func register(_ h: AccessHarness, name: String, tags: [String] = [], encoders: [String] = ["libx264", "aac"]) async throws -> (String, String) {
        try await h.registerEngine(name: name, tags: tags, encoders: encoders)
    }

    func submit(_ h: AccessHarness, key: String, extra: String = "", bytes: String = "not really media, but bytes") async throws -> String {
        try await h.submitJob(key: key, extra: extra, bytes: bytes)
    }

    func lease(_ h: AccessHarness, _ engine: (String, String)) async throws -> (status: Int, text: String) {
        try await h.leaseJob(engine)
    }

    func testRegistrationNeedsTheJoinTokenOrAnAdminKey() async throws {
        let h = try await start()
        let body = #"{"name":"e1","host":"h"}"#
        for key in [nil, "wrong-token-wrong-token-wrong"] as [String?] {
            let r = try await h.call("POST", "/api/v1/engines/register", key: key, body: body)
            XCTAssertEqual(r.status, 401, r.text)
        }
        let admin = try await h.adminKey()
        let v1 = try await h.call("POST", "/api/v1/engines/register", key: admin, body: body).status
        XCTAssertEqual(v1, 201)
        let v2 = try await h.call("POST", "/api/v1/engines/register", key: Self.join, body: #"{"name":"e1","extra":1}"#).status
        XCTAssertEqual(v2, 422)
        let v3 = try await h.call("POST", "/api/v1/engines/register", key: Self.join, body: #"{"host":"h"}"#).status
        XCTAssertEqual(v3, 422)
        let v4 = try await h.call("POST", "/api/v1/engines/register", key: Self.join, body: #"{"name":"e1","tags":[1]}"#).status
        XCTAssertEqual(v4, 422)
        let v5 = try await h.call("POST", "/api/v1/engines/register", key: Self.join, body: "{nope").status
        XCTAssertEqual(v5, 400)
        // A restarted engine presenting its id and token keeps its id; a wrong token gets a new one.
        let (id, token) = try await register(h, name: "e2")
        let again = try await h.call("POST", "/api/v1/engines/register", key: Self.join,
                                     body: #"{"name":"e2","engine_id":"\#(id)","token":"\#(token)"}"#)
        XCTAssertEqual(try json(again.text)["engine_id"]?.string(), id)
        let newToken = try json(again.text)["token"]!.string()
        let v6 = try await h.call("POST", "/api/v1/engines/\(id)/heartbeat", key: token, body: "{}").status
        XCTAssertEqual(v6, 401, "the old token is replaced")
        let v7 = try await h.call("POST", "/api/v1/engines/\(id)/heartbeat", key: newToken, body: "{}")
        XCTAssertEqual(v7.status, 200)
        // Every heartbeat's answer says how often to beat (a third of the timeout, 15 s by
        // default): an engine restarted with saved credentials learns it there.
        XCTAssertEqual(try json(v7.text)["heartbeat_interval_seconds"]?.int(), 5, v7.text)
        let stranger = try await h.call("POST", "/api/v1/engines/register", key: Self.join,
                                        body: #"{"name":"e3","engine_id":"\#(id)","token":"guessed-guessed-guessed"}"#)
        XCTAssertNotEqual(try json(stranger.text)["engine_id"]?.string(), id)
        // An engine token is no API key, and an API key is no engine token.
        let v8 = try await h.call("GET", "/api/v1/jobs", key: newToken).status
        XCTAssertEqual(v8, 401)
        let v9 = try await h.call("POST", "/api/v1/engines/\(id)/heartbeat", key: admin, body: "{}").status
        XCTAssertEqual(v9, 401)
        await h.stop()
    }

    /// `wait` is decimal seconds, capped at 60 before it becomes milliseconds (wait=1e16
    /// trapped converting to Int64 and killed the server); hex and exponents are 422.
    func testLeaseWaitIsReadSafely() async throws {
        let h = try await start()
        let key = try await h.adminKey()
        let e = try await register(h, name: "e-wait")
        for bad in ["1e16", "0x10", "-1", "", "1e300", "inf"] {
            let r = try await h.call("POST", "/api/v1/engines/\(e.0)/lease?wait=\(bad)", key: e.1)
            XCTAssertEqual(r.status, 422, "wait=\(bad): \(r.text)")
        }
        // A huge decimal is capped, not trapped on: with a job pending and the scheduler
        // running, the long poll answers at once.
        let background = Task { await h.dispatch.runBackground() }
        defer { background.cancel() }
        _ = try await submit(h, key: key)
        let r = try await h.call("POST", "/api/v1/engines/\(e.0)/lease?wait=99999999999999999999", key: e.1)
        XCTAssertEqual(r.status, 200, r.text)
        let health = try await h.call("GET", "/api/v1/health")
        XCTAssertEqual(health.status, 200, "the server is alive")
        await h.stop()
    }

    func testLeaseDataPathAndCompletionWithFencing() async throws {
        let h = try await start()
        let key = try await h.adminKey()
        let e = try await register(h, name: "e1")
        let v10 = try await lease(h, e).status
        XCTAssertEqual(v10, 204, "nothing pending")
        let media = "some input bytes " + String(repeating: "x", count: 5_000)
        let jobID = try await submit(h, key: key, extra: #","quality":true,"limits":{"max_seconds":60}"#, bytes: media)

        let l = try await lease(h, e)
        XCTAssertEqual(l.status, 200, l.text)
        let leased = try json(l.text)
        XCTAssertEqual(try leased["lease_epoch"]?.int(), 1)
        XCTAssertEqual(try leased["job"]?["id"]?.string(), jobID)
        XCTAssertEqual(try leased["job"]?["state"]?.string(), "assigned")
        XCTAssertEqual(try leased["spec"]?["preset"]?.string(), "h264-720p")
        XCTAssertEqual(try leased["spec"]?["quality"]?.bool(), true)
        XCTAssertEqual(try leased["spec"]?["limits"]?["max_seconds"]?.int(), 60, "the job's limits reach the engine")
        let v11 = try await lease(h, e).status
        XCTAssertEqual(v11, 204, "one job, leased once")

        let base = "/api/v1/engines/\(e.0)/jobs/\(jobID)"
        let input = try await h.call("GET", base + "/input?lease_epoch=1", key: e.1)
        XCTAssertEqual(input.status, 200)
        XCTAssertEqual(input.text, media)
        // The engines' data path counts in the byte metrics as the file routes do.
        let scraped = try await h.call("GET", "/metrics").text
        XCTAssertTrue(scraped.contains("spool_download_bytes_total \(media.utf8.count)\n"), scraped)
        let v12 = try await h.call("GET", base + "/input?lease_epoch=0", key: e.1).status
        XCTAssertEqual(v12, 409)
        let v13 = try await h.call("GET", base + "/input", key: e.1).status
        XCTAssertEqual(v13, 422, "the epoch is required")

        let p = try await h.call("POST", base + "/progress", key: e.1, body: #"{"lease_epoch":1,"progress":40,"fps":50,"speed":1.5,"eta_seconds":3}"#)
        XCTAssertEqual(p.status, 200, p.text)
        XCTAssertEqual(try json(p.text)["state"]?.string(), "transcoding")
        // Out of range is a 422 naming the field; nothing is recorded.
        for (body, field) in [(#"{"lease_epoch":1,"progress":150}"#, "/progress"), (#"{"lease_epoch":1,"progress":-1}"#, "/progress"),
                              (#"{"lease_epoch":1,"progress":50,"fps":-5}"#, "/fps"), (#"{"lease_epoch":1,"speed":-0.5}"#, "/speed"),
                              (#"{"lease_epoch":1,"eta_seconds":-3}"#, "/eta_seconds")] {
            let r = try await h.call("POST", base + "/progress", key: e.1, body: body)
            XCTAssertEqual(r.status, 422, body)
            XCTAssertNotNil(try json(r.text)["error"]?["details"]?[field], "\(body): \(r.text)")
        }
        // Within the lease progress never goes back.
        let back = try await h.call("POST", base + "/progress", key: e.1, body: #"{"lease_epoch":1,"progress":10}"#)
        XCTAssertEqual(back.status, 200, back.text)
        XCTAssertEqual(try json(back.text)["progress"]?.double(), 40)
        let stale = try await h.call("POST", base + "/progress", key: e.1, body: #"{"lease_epoch":0,"progress":50}"#)
        XCTAssertEqual(stale.status, 409)
        XCTAssertEqual(try json(stale.text)["error"]?["code"]?.string(), "stale_lease")

        let out = try await h.call("POST", base + "/outputs?lease_epoch=1&name=h264-720p.mp4", key: e.1, body: "output bytes")
        XCTAssertEqual(out.status, 201, out.text)
        let afterOutput = try await h.call("GET", "/metrics").text
        XCTAssertTrue(afterOutput.contains("spool_upload_bytes_total \(media.utf8.count + 12)\n"), afterOutput)
        let outID = try json(out.text)["file_id"]!.string()
        for bad in ["../x", "a//b", "/abs", "a/./b", "sp%20ace"] {
            let v14 = try await h.call("POST", base + "/outputs?lease_epoch=1&name=\(bad)", key: e.1, body: "x").status
            XCTAssertEqual(v14, 422, bad)
        }
        // A body that does not parse is said as such, not as a missing epoch.
        let broken = try await h.call("POST", base + "/complete", key: e.1, body: #"{"lease_epoch":1,"outputs":["#)
        XCTAssertEqual(broken.status, 400, broken.text)
        XCTAssertEqual(try json(broken.text)["error"]?["code"]?.string(), "invalid_json")
        let typed = try await h.call("POST", base + "/complete", key: e.1, body: #"{"lease_epoch":"1","outputs":[]}"#)
        XCTAssertEqual(typed.status, 422, typed.text)
        XCTAssertNotNil(try json(typed.text)["error"]?["details"]?["/lease_epoch"], typed.text)
        // Unknown fields are refused and named, as everywhere in the API (a misspelt field
        // used to be ignored: "requeu": true burnt the attempt the engine meant to give back).
        for (route, body, field) in [("progress", #"{"lease_epoch":1,"progress":50,"stage":"x"}"#, "/stage"),
                                     ("fail", #"{"lease_epoch":1,"requeu":true}"#, "/requeu"),
                                     ("complete", #"{"lease_epoch":1,"outputs":[{"name":"a.mp4","file_id":"\#(outID)","size":1}]}"#, "/outputs/0/size"),
                                     ("complete", #"{"lease_epoch":1,"outputs":[{"name":"a.mp4","file_id":"\#(outID)"}],"extra":0}"#, "/extra"),
                                     ("heartbeat", #"{"state":"online","lod":0.5}"#, "/lod")] {
            let r = try await h.call("POST", route == "heartbeat" ? "/api/v1/engines/\(e.0)/heartbeat" : base + "/" + route, key: e.1, body: body)
            XCTAssertEqual(r.status, 422, "\(route) \(body): \(r.text)")
            XCTAssertEqual(try json(r.text)["error"]?["details"]?[field]?.string(), "unknown field \"\(field.split(separator: "/").last!)\"", r.text)
        }
        let notObject = try await h.call("POST", base + "/progress?lease_epoch=1", key: e.1, body: "[50]")
        XCTAssertEqual(notObject.status, 422, notObject.text)
        // Every problem of a body is named in the one 422, not only the first.
        for (route, body, fields) in [
            ("complete", #"{"lease_epoch":1,"x":0,"outputs":[{"name":"a.mp4","file_id":"\#(outID)","size":1},{"name":"b.mp4","file_id":"\#(outID)","size":2}],"work":-1}"#,
             ["/x", "/outputs/0/size", "/outputs/1/size", "/work"]),
            ("progress", #"{"lease_epoch":1,"fps":"x","stage":1,"progress":101}"#, ["/fps", "/stage", "/progress"]),
            ("fail", #"{"lease_epoch":1,"requeue":"yes","reason":5,"why":0}"#, ["/requeue", "/reason", "/why"]),
        ] {
            let r = try await h.call("POST", base + "/" + route, key: e.1, body: body)
            XCTAssertEqual(r.status, 422, "\(route): \(r.text)")
            let details = try json(r.text)["error"]?["details"]
            for f in fields { XCTAssertNotNil(details?[f], "\(route) \(f): \(r.text)") }
        }
        let registered = try await h.call("POST", "/api/v1/engines/register", key: key, body: #"{"name":"e","bogus":1,"zzz":2}"#)
        XCTAssertEqual(registered.status, 422, registered.text)
        XCTAssertNotNil(try json(registered.text)["error"]?["details"]?["/bogus"], registered.text)
        XCTAssertNotNil(try json(registered.text)["error"]?["details"]?["/zzz"], registered.text)
        // A measured work past 1e18 is no measurement: 422, nothing recorded.
        let absurd = try await h.call("POST", base + "/complete", key: e.1,
                                      body: #"{"lease_epoch":1,"outputs":[{"name":"h264-720p.mp4","file_id":"\#(outID)"}],"work":1.7e308}"#)
        XCTAssertEqual(absurd.status, 422, absurd.text)
        let done = try await h.call("POST", base + "/complete", key: e.1,
                                    body: #"{"lease_epoch":1,"outputs":[{"name":"h264-720p.mp4","file_id":"\#(outID)"}],"quality_report":{"outputs":[]},"work":1000}"#)
        XCTAssertEqual(done.status, 200, done.text)
        XCTAssertEqual(try json(done.text)["state"]?.string(), "completed")
        let job = try json(try await h.call("GET", "/api/v1/jobs/\(jobID)", key: key).text)
        XCTAssertEqual(try job["state"]?.string(), "completed")
        XCTAssertEqual(try job["result"]?["outputs"]?[0]?["name"]?.string(), "h264-720p.mp4")
        XCTAssertEqual(try job["result"]?["outputs"]?[0]?["file_id"]?.string(), outID)
        XCTAssertEqual(try job["result"]?["outputs"]?[0]?["url"]?.string(), "/api/v1/files/\(outID)")
        XCTAssertNotNil(job["result"]?["quality_report"]?["outputs"])
        // The output is a file of the job's tenant.
        let v15 = try await h.call("GET", "/api/v1/files/\(outID)", key: key).text
        XCTAssertEqual(v15, "output bytes")
        // Done is done: no second completion.
        let v16 = try await h.call("POST", base + "/complete", key: e.1,
                                   body: #"{"lease_epoch":1,"outputs":[{"name":"a.mp4","file_id":"\#(outID)"}]}"#).status
        XCTAssertEqual(v16, 409)
        await h.stop()
    }

    /// An engine that stops listing a job in its heartbeats loses it after the grace
    /// period; the job goes to another engine under a new epoch, and nothing the first
    /// engine sends under the old epoch is accepted.
    func testLostLeaseIsTakenBackAndTheOldEpochIsRefused() async throws {
        let h = try await start()
        let key = try await h.adminKey()
        let a = try await register(h, name: "a")
        let jobID = try await submit(h, key: key)
        let v17 = try await lease(h, a).status
        XCTAssertEqual(v17, 200)
        let b = try await register(h, name: "b")

        // Within the grace period a heartbeat that does not list it changes nothing.
        let v18 = try await h.call("POST", "/api/v1/engines/\(a.0)/heartbeat", key: a.1, body: #"{"running":[]}"#).status
        XCTAssertEqual(v18, 200)
        let v19 = try await lease(h, b).status
        XCTAssertEqual(v19, 204)
        h.clock.advance(by: .seconds(16))
        let v20 = try await h.call("POST", "/api/v1/engines/\(a.0)/heartbeat", key: a.1, body: #"{"running":[]}"#).status
        XCTAssertEqual(v20, 200)
        let job = try json(try await h.call("GET", "/api/v1/jobs/\(jobID)", key: key).text)
        XCTAssertEqual(try job["state"]?.string(), "pending")
        XCTAssertTrue(try job["reason"]!.string().hasPrefix("lease_lost"))
        XCTAssertEqual(try job["attempts"]?.int(), 0, "a lost lease is no failed attempt")

        let lb = try await lease(h, b)
        XCTAssertEqual(lb.status, 200)
        XCTAssertEqual(try json(lb.text)["lease_epoch"]?.int(), 2)
        let oldBase = "/api/v1/engines/\(a.0)/jobs/\(jobID)"
        let v21 = try await h.call("POST", oldBase + "/progress", key: a.1, body: #"{"lease_epoch":1,"progress":90}"#).status
        XCTAssertEqual(v21, 409)
        let v22 = try await h.call("POST", oldBase + "/outputs?lease_epoch=1&name=x.mp4", key: a.1, body: "stale").status
        XCTAssertEqual(v22, 409)
        let v23 = try await h.call("POST", oldBase + "/fail", key: a.1, body: #"{"lease_epoch":1,"reason":"x"}"#).status
        XCTAssertEqual(v23, 409)
        // Even presenting the new epoch, engine a does not hold it.
        let v24 = try await h.call("POST", oldBase + "/progress", key: a.1, body: #"{"lease_epoch":2,"progress":90}"#).status
        XCTAssertEqual(v24, 409)
        let newBase = "/api/v1/engines/\(b.0)/jobs/\(jobID)"
        let v25 = try await h.call("POST", newBase + "/progress", key: b.1, body: #"{"lease_epoch":2,"progress":10}"#).status
        XCTAssertEqual(v25, 200)

        // An engine gone offline loses everything it holds at once.
        let taken = try await h.dispatch.scheduler.reclaim(engine: EngineID(b.0)!, listed: nil)
        XCTAssertEqual(taken.map(\.text), [jobID])
        let v26 = try json(try await h.call("GET", "/api/v1/jobs/\(jobID)", key: key).text)["state"]?.string()
        XCTAssertEqual(v26, "pending")
        await h.stop()
    }

    /// A job's required capabilities must all be on the engine (tags, encoders and the
    /// codecs they give); with no such engine it waits, then expires by its TTL.
    func testRequiredCapabilitiesAllMatchOrTheJobWaitsAndExpires() async throws {
        let h = try await start()
        let key = try await h.adminKey()
        let jobID = try await submit(h, key: key, extra: #","required_capabilities":["hevc","GPU:0"],"ttl_seconds":60"#)
        let cpu = try await register(h, name: "cpu")
        let gpuNoHEVC = try await register(h, name: "gpu-h264", tags: ["GPU:0"])
        let hevcNoGPU = try await register(h, name: "hevc-cpu", encoders: ["libx265"])
        for e in [cpu, gpuNoHEVC, hevcNoGPU] { let v27 = try await lease(h, e).status; XCTAssertEqual(v27, 204) }
        h.clock.advance(by: .seconds(61))
        try await h.dispatch.jobs.sweepOnce()
        let expired = try json(try await h.call("GET", "/api/v1/jobs/\(jobID)", key: key).text)
        XCTAssertEqual(try expired["state"]?.string(), "failed")
        XCTAssertEqual(try expired["reason"]?.string(), "expired")

        let second = try await submit(h, key: key, extra: #","required_capabilities":["hevc","GPU:0"]"#)
        let both = try await register(h, name: "gpu-hevc", tags: ["GPU:0"], encoders: ["libx264", "libx265"])
        for e in [cpu, gpuNoHEVC, hevcNoGPU] { let v28 = try await lease(h, e).status; XCTAssertEqual(v28, 204) }
        let l = try await lease(h, both)
        XCTAssertEqual(l.status, 200)
        XCTAssertEqual(try json(l.text)["job"]?["id"]?.string(), second)
        await h.stop()
    }

    func testDrainingEngineGetsNoWorkAndRequeueCountsNoAttempt() async throws {
        let h = try await start()
        let key = try await h.adminKey()
        let e = try await register(h, name: "e")
        let jobID = try await submit(h, key: key)
        let v29 = try await lease(h, e).status
        XCTAssertEqual(v29, 200)
        // A requeue or reason of the wrong type is refused, not read as false or "failed".
        for (body, field) in [(#"{"lease_epoch":1,"requeue":"true"}"#, "/requeue"), (#"{"lease_epoch":1,"requeue":1}"#, "/requeue"),
                              (#"{"lease_epoch":1,"reason":42}"#, "/reason")] {
            let bad = try await h.call("POST", "/api/v1/engines/\(e.0)/jobs/\(jobID)/fail", key: e.1, body: body)
            XCTAssertEqual(bad.status, 422, body)
            XCTAssertNotNil(try json(bad.text)["error"]?["details"]?[field], bad.text)
        }
        let r = try await h.call("POST", "/api/v1/engines/\(e.0)/jobs/\(jobID)/fail", key: e.1,
                                 body: #"{"lease_epoch":1,"reason":"engine draining","requeue":true}"#)
        XCTAssertEqual(r.status, 200, r.text)
        let job = try json(try await h.call("GET", "/api/v1/jobs/\(jobID)", key: key).text)
        XCTAssertEqual(try job["state"]?.string(), "pending")
        XCTAssertEqual(try job["attempts"]?.int(), 0)
        let v30 = try await h.call("POST", "/api/v1/engines/\(e.0)/heartbeat", key: e.1, body: #"{"state":"draining"}"#).status
        XCTAssertEqual(v30, 200)
        let refused = try await h.call("POST", "/api/v1/engines/\(e.0)/lease?wait=0", key: e.1)
        XCTAssertEqual(refused.status, 409)
        XCTAssertEqual(try json(refused.text)["error"]?["code"]?.string(), "engine_not_online")
        // A real failure counts an attempt and retries by policy.
        let v31 = try await h.call("POST", "/api/v1/engines/\(e.0)/heartbeat", key: e.1, body: #"{"state":"online"}"#).status
        XCTAssertEqual(v31, 200)
        let v32 = try await lease(h, e).status
        XCTAssertEqual(v32, 200)
        let f = try await h.call("POST", "/api/v1/engines/\(e.0)/jobs/\(jobID)/fail", key: e.1,
                                 body: #"{"lease_epoch":2,"reason":"input_unreadable: not media"}"#)
        XCTAssertEqual(try json(f.text)["state"]?.string(), "retrying")
        let v33 = try await h.call("POST", "/api/v1/engines/\(e.0)/heartbeat", key: e.1, body: #"{"state":"sleepy"}"#).status
        XCTAssertEqual(v33, 422)
        await h.stop()
    }

    /// Three tenants weighted 3:2:1 with 10 jobs each, one engine taking them one by one:
    /// while all three have jobs waiting, each gets its weight's share (within 10 %).
    func testTenantsShareEnginesByWeightWhileContended() async throws {
        let h = try await AccessHarness.start {
            $0.engines.joinToken = Self.join
            $0.scheduler.tenantWeights = "a=3,b=2,c=1"
        }
        let admin = try await h.adminKey()
        var keys: [String: String] = [:]
        for t in ["a", "b", "c"] {
            let r = try await h.call("POST", "/api/v1/keys", key: admin, body: #"{"tenant":"\#(t)"}"#)
            keys[t] = try json(r.text)["secret"]!.string()
        }
        for _ in 0..<10 { for t in ["c", "b", "a"] { _ = try await submit(h, key: keys[t]!) } }
        let e = try await register(h, name: "e")
        var order: [String] = []
        for _ in 0..<30 {
            let l = try await lease(h, e)
            XCTAssertEqual(l.status, 200)
            let leased = try json(l.text)
            order.append(try leased["job"]!["tenant"]!.string())
            let id = try leased["job"]!["id"]!.string(), epoch = try leased["lease_epoch"]!.int()
            let f = try await h.call("POST", "/api/v1/engines/\(e.0)/jobs/\(id)/fail", key: e.1,
                                     body: #"{"lease_epoch":\#(epoch),"reason":"test","requeue":false}"#)
            XCTAssertEqual(f.status, 200)
        }
        // The contended window: until the first tenant has had all ten of its jobs.
        var counts: [String: Int] = [:]
        var window = 0
        for t in order {
            counts[t, default: 0] += 1
            window += 1
            if counts[t] == 10 { break }
        }
        for (t, w) in [("a", 3.0), ("b", 2.0), ("c", 1.0)] {
            let share = Double(counts[t] ?? 0) / Double(window), expected = w / 6
            XCTAssertEqual(share, expected, accuracy: expected * 0.1, "tenant \(t) in \(order)")
        }
        XCTAssertEqual(order.count, 30)
        await h.stop()
    }

    /// The webhook endpoints: a tenant's secret (made once, rotated on demand, another
    /// tenant's only for admins) and a job's deliveries.
    func testWebhookSecretAndDeliveryLogEndpoints() async throws {
        let h = try await start()
        let admin = try await h.adminKey()
        let r = try await h.call("POST", "/api/v1/keys", key: admin, body: #"{"tenant":"acme"}"#)
        let acme = try json(r.text)["secret"]!.string()
        let s1 = try json(try await h.call("GET", "/api/v1/webhooks/secret", key: acme).text)
        XCTAssertEqual(try s1["tenant"]?.string(), "acme")
        let secret = try s1["secret"]!.string()
        XCTAssertTrue(secret.hasPrefix("whsec_"))
        let again = try json(try await h.call("GET", "/api/v1/webhooks/secret", key: acme).text)["secret"]!.string()
        XCTAssertEqual(again, secret)
        let rotated = try json(try await h.call("POST", "/api/v1/webhooks/secret/rotate", key: acme).text)["secret"]!.string()
        XCTAssertNotEqual(rotated, secret)
        let other = try await h.call("GET", "/api/v1/webhooks/secret?tenant=default", key: acme)
        XCTAssertEqual(other.status, 403)
        let viaAdmin = try json(try await h.call("GET", "/api/v1/webhooks/secret?tenant=acme", key: admin).text)["secret"]!.string()
        XCTAssertEqual(viaAdmin, rotated)
        let badTenant = try await h.call("GET", "/api/v1/webhooks/secret?tenant=Not%20Valid", key: admin)
        XCTAssertEqual(badTenant.status, 422)

        let jobID = try await submit(h, key: acme, extra: #","webhook_url":"http://hooks.example.com/done","max_attempts":1"#)
        let empty = try json(try await h.call("GET", "/api/v1/jobs/\(jobID)/webhooks", key: acme).text)
        XCTAssertEqual(empty["data"]?.count, 0)
        let e = try await register(h, name: "e")
        let leasedStatus = try await lease(h, e).status
        XCTAssertEqual(leasedStatus, 200)
        let failed = try await h.call("POST", "/api/v1/engines/\(e.0)/jobs/\(jobID)/fail", key: e.1, body: #"{"lease_epoch":1,"reason":"bad input"}"#)
        XCTAssertEqual(try json(failed.text)["state"]?.string(), "failed")
        let job = try await h.dispatch.jobs.get(JobID(jobID)!)!
        try await h.dispatch.webhooks.enqueue(job)
        let log = try json(try await h.call("GET", "/api/v1/jobs/\(jobID)/webhooks", key: acme).text)
        XCTAssertEqual(try log["data"]?[0]?["event"]?.string(), "job.failed")
        XCTAssertEqual(try log["data"]?[0]?["state"]?.string(), "pending")
        XCTAssertEqual(try log["data"]?[0]?["url"]?.string(), "http://hooks.example.com/done")
        let stranger = try await h.call("GET", "/api/v1/jobs/\(jobID)/webhooks", key: try json(try await h.call("POST", "/api/v1/keys", key: admin, body: #"{"tenant":"other"}"#).text)["secret"]!.string())
        XCTAssertEqual(stranger.status, 404)
        await h.stop()
    }

    /// Join tokens an admin makes: one registers engines until it expires or is revoked;
    /// the list never shows a secret; only admins manage them.
    func testAdminJoinTokensExpireAndRevoke() async throws {
        let h = try await AccessHarness.start()   // no configured join token
        let admin = try await h.adminKey()
        let made = try await h.call("POST", "/api/v1/engines/join-tokens", key: admin, body: #"{"expires_in_seconds":3600,"note":"rack 4"}"#)
        XCTAssertEqual(made.status, 201, made.text)
        let token = try json(made.text)["token"]!.string(), id = try json(made.text)["id"]!.string()
        let body = #"{"name":"e1","host":"h"}"#
        let ok = try await h.call("POST", "/api/v1/engines/register", key: token, body: body)
        XCTAssertEqual(ok.status, 201, ok.text)
        let list = try await h.call("GET", "/api/v1/engines/join-tokens", key: admin)
        XCTAssertEqual(try json(list.text)["data"]?[0]?["note"]?.string(), "rack 4")
        XCTAssertFalse(list.text.contains(token), "the secret is shown once")
        let tenant = try json(try await h.call("POST", "/api/v1/keys", key: admin, body: #"{"tenant":"acme"}"#).text)["secret"]!.string()
        let forbidden = try await h.call("POST", "/api/v1/engines/join-tokens", key: tenant, body: "{}")
        XCTAssertEqual(forbidden.status, 403)
        let badLife = try await h.call("POST", "/api/v1/engines/join-tokens", key: admin, body: #"{"expires_in_seconds":5}"#)
        XCTAssertEqual(badLife.status, 422)
        // Expired.
        h.clock.advance(by: .seconds(3_601))
        let late = try await h.call("POST", "/api/v1/engines/register", key: token, body: body)
        XCTAssertEqual(late.status, 401)
        // Revoked.
        let fresh = try json(try await h.call("POST", "/api/v1/engines/join-tokens", key: admin, body: "").text)
        let freshToken = try fresh["token"]!.string()
        let revoked = try await h.call("DELETE", "/api/v1/engines/join-tokens/\(try fresh["id"]!.string())", key: admin)
        XCTAssertEqual(revoked.status, 204)
        let afterRevoke = try await h.call("POST", "/api/v1/engines/register", key: freshToken, body: body)
        XCTAssertEqual(afterRevoke.status, 401)
        let unknown = try await h.call("DELETE", "/api/v1/engines/join-tokens/jt_nope", key: admin)
        XCTAssertEqual(unknown.status, 404)
        _ = id
        await h.stop()
    }

    /// A job that fails after its last attempt lands in the job queue's dead letters, visible to admins.
    func testJobFailedForGoodIsADeadLetter() async throws {
        let h = try await start()
        let key = try await h.adminKey()
        let e = try await register(h, name: "e")
        let jobID = try await submit(h, key: key, extra: #","max_attempts":1"#)
        let l = try await lease(h, e)
        XCTAssertEqual(l.status, 200)
        let f = try await h.call("POST", "/api/v1/engines/\(e.0)/jobs/\(jobID)/fail", key: e.1, body: #"{"lease_epoch":1,"reason":"input_unreadable: not media"}"#)
        XCTAssertEqual(try json(f.text)["state"]?.string(), "failed")
        let dead = try await h.call("GET", "/api/v1/queues/jobs/dead-letters", key: key)
        XCTAssertEqual(dead.status, 200, dead.text)
        XCTAssertEqual(try json(dead.text)["data"]?[0]?["job_id"]?.string(), jobID)
        XCTAssertEqual(try json(dead.text)["data"]?[0]?["reason"]?.string(), "failed after 1 attempt(s): input_unreadable: not media")
        let tenant = try json(try await h.call("POST", "/api/v1/keys", key: key, body: #"{"tenant":"acme"}"#).text)["secret"]!.string()
        let forbidden = try await h.call("GET", "/api/v1/queues/jobs/dead-letters", key: tenant)
        XCTAssertEqual(forbidden.status, 403)
        await h.stop()
    }
}

/// The engine-side calls the lease tests (and the Redis queue's) make.
extension AccessHarness {
    /// Registers an engine; returns (id, token).
    func registerEngine(name: String, tags: [String] = [], encoders: [String] = ["libx264", "aac"]) async throws -> (String, String) {
        let tagText = tags.map { "\"\($0)\"" }.joined(separator: ",")
        let encText = encoders.map { "\"\($0)\"" }.joined(separator: ",")
        let r = try await call("POST", "/api/v1/engines/register", key: EngineLeaseTests.join,
                                 body: #"{"name":"\#(name)","host":"127.0.0.1","tags":[\#(tagText)],"capabilities":{"encoders":[\#(encText)]}}"#)
        XCTAssertEqual(r.status, 201, r.text)
        let doc = try json(r.text)
        return (try doc["engine_id"]!.string(), try doc["token"]!.string())
    }

    /// Uploads bytes and submits a job for them; returns the job id.
    func submitJob(key: String, extra: String = "", bytes: String = "not really media, but bytes") async throws -> String {
        let f = try await call("POST", "/api/v1/files", key: key, body: bytes)
        XCTAssertEqual(f.status, 201, f.text)
        guard f.status == 201 else { throw XCTSkip("upload failed: \(f.text)") }
        let fileID = try json(f.text)["id"]!.string()
        let j = try await call("POST", "/api/v1/jobs", key: key, body: #"{"input":{"file_id":"\#(fileID)"},"preset":"h264-720p"\#(extra)}"#,
                                 headers: [("Idempotency-Key", "submit-\(UInt64.random(in: 0...UInt64.max))")])
        XCTAssertEqual(j.status, 201, j.text)
        guard j.status == 201 else { throw XCTSkip("submit failed: \(j.text)") }
        return try json(j.text)["id"]!.string()
    }

    func leaseJob(_ engine: (String, String)) async throws -> (status: Int, text: String) {
        let r = try await call("POST", "/api/v1/engines/\(engine.0)/lease?wait=0", key: engine.1)
        return (r.status, r.text)
    }
}
