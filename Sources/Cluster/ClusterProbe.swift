// Cluster.ClusterProbe: plain-HTTP questions to the parts (readiness, online engines),
// asked with Spool's own client on an event loop of the probe's own.
import JSON
import Ring
import Web

final class ClusterProbe: Sendable {
    let loop: EventLoop

    init() throws(ClusterError) {
        do { loop = try EventLoop.start(id: 950) } catch { throw ClusterError("no event loop for the probes: \(error)") }
    }

    func shutdown() { loop.shutdown() }

    /// GET `url`; the status and body, or nil when nothing answered in 5 s.
    func get(_ url: String, key: String? = nil) async -> (status: Int, body: [UInt8])? {
        let headers: [(name: String, value: String)] = key.map { [("Authorization", "Bearer " + $0)] } ?? []
        return try? await loop.run { () async throws -> (status: Int, body: [UInt8]) in
            var c = HTTPClientConfiguration()
            c.connectTimeout = .seconds(2)
            c.totalTimeout = .seconds(5)
            let client = HTTPClient(configuration: c)
            do {
                let r = try await client.execute(ClientRequest(method: "GET", url: url, headers: headers))
                await client.shutdown()
                return (r.status, r.body)
            } catch {
                await client.shutdown()
                throw error
            }
        }
    }

    /// 200 from `base`/api/v1/ready.
    func ready(_ base: String) async -> Bool { await get(base + "/api/v1/ready")?.status == 200 }

    /// How many engines the dispatcher at `base` lists online.
    func onlineEngines(_ base: String, key: String) async -> Int {
        guard let r = await get(base + "/api/v1/engines?state=online&limit=1", key: key), r.status == 200,
              let doc = try? JSONDocument(parsing: r.body), let n = try? doc.root["total_count"]?.int() else { return 0 }
        return n
    }
}
