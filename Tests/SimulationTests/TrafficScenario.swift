// SimulationTests, the HTTP traffic scenario and its checkers: a server and several
// clients on one simulated loop. Each client (a real Web.HTTPClient with a small per-origin
// bound, so callers queue for connections) is shared by a few tasks making requests with
// buffered, chunked-streamed and file-stored bodies, large and chunked responses and slow
// handlers; rogue connections send half a head and then reset, stall or leave. Checkers:
// every request ends in exactly one outcome, a correct response or a clean client error (in
// a calm run, without resets or delays, only the timeouts the plan expects); no handler saw
// a request more often than the client may retry it; at the end no operation slot, pool
// buffer or descriptor is left, and the run ends within the simulated-time bound (the
// simulator reports a hang otherwise).
// Non-goals: performance; checking error bodies (WebTests does).
import BufferPool
import Ring
import Simulation
import Threads
import Web

struct CheckFailure: Error, CustomStringConvertible {
    var description: String
}

/// One planned request and what a correct answer is.
struct PlannedRequest: @unchecked Sendable {   // ClientRequest's closures are @Sendable
    var id: String
    var request: ClientRequest
    var expectStatus: Int
    var expectBody: [UInt8]
    /// A slow handler past the client's read timeout: a timeout is the right outcome.
    var mayTimeOut: Bool
    /// How often the server may see it (the client retries replayable idempotent requests once).
    var timesMax: Int
    var isStore: Bool
}

/// What the clients observed. Loop-confined.
final class Observations: @unchecked Sendable {
    var violations: [String] = []
    var responses = 0
    var cleanErrors = 0
    var planned: [PlannedRequest] = []
}

enum TrafficScenario {
    static func plan(_ rng: inout SimRandom, id: String, readTimeout: Duration) -> PlannedRequest {
        let base = "http://\(TrafficServer.address)"
        let hdr = [(name: "X-Req", value: id)]
        func req(_ method: String, _ path: String, _ body: ClientBody = .none) -> ClientRequest {
            ClientRequest(method: method, url: base + path, headers: hdr, body: body)
        }
        switch rng.below(7) {
        case 0:
            return PlannedRequest(id: id, request: req("GET", "/hello"), expectStatus: 200, expectBody: Array("hello".utf8), mayTimeOut: false, timesMax: 2, isStore: false)
        case 1:
            let body = pattern(rng.below(4) == 0 ? rng.int(in: 60_000...120_000) : rng.int(in: 0...20_000), salt: rng.below(256))
            return PlannedRequest(id: id, request: req("POST", "/echo", .bytes(body)), expectStatus: 200, expectBody: body, mayTimeOut: false, timesMax: 1, isStore: false)
        case 2:
            let pieces = (0..<rng.int(in: 1...6)).map { _ in pattern(rng.int(in: 1...20_000), salt: rng.below(256)) }
            let all = pieces.flatMap { $0 }
            let body = ClientBody.stream { w in for p in pieces { try await w.write(p) } }
            return PlannedRequest(id: id, request: req("PUT", "/upload", body), expectStatus: 200,
                                  expectBody: Array("\(all.count) \(fnv(all))".utf8), mayTimeOut: false, timesMax: 1, isStore: false)
        case 3:
            let n = rng.below(3) == 0 ? rng.int(in: 50_000...200_000) : rng.int(in: 0...5_000)
            return PlannedRequest(id: id, request: req("GET", "/bytes/\(n)"), expectStatus: 200, expectBody: pattern(n, salt: n), mayTimeOut: false, timesMax: 2, isStore: false)
        case 4:
            let n = rng.int(in: 1...100_000)
            return PlannedRequest(id: id, request: req("GET", "/chunked/\(n)"), expectStatus: 200, expectBody: pattern(n, salt: n), mayTimeOut: false, timesMax: 2, isStore: false)
        case 5:
            let ms = rng.int(in: 0...4_000)
            let limitMs = Int(readTimeout.components.seconds) * 1000
            return PlannedRequest(id: id, request: req("GET", "/slow/\(ms)"), expectStatus: 200, expectBody: Array("slow".utf8),
                                  mayTimeOut: ms + 500 >= limitMs, timesMax: 2, isStore: false)
        default:
            let body = pattern(rng.int(in: 0...50_000), salt: rng.below(256))
            return PlannedRequest(id: id, request: req("PUT", "/store/\(id)", .bytes(body)), expectStatus: 201,
                                  expectBody: Array("\(body.count) \(fnv(body))".utf8), mayTimeOut: false, timesMax: 2, isStore: true)
        }
    }

