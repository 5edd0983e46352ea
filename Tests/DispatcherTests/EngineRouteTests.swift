// GET|HEAD /api/v1/engines/{id} and GET /api/v1/engines (state filter, pagination) over
// real loopback HTTP; no credential or hash in any answer.
import Engines
import Foundation
import JSON
import SpoolModel
import XCTest

final class EngineRouteTests: XCTestCase {
    func testGetHeadAndListEngines() async throws {
        let h = try await AccessHarness.start()
        let key = try await h.adminKey()
        var ids: [String] = []
        for i in 0..<3 {
            let e = try await h.dispatch.engines.register(name: "e\(i)", host: "10.0.0.\(i)", tags: ["gpu"],
                                                          capabilitiesJSON: #"{"codecs":["h264"]}"#, credential: "engine-credential-\(i)-xyz")
            ids.append(e.id.text)
            h.clock.advance(by: .milliseconds(1))
        }
        try await h.dispatch.engines.heartbeat(EngineID(ids[1])!, load: 0.25, state: .draining)

        let one = try await h.call("GET", "/api/v1/engines/\(ids[1])", key: key)
        XCTAssertEqual(one.status, 200, one.text)
        let e = try json(one.text)
        XCTAssertEqual(try e["id"]?.string(), ids[1])
        XCTAssertEqual(try e["state"]?.string(), "draining")
        XCTAssertEqual(try e["load"]?.double(), 0.25)
        // Times are RFC 3339, as for jobs and files.
        let record = try await h.dispatch.engines.get(EngineID(ids[1])!)
        XCTAssertEqual(try e["last_heartbeat_at"]?.string(), RFC3339.format(record!.lastHeartbeat))
        XCTAssertEqual(try e["registered_at"]?.string(), RFC3339.format(record!.registered))
        XCTAssertEqual(try e["capabilities"]?["codecs"]?[0]?.string(), "h264")
        XCTAssertEqual(try e["tags"]?[0]?.string(), "gpu")
        XCTAssertFalse(one.text.contains("credential"))

        let head = try await h.call("HEAD", "/api/v1/engines/\(ids[1])", key: key)
        XCTAssertEqual(head.status, 200)
        XCTAssertEqual(head.text, "")
        XCTAssertEqual(head.headers.first { $0.name.lowercased() == "content-length" }?.value,
                       one.headers.first { $0.name.lowercased() == "content-length" }?.value)

        for bad in ["eng_01ARZ3NDEKTSV4RRFFQ69G5FAV", "nope", "%FF%FE"] {
            let r = try await h.call("GET", "/api/v1/engines/\(bad)", key: key)
            XCTAssertEqual(r.status, 404, bad)
        }
        let unauth = try await h.call("GET", "/api/v1/engines/\(ids[0])")
        XCTAssertEqual(unauth.status, 401)

        let page1 = try json(try await h.call("GET", "/api/v1/engines?limit=2", key: key).text)
        XCTAssertEqual(try page1["total_count"]?.int(), 3)
        XCTAssertEqual(try page1["data"]!.elements.map { try $0["id"]!.string() }, Array(ids[0..<2]))
        let next = try page1["next_page_url"]!.string()
        let page2 = try json(try await h.call("GET", next, key: key).text)
        XCTAssertEqual(try page2["data"]!.elements.map { try $0["id"]!.string() }, [ids[2]])
        XCTAssertTrue(page2["next_page_url"]!.isNull)

        let draining = try json(try await h.call("GET", "/api/v1/engines?state=draining", key: key).text)
        XCTAssertEqual(try draining["total_count"]?.int(), 1)
        XCTAssertEqual(try draining["data"]?[0]?["id"]?.string(), ids[1])
        let badState = try await h.call("GET", "/api/v1/engines?state=sleepy", key: key)
        XCTAssertEqual(badState.status, 422)
        let emptyState = try await h.call("GET", "/api/v1/engines?state=", key: key)
        XCTAssertEqual(emptyState.status, 422, "an empty filter is not an absent one")
        // A cursor made for one filter is refused with another.
        let cursor = next.components(separatedBy: "cursor=").last!
        let swapped = try await h.call("GET", "/api/v1/engines?state=online&cursor=\(cursor)", key: key)
        XCTAssertEqual(swapped.status, 400)
        await h.stop()
    }
}
