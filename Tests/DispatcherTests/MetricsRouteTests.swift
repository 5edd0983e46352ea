// GET /metrics: Prometheus text with request counts by route pattern (never the raw
// path), 404s as `unmatched`, database timings, upload/download bytes and the gauges the
// scrape hooks refresh; two servers in one process keep separate registries.
import Dispatcher
import Foundation
import XCTest

final class MetricsRouteTests: XCTestCase {
    func testScrapeCountsRequestsByRoutePattern() async throws {
        let h = try await AccessHarness.start()
        let key = try await h.adminKey()
        h.dispatch.metrics.onScrape { m in
            m.setJobs(state: "pending", count: 7)
            m.setQueueDepth(7)
        }
        h.dispatch.metrics.recordUpload(bytes: 1_000)
        h.dispatch.metrics.recordDownload(bytes: 250)
        for id in ["eng_01ARZ3NDEKTSV4RRFFQ69G5FAV", "eng_01ARZ3NDEKTSV4RRFFQ69G5FAW"] {
            let r = try await h.call("GET", "/api/v1/engines/\(id)", key: key)
            XCTAssertEqual(r.status, 404)
        }
        _ = try await h.call("GET", "/api/v1/health")
        _ = try await h.call("GET", "/no/such/thing")
        _ = try await h.call("GET", "/api/v1/engines")   // 401
        // A wrong method on a known path: counted under that path's route, not unmatched.
        let wrong = try await h.call("PUT", "/api/v1/health")
        XCTAssertEqual(wrong.status, 405)
        // Refused before routing: counted too, as unmatched (the head was never routed).
        let big = try await h.call("GET", "/api/v1/health", headers: [("X-Big", String(repeating: "v", count: 9_000))])
        XCTAssertEqual(big.status, 431)

        let scrape = try await h.call("GET", "/metrics")
        XCTAssertEqual(scrape.status, 200)
        XCTAssertTrue(scrape.headers.contains { $0.name.lowercased() == "content-type" && $0.value.hasPrefix("text/plain") })
        let text = scrape.text
        func has(_ line: String) { XCTAssertTrue(text.contains(line), "missing \(line) in:\n\(text)") }
        has(#"spool_http_requests_total{method="GET",route="/api/v1/engines/:id",status="404"} 2"#)
        has(#"spool_http_requests_total{method="GET",route="/api/v1/health",status="200"} 1"#)
        has(#"spool_http_requests_total{method="GET",route="unmatched",status="404"} 1"#)
        has(#"spool_http_requests_total{method="GET",route="/api/v1/engines",status="401"} 1"#)
        has(#"spool_http_requests_total{method="other",route="unmatched",status="431"} 1"#)
        has(#"spool_http_requests_total{method="PUT",route="/api/v1/health",status="405"} 1"#)
        has(#"spool_http_request_duration_seconds_count{method="GET",route="/api/v1/engines/:id",status="404"} 2"#)
        has("spool_upload_bytes_total 1000")
        has("spool_download_bytes_total 250")
        has(#"spool_jobs{state="pending"} 7"#)
        has("spool_queue_depth 7")
        has(#"spool_db_query_duration_seconds_count{kind="read"}"#)
        XCTAssertFalse(text.contains("FAV"), "a raw path reached a label")
        // Every family says what it counts, once, just before its TYPE line.
        has("# HELP spool_http_requests_total HTTP requests answered, by method, matched route pattern and status.\n# TYPE spool_http_requests_total counter")
        has("# HELP spool_jobs Jobs by state, refreshed at each scrape.\n# TYPE spool_jobs gauge")
        let types = text.split(separator: "\n").filter { $0.hasPrefix("# TYPE ") }.count
        let helps = text.split(separator: "\n").filter { $0.hasPrefix("# HELP ") }.count
        XCTAssertEqual(helps, types, text)

        // Conditional answers are counted with the status the client got (304, 412), not
        // the 200 the route made before the server applied the condition.
        let jobID = try await h.submitJob(key: key, idempotencyKey: "metrics-conditional")
        let job = try await h.call("GET", "/api/v1/jobs/\(jobID)", key: key)
        let tag = try XCTUnwrap(job.headers.first { $0.name.lowercased() == "etag" }?.value)
        let notModified = try await h.call("GET", "/api/v1/jobs/\(jobID)", key: key, headers: [("If-None-Match", tag)])
        XCTAssertEqual(notModified.status, 304)
        let failed = try await h.call("GET", "/api/v1/jobs/\(jobID)", key: key, headers: [("If-Match", "\"other\"")])
        XCTAssertEqual(failed.status, 412)
        let again = try await h.call("GET", "/metrics").text
        for line in [#"spool_http_requests_total{method="GET",route="/api/v1/jobs/:id",status="304"} 1"#,
                     #"spool_http_requests_total{method="GET",route="/api/v1/jobs/:id",status="412"} 1"#,
                     #"spool_http_requests_total{method="GET",route="/api/v1/jobs/:id",status="200"} 1"#] {
            XCTAssertTrue(again.contains(line), "missing \(line) in:\n\(again)")
        }

        // A second server in the same process starts from zero.
        let other = try await AccessHarness.start()
        let fresh = try await other.call("GET", "/metrics")
        XCTAssertFalse(fresh.text.contains("spool_upload_bytes_total 1000"))
        XCTAssertFalse(fresh.text.contains("/api/v1/engines/:id"))
        await other.stop()
        await h.stop()
    }
}