    /// The whole scenario; throws a CheckFailure naming every violated invariant.
    static func run(_ ctx: SimContext) async throws {
        let loop = ctx.loop
        let faults = ctx.backend.faults
        let serverConfig = try TrafficServer.configuration(&ctx.rng)
        let ledger = Ledger()
        let server = HTTPServer(configuration: serverConfig, router: TrafficServer.router(loop: loop, ledger: ledger), logger: TrafficServer.quietLogger)
        try await server.start(on: [loop])

        let clientCount = ctx.rng.int(in: 1...4)
        let rogues = ctx.rng.int(in: 0...2)
        var clientConfig = HTTPClientConfiguration()
        clientConfig.maxConnectionsPerOrigin = ctx.rng.int(in: 1...3)
        clientConfig.readTimeout = .seconds(ctx.rng.int(in: 2...10))
        clientConfig.totalTimeout = .seconds(60)
        clientConfig.connectTimeout = .seconds(5)
        // Reuse only connections the server still keeps (a real deployment's setting).
        clientConfig.idleTimeout = serverConfig.idleTimeout - .seconds(1)
        // A connection the client closed still counts against the server's cap until the
        // server sees the close, so only a roomy cap makes refusals impossible.
        let calm = faults.isCalm && server.configuration.connectionsMax == TrafficServer.connectionsMaxRoomy

        let seen = Observations()
        var tasks: [Task<Void, any Error>] = []
        var clients: [HTTPClient] = []
        for c in 0..<clientCount {
            let client = HTTPClient(configuration: clientConfig, loop: loop)
            clients.append(client)
            for t in 0..<ctx.rng.int(in: 1...3) {
                var rng = SimRandom(seed: ctx.rng.next())
                let plans = (0..<rng.int(in: 1...6)).map { i in plan(&rng, id: "c\(c)t\(t)r\(i)", readTimeout: clientConfig.readTimeout) }
                seen.planned += plans
                let box = ClientBox(client)
                tasks.append(loop.spawn {
                    for p in plans {
                        let outcome: Result<ClientResponse, any Error>
                        do { outcome = .success(try await box.client.execute(p.request)) } catch { outcome = .failure(error) }
                        check(p, outcome, calm: calm, faults: faults, into: seen)
                    }
                })
            }
        }
        for r in 0..<rogues {
            let rng = SimRandom(seed: ctx.rng.next())
            tasks.append(loop.spawn { try await rogue(r, rng, calm: calm, into: seen) })
        }
        for t in tasks { _ = try? await t.value }
        for c in clients { await c.shutdown() }
        await server.stop(grace: .seconds(5))
        try await loop.sleep(for: .seconds(1))   // let cancelled timers deliver their completions

        for p in seen.planned {
            let times = ledger.handled[p.id] ?? 0
            if times > p.timesMax { seen.violations.append("\(p.id): the server handled it \(times) times (at most \(p.timesMax) allowed)") }
            if calm && times != 1 { seen.violations.append("\(p.id): a calm run, yet the server handled it \(times) times") }
        }
        if loop.operationsInFlight != 0 { seen.violations.append("\(loop.operationsInFlight) operations still in flight at the end") }
        if loop.pool.freeBuffers != loop.pool.bufferCount {
            seen.violations.append("pool buffers not free at the end: \(loop.pool.userHeldBuffers) held by users, \(loop.pool.kernelHeldBuffers) by the backend")
        }
        if ctx.backend.openDescriptorCount != 0 { seen.violations.append("\(ctx.backend.openDescriptorCount) descriptors still open at the end") }
        if !seen.violations.isEmpty {
            throw CheckFailure(description: "\(seen.violations.count) violations (\(seen.responses) responses, \(seen.cleanErrors) clean errors, calm: \(calm); "
                               + "\(clientCount) clients with \(clientConfig.maxConnectionsPerOrigin) connections each, \(rogues) rogues, "
                               + "server cap \(server.configuration.connectionsMax), \(server.memoryTrimCount) trims):\n    "
                               + seen.violations.prefix(8).joined(separator: "\n    "))
        }
    }

    /// One request's outcome against its plan.
    static func check(_ p: PlannedRequest, _ outcome: Result<ClientResponse, any Error>, calm: Bool, faults: FaultWeights, into seen: Observations) {
        switch outcome {
        case .success(let r):
            seen.responses += 1
            if p.isStore && r.status == 507 && faults.noSpace > 0 { return }
            if r.status != p.expectStatus {
                seen.violations.append("\(p.id) \(p.request.method) \(p.request.url): status \(r.status), expected \(p.expectStatus): \(String(decoding: r.body.prefix(200), as: UTF8.self))")
            } else if r.body != p.expectBody {
                seen.violations.append("\(p.id) \(p.request.method) \(p.request.url): a body of \(r.body.count) bytes differs from the expected \(p.expectBody.count)")
            }
        case .failure(let error):
            seen.cleanErrors += 1
            guard let e = error as? HTTPClientError else {
                seen.violations.append("\(p.id): not a client error: \(error)")
                return
            }
            let clean: Bool
            switch e.kind {
            case .timedOut: clean = !calm || p.mayTimeOut
            case .connectionClosed, .connectFailed: clean = !calm
            case .malformedResponse: clean = !calm && e.message.contains("closed")
            default: clean = false
            }
            if !clean { seen.violations.append("\(p.id) \(p.request.method) \(p.request.url): \(e) (calm run: \(calm))") }
        }
    }

    /// A misbehaving peer: half a request head, then a reset, a stall until the server's
    /// head deadline (which must answer 408), or a full request and a close without reading.
    static func rogue(_ n: Int, _ seed: SimRandom, calm: Bool, into seen: Observations) async throws {
        var rng = seed
        let conn = try await TCPConnection.connect(to: try SocketAddress(TrafficServer.address), timeout: .seconds(5))
        let head = "GET /hello HTTP/1.1\r\nHost: sim\r\nX-Req: rogue\(n)\r\n"
        do {
            switch rng.below(3) {
            case 0:
                try await conn.send(Array(head.utf8))
                conn.setResetOnClose()
            case 1:
                try await conn.send(Array(head.utf8))
                var got: [UInt8] = []
                while let b = try await conn.receive(timeout: .seconds(30)) { got += b.bytes }
                if calm && !got.starts(with: Array("HTTP/1.1 408".utf8)) {
                    seen.violations.append("rogue \(n): a stalled head got \(String(decoding: got.prefix(40), as: UTF8.self).debugDescription), not a 408")
                }
            default:
                try await conn.send(Array((head + "\r\n").utf8))
            }
        } catch {
            if calm { seen.violations.append("rogue \(n): \(error) in a calm run") }
        }
        await conn.close()
    }
}

/// Carries a loop-confined client into a task on the same loop.
struct ClientBox: @unchecked Sendable {
    let client: HTTPClient
    init(_ client: HTTPClient) { self.client = client }
}
