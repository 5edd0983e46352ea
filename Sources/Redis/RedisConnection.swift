// Redis.RedisConnection: one TCP connection to Redis on the event loop, pipelined. Any
// number of tasks on the loop send commands through it at once: each call appends its
// encoded commands to one outgoing buffer and queues a waiter for that many replies, in
// the same step, so replies (which Redis sends in command order) go back to the waiters
// in FIFO order. One task sends whatever has accumulated (commands of many callers in one
// write); one reader task parses replies and hands them out.
//
// A reply that does not come within its deadline, a malformed reply or a lost connection
// breaks the connection for good: the stream cannot be resynchronized, so every waiter
// fails with the reason and the client opens a new connection for the next command.
import BufferPool
import RESP
import Ring
import Threads

/// - warning: Loop-confined (not `Sendable`): use it on the loop that opened it.
final class RedisConnection {
    let conn: TCPConnection
    let loop: EventLoop
    private var parser: RESPParser
    private var outbox: [UInt8] = []
    private var sending = false
    /// Waiters in command order; `head` is the next to be answered.
    private var waiters: [Waiter] = []
    private var head = 0
    private(set) var failure: RedisError?
    private var reader: Task<Void, any Error>?

    final class Waiter {
        var remaining: Int
        var replies: [RESPValue] = []
        var continuation: UnsafeContinuation<Result<[RESPValue], RedisError>, Never>?
        var timer: Task<Void, any Error>?
        init(count: Int) { remaining = count; replies.reserveCapacity(count) }

        func finish(_ r: Result<[RESPValue], RedisError>) {
            timer?.cancel()
            timer = nil
            continuation?.resume(returning: r)
            continuation = nil
        }
    }

    private init(conn: TCPConnection, limits: RESPLimits) {
        self.conn = conn
        self.loop = conn.loop
        self.parser = RESPParser(limits: limits)
    }

    var isBroken: Bool { failure != nil }
    /// Commands sent whose replies have not all come.
    var waiting: Int { waiters.count - head }

    /// Connects, starts the reader, and sends `hello` (AUTH, SELECT) before anything else.
    static func open(_ endpoint: RedisEndpoint, timeout: Duration, limits: RESPLimits = RESPLimits()) async throws(RedisError) -> RedisConnection {
        let addresses: [SocketAddress]
        do { addresses = try await SocketAddress.resolve(endpoint.host, port: endpoint.port) } catch {
            throw RedisError(.connection, "cannot resolve \(endpoint.host): \(error)")
        }
        var last: RingError?
        for a in addresses {
            do {
                let c = try await TCPConnection.connect(to: a, timeout: timeout)
                let r = RedisConnection(conn: c, limits: limits)
                r.startReader()
                var hello = RESPCommand()
                if let password = endpoint.password {
                    hello.append(endpoint.user.map { ["AUTH", $0, password] } ?? ["AUTH", password])
                }
                if endpoint.database != 0 { hello.append(["SELECT", String(endpoint.database)]) }
                if hello.count > 0 {
                    for reply in try await r.send(hello, timeout: timeout) {
                        if case .error(let e) = reply {
                            await r.close()
                            throw RedisError(.server, e)
                        }
                    }
                }
                return r
            } catch let e as RingError {
                last = e
            } catch let e as RedisError {
                throw e
            } catch {
                last = nil
            }
        }
        throw RedisError(.connection, "cannot connect to Redis at \(endpoint.host):\(endpoint.port): \(last.map { "\($0)" } ?? "no address")")
    }

    /// Sends the commands (pipelined, one write with whatever else is queued) and returns
    /// their replies in order; `.error` replies are returned, not thrown. Past `timeout`
    /// without every reply the connection is broken (the stream cannot be trusted after).
    func send(_ command: RESPCommand, timeout: Duration) async throws(RedisError) -> [RESPValue] {
        if let failure { throw failure }
        guard command.count > 0 else { return [] }
        let w = Waiter(count: command.count)
        let result = await withUnsafeContinuation { (c: UnsafeContinuation<Result<[RESPValue], RedisError>, Never>) in
            w.continuation = c
            waiters.append(w)
            outbox += command.bytes
            let bound = LoopBound((self, w), loop: loop)
            w.timer = loop.spawn {
                try await Task.sleep(for: timeout)
                let (me, w) = bound.value
                if w.continuation != nil {
                    me.breakConnection(RedisError(.timedOut, "Redis did not answer within \(timeout)"))
                }
            }
            if !sending { startSending() }
        }
        return try result.get()
    }

    private func startSending() {
        sending = true
        let bound = LoopBound(self, loop: loop)
        loop.spawn {
            let me = bound.value
            defer { me.sending = false }
            while !me.outbox.isEmpty, me.failure == nil {
                let bytes = me.outbox
                me.outbox = []
                do {
                    try await me.conn.send(bytes)
                } catch {
                    me.breakConnection(RedisError(.connection, "sending to Redis failed: \(error)"))
                }
            }
        }
    }

    private func startReader() {
        let bound = LoopBound(self, loop: loop)
        reader = loop.spawn {
            let me = bound.value
            while me.failure == nil {
                let chunk: PooledBuffer?
                do { chunk = try await me.conn.receive() } catch {
                    me.breakConnection(RedisError(.connection, "the connection to Redis failed: \(error)"))
                    return
                }
                guard let chunk else {
                    me.breakConnection(RedisError(.connection, "Redis closed the connection"))
                    return
                }
                me.parser.append(chunk.bytes)
                do {
                    while let v = try me.parser.next() { me.deliver(v) }
                } catch {
                    me.breakConnection(RedisError(.protocolError, "\(error)"))
                    return
                }
            }
        }
    }

    private func deliver(_ v: RESPValue) {
        guard head < waiters.count else {
            breakConnection(RedisError(.protocolError, "Redis sent a reply nobody asked for: \(v)"))
            return
        }
        let w = waiters[head]
        w.replies.append(v)
        w.remaining -= 1
        if w.remaining == 0 {
            head += 1
            if head == waiters.count { waiters.removeAll(keepingCapacity: true); head = 0 }
            w.finish(.success(w.replies))
        }
    }

    /// Fails every waiter and closes the socket; the connection is not used again.
    func breakConnection(_ e: RedisError) {
        guard failure == nil else { return }
        failure = e
        let failed = waiters[head...]
        waiters = []
        head = 0
        for w in failed { w.finish(.failure(e)) }
        outbox = []
        let c = LoopBound(conn, loop: loop)
        loop.spawn { await c.value.close() }
    }

    func close() async {
        breakConnection(RedisError(.connection, "the connection was closed"))
        await conn.close()
    }
}
