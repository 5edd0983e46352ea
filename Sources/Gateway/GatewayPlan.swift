// Gateway: what the nginx gateway in front of the dispatchers is made of, as plain values:
// the validated settings (GatewayPlan), the nginx configuration rendered from them
// (NginxConfig) and the openssl steps that make its certificate authority and server
// certificate (CertificateSteps). Pure: it starts nothing and touches no file; `spool
// gateway` (SpoolCLI) writes what it renders and runs the programs. The template is Swift
// code rather than a file with placeholders, so every value that goes into it is checked
// where it is inserted (a name nginx would read as syntax is refused, not quoted).

/// A refused gateway setting, naming the setting.
public struct GatewayError: Error, Sendable, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// HOST:PORT with HOST an IPv4 address or a DNS name (no IPv6 literal yet), PORT 1...65535.
public struct HostPort: Sendable, Equatable, CustomStringConvertible {
    public let host: String
    public let port: Int

    public init(_ text: String, setting: String) throws(GatewayError) {
        guard let colon = text.lastIndex(of: ":") else { throw GatewayError("\(setting): \(text.debugDescription) is not HOST:PORT") }
        let host = String(text[..<colon]), portText = text[text.index(after: colon)...]
        guard !portText.isEmpty, portText.count <= 5, portText.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
              let port = Int(portText), (1...65_535).contains(port) else {
            throw GatewayError("\(setting): the port of \(text.debugDescription) is not 1...65535")
        }
        guard HostPort.isPlainHost(host) else {
            throw GatewayError("\(setting): \(host.debugDescription) is not an IPv4 address or a host name (letters, digits, '-', '.')")
        }
        self.host = host
        self.port = port
    }

    public var description: String { "\(host):\(port)" }

    /// Whether the host is an IPv4 address (four numbers 0...255) rather than a name.
    public var isIPv4: Bool {
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { p in !p.isEmpty && p.count <= 3 && p.allSatisfy(\.isNumber) && Int(p)! <= 255 }
    }

    /// Whether the host is a loopback address or name (127.0.0.0/8, localhost).
    public var isLoopback: Bool { host == "localhost" || (isIPv4 && host.hasPrefix("127.")) }

    /// Letters, digits, '-' and '.', 1...253 bytes: nothing nginx or openssl would read as
    /// syntax (no space, quote, semicolon, brace or comma).
    static func isPlainHost(_ host: String) -> Bool {
        !host.isEmpty && host.utf8.count <= 253 && host.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b == 0x2d || b == 0x2e
        } && !host.hasPrefix("-") && !host.hasPrefix(".")
    }
}

/// Everything the gateway is rendered from. `validate()` before use; defaults are what
/// `spool gateway` and `spool cluster up` start with.
public struct GatewayPlan: Sendable {
    /// Where clients connect (TLS 1.3).
    public var listen: HostPort
    /// The dispatchers, each listening on loopback (or a private interface) in plain HTTP.
    public var upstreams: [HostPort]
    /// A plain-HTTP listener for engines inside the trusted network (engine endpoints and
    /// health only), or nil. Engines then reach every dispatcher through the gateway too.
    public var engineListen: HostPort?
    /// The directory nginx runs in: its configuration, certificates, logs, pid, temp files.
    public var directory: String
    /// Names and addresses the server certificate is valid for, beside the listen host.
    public var certificateNames: [String] = ["localhost", "127.0.0.1"]
    /// Requests per second and burst per API key (the bearer credential), past which 429.
    public var ratePerKey = 50
    public var burstPerKey = 100
    /// Requests per second and burst per client address, whatever the key: a client trying
    /// many keys gets no fresh allowance with each.
    public var ratePerAddress = 200
    public var burstPerAddress = 400
    /// Largest request body nginx passes for everything but file uploads (which stream
    /// unbuffered; the dispatcher enforces its own file quotas).
    public var maxBodyKiB = 1_024
    /// How long an SSE event stream may be silent before nginx closes it.
    public var eventStreamTimeoutSeconds = 3_600
    /// Failures within `failTimeoutSeconds` after which a dispatcher is left alone for that long.
    public var maxFails = 2
    public var failTimeoutSeconds = 5
    /// Idle keep-alive connections nginx keeps open to the dispatchers (per worker), and
    /// how long: shorter than the dispatcher's own idle timeout (60 s), so nginx never
    /// sends a request on a connection the dispatcher is closing.
    public var keepAliveConnections = 32
    public var keepAliveSeconds = 30
    /// nginx worker processes ("auto": one per core).
    public var workers = "auto"
    /// The media edge (/media/KEY on the TLS listener, cached), or nil.
    public var media: MediaEdge?

    public init(listen: HostPort, upstreams: [HostPort], directory: String) {
        self.listen = listen
        self.upstreams = upstreams
        self.directory = directory
    }

