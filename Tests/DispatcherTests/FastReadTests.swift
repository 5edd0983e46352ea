// GET /api/v1/jobs/{id} on the HTTP server's fast lane (Dispatcher/FastReads.swift) against
// the full path, over real loopback HTTP with the production router: the lane's answer is
// the full path's, header for header and byte for byte (Date aside); what it cannot be sure
// of (another tenant, an unknown or revoked key, a conditional request, HEAD, a changed
// job) is answered by the full path, and a revoked key is refused at once.
import Dispatcher
import Foundation
import JSON
import Ring
import Web
import XCTest

final class FastReadTests: XCTestCase {
    struct Answer {
        let status: Int
        let headers: [(name: String, value: String)]
        let text: String
        let lane: Bool
    }

    func get(_ h: AccessHarness, _ path: String, key: String?, method: String = "GET",
             headers: [(name: String, value: String)] = []) async throws -> Answer {
        let before = h.http.fastAnswerCount
        let r = try await h.call(method, path, key: key, headers: headers)
        let answered = h.http.fastAnswerCount - before
        XCTAssertLessThanOrEqual(answered, 1)
        return Answer(status: r.status, headers: r.headers, text: r.text, lane: answered == 1)
    }

    /// A tenant key, an input file and a job of that tenant.
    func setUpJob(_ h: AccessHarness, admin: String, tenant: String) async throws -> (key: String, job: String, keyID: String) {
        let created = try await h.call("POST", "/api/v1/keys", key: admin, body: #"{"tenant":"\#(tenant)"}"#)
        XCTAssertEqual(created.status, 201, created.text)
        let key = try json(created.text)["secret"]!.string(), keyID = try json(created.text)["id"]!.string()
        let file = try await h.call("POST", "/api/v1/files", key: key, body: "input of \(tenant)")
        XCTAssertEqual(file.status, 201, file.text)
        let fileID = try json(file.text)["id"]!.string()
        let job = try await h.call("POST", "/api/v1/jobs", key: key, body: #"{"input":{"file_id":"\#(fileID)"},"preset":"h264-720p"}"#,
                                   headers: [("Idempotency-Key", "fast-\(tenant)")])
        XCTAssertEqual(job.status, 201, job.text)
        return (key, try json(job.text)["id"]!.string(), keyID)
    }

    func testTheLaneAnswersExactlyWhatTheFullPathAnswers() async throws {
        let h = try await AccessHarness.start()
        let (key, job, _) = try await setUpJob(h, admin: try await h.adminKey(), tenant: "acme")
        let path = "/api/v1/jobs/\(job)"
        // The first read renders the job's JSON into the cache: the full path.
        let full = try await get(h, path, key: key, headers: [("X-Request-Id", "trace-1")])
        XCTAssertFalse(full.lane)
        let fast = try await get(h, path, key: key, headers: [("X-Request-Id", "trace-1")])
        XCTAssertTrue(fast.lane, "the second read of an unchanged job is the lane's")
        XCTAssertEqual(fast.status, 200)
        XCTAssertEqual(fast.text, full.text)
        XCTAssertEqual(fast.headers.map(\.name), full.headers.map(\.name))
        for (a, b) in zip(fast.headers, full.headers) where a.name != "Date" {
            XCTAssertEqual(a.value, b.value, a.name)
        }
        XCTAssertEqual(fast.headers.first { $0.name == "X-Request-Id" }?.value, "trace-1")
        // Without a client id the lane makes one, as the middleware does: 32 hex digits, new each time.
        let a = try await get(h, path, key: key), b = try await get(h, path, key: key)
        XCTAssertTrue(a.lane && b.lane)
        let ida = a.headers.first { $0.name == "X-Request-Id" }?.value ?? "", idb = b.headers.first { $0.name == "X-Request-Id" }?.value ?? ""
        XCTAssertEqual(ida.count, 32)
        XCTAssertTrue(ida.allSatisfy(\.isHexDigit), ida)
        XCTAssertNotEqual(ida, idb)
        // The scheme in any case and spaces before the token, as the middleware takes them.
        let spaced = try await get(h, path, key: nil, headers: [("Authorization", "bEaReR   " + key)])
        XCTAssertTrue(spaced.lane)
        XCTAssertEqual(spaced.text, full.text)
        // The lane's answers are counted in the metrics like any other.
        let metrics = try await h.call("GET", "/metrics")
        XCTAssertTrue(metrics.text.contains(#"spool_http_requests_total{method="GET",route="/api/v1/jobs/:id",status="200"} 5"#), metrics.text)
        await h.stop()
    }

    func testWhatTheLaneCannotBeSureOfGoesTheFullPath() async throws {
        let h = try await AccessHarness.start()
        let admin = try await h.adminKey()
        let (key, job, keyID) = try await setUpJob(h, admin: admin, tenant: "acme")
        let (otherKey, _, _) = try await setUpJob(h, admin: admin, tenant: "globex")
        let path = "/api/v1/jobs/\(job)"
        let first = try await get(h, path, key: key)
        XCTAssertEqual(first.status, 200)
        let etag = try XCTUnwrap(first.headers.first { $0.name == "ETag" }?.value)

        let refusals: [(what: String, answer: Answer, status: Int)] = [
            ("another tenant's job", try await get(h, path, key: otherKey), 404),
            ("an unknown key", try await get(h, path, key: "spk_unknownunknownunknownunknownunknown"), 401),
            ("no key", try await get(h, path, key: nil), 401),
            ("a malformed id", try await get(h, "/api/v1/jobs/job_nope", key: key), 404),
            ("If-None-Match", try await get(h, path, key: key, headers: [("If-None-Match", etag)]), 304),
            ("If-Modified-Since", try await get(h, path, key: key, headers: [("If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT")]), 200),
            ("If-Match", try await get(h, path, key: key, headers: [("If-Match", "\"other\"")]), 412),
            ("If-Unmodified-Since", try await get(h, path, key: key, headers: [("If-Unmodified-Since", "Sun, 06 Nov 1994 08:49:37 GMT")]), 412),
            ("HEAD", try await get(h, path, key: key, method: "HEAD"), 200),
            ("two Authorization fields", try await get(h, path, key: key, headers: [("Authorization", "Bearer " + key)]), 401),
        ]
        for r in refusals {
            XCTAssertFalse(r.answer.lane, r.what)
            XCTAssertEqual(r.answer.status, r.status, "\(r.what): \(r.answer.text)")
        }
        // An admin key sees every tenant's job, on the lane once it has been checked.
        _ = try await get(h, path, key: admin)
        let asAdmin = try await get(h, path, key: admin)
        XCTAssertTrue(asAdmin.lane)
        XCTAssertEqual(asAdmin.text, first.text)

        // A change: the next read is the full path (the new record has no JSON yet), and
        // shows the change; the one after is the lane's again.
        let cancel = try await h.call("POST", path + "/cancel", key: key)
        XCTAssertEqual(cancel.status, 200, cancel.text)
        let changed = try await get(h, path, key: key)
        XCTAssertFalse(changed.lane)
        XCTAssertEqual(try json(changed.text)["state"]?.string(), "cancelled")
        XCTAssertNotEqual(changed.headers.first { $0.name == "ETag" }?.value, etag)
        let again = try await get(h, path, key: key)
        XCTAssertTrue(again.lane)
        XCTAssertEqual(again.text, changed.text)

        // A revoked key is refused at once: the lane never answers for it.
        let revoke = try await h.call("DELETE", "/api/v1/keys/\(keyID)", key: admin)
        XCTAssertEqual(revoke.status, 204)
        let revoked = try await get(h, path, key: key)
        XCTAssertFalse(revoked.lane)
        XCTAssertEqual(revoked.status, 401)
        await h.stop()
    }

    /// A client polling a job on one keep-alive connection, the same request's bytes each
    /// time: after the lane's first answer the server replays it (new Date, new request id),
    /// until the job changes (the next answer shows the change) or the key is revoked (the
    /// next answer is 401). A replay is the lane's answer byte for byte but for those two.
    func testRepeatedPollsAreReplayedUntilTheJobOrTheKeyChanges() async throws {
        let h = try await AccessHarness.start()
        let admin = try await h.adminKey()
        let (key, job, keyID) = try await setUpJob(h, admin: admin, tenant: "acme")
        let path = "/api/v1/jobs/\(job)"
        let full = try await get(h, path, key: key)
        XCTAssertEqual(full.status, 200)
        let poller = try EventLoop.start(id: 8)
        defer { poller.shutdown() }
        let address = h.http.localAddress!, http = h.http
        let request = Array("GET \(path) HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer \(key)\r\n\r\n".utf8)
        // (status, head, body, replayed) of each poll, with the changes made between them.
        let polls = try await poller.run { () async throws -> [(Int, String, String, Bool)] in
            let conn = try await TCPConnection.connect(to: address)
            var pending: [UInt8] = []
            var out: [(Int, String, String, Bool)] = []
            func poll() async throws {
                let before = http.replayedAnswerCount
                try await conn.send(request)
                while true {
                    let text = String(decoding: pending, as: UTF8.self)
                    if let end = text.range(of: "\r\n\r\n") {
                        let head = String(text[..<end.lowerBound])
                        let length = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                            .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
                        let headBytes = text.utf8.distance(from: text.utf8.startIndex, to: end.upperBound)
                        if pending.count >= headBytes + length {
                            let status = Int(head.split(separator: " ")[1]) ?? 0
                            out.append((status, head, String(decoding: pending[headBytes..<(headBytes + length)], as: UTF8.self),
                                        http.replayedAnswerCount > before))
                            pending.removeFirst(headBytes + length)
                            return
                        }
                    }
                    guard let b = try await conn.receive(timeout: .seconds(5)) else { throw RingError(.closed, operation: "poll") }
                    pending += b.bytes
                }
            }
            for _ in 0..<4 { try await poll() }
            let cancel = try await h.call("POST", path + "/cancel", key: key)
            XCTAssertEqual(cancel.status, 200, cancel.text)
            for _ in 0..<3 { try await poll() }
            let revoke = try await h.call("DELETE", "/api/v1/keys/\(keyID)", key: admin)
            XCTAssertEqual(revoke.status, 204)
            try await poll()
            await conn.close()
            return out
        }
        XCTAssertEqual(polls.map(\.0), [200, 200, 200, 200, 200, 200, 200, 401])
        XCTAssertEqual(polls.map(\.3), [false, false, true, true, false, false, true, false])
        // On io_uring the reap replays a poll by itself once the shortcut has armed it: the
        // replays above are the reap's unless a send of Swift's was still in flight.
        if h.http.backendKind == .uring { XCTAssert((1...3).contains(h.http.reapReplayCount), "\(h.http.reapReplayCount)") }
        else { XCTAssertEqual(h.http.reapReplayCount, 0) }
        for p in polls[0..<4] { XCTAssertEqual(p.2, full.text) }
        for p in polls[4..<7] { XCTAssertEqual(try json(p.2)["state"]?.string(), "cancelled") }
        func value(_ head: String, _ name: String) -> String? {
            head.split(separator: "\r\n").first { $0.hasPrefix(name + ": ") }.map { String($0.dropFirst(name.count + 2)) }
        }
        // A replay has the lane answer's headers, in order, with a request id of its own.
        for (fresh, replay) in [(1, 2), (1, 3), (5, 6)] {
            let a = polls[fresh].1.split(separator: "\r\n"), b = polls[replay].1.split(separator: "\r\n")
            XCTAssertEqual(a.map { $0.split(separator: ":")[0] }, b.map { $0.split(separator: ":")[0] })
            for (x, y) in zip(a, b) where !x.hasPrefix("Date:") && !x.hasPrefix("X-Request-Id:") { XCTAssertEqual(x, y) }
            XCTAssertNotEqual(value(polls[fresh].1, "X-Request-Id"), value(polls[replay].1, "X-Request-Id"))
            XCTAssertEqual(value(polls[replay].1, "X-Request-Id")?.count, 32)
        }
        XCTAssertNotEqual(value(polls[3].1, "ETag"), value(polls[6].1, "ETag"))
        // Replays are counted in the metrics like any answer: 7 polls and the first read.
        let metrics = try await h.call("GET", "/metrics")
        XCTAssertTrue(metrics.text.contains(#"spool_http_requests_total{method="GET",route="/api/v1/jobs/:id",status="200"} 8"#), metrics.text)
        await h.stop()
    }
}
