// Web.ClientConnectionPool: HTTPClient's keep-alive connections, per origin. A request
// first takes one of the origin's `maxConnectionsPerOrigin` slots (a free one, or one
// handed over in FIFO order by a finishing request; a waiter gives up at its deadline),
// then a connection: the newest idle one still fresh, or a new one. Finished requests
// give their connection back (kept idle, at most `maxIdlePerOrigin`, or closed) and hand
// their slot to the first waiter.
import Ring
import Threads
import TLS

/// - warning: Loop-confined: owned by one HTTPClient and used on its loop.
final class ClientConnectionPool {
    private let configuration: HTTPClientConfiguration
    private let loop: EventLoop

    private struct Idle {
        let conn: any ClientTransport
        let since: MonotonicInstant
    }
    /// A request waiting for a connection slot. Resumed with true when a finishing request
    /// hands its slot over, with false when its deadline passes first.
    private final class Waiter {
        var continuation: UnsafeContinuation<Bool, Never>?
        /// Resumes the waiter with false at its deadline; cancelled when a slot comes first,
        /// so no timer outlives its wait.
        var timer: Task<Void, any Error>?
    }
    private final class OriginPool {
        var idle: [Idle] = []
        /// Requests holding a slot (at most maxConnectionsPerOrigin).
        var active = 0
        var waiters: [Waiter] = []
    }
    private var pools: [Origin: OriginPool] = [:]
    /// Connections opened over the pool's life.
    private(set) var connectionsOpened = 0

    init(configuration: HTTPClientConfiguration, loop: EventLoop) {
        self.configuration = configuration
        self.loop = loop
    }

    var idleConnectionCount: Int { pools.values.reduce(0) { $0 + $1.idle.count } }

    /// Closes the idle connections.
    func closeIdle() async {
        for p in pools.values {
            for i in p.idle { await i.conn.close() }
            p.idle.removeAll()
        }
    }

    /// A connection to `origin` and whether it was reused; every call must be matched by
    /// one `checkin`.
    func checkout(_ origin: Origin, deadline: MonotonicInstant) async throws(HTTPClientError) -> (any ClientTransport, Bool) {
        let pool = pools[origin] ?? { let p = OriginPool(); pools[origin] = p; return p }()
        try await takeSlot(pool, origin, deadline: deadline)
        // Then a connection: an idle one still fresh, or a new one.
        while let idle = pool.idle.popLast() {
            if loop.now - idle.since < configuration.idleTimeout { return (idle.conn, true) }
            await idle.conn.close()
        }
        do {
            return (try await connect(origin, deadline: deadline), false)
        } catch {
            release(pool)
            throw error
        }
    }

    /// A free slot, or one handed over (in FIFO order) by a finishing request.
    private func takeSlot(_ pool: OriginPool, _ origin: Origin, deadline: MonotonicInstant) async throws(HTTPClientError) {
        if pool.active < configuration.maxConnectionsPerOrigin {
            pool.active += 1
            return
        }
        let left = deadline - loop.now
        guard left > .zero else { throw HTTPClientError(.timedOut, "the request did not finish before its deadline") }
        let w = Waiter()
        let refs = LoopBound((w, pool), loop: loop)
        let loop = self.loop
        w.timer = loop.spawn {
            do { try await loop.sleep(for: left) } catch { return }   // cancelled: handed a slot
            let (w, pool) = refs.value
            guard let c = w.continuation else { return }
            w.continuation = nil
            pool.waiters.removeAll { $0 === w }
            c.resume(returning: false)
        }
        let handedOver = await withUnsafeContinuation { (c: UnsafeContinuation<Bool, Never>) in
            w.continuation = c
            pool.waiters.append(w)
        }
        guard handedOver else {
            throw HTTPClientError(.timedOut, "no connection to \(origin.host):\(origin.port) became free before the request's deadline")
        }
    }

    private func connect(_ origin: Origin, deadline: MonotonicInstant) async throws(HTTPClientError) -> any ClientTransport {
        var addresses: [SocketAddress]
        do {
            if let resolve = configuration.resolve {
                addresses = try await resolve(origin.host, origin.port)
            } else {
                addresses = try await SocketAddress.resolve(origin.host, port: origin.port)
            }
        } catch {
            throw HTTPClientError(.connectFailed, "\(error)", cause: error)
        }
        if let admit = configuration.admit {
            var refusals: [String] = []
            addresses = addresses.filter { a in
                guard let why = admit(a) else { return true }
                refusals.append("\(a): \(why)")
                return false
            }
            if addresses.isEmpty {
                throw HTTPClientError(.refusedAddress, "\(origin.host) is not dialed: \(refusals.joined(separator: "; "))")
            }
        }
        var lastError: RingError?
        for a in addresses {
            let timeout = try HTTPClient.remaining(deadline, configuration.connectTimeout, now: loop.now)
            let conn: TCPConnection
            do {
                conn = try await TCPConnection.connect(to: a, timeout: timeout)
            } catch {
                lastError = error
                continue
            }
            connectionsOpened += 1
            guard origin.tls else { return conn }
            return try await secure(conn, origin, deadline: deadline)
        }
        if lastError?.code == .timedOut {
            throw HTTPClientError(.timedOut, "connecting to \(origin.host):\(origin.port) took longer than \(configuration.connectTimeout)", cause: lastError)
        }
        throw HTTPClientError(.connectFailed, "cannot connect to \(origin.host):\(origin.port): \(lastError.map { "\($0)" } ?? "no address")", cause: lastError)
    }

    /// TLS on a fresh connection. The handshake gets what is left of the connect timeout;
    /// a certificate that does not verify fails the request (no other address is tried:
    /// they are the same host's).
    private func secure(_ conn: TCPConnection, _ origin: Origin, deadline: MonotonicInstant) async throws(HTTPClientError) -> TLSClientConnection {
        let left: Duration
        do { left = try HTTPClient.remaining(deadline, configuration.connectTimeout, now: loop.now) } catch {
            await conn.close()
            throw error
        }
        let context: TLSContext
        do { context = try tlsContext() } catch {
            await conn.close()
            throw error
        }
        return try await TLSClientConnection.handshake(conn, context: context, host: origin.host, timeout: left)
    }

    /// The configured trust, else the system's (loaded once per process).
    private func tlsContext() throws(HTTPClientError) -> TLSContext {
        if let c = configuration.tlsContext { return c }
        do { return try Self.systemTrust.get() } catch {
            throw HTTPClientError(.tlsFailed, error.message, cause: error)
        }
    }
    private static let systemTrust = Result { () throws(TLSError) in try TLSContext() }

    /// Returns a connection after a request: kept idle for reuse, or closed.
    func checkin(_ origin: Origin, _ conn: any ClientTransport, keep: Bool) async {
        guard let pool = pools[origin] else { await conn.close(); return }
        release(pool)
        guard keep else { await conn.close(); return }
        pool.idle.append(Idle(conn: conn, since: loop.now))
        if pool.idle.count > configuration.maxIdlePerOrigin { await pool.idle.removeFirst().conn.close() }
    }

    /// Gives up a slot: straight to the first waiter still waiting, else back to the pool.
    private func release(_ pool: OriginPool) {
        while !pool.waiters.isEmpty {
            let w = pool.waiters.removeFirst()
            if let c = w.continuation {
                w.continuation = nil
                w.timer?.cancel()
                w.timer = nil
                c.resume(returning: true)   // the slot moves to the waiter: `active` is unchanged
                return
            }
        }
        pool.active -= 1
    }
}
