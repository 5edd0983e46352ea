// A server may answer a request before it has read the body and close the connection
// (RFC 9112 §9.6): a 413 for a body too large, an S3 server's 404 for a part of an upload it
// no longer knows. The rest of the body then meets a reset connection; the client hands
// the caller the answer that arrived rather than the reset. A connection closed without
// an answer is still an error.
import Ring
import Web
import XCTest

final class EarlyResponseTests: XCTestCase {
    /// A server that reads one request head, then `answer`s (if any) and closes with the
    /// body unread (so its kernel resets the connection); its value is how many body bytes
    /// it had received.
    func server(_ loop: EventLoop, answer: String?) async throws -> (UInt16, Task<Int, any Error>) {
        try await loop.run { () -> (UInt16, Task<Int, any Error>) in
            let l = try TCPListener(address: try SocketAddress("127.0.0.1:0"))
            let ref = Box(l)
            let t = loop.spawn { () -> Int in
                let c = try await ref.value.accept()
                var got: [UInt8] = []
                let end = Array("\r\n\r\n".utf8)
                while true {
                    guard let piece = try await c.receive(timeout: .seconds(10)) else { break }
                    piece.withUnsafeBytes { got.append(contentsOf: $0) }
                    if let r = got.firstRange(of: end) { got = Array(got[r.upperBound...]); break }
                }
                if let answer { try await c.send(Array(answer.utf8)) }
                await c.close()
                await ref.value.close()
                return got.count
            }
            return (l.localAddress.port, t)
        }
    }

    func testAnAnswerBeforeTheBodyIsReadIsTheResponse() async throws {
        let loop = try EventLoop.start(id: 9)
        defer { loop.shutdown() }
        for streamed in [false, true] {
            let (port, server) = try await server(loop, answer: "HTTP/1.1 413 Content Too Large\r\nContent-Length: 14\r\nConnection: close\r\n\r\nbody too large")
            // 32 MiB: far more than the socket buffers hold, so the client is still sending
            // when the server's reset arrives.
            let size = 32 << 20
            let body: ClientBody = streamed
                ? .stream { writer in
                    let piece = [UInt8](repeating: 0x61, count: 1 << 20)
                    for _ in 0..<(size >> 20) { try await writer.write(piece) }
                }
                : .bytes([UInt8](repeating: 0x61, count: size))
            let request = ClientRequest(method: "PUT", url: "http://127.0.0.1:\(port)/upload", body: body)
            let r = try await loop.withHTTPClient(HTTPClientConfiguration()) { c in try await c.execute(request) }
            XCTAssertEqual(r.status, 413, "streamed: \(streamed)")
            XCTAssertEqual(String(decoding: r.body, as: UTF8.self), "body too large")
            let received = try await server.value
            XCTAssertLessThan(received, size, "the server read the whole body: the answer was not early (streamed: \(streamed))")
        }
    }

    func testAConnectionClosedWithoutAnAnswerIsStillAnError() async throws {
        let loop = try EventLoop.start(id: 9)
        defer { loop.shutdown() }
        let (port, server) = try await server(loop, answer: nil)
        let request = ClientRequest(method: "PUT", url: "http://127.0.0.1:\(port)/upload", body: .bytes([UInt8](repeating: 0x62, count: 32 << 20)))
        do {
            let r = try await loop.withHTTPClient(HTTPClientConfiguration()) { c in try await c.execute(request) }
            XCTFail("a response out of nothing: \(r.status)")
        } catch let e as HTTPClientError {
            XCTAssertEqual(e.kind, .connectionClosed, "\(e)")
        }
        _ = try await server.value
    }
}
