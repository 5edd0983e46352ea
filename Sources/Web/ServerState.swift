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
        let now = wallClockSeconds()
        if now != dateSecond {
            dateSecond = now
            dateText = HTTPDate.format(now)
        }
        return dateText
    }

    func add(_ c: ConnectionInput) { connections[ObjectIdentifier(c)] = c }
    func remove(_ c: ConnectionInput) { connections[ObjectIdentifier(c)] = nil }

    /// Stop taking requests: returns the idle connections (to close now).
    func drain() -> [TCPConnection] {
        draining = true
        return connections.values.filter(\.idle).map(\.conn)
    }
}

/// A loop-confined object carried into a task on the same loop.
struct LoopRef<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

final class ServerState: Sendable {
    private struct Inner: @unchecked Sendable {   // listeners are only used on their loops
        var loops: [(EventLoop, LoopRef<TCPListener>, LoopRef<ConnectionRegistry>)] = []
        var bound: SocketAddress?
    }
    private let inner = Mutex(Inner())

    func add(loop: EventLoop, listener: LoopRef<TCPListener>, registry: LoopRef<ConnectionRegistry>, address: SocketAddress) {
        inner.withLock { $0.loops.append((loop, listener, registry)); $0.bound = address }
    }

    var address: SocketAddress? { inner.withLock { $0.bound } }

    func takeAll() -> [(EventLoop, LoopRef<TCPListener>, LoopRef<ConnectionRegistry>)] {
        inner.withLock { i in
            defer { i.loops = [] }
            return i.loops
        }
    }
}
