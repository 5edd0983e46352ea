// Response heads (the client side): a table of valid and invalid responses, each fed
// whole, at every split point, one byte at a time, and ending against a PROT_NONE guard
// page. Every way must give the same result; smuggling shapes are refused.
@testable import HTTP1
import XCTest

enum ResponseOutcome: Equatable {
    case head(ParsedResponseHead)
    case incomplete
    case error
}

func parseResponseOnce(_ parser: inout ResponseHeadParser, _ bytes: [UInt8], method: String) -> ResponseOutcome {
    do {
        let r = try withGuardPage(bytes) { try parser.parse($0, requestMethod: method) }
        return r.map(ResponseOutcome.head) ?? .incomplete
    } catch {
        return .error
    }
}

func parseResponseAllWays(_ input: [UInt8], method: String = "GET", file: StaticString = #filePath, line: UInt = #line) -> ResponseOutcome {
    var whole = ResponseHeadParser()
    let expected = parseResponseOnce(&whole, input, method: method)
    for split in 0...input.count {
        var p = ResponseHeadParser()
        let first = parseResponseOnce(&p, Array(input[..<split]), method: method)
        if first == .error || first == expected { continue }
        XCTAssertEqual(first, .incomplete, "split \(split): a prefix gave \(first), the whole gives \(expected)", file: file, line: line)
        XCTAssertEqual(parseResponseOnce(&p, input, method: method), expected, "split \(split)", file: file, line: line)
    }
    var p = ResponseHeadParser()
    for k in 1...max(1, input.count) {
        let o = parseResponseOnce(&p, Array(input[..<k]), method: method)
        if o == .error { XCTAssertEqual(expected, .error, "byte \(k)", file: file, line: line); break }
        if k == input.count { XCTAssertEqual(o, expected, "byte by byte", file: file, line: line) }
    }
    return expected
}

final class ResponseHeadTests: XCTestCase {
    func framing(_ text: String, method: String = "GET", file: StaticString = #filePath, line: UInt = #line) -> (ResponseFraming, Bool, Int)? {
        guard case .head(let h) = parseResponseAllWays(Array(text.utf8), method: method, file: file, line: line) else {
            XCTFail("not parsed: \(text.debugDescription)", file: file, line: line)
            return nil
        }
        return (h.framing, h.keepAlive, h.status)
    }

    func testFramingTable() {
        let rows: [(String, String, ResponseFraming, Bool, Int)] = [
            ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "GET", .contentLength(5), true, 200),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "GET", .chunked, true, 200),
            ("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n", "GET", .untilClose, false, 200),
            ("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "GET", ResponseFraming.none, true, 200),
            ("HTTP/1.1 204 No Content\r\n\r\n", "DELETE", ResponseFraming.none, true, 204),
            ("HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n", "GET", ResponseFraming.none, true, 304),
            ("HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", "HEAD", ResponseFraming.none, true, 200),
            ("HTTP/1.1 100 Continue\r\n\r\n", "POST", ResponseFraming.none, true, 100),
            ("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n", "GET", .contentLength(2), false, 200),
            ("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n", "GET", .contentLength(2), false, 200),
            ("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n", "GET", .contentLength(2), true, 200),
            ("HTTP/1.1 404 \r\nContent-Length: 2\r\n\r\n", "GET", .contentLength(2), true, 404),
            ("HTTP/1.1 500\r\nContent-Length: 2\r\n\r\n", "GET", .contentLength(2), true, 500),
            ("HTTP/1.1 200 OK\r\nX-Empty:\r\nContent-Length:  7 \r\n\r\n", "GET", .contentLength(7), true, 200),
        ]
        for (text, method, want, keep, status) in rows {
            guard let (f, k, s) = framing(text, method: method) else { continue }
            XCTAssertEqual(f, want, text.debugDescription)
            XCTAssertEqual(k, keep, text.debugDescription)
            XCTAssertEqual(s, status, text.debugDescription)
        }
    }

    func testRefusedResponses() {
        let bad = [
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",   // smuggling shape
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 3x\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\n folded: x\r\n\r\n",
            "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX: a\nb\r\n\r\n",
            "HTTP/2 200 OK\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTP/1.1 99 OK\r\n\r\n",
            "HTTP/1.1 6xx OK\r\n\r\n",
            "ICY 200 OK\r\n\r\n",
            "HTTP/1.1 200 O\u{1}K\r\n\r\n",
        ]
        for text in bad {
            XCTAssertEqual(parseResponseAllWays(Array(text.utf8)), .error, text.debugDescription)
        }
    }

    func testFieldsAreRangesOfTheInput() throws {
        let bytes = Array("HTTP/1.1 201 Created\r\nLocation: /api/v1/jobs/7\r\nContent-Length: 0\r\n\r\n".utf8)
        guard case .head(let h) = parseResponseAllWays(bytes) else { return XCTFail() }
        XCTAssertEqual(h.headLength, bytes.count)
        bytes.withUnsafeBytes { raw in
            XCTAssertEqual(h.value(of: "location", in: raw), "/api/v1/jobs/7")
            XCTAssertNil(h.value(of: "etag", in: raw))
        }
    }

    func testOversizedHeadIsRefusedBeforeItEnds() {
        var p = ResponseHeadParser()
        let big = Array(("HTTP/1.1 200 OK\r\nX: " + String(repeating: "a", count: 40_000)).utf8)
        XCTAssertEqual(parseResponseOnce(&p, big, method: "GET"), .error)
    }
}
