// Request heads: a table of valid and invalid requests, each fed whole, at every split
// point, one byte at a time, and ending against a PROT_NONE guard page. Every way must
// give the same result. Smuggling shapes are all refused with 400.
@testable import HTTP1
import SpoolTestSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Copies `bytes` so they end exactly where an inaccessible page starts; any read past the
/// end faults instead of passing silently.
func withGuardPage<R>(_ bytes: [UInt8], _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    let pages = (bytes.count + page - 1) / page + 1
    let total = (pages + 1) * page
    let base = mmap(nil, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)!
    defer { munmap(base, total) }
    let guardStart = base + pages * page
    mprotect(guardStart, page, PROT_NONE)
    let start = guardStart - bytes.count
    bytes.withUnsafeBytes { start.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
    return try body(UnsafeRawBufferPointer(start: start, count: bytes.count))
}

enum Outcome: Equatable {
    case head(RequestHead)
    case incomplete
    case error(Int)
}

func parseOnce(_ parser: inout RequestHeadParser, _ bytes: [UInt8]) -> Outcome {
    do {
        let r = try withGuardPage(bytes) { try parser.parse($0) }
        return r.map(Outcome.head) ?? .incomplete
    } catch let e as HTTPParseError {
        return .error(e.status)
    } catch {
        return .error(-1)
    }
}

/// Parses `input` whole, at every split point, byte by byte; asserts all agree and returns
/// the outcome.
func parseAllWays(_ input: [UInt8], limits: HTTPLimits = HTTPLimits(), file: StaticString = #filePath, line: UInt = #line) -> Outcome {
    var whole = RequestHeadParser(limits: limits)
    let expected = parseOnce(&whole, input)
    func agree(_ prefixOutcome: Outcome, final: Bool, _ how: String) {
        switch (prefixOutcome, expected) {
        case (.incomplete, _) where !final: break
        case (.error(let a), .error(let b)) where a == b: break
        // A prefix may already hold the whole head (the rest is body or the next request).
        case (let got, let want) where got == want: break
        default: XCTFail("\(how): got \(prefixOutcome), whole input gives \(expected)", file: file, line: line)
        }
    }
    // Every split point for inputs up to 2 KiB; a prime stride (plus both ends) above that,
    // since each feeding copies the prefix and the limit cases are 8-40 KiB long.
    let stride = input.count <= 2048 ? 1 : 97
    for split in Swift.stride(from: 0, through: input.count, by: stride) {
        var p = RequestHeadParser(limits: limits)
        let first = parseOnce(&p, Array(input[..<split]))
        if case .error = first { agree(first, final: false, "split \(split) (prefix)"); continue }
        agree(first, final: split == input.count, "split \(split) (prefix)")
        if split < input.count { agree(parseOnce(&p, input), final: true, "split \(split)") }
    }
    var p = RequestHeadParser(limits: limits)
    for k in Swift.stride(from: 1, through: max(1, input.count), by: stride) + [input.count] {
        let o = parseOnce(&p, Array(input[..<min(k, input.count)]))
        if case .error = o { agree(o, final: false, "byte \(k)"); break }
        agree(o, final: k >= input.count, "byte \(k)")
    }
    return expected
}

final class RequestHeadTests: XCTestCase {
    func head(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> (RequestHead, [UInt8])? {
        let bytes = Array(text.utf8)
        guard case .head(let h) = parseAllWays(bytes, file: file, line: line) else {
            XCTFail("not parsed: \(text.debugDescription)", file: file, line: line)
            return nil
        }
        return (h, bytes)
    }

    func status(_ text: String, limits: HTTPLimits = HTTPLimits(), file: StaticString = #filePath, line: UInt = #line) -> Int? {
        if case .error(let s) = parseAllWays(Array(text.utf8), limits: limits, file: file, line: line) { return s }
        return nil
    }

    func testSimpleGet() throws {
        let (h, b) = try XCTUnwrap(head("GET /api/v1/health HTTP/1.1\r\nHost: spool\r\nAccept: */*\r\n\r\n"))
        b.withUnsafeBytes { raw in
            XCTAssertEqual(h.string(h.method, in: raw), "GET")
            XCTAssertEqual(h.string(h.target, in: raw), "/api/v1/health")
            XCTAssertEqual(h.value(of: "host", in: raw), "spool")
            XCTAssertEqual(h.value(of: "accept", in: raw), "*/*")
        }
        XCTAssertEqual(h.version, .http1_1)
        XCTAssertEqual(h.framing, .none)
        XCTAssertTrue(h.keepAlive)
        XCTAssertEqual(h.headLength, b.count)
        XCTAssertEqual(h.fields.count, 2)
    }

    func testFramingAndConnectionSemantics() throws {
        XCTAssertEqual(head("POST /jobs HTTP/1.1\r\nHost: a\r\nContent-Length: 42\r\n\r\n")?.0.framing, .contentLength(42))
        XCTAssertEqual(head("POST /jobs HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")?.0.framing, BodyFraming.none)
        XCTAssertEqual(head("POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n")?.0.framing, .chunked)
        XCTAssertEqual(head("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, close\r\n\r\n")?.0.keepAlive, false)
        XCTAssertEqual(head("GET / HTTP/1.0\r\n\r\n")?.0.keepAlive, false)
        XCTAssertEqual(head("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")?.0.keepAlive, true)
        XCTAssertEqual(head("PUT /f HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n")?.0.expectsContinue, true)
    }

    /// RFC 9110 §2.5: a later minor version of HTTP/1 is processed as 1.1, with 1.1's rules
    /// (Host required, keep-alive by default).
    func testALaterMinorVersionIsReadAsHTTP11() throws {
        let (h, _) = try XCTUnwrap(head("GET / HTTP/1.2\r\nHost: a\r\n\r\n"))
        XCTAssertEqual(h.version, .http1_1)
        XCTAssertTrue(h.keepAlive)
        XCTAssertEqual(head("GET / HTTP/1.9\r\nHost: a\r\n\r\n")?.0.version, .http1_1)
        XCTAssertEqual(status("GET / HTTP/1.2\r\nAccept: */*\r\n\r\n"), 400, "no Host, as in 1.1")
    }

    func testEmptyLinesBeforeTheRequestLineAreIgnored() throws {
        let (h, b) = try XCTUnwrap(head("\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n"))
        b.withUnsafeBytes { XCTAssertEqual(h.string(h.target, in: $0), "/x") }
        XCTAssertEqual(h.headLength, b.count)
    }

    func testValuesAreTrimmedAndObsTextAllowed() throws {
        let (h, b) = try XCTUnwrap(head("GET / HTTP/1.1\r\nHost:  \t a b \t \r\nX-Name: caf\u{e9}\r\nEmpty:\r\n\r\n"))
        b.withUnsafeBytes { raw in
            XCTAssertEqual(h.value(of: "host", in: raw), "a b")
            XCTAssertEqual(h.value(of: "x-name", in: raw), "caf\u{e9}")
            XCTAssertEqual(h.value(of: "empty", in: raw), "")
        }
    }

    func testPipelinedRequestsParseOneAtATime() throws {
        let two = Array("GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        var p = RequestHeadParser()
        let first = try two.withUnsafeBytes { try XCTUnwrap(try p.parse($0)) }
        let rest = Array(two[first.headLength...])
        p.reset()
        let second = try rest.withUnsafeBytes { try XCTUnwrap(try p.parse($0)) }
        rest.withUnsafeBytes { XCTAssertEqual(second.string(second.target, in: $0), "/b") }
        XCTAssertEqual(first.headLength + second.headLength, two.count)
    }

    func testSmugglingShapesAreRefused() {
        let cases: [(String, String)] = [
            ("TE and CL together", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
            ("CL then TE", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
            ("duplicate CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"),
            ("CL list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n"),
            ("CL sign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n"),
            ("CL negative", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"),
            ("CL hex", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n"),
            ("CL empty", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n"),
            ("CL overflow", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n"),
            ("TE gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"),
            ("TE chunked not final", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
            ("TE list", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            ("TE twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
            ("TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            ("TE with space before colon", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n"),
            ("obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n"),
            ("bare CR in value", "GET / HTTP/1.1\r\nHost: a\r\nX: 1\r2\r\n\r\n"),
            ("bare LF in value", "GET / HTTP/1.1\r\nHost: a\r\nX: 1\n2\r\n\r\n"),
            ("bare LF line end", "GET / HTTP/1.1\nHost: a\r\n\r\n"),
            ("NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\u{0}b\r\n\r\n"),
            ("bad name char", "GET / HTTP/1.1\r\nHost: a\r\nX(y): 1\r\n\r\n"),
            ("empty name", "GET / HTTP/1.1\r\nHost: a\r\n: 1\r\n\r\n"),
            ("bad method", "G@T / HTTP/1.1\r\nHost: a\r\n\r\n"),
            ("two spaces", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n"),
            ("space in target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"),
            ("lowercase version", "GET / http/1.1\r\nHost: a\r\n\r\n"),
            ("HTTP/1.10", "GET / HTTP/1.10\r\nHost: a\r\n\r\n"),
            ("HTTP/1.x", "GET / HTTP/1.x\r\nHost: a\r\n\r\n"),
            ("HTTP/01.1", "GET / HTTP/01.1\r\nHost: a\r\n\r\n"),
            ("HTTP/2", "GET / HTTP/2\r\nHost: a\r\n\r\n"),
            ("missing Host", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"),
            ("two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            ("bare LF before the request line", "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
        ]
        for (name, text) in cases {
            XCTAssertEqual(status(text), 400, name)
        }
    }

    func testLimitsHaveTheirStatus() {
        XCTAssertEqual(status("GET /\(String(repeating: "a", count: 9000)) HTTP/1.1\r\nHost: a\r\n\r\n"), 414)
        // 414 as soon as the line is too long, before its end arrives.
        var p = RequestHeadParser()
        let long = Array("GET /\(String(repeating: "a", count: 8300))".utf8)
        XCTAssertThrowsError(try long.withUnsafeBytes { try p.parse($0) }) { XCTAssertEqual(($0 as? HTTPParseError)?.status, 414) }

        XCTAssertEqual(status("GET / HTTP/1.1\r\nHost: a\r\nX: \(String(repeating: "v", count: 8200))\r\n\r\n"), 431)
        let many = (0..<101).map { "X-\($0): v\r\n" }.joined()
        XCTAssertEqual(status("GET / HTTP/1.1\r\nHost: a\r\n\(many)\r\n"), 431)
        let big = (0..<5).map { "X-\($0): \(String(repeating: "v", count: 7000))\r\n" }.joined()
        XCTAssertEqual(status("GET / HTTP/1.1\r\nHost: a\r\n\(big)\r\n"), 431)
        XCTAssertEqual(status("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505)
        XCTAssertEqual(status("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n"), 417)
        var tight = HTTPLimits()
        tight.headerCountMax = 2
        XCTAssertEqual(status("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n", limits: tight), 431)
    }

    /// Random bytes and random mutations of valid heads never crash the parser, and every
    /// way of feeding them agrees (bounded: 600 inputs from a fixed seed).
    func testRandomInputsAgreeAcrossFeedings() {
        var g = SplitMix(seed: 7)
        let seeds = ["GET / HTTP/1.1\r\nHost: a\r\n\r\n", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n",
                     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"].map { Array($0.utf8) }
        let alphabet: [UInt8] = Array("GETPOST /HTP1.0\r\n:;,aA-\t \u{0}".utf8) + [0x80, 0xFF]
        for i in 0..<600 {
            var input = seeds[i % seeds.count]
            for _ in 0..<(1 + Int(g.next() % 4)) {
                let at = Int(g.next() % UInt64(input.count))
                switch g.next() % 3 {
                case 0: input[at] = alphabet[Int(g.next() % UInt64(alphabet.count))]
                case 1: input.insert(alphabet[Int(g.next() % UInt64(alphabet.count))], at: at)
                default: input.remove(at: at)
                }
            }
            if input.count > 80 { input = Array(input.prefix(80)) }
            if input.isEmpty { continue }
            _ = parseAllWays(input)
        }
    }
}
