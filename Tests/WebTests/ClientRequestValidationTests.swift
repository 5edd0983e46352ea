// The client refuses a request it cannot send as valid HTTP (a CR/LF or NUL in a header
// value, a header name that is not a token, a method that is not one, a host that would
// break the Host line) with `invalidRequest` and a reason, before it takes a connection:
// nothing reaches the server, which sees only the valid request sent afterwards.
import HTTP1
import Ring
import Web
import XCTest

final class ClientRequestValidationTests: XCTestCase {
    func testInvalidRequestsAreRefusedBeforeAnythingIsSent() async throws {
        let loop = try EventLoop.start(id: 9)
        defer { loop.shutdown() }
        // A fake server: returns the bytes of the first request it receives, answered 204.
        let (port, server) = try await loop.run { () -> (UInt16, Task<String, any Error>) in
            let l = try TCPListener(address: try SocketAddress("127.0.0.1:0"))
            let ref = Box(l)
            let t = loop.spawn { () -> String in
                let c = try await ref.value.accept()
                var got: [UInt8] = []
                while !got.ends(with: Array("\r\n\r\n".utf8)), let piece = try await c.receive(timeout: .seconds(10)) {
                    piece.withUnsafeBytes { got.append(contentsOf: $0) }
                }
                try await c.send(Array("HTTP/1.1 204 No Content\r\n\r\n".utf8))
                try? await loop.sleep(for: .milliseconds(50))
                await c.close()
                await ref.value.close()
                return String(decoding: got, as: UTF8.self)
            }
            return (l.localAddress.port, t)
        }
        let base = "http://127.0.0.1:\(port)"
        let outcome = try await loop.run { () -> ([String], Int, Int) in
            let c = HTTPClient()
            var out: [String] = []
            let bad: [ClientRequest] = [
                ClientRequest(url: base + "/", headers: [("X-Note", "a\r\nX-Injected: 1")]),
                ClientRequest(url: base + "/", headers: [("X-Note", "a\u{0}b")]),
                ClientRequest(url: base + "/", headers: [("X-Note\r\nX-Injected", "1")]),
                ClientRequest(method: "GET / HTTP/1.1\r\nX: y\r\n\r\nGET", url: base + "/"),
                ClientRequest(method: "POST", url: base + "/", headers: [("Authorization", "Bearer t\r\n\r\nGET /admin HTTP/1.1")], body: .bytes([1, 2, 3])),
            ]
            for r in bad {
                do throws(HTTPClientError) {
                    _ = try await c.execute(r)
                    out.append("sent")
                } catch {
                    out.append("\(error.kind): \(error.message)")
                }
            }
            let opened = c.connectionsOpened
            let good = try await c.execute(ClientRequest(url: base + "/ok", headers: [("X-Note", "fine")]))
            await c.shutdown()
            return (out, opened, good.status)
        }
        XCTAssertEqual(outcome.0, [
            "invalidRequest: header X-Note has a control character (CR, LF, NUL...) in its value",
            "invalidRequest: header X-Note has a control character (CR, LF, NUL...) in its value",
            "invalidRequest: header name \"X-Note\\r\\nX-Injected\" is not a token",
            "invalidRequest: \"GET / HTTP/1.1\\r\\nX: Y\\r\\n\\r\\nGET\" is not a method",
            "invalidRequest: header Authorization has a control character (CR, LF, NUL...) in its value",
        ])
        XCTAssertEqual(outcome.1, 0, "no connection was opened for an invalid request")
        XCTAssertEqual(outcome.2, 204)
        let seen = try await server.value
        XCTAssertEqual(seen, "GET /ok HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUser-Agent: spool\r\nX-Note: fine\r\n\r\n",
                       "the server's first bytes are the valid request: nothing of the refused ones arrived")
    }
}

private extension Array where Element == UInt8 {
    func ends(with suffix: [UInt8]) -> Bool { count >= suffix.count && Array(self[(count - suffix.count)...]) == suffix }
}
