// Webhooks: the Standard Webhooks signature (the spec's own vector; tampering fails), the
// SSRF guard's address classes, and deliveries to a real receiver on loopback (allow-listed):
// 500, 500, 200 delivered on the third attempt with every attempt logged and a signature
// that verifies with the tenant's secret; 410 disables the URL; 404 fails at once; a host
// resolving to a private or metadata address is refused before anything is dialed.
import Events
import Foundation
import JSON
import Jobs
import Logging
import Persistence
import Ring
import SpoolModel
import Synchronization
import Threads
import Web
import Webhooks
import XCTest

final class SignatureTests: XCTestCase {
    /// The example of the Standard Webhooks specification.
    func testSpecificationVector() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        let body = Array(#"{"test": 2432232314}"#.utf8)
        XCTAssertEqual(WebhookSignature.sign(secret: secret, id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: 1_614_265_330, body: body),
                       "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
    }

    func testTamperingFailsVerification() {
        let secret = WebhookSignature.newSecret()
        XCTAssertTrue(secret.hasPrefix("whsec_"))
        XCTAssertEqual(WebhookSignature.key(of: secret)?.count, 24)
        let body = Array(#"{"type":"job.completed"}"#.utf8)
        let sig = WebhookSignature.sign(secret: secret, id: "msg_1", timestamp: 1_000, body: body)!
        XCTAssertTrue(WebhookSignature.verify(secret: secret, id: "msg_1", timestamp: 1_000, body: body, header: sig))
        XCTAssertTrue(WebhookSignature.verify(secret: secret, id: "msg_1", timestamp: 1_000, body: body, header: "v1,bogus " + sig))
        XCTAssertFalse(WebhookSignature.verify(secret: secret, id: "msg_1", timestamp: 1_000, body: body + [0x20], header: sig))
        XCTAssertFalse(WebhookSignature.verify(secret: secret, id: "msg_1", timestamp: 1_001, body: body, header: sig))
        XCTAssertFalse(WebhookSignature.verify(secret: secret, id: "msg_2", timestamp: 1_000, body: body, header: sig))
        XCTAssertFalse(WebhookSignature.verify(secret: WebhookSignature.newSecret(), id: "msg_1", timestamp: 1_000, body: body, header: sig))
        XCTAssertFalse(WebhookSignature.verify(secret: secret, id: "msg_1", timestamp: 1_000, body: body, header: sig, now: 2_000),
                       "a timestamp far from now is a replay")
    }
}

final class AddressPolicyTests: XCTestCase {
    func ip(_ s: String) -> [UInt8] {
        var v4 = in_addr(), v6 = in6_addr()
        if inet_pton(AF_INET, s, &v4) == 1 { return withUnsafeBytes(of: v4) { Array($0) } }
        XCTAssertEqual(inet_pton(AF_INET6, s, &v6), 1, s)
        return withUnsafeBytes(of: v6) { Array($0) }
    }

    func testNonPublicAddressesAreRefusedInEveryForm() {
        let policy = AddressPolicy()
        for refused in ["127.0.0.1", "127.8.9.10", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "169.254.169.254",
                        "169.254.1.1", "100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "192.0.2.1", "198.18.0.1",
                        "::1", "::", "fc00::1", "fd12:3456::1", "fe80::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
                        "::ffff:169.254.169.254", "::127.0.0.1", "64:ff9b::a00:1", "2002:c0a8:101::1", "2001:db8::1"] {
            XCTAssertNotNil(policy.refusal(ip(refused)), refused)
        }
        for allowed in ["93.184.216.34", "8.8.8.8", "172.32.0.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"] {
            XCTAssertNil(policy.refusal(ip(allowed)), allowed)
        }
    }

    func testAllowListAndPrivateSwitch() throws {
        let list = try Network.parseList("127.0.0.1/32, 10.9.0.0/16,::1").get()
        let policy = AddressPolicy(allowed: list)
        XCTAssertNil(policy.refusal(ip("127.0.0.1")))
        XCTAssertNotNil(policy.refusal(ip("127.0.0.2")))
        XCTAssertNil(policy.refusal(ip("10.9.200.1")))
        XCTAssertNotNil(policy.refusal(ip("10.8.0.1")))
        XCTAssertNil(policy.refusal(ip("::1")))
        XCTAssertNotNil(policy.refusal(ip("169.254.169.254")))
        let open = AddressPolicy(allowPrivateNetworks: true)
        XCTAssertNil(open.refusal(ip("192.168.0.1")))
        XCTAssertNotNil(open.refusal(ip("0.0.0.0")), "unspecified is never a receiver")
        for bad in ["10.0.0.0/33", "nope", "1.2.3/8", "::1/129"] {
            XCTAssertThrowsError(try Network.parseList(bad).get(), bad)
        }
    }
}

/// A receiver on 127.0.0.1 answering a scripted list of statuses and keeping what it got.
final class Receiver: Sendable {
    struct Hit: Sendable { var headers: [(name: String, value: String)]; var body: [UInt8] }
    final class Log: Sendable {
        let script: Mutex<[Int]>
        let hits = Mutex<[Hit]>([])
        init(_ statuses: [Int]) { script = Mutex(statuses) }
    }
    let log: Log
    let server: HTTPServer

    /// `bodyBytes`: the size of the body every answer carries.
    init(statuses: [Int], bodyBytes: Int = 0) async throws {
        let log = Log(statuses)
        self.log = log
        let router = Router { r in
            r.group("/hooks") { h in
                h.post("job") { req in
                    log.hits.withLock { $0.append(Hit(headers: req.headers, body: req.body)) }
                    let status = log.script.withLock { $0.isEmpty ? 200 : $0.removeFirst() }
                    return Response(status: status, body: [UInt8](repeating: 0x61, count: bodyBytes))
                }
            }
        }
        server = HTTPServer(configuration: HTTPServerConfiguration(listen: try SocketAddress("127.0.0.1:0")), router: router)
        try await server.start()
    }
    var received: [Hit] { log.hits.withLock { $0 } }
    var url: String { "http://\(server.localAddress!)/hooks/job" }
}

final class DeliveryTests: XCTestCase {
    var dir: String!
    var loop: EventLoop!
    var jobs: JobService!
    var webhooks: WebhookService!
    var bus: InProcessEventBus!
    var db: SQLiteDatabase!
    var runner: Task<Void, any Error>?
    final class Names: Sendable { let list = Mutex<[String]>([]) }
    let resolved = Names()

    override func setUp() async throws {
        dir = NSTemporaryDirectory() + "spool-webhooks-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        db = try SQLiteDatabase(path: dir + "/spool.sqlite")
        bus = InProcessEventBus(replayWindow: { 100 })
        jobs = JobService(store: SQLiteJobStore(database: db), events: bus, clock: SystemClock.shared, settings: { JobSettings() })
        try await jobs.migrate()
        var s = WebhookSettings()
        s.retryBaseMilliseconds = 20
        s.maxAttempts = 5
        s.timeoutSeconds = 5
        s.policy = AddressPolicy(allowed: try Network.parseList("127.0.0.1/32").get())
        let settings = s
        let resolved = self.resolved
        webhooks = try await WebhookService.open(database: db, jobs: jobs, clock: SystemClock.shared, settings: { settings },
                                                 logger: Logger(label: "test.webhooks"), resolve: { host, port throws(RingError) in
            resolved.list.withLock { $0.append(host) }
            switch host {
            case "hooks.internal": return [try SocketAddress(host: "10.0.0.7", port: port)]
            case "metadata.internal": return [try SocketAddress(host: "169.254.169.254", port: port)]
            case "mapped.internal": return [try SocketAddress(host: "::ffff:192.168.1.1", port: port)]
            default: return try await SocketAddress.resolve(host, port: port)
            }
        })
        loop = try EventLoop.start(id: 77)
        let w = webhooks!, b = bus!
        runner = loop.spawn { await w.run(events: b) }
    }

    override func tearDown() async throws {
        runner?.cancel()
        webhooks = nil
        loop.shutdown()
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// A finished job with a webhook URL, through the real event path (submit, then fail or complete).
    func finishedJob(url: String, tenant: String = "acme", via service: JobService? = nil) async throws -> Job {
        let jobs = service ?? self.jobs!
        var spec = JobSpec(inputFileID: FileID("file_01ARZ3NDEKTSV4RRFFQ69G5FAV")!, outputs: .preset("h264-720p"))
        spec.webhookURL = url
        spec.maxAttempts = 1
        guard case .done(let job, _) = try await jobs.submit(tenant: tenant, spec: spec, idempotencyKey: nil, requestHash: "x", render: { _ in [] }) else {
            throw XCTSkip("not submitted")
        }
        try await jobs.transition(job.id, to: .assigned, engineID: EngineID("eng_01ARZ3NDEKTSV4RRFFQ69G5FAV")!)
        return try await jobs.transition(job.id, to: .failed, reason: "input_unreadable: not media", leaseEpoch: 1)
    }

    func waitForFinalState(_ job: Job, timeout: Double = 20) async throws -> Delivery {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let d = try await webhooks.deliveries(jobID: job.id.text).first, d.state != .pending { return d }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw XCTSkip("the delivery did not finish within \(timeout) s")
    }

    func testRetriedUntilDeliveredAndSignedWithTheTenantSecret() async throws {
        let receiver = try await Receiver(statuses: [500, 500, 200])
        let job = try await finishedJob(url: receiver.url)
        let d = try await waitForFinalState(job)
        XCTAssertEqual(d.state, .delivered)
        XCTAssertEqual(d.attempts, 3)
        XCTAssertEqual(d.log.map(\.status), [500, 500, 200])
        XCTAssertEqual(d.event, "job.failed")
        let hits = receiver.received
        XCTAssertEqual(hits.count, 3)
        let secret = try await webhooks.secret(tenant: "acme")
        for hit in hits {
            func h(_ n: String) -> String? { hit.headers.first { $0.name.lowercased() == n }?.value }
            let id = try XCTUnwrap(h("webhook-id")), ts = try XCTUnwrap(Int64(h("webhook-timestamp") ?? "")), sig = try XCTUnwrap(h("webhook-signature"))
            XCTAssertEqual(id, d.id, "the same message id on every retry")
            XCTAssertTrue(WebhookSignature.verify(secret: secret, id: id, timestamp: ts, body: hit.body, header: sig,
                                                  now: Int64(Date().timeIntervalSince1970)))
            XCTAssertFalse(WebhookSignature.verify(secret: secret, id: id, timestamp: ts + 1, body: hit.body, header: sig))
            XCTAssertFalse(WebhookSignature.verify(secret: secret, id: id, timestamp: ts, body: hit.body.dropLast() + [0x20], header: sig))
            let otherSecret = try await webhooks.secret(tenant: "other")
            XCTAssertFalse(WebhookSignature.verify(secret: otherSecret, id: id, timestamp: ts, body: hit.body, header: sig))
            let doc = try JSONDocument(parsing: hit.body)
            XCTAssertEqual(try doc.root["type"]?.string(), "job.failed")
            XCTAssertEqual(try doc.root["data"]?["job_id"]?.string(), job.id.text)
            XCTAssertEqual(try doc.root["data"]?["reason"]?.string(), "input_unreadable: not media")
        }
    }

    /// After a delivery the sender goes back to its idle ticks (about five passes a
    /// second). A tick cancelled because the delivery woke the loop used to wake it again,
    /// and each pass's cancelled tick the next one: the loop spun on a core for good.
    func testTheSenderIdlesAfterADelivery() async throws {
        let receiver = try await Receiver(statuses: [200])
        let d = try await waitForFinalState(try await finishedJob(url: receiver.url))
        XCTAssertEqual(d.state, .delivered)
        try await Task.sleep(for: .milliseconds(300))
        let before = webhooks.runPasses
        try await Task.sleep(for: .seconds(1))
        let passes = webhooks.runPasses - before
        XCTAssertGreaterThan(passes, 0, "the sender still ticks")
        XCTAssertLessThan(passes, 50, "passes in one idle second after a delivery: \(passes)")
    }

    /// A 2xx is a delivery whatever its body: a receiver answering 200 with 1 MiB (past the
    /// 64 KiB the sender reads) got the event again and again as a failure.
    func testA2xxWithALargeBodyIsDelivered() async throws {
        let receiver = try await Receiver(statuses: [200], bodyBytes: 1 << 20)
        let d = try await waitForFinalState(try await finishedJob(url: receiver.url))
        XCTAssertEqual(d.state, .delivered)
        XCTAssertEqual(d.attempts, 1)
        XCTAssertEqual(receiver.received.count, 1)
    }

    func testGoneDisablesTheURLAndOtherClientErrorsFailAtOnce() async throws {
        let receiver = try await Receiver(statuses: [410])
        let first = try await waitForFinalState(try await finishedJob(url: receiver.url))
        XCTAssertEqual(first.state, .disabled)
        XCTAssertEqual(first.attempts, 1)
        let second = try await waitForFinalState(try await finishedJob(url: receiver.url))
        XCTAssertEqual(second.state, .disabled)
        XCTAssertEqual(receiver.received.count, 1, "nothing more is sent to a URL that answered 410")

        let strict = try await Receiver(statuses: [404])
        let failed = try await waitForFinalState(try await finishedJob(url: strict.url))
        XCTAssertEqual(failed.state, .failed)
        XCTAssertEqual(failed.attempts, 1)
        XCTAssertEqual(failed.log.first?.status, 404)
    }

    /// Names resolving to private, metadata or IPv4-mapped private addresses are refused
    /// before any connection; one bad address among good ones leaves only the good ones.
    func testPrivateAndMetadataAddressesAreRefusedBeforeConnecting() async throws {
        for host in ["hooks.internal", "metadata.internal", "mapped.internal"] {
            let d = try await waitForFinalState(try await finishedJob(url: "http://\(host)/hook"))
            XCTAssertEqual(d.state, .failed, host)
            let all = try await webhooks.deliveries(jobID: d.jobID)
            XCTAssertEqual(all.count, 1, "one delivery per finished job: \(all.map(\.id))")
            XCTAssertEqual(d.attempts, 1, "a refused address is not retried: \(host)")
            XCTAssertNil(d.log.first?.status)
            XCTAssertTrue(d.log.first?.error?.contains("is not dialed") == true, d.log.first?.error ?? "")
        }
        XCTAssertEqual(resolved.list.withLock { $0 }, ["hooks.internal", "metadata.internal", "mapped.internal"])
        // A literal private address in the URL, and an https:// URL (the same guard, before any TLS).
        let literal = try await waitForFinalState(try await finishedJob(url: "http://192.168.0.10:8080/hook"))
        XCTAssertEqual(literal.state, .failed)
        XCTAssertTrue(literal.log.first?.error?.contains("192.168.0.10") == true, literal.log.first?.error ?? "")
        let tls = try await waitForFinalState(try await finishedJob(url: "https://hooks.internal/hook"))
        XCTAssertEqual(tls.state, .failed)
        XCTAssertTrue(tls.log.first?.error?.contains("is not dialed") == true, tls.log.first?.error ?? "")
    }
}
