// HTTPClient over TLS against a server that is not ours (Python's ssl over OpenSSL, with
// a CA made for the test): requests and responses arrive whole (bodies far larger than a
// TLS record, chunked uploads), keep-alive reuses the TLS connection, and the peer is
// verified: an untrusted CA, a name the certificate does not carry, or a server without
// TLS fail with `tlsFailed` before any request byte is sent.
import Crypto
import Foundation
import Ring
import SpoolTestSupport
import TLS
import Web
import XCTest

final class HTTPSClientTests: XCTestCase {
    var server: TLSTestServer!
    var loop: EventLoop!

    override func setUp() async throws {
        server = try TLSTestServer.start()
        loop = try EventLoop.start(id: 41)
    }

    override func tearDown() async throws {
        loop?.shutdown()
        server?.stop()
    }

    func configuration(ca: String? = nil) throws -> HTTPClientConfiguration {
        var c = HTTPClientConfiguration()
        c.tlsContext = try TLSContext(caFile: ca ?? server.caFile)
        c.totalTimeout = .seconds(20)
        return c
    }

    func withClient<T: Sendable>(_ configuration: HTTPClientConfiguration, _ body: @escaping @Sendable (HTTPClient) async throws -> T) async throws -> T {
        try await loop.withHTTPClient(configuration, body)
    }

    static func failure(_ e: any Error) -> String {
        (e as? HTTPClientError).map { "\($0.kind) \($0.message)" } ?? "\(e)"
    }

