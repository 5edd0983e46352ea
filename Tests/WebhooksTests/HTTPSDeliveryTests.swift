// Webhooks to https:// receivers, against a TLS server that is not ours (TLSTestServer):
// delivered and signed like plain ones, retried on 5xx; a receiver whose certificate does
// not verify is never sent the payload, and each attempt logs why.
import Events
import Foundation
import JSON
import Jobs
import Logging
import Persistence
import Ring
import SpoolModel
import SpoolTestSupport
import Threads
import TLS
import Web
import Webhooks
import XCTest

final class HTTPSDeliveryTests: XCTestCase {
    var dir: String!
    var loop: EventLoop!
    var jobs: JobService!
    var webhooks: WebhookService!
    var runner: Task<Void, any Error>?
    var receiver: TLSTestServer!
    var stranger: TLSTestServer!

    override func setUp() async throws {
        receiver = try TLSTestServer.start(statuses: [503, 200])
        stranger = try TLSTestServer.start(statuses: [200])
        dir = NSTemporaryDirectory() + "spool-webhooks-tls-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let db = try SQLiteDatabase(path: dir + "/spool.sqlite")
        let bus = InProcessEventBus(replayWindow: { 100 })
        jobs = JobService(store: SQLiteJobStore(database: db), events: bus, clock: SystemClock.shared, settings: { JobSettings() })
        try await jobs.migrate()
        var s = WebhookSettings()
        s.retryBaseMilliseconds = 20
        s.maxAttempts = 3
        s.timeoutSeconds = 5
        s.policy = AddressPolicy(allowed: try Network.parseList("127.0.0.1/32").get())
        let settings = s
        // Only the receiver's CA is trusted; the stranger's certificate comes from another.
        webhooks = try await WebhookService.open(database: db, jobs: jobs, clock: SystemClock.shared, settings: { settings },
                                                 logger: Logger(label: "test.webhooks"), tls: try TLSContext(caFile: receiver.caFile))
        loop = try EventLoop.start(id: 78)
        let w = webhooks!
        runner = loop.spawn { await w.run(events: bus) }
    }

    override func tearDown() async throws {
        runner?.cancel()
        webhooks = nil
        loop?.shutdown()
        receiver?.stop()
        stranger?.stop()
        try? FileManager.default.removeItem(atPath: dir)
    }

    func finishedJob(url: String) async throws -> Job {
        var spec = JobSpec(inputFileID: FileID("file_01ARZ3NDEKTSV4RRFFQ69G5FAV")!, outputs: .preset("h264-720p"))
        spec.webhookURL = url
        spec.maxAttempts = 1
        guard case .done(let job, _) = try await jobs.submit(tenant: "acme", spec: spec, idempotencyKey: nil, requestHash: "x", render: { _ in [] }) else {
            throw XCTSkip("not submitted")
        }
        try await jobs.transition(job.id, to: .assigned, engineID: EngineID("eng_01ARZ3NDEKTSV4RRFFQ69G5FAV")!)
        return try await jobs.transition(job.id, to: .failed, reason: "input_unreadable: not media", leaseEpoch: 1)
    }

    func finalState(_ job: Job) async throws -> Delivery {
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if let d = try await webhooks.deliveries(jobID: job.id.text).first, d.state != .pending { return d }
            try await Task.sleep(for: .milliseconds(20))
        }
        XCTFail("the delivery did not finish within 20 s")
        throw XCTSkip("no final state")
    }

    func testDeliveredOverTLSAfterARetryAndSigned() async throws {
        let job = try await finishedJob(url: "https://localhost:\(receiver.port)/hooks/job")
        let d = try await finalState(job)
        XCTAssertEqual(d.state, .delivered)
        XCTAssertEqual(d.log.map(\.status), [503, 200])
        let got = receiver.requests()
        XCTAssertEqual(got.count, 2)
        let secret = try await webhooks.secret(tenant: "acme")
        for r in got {
            let headers = try XCTUnwrap(r["headers"] as? [String: String])
            func h(_ n: String) -> String? { headers.first { $0.key.lowercased() == n }?.value }
            let body = Array(try XCTUnwrap(r["body"] as? String).utf8)
            XCTAssertEqual(r["path"] as? String, "/hooks/job")
            XCTAssertEqual(h("webhook-id"), d.id)
            XCTAssertTrue(WebhookSignature.verify(secret: secret, id: d.id, timestamp: Int64(h("webhook-timestamp") ?? "") ?? 0, body: body,
                                                  header: h("webhook-signature") ?? "", now: Int64(Date().timeIntervalSince1970)),
                          "the signature of a delivery over TLS does not verify")
            XCTAssertEqual(try JSONDocument(parsing: body).root["data"]?["job_id"]?.string(), job.id.text)
        }
    }

    func testAReceiverWhoseCertificateDoesNotVerifyGetsNothing() async throws {
        let job = try await finishedJob(url: "https://localhost:\(stranger.port)/hooks/job")
        let d = try await finalState(job)
        XCTAssertEqual(d.state, .failed)
        XCTAssertEqual(d.attempts, 3, "a certificate that does not verify is retried like a connection failure")
        for a in d.log {
            XCTAssertNil(a.status)
            XCTAssertTrue(a.error?.contains("not trusted") == true, a.error ?? "")
        }
        XCTAssertTrue(stranger.requests().isEmpty, "the payload went to a receiver whose certificate did not verify")
    }
}
