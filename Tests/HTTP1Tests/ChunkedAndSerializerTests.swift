// Chunked bodies decoded at every split point (the same bytes every way), their errors,
// and the serializers (response heads, chunk framing, SSE) read back by our own parsers.
@testable import HTTP1
import XCTest

/// Decodes `input` fed as the given pieces; returns (body, ended, consumed) or the status.
func decodeChunked(_ input: [UInt8], splits: [Int], max: UInt64 = .max) -> Result<([UInt8], Bool, Int), HTTPParseError> {
    var d = ChunkedDecoder(bodyBytesMax: max)
    var body: [UInt8] = []
    var ended = false
    var consumed = 0
    var start = 0
    for end in splits + [input.count] where end >= start {
        let piece = Array(input[start..<end])
        var events: [ChunkedDecoder.Event] = []
        do {
            let used = try withGuardPage(piece) { try d.decode($0, into: &events) }
            consumed += used
            for e in events {
                switch e {
                case .data(let r): body += piece[r]
                case .end: ended = true
                }
            }
            if ended { break }
        } catch let e as HTTPParseError {
            return .failure(e)
        } catch {
            return .failure(HTTPParseError(status: -1, "\(error)"))
        }
        start = end
    }
    return .success((body, ended, consumed))
}

final class ChunkedAndSerializerTests: XCTestCase {
    func assertSameEveryWay(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> Result<([UInt8], Bool, Int), HTTPParseError> {
        let input = Array(text.utf8)
        let whole = decodeChunked(input, splits: [])
        func same(_ a: Result<([UInt8], Bool, Int), HTTPParseError>, _ how: String) {
            switch (a, whole) {
            case (.success(let x), .success(let y)): XCTAssertTrue(x.0 == y.0 && x.1 == y.1 && x.2 == y.2, how, file: file, line: line)
            case (.failure(let x), .failure(let y)): XCTAssertEqual(x.status, y.status, how, file: file, line: line)
            default: XCTFail("\(how): \(a) vs whole \(whole)", file: file, line: line)
            }
        }
        for s in 0...input.count { same(decodeChunked(input, splits: [s]), "split \(s)") }
        same(decodeChunked(input, splits: Array(0..<input.count)), "byte by byte")
        return whole
    }

    func testValidBodies() throws {
        let cases: [(String, String, Int?)] = [
            ("5\r\nhello\r\n0\r\n\r\n", "hello", nil),
            ("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world", nil),
            ("A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n", "0123456789abcdefghij", nil),
            ("5;name=value;flag\r\nhello\r\n0;last\r\n\r\n", "hello", nil),
            ("5;q=\"a \\\" b\"\r\nhello\r\n0\r\n\r\n", "hello", nil),
            ("3\r\nabc\r\n0\r\nX-Checksum: 1234\r\nY: z\r\n\r\n", "abc", nil),
            ("0\r\n\r\n", "", nil),
            // chunk-size = 1*HEXDIG: leading zeros are a size like any other.
            ("\(String(repeating: "0", count: 40))5\r\nhello\r\n000\r\n\r\n", "hello", nil),
            // The message ends before the input: the rest belongs to the next request.
            ("2\r\nok\r\n0\r\n\r\nGET / HTTP/1.1\r\n", "ok", 12),
        ]
        for (text, body, consumed) in cases {
            guard case .success(let (got, ended, used)) = assertSameEveryWay(text) else {
                XCTFail("refused: \(text.debugDescription)")
                continue
            }
            XCTAssertEqual(String(decoding: got, as: UTF8.self), body, text.debugDescription)
            XCTAssertTrue(ended, text.debugDescription)
            XCTAssertEqual(used, consumed ?? text.utf8.count, text.debugDescription)
        }
    }

    func testIncompleteBodyIsNotEnded() {
        guard case .success(let (body, ended, _)) = decodeChunked(Array("5\r\nhel".utf8), splits: []) else { return XCTFail() }
        XCTAssertEqual(body, Array("hel".utf8))
        XCTAssertFalse(ended)
    }

    func testInvalidBodies() {
        let cases: [(String, Int)] = [
            ("fffffffffffffffff\r\n", 400),          // size overflow
            ("0001000000000000000\r\n", 400),        // 2^60 after leading zeros
            ("\r\nhello\r\n0\r\n\r\n", 400),          // missing size
            ("3\r\nhello\r\n0\r\n\r\n", 400),         // data longer than its size
            ("5\nhello\r\n0\r\n\r\n", 400),           // bare LF after size
            ("5\r\nhello\n0\r\n\r\n", 400),           // bare LF after data
            ("-5\r\nhello\r\n", 400),                 // sign
            ("5 x\r\nhello\r\n", 400),               // junk after size
            ("0\r\nX : y\r\n\r\n", 400),              // trailer with space before colon
            ("0\r\nX: a\nb\r\n\r\n", 400),            // bare LF in trailer
            ("0\r\n\r\r\n", 400),                     // bare CR ending trailers
            ("5;a\u{1}\r\nhello\r\n0\r\n\r\n", 400),  // control in extension
        ]
        for (text, status) in cases {
            guard case .failure(let e) = assertSameEveryWay(text) else {
                XCTFail("accepted: \(text.debugDescription)")
                continue
            }
            XCTAssertEqual(e.status, status, text.debugDescription)
        }
    }

    func testLeadingZerosAreBoundedPerSizeLine() {
        // Up to 64 digits a line, whatever the number of lines: padded sizes ("%08x") are
        // common, and a long body of them must not add up to a refusal.
        var events: [ChunkedDecoder.Event] = []
        var padded = ChunkedDecoder()
        let chunk = Array("00000010".utf8) + Array("\r\n".utf8) + [UInt8](repeating: 0x61, count: 16) + Array("\r\n".utf8)
        let body = Array((0..<20_000).map { _ in chunk }.joined()) + Array("00000000\r\n\r\n".utf8)
        XCTAssertNoThrow(try body.withUnsafeBytes { _ = try padded.decode($0, into: &events) })
        XCTAssertTrue(padded.isComplete)
        XCTAssertEqual(padded.bodyBytes, 20_000 * 16)
        var atMost = ChunkedDecoder()
        let sixtyFour = Array("\(String(repeating: "0", count: 63))1\r\nx\r\n0\r\n\r\n".utf8)
        XCTAssertNoThrow(try sixtyFour.withUnsafeBytes { _ = try atMost.decode($0, into: &events) })
        XCTAssertTrue(atMost.isComplete)
        // An endless size line is refused at its 65th digit.
        var endless = ChunkedDecoder()
        let zeros = [UInt8](repeating: 0x30, count: 65)
        XCTAssertThrowsError(try zeros.withUnsafeBytes { try endless.decode($0, into: &events) }) {
            XCTAssertEqual(($0 as? HTTPParseError)?.status, 400)
        }
    }

    func testBodyLimitIsCheckedBeforeTheData() {
        // The size line alone exceeds the limit: 413 before any data byte is read.
        guard case .failure(let e) = decodeChunked(Array("400\r\n".utf8), splits: [], max: 1000) else { return XCTFail() }
        XCTAssertEqual(e.status, 413)
        guard case .success = decodeChunked(Array("3E8\r\n".utf8), splits: [], max: 1000) else { return XCTFail("1000 bytes fit") }
    }

    func testResponseHeadSerializesToWhatAStrictParserAccepts() {
        let head = ResponseHead(status: 200, headers: [("Content-Type", "application/json"), ("Content-Length", "2")])
        XCTAssertEqual(String(decoding: head.bytes, as: UTF8.self),
                       "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n")
        XCTAssertEqual(ResponseHead(status: 431).reason, "Request Header Fields Too Large")
        XCTAssertEqual(ResponseHead(status: 299).reason, "Status 299")
    }

    func testChunkedEncodingRoundTrips() {
        var out: [UInt8] = []
        let pieces = [Array("hello".utf8), [], Array(repeating: UInt8(0x61), count: 300)]
        for p in pieces { ChunkedEncoding.chunk(p, into: &out) }
        out += ChunkedEncoding.lastChunk
        XCTAssertTrue(String(decoding: out.prefix(10), as: UTF8.self).hasPrefix("5\r\nhello\r\n"))
        guard case .success(let (body, ended, used)) = decodeChunked(out, splits: [7, 100]) else { return XCTFail() }
        XCTAssertEqual(body, pieces.flatMap { $0 })
        XCTAssertTrue(ended)
        XCTAssertEqual(used, out.count)
    }

    func testServerSentEvents() {
        var out: [UInt8] = []
        ServerSentEvent(event: "progress", id: "7", data: "{\"frames\":10}").serialize(into: &out)
        ServerSentEvent(data: "line1\nline2\r\nline3\rline4").serialize(into: &out)
        XCTAssertEqual(String(decoding: out, as: UTF8.self),
                       "event: progress\nid: 7\ndata: {\"frames\":10}\n\n"
                       + "data: line1\ndata: line2\ndata: line3\ndata: line4\n\n")
    }
}

final class ChunkedOverheadTests: XCTestCase {
    /// Extensions and trailers carry no body: a stream of them is cut off at the overhead cap
    /// instead of flowing for ever under the body limit.
    func testExtensionsAndTrailersAreCapped() {
        var d = ChunkedDecoder(bodyBytesMax: 1 << 20, overheadBytesMax: 1000)
        var events: [ChunkedDecoder.Event] = []
        let chunk = Array("1;name=\(String(repeating: "v", count: 90))\r\nx\r\n".utf8)
        var failure: HTTPParseError?
        for _ in 0..<20 where failure == nil {
            do {
                _ = try chunk.withUnsafeBytes { try d.decode($0, into: &events) }
            } catch {
                failure = error as? HTTPParseError
            }
        }
        XCTAssertEqual(failure?.status, 431)
        var t = ChunkedDecoder(bodyBytesMax: 1 << 20, overheadBytesMax: 1000)
        let trailers = Array(("0\r\n" + String(repeating: "X-T: 123456789012345678901234567890\r\n", count: 40) + "\r\n").utf8)
        XCTAssertThrowsError(try trailers.withUnsafeBytes { try t.decode($0, into: &events) })
        var ok = ChunkedDecoder(bodyBytesMax: 1 << 20)
        XCTAssertNoThrow(try trailers.withUnsafeBytes { try ok.decode($0, into: &events) })
        XCTAssertTrue(ok.isComplete)
    }
}