    /// Refuses what nginx would refuse later, or misread, naming the setting.
    public func validate() throws(GatewayError) {
        guard !upstreams.isEmpty else { throw GatewayError("upstream: at least one dispatcher address is needed") }
        var seen: Set<String> = []
        for u in upstreams where !seen.insert(u.description).inserted {
            throw GatewayError("upstream: \(u) is named twice")
        }
        if let e = engineListen, e.port == listen.port, e.host == listen.host {
            throw GatewayError("engine-listen: \(e) is the TLS listen address too")
        }
        guard directory.hasPrefix("/"), GatewayPlan.isPlainPath(directory) else {
            throw GatewayError("data-dir: the gateway directory must be an absolute path without spaces, quotes, ';', '{', '}' or '$' (\(directory.debugDescription))")
        }
        for n in certificateNames where !HostPort.isPlainHost(n) {
            throw GatewayError("certificate name \(n.debugDescription) is not a host name or IPv4 address")
        }
        func positive(_ value: Int, _ name: String, max: Int) throws(GatewayError) {
            guard (1...max).contains(value) else { throw GatewayError("\(name): \(value) is not in 1...\(max)") }
        }
        try positive(ratePerKey, "rate-per-key", max: 1_000_000)
        try positive(burstPerKey, "burst-per-key", max: 1_000_000)
        try positive(ratePerAddress, "rate-per-address", max: 1_000_000)
        try positive(burstPerAddress, "burst-per-address", max: 1_000_000)
        try positive(maxBodyKiB, "max-body-kib", max: 1 << 20)
        try positive(eventStreamTimeoutSeconds, "event-stream-timeout", max: 86_400)
        try positive(maxFails, "max-fails", max: 100)
        try positive(failTimeoutSeconds, "fail-timeout", max: 3_600)
        try positive(keepAliveConnections, "keepalive-connections", max: 10_000)
        try positive(keepAliveSeconds, "keepalive-seconds", max: 59)
        guard workers == "auto" || Int(workers).map({ (1...256).contains($0) }) == true else {
            throw GatewayError("workers: \(workers.debugDescription) is not \"auto\" or 1...256")
        }
        try media?.validate()
    }

    /// Paths nginx reads unquoted: no whitespace and none of its syntax characters.
    static func isPlainPath(_ path: String) -> Bool {
        !path.isEmpty && path.unicodeScalars.allSatisfy { s in
            s.value > 0x20 && s.value != 0x7f && !"\"';{}$#\\".unicodeScalars.contains(s)
        }
    }

    /// Where everything lives inside `directory`.
    public var paths: GatewayPaths { GatewayPaths(directory: directory) }
}

/// The gateway as a caching edge in front of object storage: GET /media/KEY is fetched
/// from `origin` + `originPath` + "/" + KEY (an S3 bucket, path-style), kept in nginx's
/// cache and answered from it after (X-Cache-Status tells which). With a secret, a URL
/// must carry secure_link's md5 and expires (Storage.CDNLinks signs them): 403 without a
/// valid one, 410 once expired, so the origin never sees an unsigned request. The origin
/// must serve the objects to the edge unsigned (a bucket policy for the edge, or a store
/// on a private network); the edge sends no credentials.
public struct MediaEdge: Sendable, Equatable {
    public var origin: HostPort
    /// "/bucket" or "/bucket/prefix" (path-style); letters, digits, '-', '_', '.', '/'.
    public var originPath: String
    public var secret: String?
    /// The cache's size on disk at most, and how long an object stays fresh in it.
    public var cacheMiB = 1_024
    public var cacheSeconds = 3_600

    /// From an origin URL "http://HOST:PORT/BUCKET[/PREFIX]".
    public init(originURL: String, secret: String?) throws(GatewayError) {
        guard originURL.hasPrefix("http://") else {
            throw GatewayError("media-origin: \(originURL.debugDescription) must be http://HOST:PORT/BUCKET (plain HTTP on a trusted network)")
        }
        let rest = originURL.dropFirst(7)
        guard let slash = rest.firstIndex(of: "/") else { throw GatewayError("media-origin: \(originURL.debugDescription) names no bucket") }
        origin = try HostPort(String(rest[..<slash]), setting: "media-origin")
        var path = String(rest[slash...])
        while path.hasSuffix("/") { path.removeLast() }
        originPath = path
        self.secret = secret.flatMap { $0.isEmpty ? nil : $0 }
    }

    func validate() throws(GatewayError) {
        guard originPath.count > 1, originPath.utf8.allSatisfy({ b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b == 0x2d || b == 0x5f || b == 0x2e || b == 0x2f
        }), !originPath.contains("..") else {
            throw GatewayError("media-origin: the path \(originPath.debugDescription) must be /BUCKET[/PREFIX] of letters, digits, '-', '_', '.' and '/'")
        }
        if let secret, !((16...128).contains(secret.utf8.count) && secret.utf8.allSatisfy({ b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b == 0x2d || b == 0x5f
        })) {
            throw GatewayError("media-secret: must be 16 to 128 letters, digits, '-' and '_'")
        }
        guard (1...1_048_576).contains(cacheMiB) else { throw GatewayError("media-cache-mib: \(cacheMiB) is not in 1...1048576") }
        guard (1...31_536_000).contains(cacheSeconds) else { throw GatewayError("media-cache-seconds: \(cacheSeconds) is not in 1...31536000") }
    }
}

/// The files of one gateway directory.
public struct GatewayPaths: Sendable {
    public let directory: String
    public var configuration: String { directory + "/nginx.conf" }
    public var caCertificate: String { directory + "/ca.pem" }
    public var caKey: String { directory + "/ca.key" }
    public var serverCertificate: String { directory + "/server.pem" }
    public var serverKey: String { directory + "/server.key" }
    public var serverRequest: String { directory + "/server.csr" }
    public var serverExtensions: String { directory + "/server.ext" }
    public var pid: String { directory + "/nginx.pid" }
    public var errorLog: String { directory + "/logs/error.log" }
    public var accessLog: String { directory + "/logs/access.log" }
    public var temp: String { directory + "/temp" }
    public var mediaCache: String { directory + "/media-cache" }
}
