// Cluster.ClusterManifest: DIR/cluster.json, what `spool cluster up` started and where:
// the gateway's URL and CA certificate, the engines' plain-HTTP entry, the admin key
// file, and each part (kind, name, address, pid, log). `status` and `down` read it back;
// checks from outside read it to find the cluster.
//
//   {"gateway_url":"https://127.0.0.1:8443","engine_url":"http://127.0.0.1:P",
//    "ca_certificate":"DIR/gateway/ca.pem","admin_key_file":"DIR/admin.key",
//    "data_dir":"DIR","storage":"local|s3","s3_endpoint":"http://127.0.0.1:P","s3_bucket":"spool",
//    "media_url":"https://127.0.0.1:8443/media","parts":[{"kind":"postgres","name":"postgres",
//    "address":"127.0.0.1:P","pid":N,"log":"..."}, ...]}
import JSON

public struct ClusterPart: Sendable, Equatable {
    /// `replica`: PostgreSQL's streaming replica of `postgres` (the dispatchers' reads).
    public enum Kind: String, Sendable, CaseIterable { case postgres, replica, redis, s3, dispatcher, gateway, engine }
    public var kind: Kind
    public var name: String
    /// HOST:PORT it listens on ("" for engines, which only call out).
    public var address: String
    public var pid: Int32
    public var log: String
    public init(kind: Kind, name: String, address: String, pid: Int32, log: String) {
        self.kind = kind; self.name = name; self.address = address; self.pid = pid; self.log = log
    }

    /// Whether this part still runs: its pid is alive and is still the program it was (the
    /// name in /proc/PID/comm), so a pid the kernel gave to something else since is never
    /// taken for the part, nor signalled by `down`.
    public var isRunning: Bool {
        guard DetachedProcess.isAlive(pid), let comm = ClusterFiles.read("/proc/\(pid)/comm") else { return false }
        let name = comm.hasSuffix("\n") ? String(comm.dropLast()) : comm
        switch kind {
        case .postgres, .replica: return name == "postgres"
        case .redis: return name.hasPrefix("redis-server")
        case .s3: return name == "moto_server"
        case .dispatcher, .gateway, .engine: return name == "spool"
        }
    }
}

public struct ClusterManifest: Sendable, Equatable {
    public var gatewayURL: String
    public var engineURL: String
    public var caCertificate: String
    public var adminKeyFile: String
    public var dataDirectory: String
    public var parts: [ClusterPart]
    /// The gateway's rate limits as given to `up` (nil: its defaults), for restarting it alike.
    public var ratePerKey: Int?
    public var ratePerAddress: Int?
    /// "local" or "s3"; with s3, the store's URL and bucket, and the media edge's base URL
    /// (outputs in job results are under it) when the gateway fronts the store.
    public var storage = "local"
    public var s3Endpoint: String?
    public var s3Bucket: String?
    public var mediaURL: String?

    public init(gatewayURL: String, engineURL: String, caCertificate: String, adminKeyFile: String, dataDirectory: String,
                parts: [ClusterPart], ratePerKey: Int? = nil, ratePerAddress: Int? = nil) {
        self.gatewayURL = gatewayURL; self.engineURL = engineURL; self.caCertificate = caCertificate
        self.adminKeyFile = adminKeyFile; self.dataDirectory = dataDirectory; self.parts = parts
        self.ratePerKey = ratePerKey; self.ratePerAddress = ratePerAddress
    }

    public var jsonText: String {
        var w = JSONWriter()
        w.beginObject()
        w.field("gateway_url", gatewayURL)
        w.field("engine_url", engineURL)
        w.field("ca_certificate", caCertificate)
        w.field("admin_key_file", adminKeyFile)
        w.field("data_dir", dataDirectory)
        if let r = ratePerKey { w.field("rate_per_key", r) }
        if let r = ratePerAddress { w.field("rate_per_address", r) }
        w.field("storage", storage)
        if let e = s3Endpoint { w.field("s3_endpoint", e) }
        if let b = s3Bucket { w.field("s3_bucket", b) }
        if let m = mediaURL { w.field("media_url", m) }
        w.key("parts")
        w.beginArray()
        for p in parts {
            w.beginObject()
            w.field("kind", p.kind.rawValue)
            w.field("name", p.name)
            w.field("address", p.address)
            w.key("pid"); w.int(Int64(p.pid))
            w.field("log", p.log)
            w.endObject()
        }
        w.endArray()
        w.endObject()
        return w.text + "\n"
    }

    public init(parsing text: String) throws(ClusterError) {
        do {
            let doc = try JSONDocument(parsing: text)
            let root = doc.root
            func field(_ v: JSONValue, _ name: String) throws -> String {
                guard let f = v[name] else { throw ClusterError("cluster.json: \(name) is missing") }
                return try f.string()
            }
            var parts: [ClusterPart] = []
            guard let list = root["parts"] else { throw ClusterError("cluster.json: parts is missing") }
            for p in list.elements {
                guard let kind = ClusterPart.Kind(rawValue: try field(p, "kind")), let pid = try p["pid"]?.int64(),
                      let pid32 = Int32(exactly: pid) else {
                    throw ClusterError("cluster.json: a part with an unknown kind or no pid")
                }
                parts.append(ClusterPart(kind: kind, name: try field(p, "name"), address: try field(p, "address"), pid: pid32,
                                         log: try field(p, "log")))
            }
            self.init(gatewayURL: try field(root, "gateway_url"), engineURL: try field(root, "engine_url"),
                      caCertificate: try field(root, "ca_certificate"), adminKeyFile: try field(root, "admin_key_file"),
                      dataDirectory: try field(root, "data_dir"), parts: parts,
                      ratePerKey: try root["rate_per_key"]?.int(), ratePerAddress: try root["rate_per_address"]?.int())
            storage = try root["storage"]?.string() ?? "local"
            s3Endpoint = try root["s3_endpoint"]?.string()
            s3Bucket = try root["s3_bucket"]?.string()
            mediaURL = try root["media_url"]?.string()
        } catch let e as ClusterError {
            throw e
        } catch {
            throw ClusterError("cluster.json is damaged: \(error)")
        }
    }
}
