// Dispatcher.ReadRouting: which requests read from PostgreSQL replicas, and how a caller
// keeps seeing its own writes (docs/adr/0013-read-replicas.md). With database.replicas set,
// every authenticated request runs inside a ReadSession:
// - GETs of the job, file, engine, key and delivery lists and of one job or engine may read
//   on a replica; everything else (writes, downloads, event streams, the engine API, the
//   scheduler, sweeps, authentication) reads on the primary.
// - The session's floor is the later of the caller's last write through this dispatcher
//   (remembered per principal) and a `Spool-Consistency-Token` the client sends (the value
//   of that header on any earlier write response, from any dispatcher): a replica serves
//   the read only once it has replayed that far, else the primary does.
// - A request that committed writes answers with `Spool-Consistency-Token`: the primary's
//   WAL position after its last commit.
import Postgres
import Synchronization
import Web

final class ConsistencyFloors: Sendable {
    /// The routes whose reads a replica may serve.
    static let replicaRoutes: Set<String> = [
        "/api/v1/jobs", "/api/v1/jobs/:id", "/api/v1/jobs/:id/webhooks", "/api/v1/files",
        "/api/v1/engines", "/api/v1/engines/:id", "/api/v1/keys",
    ]
    static let header = "Spool-Consistency-Token"
    /// Principals remembered at most (past it the oldest half is forgotten; a forgotten
    /// caller's reads are still safe once its writes are older than the replica's lag).
    static let capacity = 65_536

    private struct State {
        var floors: [String: (position: WALPosition, order: UInt64)] = [:]
        var counter: UInt64 = 0
    }
    private let state = Mutex(State())

    func floor(of principal: String) -> WALPosition? { state.withLock { $0.floors[principal]?.position } }

    func record(_ principal: String, _ p: WALPosition) {
        state.withLock { s in
            s.counter += 1
            let previous = s.floors[principal]?.position
            s.floors[principal] = (max(previous ?? p, p), s.counter)
            if s.floors.count > Self.capacity {
                let cut = s.counter - UInt64(Self.capacity / 2)
                s.floors = s.floors.filter { $0.value.order > cut }
            }
        }
    }

    /// The middleware (installed after authentication, so the principal is known).
    func middleware() -> Middleware {
        { [self] request, next in
            let principal = request.principal ?? ""
            var floor = self.floor(of: principal)
            if let sent = request.header(Self.header).flatMap({ WALPosition(text: $0) }) { floor = max(floor ?? sent, sent) }
            let reads = (request.method == "GET" || request.method == "HEAD") && Self.replicaRoutes.contains(request.route ?? "")
            let session = ReadSession(replicaAllowed: reads, notBefore: floor)
            var response = await ReadRouting.$session.withValue(session) { await next(request) }
            if let wrote = session.written {
                self.record(principal, wrote)
                response.headers.append((Self.header, wrote.text))
            }
            return response
        }
    }
}
