// WebTests.FileSendTests: large file responses (by splice on io_uring, otherwise read into
// pool buffers and sent 128 KiB per vectored send): whole files and ranges spanning many
// pipe fills and batches arrive byte for byte, and a client that stops reading is dropped
// after the send timeout. The second test is the one a linked timeout failed: on this
// kernel it does not interrupt a splice blocked on a full socket inside an io_uring worker,
// so the splice path takes its deadline from SO_SNDTIMEO (TCPConnection+SendFile.swift).
import Foundation
import Ring
import SpoolTestSupport
@testable import Web
import XCTest

final class FileSendTests: XCTestCase {
    var server: HTTPServer!
    var client: EventLoop!
    var dir: String!
    let content = pattern(seed: 11, count: 5 * 1024 * 1024 + 333)

    override func setUp() async throws {
        dir = NSTemporaryDirectory() + "spool-filesend-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try Data(content).write(to: URL(fileURLWithPath: dir + "/big.bin"))
        var config = HTTPServerConfiguration(listen: try SocketAddress("127.0.0.1:0"))
        config.sendTimeout = .milliseconds(300)
        let root = dir!
        let router = Router { r in
            r.get("files/:name") { req in try await Response.file(root: root, name: req.pathParameters["name"] ?? "", for: req) }
        }
        server = HTTPServer(configuration: config, router: router)
        try await server.start()
        client = try EventLoop.start(id: 12)
    }

    override func tearDown() async throws {
        await server.stop(grace: .milliseconds(50))
        client.shutdown()
        try? FileManager.default.removeItem(atPath: dir)
    }

    func testWholeFilesAndRangesAcrossManyChunksArriveIntact() async throws {
        let base = "http://\(server.localAddress!)"
        let (whole, middle, tail) = try await client.run { () -> (ClientResponse, ClientResponse, ClientResponse) in
            let c = HTTPClient()
            do {
                let r = (try await c.get("\(base)/files/big.bin"),
                         try await c.get("\(base)/files/big.bin", headers: [("Range", "bytes=100000-3000000")]),
                         try await c.get("\(base)/files/big.bin", headers: [("Range", "bytes=-262145")]))
                await c.shutdown()
                return r
            } catch {
                await c.shutdown()
                throw error
            }
        }
        XCTAssertEqual(whole.status, 200)
        XCTAssertEqual(whole.body.count, content.count)
        XCTAssertTrue(whole.body == content, "the whole file differs")
        XCTAssertEqual(middle.status, 206)
        XCTAssertTrue(middle.body == Array(content[100_000...3_000_000]), "the range differs")
        XCTAssertEqual(tail.status, 206)
        XCTAssertTrue(tail.body == Array(content[(content.count - 262_145)...]), "the suffix range differs")
    }

    func testAClientThatStopsReadingIsDroppedAfterTheSendTimeout() async throws {
        // 256 MiB (sparse): far more than the socket buffers on both sides hold.
        let huge = dir + "/huge.bin"
        XCTAssertTrue(FileManager.default.createFile(atPath: huge, contents: nil))
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: huge))
        try h.truncate(atOffset: 256 << 20)
        try h.close()
        let addr = server.localAddress!
        let server = self.server!
        let dropped = try await client.run { () -> Bool in
            let conn = try await TCPConnection.connect(to: addr)
            try await conn.send(Array("GET /files/huge.bin HTTP/1.1\r\nHost: t\r\n\r\n".utf8))
            // First the server has the connection (accepting it can take a moment)...
            var waited = 0
            while server.connectionCount == 0 && waited < 100 {
                try await EventLoop.current!.sleep(for: .milliseconds(10))
                waited += 1
            }
            guard server.connectionCount > 0 else { return false }
            // ...then, the client reading nothing, it must let go after its send timeout.
            waited = 0
            while server.connectionCount > 0 && waited < 100 {
                try await EventLoop.current!.sleep(for: .milliseconds(50))
                waited += 1
            }
            await conn.close()
            return server.connectionCount == 0
        }
        XCTAssertTrue(dropped, "the server still holds the connection of a client that stopped reading")
    }
}
