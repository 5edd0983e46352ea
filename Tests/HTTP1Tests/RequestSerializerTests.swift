// Request heads for clients: serialized heads read back by our own strict request parser,
// and every way a method, target or field could inject a line refused with a reason,
// leaving the output untouched. Responses get the same field rules (FieldSyntax).
@testable import HTTP1
import XCTest

final class RequestSerializerTests: XCTestCase {
    func testSerializedRequestHeadParsesBack() throws {
        let head = OutgoingRequestHead(method: "POST", target: "/api/v1/jobs?x=1",
                                       headers: [("Host", "127.0.0.1:8080"), ("X-Note", "a\tb ~"), ("Content-Length", "0")])
        var out: [UInt8] = []
        try head.serialize(into: &out)
        XCTAssertEqual(String(decoding: out, as: UTF8.self),
                       "POST /api/v1/jobs?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nX-Note: a\tb ~\r\nContent-Length: 0\r\n\r\n")
        var parser = RequestHeadParser()
        let parsed = try out.withUnsafeBytes { raw in try parser.parse(raw) }
        let p = try XCTUnwrap(parsed)
        out.withUnsafeBytes { raw in
            XCTAssertEqual(p.string(p.method, in: raw), "POST")
            XCTAssertEqual(p.originForm(in: raw), "/api/v1/jobs?x=1")
            XCTAssertEqual(p.value(of: "x-note", in: raw), "a\tb ~")
        }
        XCTAssertEqual(p.headLength, out.count)
    }

    func testInjectionIsRefusedAndNothingIsWritten() {
        let host = ("Host", "example")
        let cases: [(OutgoingRequestHead, String)] = [
            (OutgoingRequestHead(method: "GET", target: "/", headers: [host, ("X-Note", "a\r\nX-Injected: 1")]),
             "header X-Note has a control character (CR, LF, NUL...) in its value"),
            (OutgoingRequestHead(method: "GET", target: "/", headers: [host, ("X-Note", "a\nb")]),
             "header X-Note has a control character (CR, LF, NUL...) in its value"),
            (OutgoingRequestHead(method: "GET", target: "/", headers: [host, ("X-Note", "a\u{0}b")]),
             "header X-Note has a control character (CR, LF, NUL...) in its value"),
            (OutgoingRequestHead(method: "GET", target: "/", headers: [host, ("X-Note\r\nX-Injected", "1")]),
             "header name \"X-Note\\r\\nX-Injected\" is not a token"),
            (OutgoingRequestHead(method: "GET", target: "/", headers: [host, ("X Note", "1")]),
             "header name \"X Note\" is not a token"),
            (OutgoingRequestHead(method: "GET", target: "/", headers: [host, ("", "1")]),
             "header name \"\" is not a token"),
            (OutgoingRequestHead(method: "GET / HTTP/1.1\r\nX: y\r\n\r\nGET", target: "/", headers: [host]),
             "\"GET / HTTP/1.1\\r\\nX: y\\r\\n\\r\\nGET\" is not a method"),
            (OutgoingRequestHead(method: "", target: "/", headers: [host]), "\"\" is not a method"),
            (OutgoingRequestHead(method: "GET", target: "/a b", headers: [host]),
             "request target \"/a b\" must be visible ASCII (percent-encode the rest)"),
            (OutgoingRequestHead(method: "GET", target: "/a\r\nX: y", headers: [host]),
             "request target \"/a\\r\\nX: y\" must be visible ASCII (percent-encode the rest)"),
            (OutgoingRequestHead(method: "GET", target: "", headers: [host]),
             "request target \"\" must be visible ASCII (percent-encode the rest)"),
        ]
        for (head, reason) in cases {
            var out: [UInt8] = Array("kept".utf8)
            XCTAssertThrowsError(try head.serialize(into: &out), reason) { error in
                XCTAssertEqual((error as? HeadSerializationError)?.reason, reason)
            }
            XCTAssertEqual(out, Array("kept".utf8), "nothing is written for \(reason)")
        }
    }

    func testResponsesAndRequestsShareTheFieldRules() {
        for (name, value) in [("X-Note", "a\r\nb"), ("X Note", "v"), ("X-Note", "ok\u{7F}"), ("", "v"), ("X-Note", "tab\tok")] {
            let request = OutgoingRequestHead(method: "GET", target: "/", headers: [(name, value)])
            XCTAssertEqual(ResponseHead.isValidField(name: name, value: value), (try? request.validate()) != nil, "\(name): \(value)")
        }
    }
}
