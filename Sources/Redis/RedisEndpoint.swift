// Redis.RedisEndpoint: where Redis is, from a `redis://[[user]:password@]host[:port][/db]`
// URL (the form redis-cli and every client library take), and RedisError.

public struct RedisError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, Equatable {
        /// Cannot connect, or the connection was lost (commands on it may or may not have run).
        case connection
        /// No reply within the deadline.
        case timedOut
        /// Redis answered with an error reply (`-ERR ...`, `-NOGROUP ...`, `-WRONGPASS ...`).
        case server
        /// The reply is not RESP2, or is not the shape the command returns.
        case protocolError
        /// The URL or an argument is malformed.
        case invalid
    }
    public let kind: Kind
    public let message: String
    public init(_ kind: Kind, _ message: String) { self.kind = kind; self.message = message }
    public var description: String { "redis \(kind.rawValue): \(message)" }

    /// The error reply's code (`NOGROUP`, `BUSYGROUP`, `WRONGPASS`), for `.server`.
    public var code: String? {
        guard kind == .server else { return nil }
        return message.split(separator: " ", maxSplits: 1).first.map(String.init)
    }
}

public struct RedisEndpoint: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: UInt16
    public var user: String?
    public var password: String?
    public var database: Int

    public init(host: String, port: UInt16 = 6379, user: String? = nil, password: String? = nil, database: Int = 0) {
        self.host = host; self.port = port; self.user = user; self.password = password; self.database = database
    }

    /// Parses `redis://[[user]:password@]host[:port][/db]`; IPv6 hosts in brackets.
    public init(url: String) throws(RedisError) {
        let prefix = "redis://"
        // Messages name the URL with its password hidden, as everything else shows it.
        let shown = Self.masked(url)
        guard url.hasPrefix(prefix) else {
            throw RedisError(.invalid, "a Redis URL starts with redis:// (rediss:// with TLS is not supported): \(shown)")
        }
        var rest = Substring(url.dropFirst(prefix.count))
        var user: String?
        var password: String?
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = credentials.firstIndex(of: ":") {
                let u = credentials[..<colon]
                user = u.isEmpty ? nil : try Self.unescape(u)
                password = try Self.unescape(credentials[credentials.index(after: colon)...])
            } else {
                password = try Self.unescape(credentials)
            }
        }
        var database = 0
        if let slash = rest.firstIndex(of: "/") {
            let db = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
            if !db.isEmpty {
                guard let n = Int(db), (0...1_000_000).contains(n) else { throw RedisError(.invalid, "the database number in \(shown) is not a number") }
                database = n
            }
        }
        var host = String(rest)
        var port: UInt16 = 6379
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { throw RedisError(.invalid, "unclosed [ in \(shown)") }
            host = String(rest[rest.index(after: rest.startIndex)..<close])
            let after = rest[rest.index(after: close)...]
            if after.hasPrefix(":") {
                guard let p = UInt16(after.dropFirst()), p > 0 else { throw RedisError(.invalid, "the port in \(shown) is not a port number") }
                port = p
            } else if !after.isEmpty {
                throw RedisError(.invalid, "unexpected text after ] in \(shown)")
            }
        } else if let colon = rest.lastIndex(of: ":") {
            guard let p = UInt16(rest[rest.index(after: colon)...]), p > 0 else { throw RedisError(.invalid, "the port in \(shown) is not a port number") }
            port = p
            host = String(rest[..<colon])
        }
        guard !host.isEmpty else { throw RedisError(.invalid, "no host in \(shown)") }
        self.init(host: host, port: port, user: user, password: password, database: database)
    }

    /// `url` with the password of its credentials (what is between the first ':' and the
    /// last '@' after the scheme) shown as `***`.
    public static func masked(_ url: String) -> String {
        let b = Array(url.utf8)
        var i = 0
        while i + 2 < b.count, !(b[i] == 0x3A && b[i + 1] == 0x2F && b[i + 2] == 0x2F) { i += 1 }
        guard i + 2 < b.count else { return url }
        let start = i + 3
        guard let at = b[start...].lastIndex(of: 0x40) else { return url }
        let colon = b[start..<at].firstIndex(of: 0x3A)
        let kept: ArraySlice<UInt8> = colon.map { b[..<($0 + 1)] } ?? b[..<start]
        var out = Array(kept)
        out.append(contentsOf: Array("***".utf8))
        out.append(contentsOf: b[at...])
        return String(decoding: out, as: UTF8.self)
    }

    static func unescape(_ s: Substring) throws(RedisError) -> String {
        var out: [UInt8] = []
        var bytes = Array(s.utf8)[...]
        while let b = bytes.popFirst() {
            guard b == UInt8(ascii: "%") else { out.append(b); continue }
            guard bytes.count >= 2, let v = UInt8(String(decoding: bytes.prefix(2), as: UTF8.self), radix: 16) else {
                throw RedisError(.invalid, "a bad %-escape in the URL's credentials")
            }
            out.append(v)
            bytes = bytes.dropFirst(2)
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The URL without the password (for logs and status output).
    public var description: String {
        let auth = password == nil ? "" : "\(user ?? ""):***@"
        let h = host.contains(":") ? "[\(host)]" : host
        return "redis://\(auth)\(h):\(port)" + (database == 0 ? "" : "/\(database)")
    }
}
