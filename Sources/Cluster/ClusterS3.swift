// Cluster.ClusterS3: the object store of `spool cluster up --storage s3` when the caller
// names none (SPOOL_STORAGE_S3_ENDPOINT unset): moto's S3 server (PyPI `moto[s3]` with
// flask and flask-cors; `make test` installs it into .build/venv), on loopback, with the
// bucket `spool` made once it answers. moto keeps objects in memory and checks no
// presigned signature: a store for trying the distributed set-up on one machine, not for
// keeping media (give a real S3-compatible store in SPOOL_STORAGE_S3_* for that).
import Glibc

enum S3Part {
    static let bucket = "spool"
    /// The key pair the dispatchers sign with (moto takes any).
    static let accessKeyID = "spool-cluster"

    /// SPOOL_MOTO_SERVER, else moto_server on PATH.
    static func program() -> String? {
        if let p = getenv("SPOOL_MOTO_SERVER").map({ String(cString: $0) }), access(p, X_OK) == 0 { return p }
        return DetachedProcess.locate("moto_server", extra: [])
    }

    static func start(port: UInt16, log: String) throws(ClusterError) -> Int32 {
        guard let server = program() else {
            throw ClusterError("--storage s3 needs an S3-compatible store: set SPOOL_STORAGE_S3_ENDPOINT (and the other SPOOL_STORAGE_S3_* settings) to yours, or install moto's test server (pip install 'moto[s3]==5.2.1' flask flask-cors; SPOOL_MOTO_SERVER names its moto_server)")
        }
        return try DetachedProcess.start(server, ["moto_server", "-H", "127.0.0.1", "-p", String(port)],
                                         environment: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], log: log)
    }

    /// The bucket's policy: objects readable without a signature, which is how the
    /// gateway's media edge fetches them (nginx cannot sign). The store listens on loopback
    /// only; a real store would grant this to the edge's address alone (aws:SourceIp).
    static let edgePolicy = #"{"Version":"2012-10-17","Statement":[{"Sid":"MediaEdge","Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::spool/*"}]}"#

    /// True once the server answers and the bucket exists with its policy (made here when
    /// missing).
    static func ready(port: UInt16) -> Bool {
        guard let head = ClusterFiles.exchange(port: port, "HEAD /\(bucket) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n\r\n") else { return false }
        if !ok(head) {
            guard let made = ClusterFiles.exchange(port: port, "PUT /\(bucket) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
                  ok(made) else { return false }
        }
        let policy = "PUT /\(bucket)?policy HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nContent-Type: application/json\r\n"
            + "Content-Length: \(edgePolicy.utf8.count)\r\nConnection: close\r\n\r\n" + edgePolicy
        guard let set = ClusterFiles.exchange(port: port, policy, enough: 12) else { return false }
        return set.hasPrefix("HTTP/1.1 20") || set.hasPrefix("HTTP/1.0 20")
    }

    static func ok(_ answer: String) -> Bool { answer.hasPrefix("HTTP/1.1 200") || answer.hasPrefix("HTTP/1.0 200") }
}
