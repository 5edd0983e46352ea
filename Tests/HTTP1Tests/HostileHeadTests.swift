// Request heads from the hostile-client probe (issue 9): bare LF line ends and floods of
// empty lines are refused as soon as they arrive (not at the head deadline), and
// absolute-form targets (RFC 9112 §3.2.2) are accepted and split into authority and path.
@testable import HTTP1
import XCTest

final class HostileHeadTests: XCTestCase {
    /// Feeds `text` once; the outcome without waiting for more bytes.
    func feed(_ text: String) -> Outcome {
        var p = RequestHeadParser()
        return parseOnce(&p, Array(text.utf8))
    }

    func testBareLFIsRefusedBeforeTheHeadIsComplete() {
        // No CRLF CRLF ever comes in a bare-LF request: the parser must not wait for one.
        XCTAssertEqual(feed("GET / HTTP/1.1\n"), .error(400))
        XCTAssertEqual(feed("GET / HTTP/1.1\nHost: a\n\n"), .error(400))
        XCTAssertEqual(feed("GET / HTTP/1.1\r\nHost: a\n"), .error(400))
        XCTAssertEqual(feed("\n"), .error(400))
        XCTAssertEqual(feed("GET / HTTP/1.1\r\nHost: a\rX"), .error(400))
        // A CR waiting for its LF is not an error yet.
        XCTAssertEqual(feed("GET / HTTP/1.1\r"), .incomplete)
        XCTAssertEqual(feed("GET / HTTP/1.1\r\nHost: a\r\n\r"), .incomplete)
        // Every way of feeding agrees.
        for text in ["GET / HTTP/1.1\nHost: a\n\n", "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", "GET /\rx HTTP/1.1\r\n\r\n"] {
            XCTAssertEqual(parseAllWays(Array(text.utf8)), .error(400), text.debugDescription)
        }
    }

    func testLeadingEmptyLinesAreCapped() throws {
        let few = String(repeating: "\r\n", count: RequestHeadParser.emptyLinesMax) + "GET /x HTTP/1.1\r\nHost: a\r\n\r\n"
        guard case .head = parseAllWays(Array(few.utf8)) else { return XCTFail("a few empty lines are allowed") }
        // One more, or a thousand, is a 400 at once: no request line is waited for.
        XCTAssertEqual(feed(String(repeating: "\r\n", count: RequestHeadParser.emptyLinesMax + 1)), .error(400))
        XCTAssertEqual(feed(String(repeating: "\r\n", count: 1000)), .error(400))
        XCTAssertEqual(parseAllWays(Array((String(repeating: "\r\n", count: 1000) + "GET / HTTP/1.1\r\nHost: a\r\n\r\n").utf8)), .error(400))
    }

    func testAbsoluteFormTargets() throws {
        let cases: [(String, authority: String, target: String, origin: String)] = [
            ("http://spool.example/api/v1/health", "spool.example", "/api/v1/health", "/api/v1/health"),
            ("HTTP://h:8080/a?b=c", "h:8080", "/a?b=c", "/a?b=c"),
            ("https://h/x", "h", "/x", "/x"),
            ("http://h", "h", "", "/"),
            ("http://h?q=1", "h", "?q=1", "/?q=1"),
        ]
        for c in cases {
            let bytes = Array("GET \(c.0) HTTP/1.1\r\nHost: other\r\n\r\n".utf8)
            guard case .head(let h) = parseAllWays(bytes) else { XCTFail(c.0); continue }
            bytes.withUnsafeBytes { raw in
                XCTAssertEqual(h.authority.map { h.string($0, in: raw) }, c.authority, c.0)
                XCTAssertEqual(h.string(h.target, in: raw), c.target, c.0)
                XCTAssertEqual(h.originForm(in: raw), c.origin, c.0)
            }
        }
        // Origin form has no authority.
        let origin = Array("GET /a HTTP/1.1\r\nHost: h\r\n\r\n".utf8)
        guard case .head(let o) = parseAllWays(origin) else { return XCTFail() }
        XCTAssertNil(o.authority)
        for bad in ["ftp://h/x", "http:///x", "http://user@h/x", "http://u:p@h/"] {
            XCTAssertEqual(parseAllWays(Array("GET \(bad) HTTP/1.1\r\nHost: h\r\n\r\n".utf8)), .error(400), bad)
        }
    }
}
