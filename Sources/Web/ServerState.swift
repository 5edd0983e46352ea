// Web.HTTPServer, state: the connections each loop serves (graceful stop, the Date
// header) and the listeners, loops and bound address the server keeps.
import Ring
import Synchronization

/// The connections one loop is serving, for graceful shutdown. Loop-confined.
final class ConnectionRegistry {
    private(set) var connections: [ObjectIdentifier: ConnectionInput] = [:]
    private(set) var draining = false
    private var dateSecond: Int64 = -1
    private var dateText = ""

    /// The HTTP `Date` value for now, formatted once per second per loop.
    var date: String {
        refreshDate()
        return dateText
    }

    /// The second `date` names now: a replayed answer rewrites its Date only when this
    /// changed since it last did (once a second, not once per answer).
    var dateSecondNow: Int64 {
        refreshDate()
        return dateSecond
    }

    private func refreshDate() {
        let now = wallClockSeconds()
        if now != dateSecond {
            dateSecond = now
            dateText = HTTPDate.format(now)
        }
    }

    /// Most connections served at once since the last trim.
    private(set) var highWater = 0

    func add(_ c: ConnectionInput) {
        connections[ObjectIdentifier(c)] = c
        highWater = max(highWater, connections.count)
    }

    private var countAtLastCheck = 0

    /// Called periodically: whether a burst passed, i.e. connections are at least `drop`
    /// below the high-water mark and stopped falling since the last check. If so, the
    /// table is rebuilt at its present size and the mark reset, and the caller should give
    /// memory back.
    func shouldTrim(drop: Int) -> Bool {
        let count = connections.count
        defer { countAtLastCheck = count }
        guard highWater >= count + drop, count >= countAtLastCheck else { return false }
        connections = Dictionary(uniqueKeysWithValues: connections.map { ($0.key, $0.value) })
        highWater = connections.count
        return true
    }
    func remove(_ c: ConnectionInput) {
        connections[ObjectIdentifier(c)] = nil
        if connections.isEmpty, let k = emptied {
            emptied = nil
            k.resume()
        }
    }

    /// Resumed when the last connection leaves (or the grace time of `waitUntilEmpty` ends).
    private var emptied: UnsafeContinuation<Void, Never>?

    /// Waits, on `loop`, until no connection is left or `grace` has passed on the loop's clock.
    func waitUntilEmpty(loop: EventLoop, grace: Duration) async {
        guard !connections.isEmpty else { return }
        let me = LoopBound(self, loop: loop)
        let timer = loop.spawn {
            try await loop.sleep(for: grace)
            if let k = me.value.emptied {
                me.value.emptied = nil
                k.resume()
            }
        }
        await withUnsafeContinuation { emptied = $0 }
        timer.cancel()
        _ = await timer.result
    }

    /// The connections in descriptor order: a stop closes them in an order that does not
    /// depend on where they sit in memory (so a simulated run replays exactly).
    var inOrder: [ConnectionInput] { connections.values.sorted { $0.conn.fd < $1.conn.fd } }

    /// Stop taking requests: returns the idle connections (to close now). A connection
    /// whose last response is still queued for the socket is not idle yet.
    func drain() -> [TCPConnection] {
        draining = true
        // The reap's replays would answer without `Connection: close`: from now on every
        // request goes to the task.
        for c in connections.values { c.conn.disarmReplay() }
        // Streaming responses (event streams) are told to end their bodies now: their
        // clients get a whole response and reconnect, instead of being cut at the end
        // of the grace period.
        for c in inOrder {
            c.stopping = true
            c.writer?.stop()
        }
        return inOrder.filter { $0.idle && $0.conn.queuedSendCount == 0 }.map(\.conn)
    }
}

final class ServerState: Sendable {
    private struct Inner {
        var loops: [(EventLoop, LoopBound<TCPListener>, LoopBound<ConnectionRegistry>, Task<Void, any Error>)] = []
        var bound: SocketAddress?
    }
    private let inner = Mutex(Inner())

    func add(loop: EventLoop, listener: LoopBound<TCPListener>, registry: LoopBound<ConnectionRegistry>,
             trimmer: Task<Void, any Error>, address: SocketAddress) {
        inner.withLock { $0.loops.append((loop, listener, registry, trimmer)); $0.bound = address }
    }

    var address: SocketAddress? { inner.withLock { $0.bound } }

    var loops: [EventLoop] { inner.withLock { $0.loops.map(\.0) } }

    func takeAll() -> [(EventLoop, LoopBound<TCPListener>, LoopBound<ConnectionRegistry>, Task<Void, any Error>)] {
        inner.withLock { i in
            defer { i.loops = [] }
            return i.loops
        }
    }
}
