// SimulationTests, the server side of the HTTP traffic scenario: the real Web.HTTPServer
// on the simulated loop with routes that exercise what can go wrong (buffered and streamed
// request bodies, large and chunked responses, handlers that take simulated time, a file
// round trip through the simulated disk), and a ledger that counts how often each request
// id reached a handler (the checkers' "exactly once" evidence).
// Non-goals: routing or parsing coverage (WebTests and HTTP1Tests have that).
import BufferPool
import Logging
import Ring
import Simulation
import Threads
import Web
#if canImport(Glibc)
import Glibc
#endif

/// What the server saw, by request id (X-Req). Loop-confined.
final class Ledger: @unchecked Sendable {
    private(set) var handled: [String: Int] = [:]
    func saw(_ req: Request) {
        if let id = req.header("X-Req") { handled[id, default: 0] += 1 }
    }
}

/// Deterministic bytes for a body of `count` bytes (`salt` varies them per request): a
/// slice of one table, so debug builds do not spend the run generating bytes.
func pattern(_ count: Int, salt: Int = 0) -> [UInt8] {
    let start = salt & 0xFFF
    return Array(patternTable[start..<(start + min(count, patternTable.count - start))])
}

let patternTable: [UInt8] = (0..<(262_144 + 4096)).map { UInt8(truncatingIfNeeded: ($0 &* 31) ^ ($0 >> 7)) }

/// FNV-1a, continued over `bytes`.
func fnv(_ h: inout UInt64, _ bytes: UnsafeRawBufferPointer) {
    for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
}

func fnv(_ bytes: [UInt8]) -> UInt64 {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    bytes.withUnsafeBytes { fnv(&h, $0) }
    return h
}

enum TrafficServer {
    static let address = "10.0.0.1:8080"
    /// The cap of runs that do not test it: far above what the clients open.
    static let connectionsMaxRoomy = 1000

    static var quietLogger: Logger {
        var l = Logger(label: "spool.sim.http")
        l.logLevel = .critical
        return l
    }

    static func configuration(_ rng: inout SimRandom) throws -> HTTPServerConfiguration {
        var c = HTTPServerConfiguration(listen: try SocketAddress(address))
        c.headTimeout = .seconds(rng.int(in: 2...5))
        c.idleTimeout = .seconds(rng.int(in: 3...10))
        // Body limits in simulated seconds; the rate floor is off (delay faults of up to
        // 400 ms per piece would trip it legitimately).
        c.bodyTimeLimits = BodyTimeLimits(deadline: .seconds(30), pieceTimeout: .seconds(10), rateBytesPerSecondMin: 0)
        c.sendTimeout = .seconds(10)
        // A quarter of the runs cap connections tightly (connections over the cap are reset).
        c.connectionsMax = rng.below(4) == 0 ? rng.int(in: 2...8) : connectionsMaxRoomy
        return c
    }

    static func router(loop: EventLoop, ledger: Ledger) -> Router {
        Router(logger: quietLogger) { r in
            r.get("hello") { req in
                ledger.saw(req)
                return Response(status: 200, body: Array("hello".utf8))
            }
            r.post("echo", body: .buffered(max: 1 << 20)) { req in
                ledger.saw(req)
                return Response(status: 200, body: req.body)
            }
            r.put("upload", body: .streaming(max: 1 << 22)) { req in
                ledger.saw(req)
                var n = 0
                var h: UInt64 = 0xCBF2_9CE4_8422_2325
                while try await req.bodyStream.read({ bytes in n += bytes.count; fnv(&h, bytes) }) {}
                return Response(status: 200, body: Array("\(n) \(h)".utf8))
            }
            r.get("bytes/:n") { req in
                ledger.saw(req)
                let n = Int(req.pathParameters["n"] ?? "") ?? 0
                return Response(status: 200, body: pattern(n, salt: n))
            }
            r.get("chunked/:n") { req in
                ledger.saw(req)
                let n = Int(req.pathParameters["n"] ?? "") ?? 0
                return .streaming(contentType: "application/octet-stream") { w in
                    let all = pattern(n, salt: n)
                    var at = 0
                    while at < n {
                        let k = min(n - at, 1 + (at * 7919 + n) % 9000)
                        try await w.write(Array(all[at..<(at + k)]))
                        at += k
                    }
                }
            }
            r.get("slow/:ms") { req in
                ledger.saw(req)
                try await loop.sleep(for: .milliseconds(Int(req.pathParameters["ms"] ?? "") ?? 0))
                return Response(status: 200, body: Array("slow".utf8))
            }
            r.put("store/:name", body: .buffered(max: 1 << 20)) { req in
                ledger.saw(req)
                do {
                    return try await storeAndReadBack(req.body, name: req.pathParameters["name"] ?? "x", loop: loop)
                } catch {
                    return APIError(status: 500, code: "store_failed", message: "\(error)").response
                }
            }
        }
    }

    /// Writes `body` to a temporary file, fsyncs, renames it into place, reads it back,
    /// removes it and answers with the FNV of what was read (ENOSPC: 507).
    static func storeAndReadBack(_ body: [UInt8], name: String, loop: EventLoop) async throws -> Response {
        let tmp = "/data/.tmp-\(name)", path = "/data/\(name)"
        let f = try await File.open(tmp, .createExclusive)
        var offset = 0
        while offset < body.count {
            var b = await loop.pool.acquire()
            let n = min(b.capacity, body.count - offset)
            b.withUnsafeMutableBytes { dst in body.withUnsafeBytes { dst.baseAddress!.copyMemory(from: $0.baseAddress! + offset, byteCount: n) } }
            b.count = n
            let done = await f.write(b, at: UInt64(offset))
            let result = done.result
            _ = done.takeBuffer()
            if case .failure(let e) = result {
                try await f.close()
                try await FileSystem.remove(tmp)
                if e.code == .noSpace { return APIError(status: 507, code: "no_space", message: "\(e)").response }
                throw e
            }
            offset += n
        }
        try await f.sync()
        try await f.close()
        try await FileSystem.rename(tmp, to: path)
        let status = try await FileSystem.status(path)
        guard status.size == UInt64(body.count) else { throw APIError(status: 500, code: "size", message: "statx says \(status.size), wrote \(body.count)") }
        let r = try await File.open(path, .read)
        var back: [UInt8] = []
        while back.count < body.count {
            let c = await r.read(into: await loop.pool.acquire(), at: UInt64(back.count))
            let result = c.result
            let got = c.buffer.bytes
            _ = c.takeBuffer()
            let n = try result.get()
            if n == 0 { break }
            back += got
        }
        try await r.close()
        try await FileSystem.remove(path)
        return Response(status: 201, body: Array("\(back.count) \(fnv(back))".utf8))
    }
}