    static func pattern(_ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: $0 * 31 + 7) } }

    func testRequestsAndLargeBodiesOverOneVerifiedConnection() async throws {
        let port = server.port
        let (statuses, bodies, opened) = try await withClient(try configuration()) { c -> ([Int], [[UInt8]], Int) in
            // The name (DNS SAN) and the address (IP SAN) both verify.
            let a = try await c.get("https://localhost:\(port)/bytes?n=5")
            let big = try await c.get("https://localhost:\(port)/bytes?n=1048576")
            let ip = try await c.get("https://127.0.0.1:\(port)/bytes?n=3")
            return ([a.status, big.status, ip.status], [a.body, big.body, ip.body], c.connectionsOpened)
        }
        XCTAssertEqual(statuses, [200, 200, 200])
        XCTAssertEqual(bodies[0], Self.pattern(5))
        XCTAssertEqual(bodies[1].count, 1 << 20)
        XCTAssertTrue(bodies[1] == Self.pattern(1 << 20), "a 1 MiB body over many TLS records arrived changed")
        XCTAssertEqual(bodies[2], Self.pattern(3))
        // localhost twice on one kept-alive TLS connection, 127.0.0.1 is another origin.
        XCTAssertEqual(opened, 2)
    }

    /// `execute(_:awaiting:)`: each piece is awaited before the next is read, so a slow
    /// consumer gets the whole body at its own pace; what it throws ends the request.
    func testAnAwaitedConsumerGetsTheWholeBodyAtItsPace() async throws {
        let port = server.port
        let loop = self.loop!
        let (status, body, pieces, failure) = try await withClient(try configuration()) { c -> (Int, [UInt8], Int, String) in
            var body: [UInt8] = []
            var pieces = 0
            var status = 0
            let head = try await c.execute(ClientRequest(url: "https://localhost:\(port)/bytes?n=1048576"), awaiting: { head, bytes in
                status = head.status
                pieces += 1
                if pieces % 8 == 0 { try await loop.sleep(for: .milliseconds(2)) }   // slower than the network
                body += bytes
            })
            XCTAssertEqual(head.status, status)
            struct Stop: Error {}
            var failure = "none"
            do {
                _ = try await c.execute(ClientRequest(url: "https://localhost:\(port)/bytes?n=100000"), awaiting: { _, _ in throw Stop() })
            } catch {
                let e = error as? HTTPClientError
                failure = "\(e?.kind.description ?? "\(error)") \(e?.cause is Stop)"
            }
            return (status, body, pieces, failure)
        }
        XCTAssertEqual(status, 200)
        XCTAssertTrue(body == Self.pattern(1 << 20), "the awaited body arrived changed (\(body.count) bytes)")
        XCTAssertGreaterThan(pieces, 1)
        XCTAssertEqual(failure, "callbackFailed true")
    }

    func testUploadsArriveWhole() async throws {
        let port = server.port
        let payload = Self.pattern(300_000)
        let expected = SHA256.hash(data: payload).map { String(format: "%02x", $0) }.joined()
        let (fixed, streamed) = try await withClient(try configuration()) { c -> (String, String) in
            let r1 = try await c.execute(ClientRequest(method: "POST", url: "https://localhost:\(port)/echo-sha256", body: .bytes(payload)))
            let r2 = try await c.execute(ClientRequest(method: "POST", url: "https://localhost:\(port)/echo-sha256", body: .stream({ w in
                var i = 0
                while i < payload.count {
                    try await w.write(Array(payload[i..<min(payload.count, i + 40_000)]))
                    i += 40_000
                }
            })))
            return (String(decoding: r1.body, as: UTF8.self), String(decoding: r2.body, as: UTF8.self))
        }
        XCTAssertEqual(fixed, expected)
        XCTAssertEqual(streamed, expected)
    }

    func testAServerThatDoesNotVerifyIsRefusedBeforeTheRequest() async throws {
        let port = server.port
        // A CA that did not sign the server's certificate.
        let untrusted = try await withClient(try configuration(ca: server.strangerCAFile)) { c -> String in
            do { _ = try await c.get("https://localhost:\(port)/x"); return "answered" } catch { return Self.failure(error) }
        }
        XCTAssertTrue(untrusted.hasPrefix("tlsFailed"), untrusted)
        XCTAssertTrue(untrusted.contains("not trusted"), untrusted)
        // The system trust store does not know the test CA either.
        let system = try await withClient(HTTPClientConfiguration()) { c -> String in
            do { _ = try await c.get("https://localhost:\(port)/x"); return "answered" } catch { return Self.failure(error) }
        }
        XCTAssertTrue(system.hasPrefix("tlsFailed"), system)
        // A trusted certificate for another name: "elsewhere.test" resolved to the server.
        var misnamed = try configuration()
        misnamed.resolve = { _, p throws(RingError) in try await SocketAddress.resolve("127.0.0.1", port: p) }
        let wrongName = try await withClient(misnamed) { c -> String in
            do { _ = try await c.get("https://elsewhere.test:\(port)/x"); return "answered" } catch { return Self.failure(error) }
        }
        XCTAssertTrue(wrongName.hasPrefix("tlsFailed"), wrongName)
        XCTAssertTrue(wrongName.contains("hostname mismatch"), wrongName)
        XCTAssertTrue(server.requests().isEmpty, "a request reached the server past a failed verification")
    }

    func testAPlainHTTPServerFailsTheHandshake() async throws {
        // Our own server speaks plain HTTP: TLS to it must fail, not hang, and not send the request.
        let loop = self.loop!
        let (port, plain) = try await loop.run { () -> (UInt16, Task<Void, any Error>) in
            let l = try TCPListener(address: try SocketAddress("127.0.0.1:0"))
            let ref = Box(l)
            let t = loop.spawn { () -> Void in
                let conn = try await ref.value.accept()
                try await conn.send(Array("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".utf8))
                await conn.close()
                await ref.value.close()
            }
            return (l.localAddress.port, t)
        }
        let result = try await withClient(try configuration()) { c -> String in
            do { _ = try await c.get("https://127.0.0.1:\(port)/"); return "answered" } catch { return Self.failure(error) }
        }
        try await plain.value
        XCTAssertTrue(result.hasPrefix("tlsFailed"), result)
    }

    func testTLS12IsSpoken() async throws {
        server.stop()
        server = try TLSTestServer.start(statuses: [201], maxTLS12: true)
        let port = server.port
        let status = try await withClient(try configuration()) { c in try await c.get("https://localhost:\(port)/tls12").status }
        XCTAssertEqual(status, 201)
    }

    func testATrustFileThatIsNotThereIsAClearError() throws {
        XCTAssertThrowsError(try TLSContext(caFile: "/nonexistent/ca.pem")) { e in
            XCTAssertTrue("\(e)".contains("/nonexistent/ca.pem"), "\(e)")
        }
    }
}
