// Web.ClientURL: the URLs HTTPClient accepts, `http[s]://host[:port][/path][?query]`,
// split into the origin its pool is keyed by (scheme, host, port) and the origin-form
// target it sends. No userinfo; the path must already be percent-encoded.

struct Origin: Hashable {
    var host: String
    var port: UInt16
    var tls = false

    var scheme: String { tls ? "https" : "http" }
    var defaultPort: UInt16 { tls ? 443 : 80 }
}

struct ParsedURL {
    var origin: Origin
    var target: String

    init(_ url: String) throws(HTTPClientError) {
        let tls: Bool
        // The scheme is case-insensitive (RFC 3986 §3.1).
        let scheme = url.prefix(8).lowercased()
        if scheme.hasPrefix("http://") { tls = false } else if scheme == "https://" { tls = true } else {
            throw HTTPClientError(.invalidURL, "\"\(url)\": only http:// and https:// URLs are supported")
        }
        let rest = url.dropFirst(tls ? 8 : 7)
        let slash = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        let authority = rest[..<slash]
        var target = String(rest[slash...])
        if target.isEmpty { target = "/" } else if target.hasPrefix("?") { target = "/" + target }
        if let hash = target.firstIndex(of: "#") { target = String(target[..<hash]) }
        guard !authority.isEmpty, !authority.contains("@") else { throw HTTPClientError(.invalidURL, "\"\(url)\": bad host") }
        var host = String(authority), port: UInt16 = tls ? 443 : 80
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw HTTPClientError(.invalidURL, "\"\(url)\": bad IPv6 host") }
            host = String(authority[...close])
            let after = authority[authority.index(after: close)...]
            if after.hasPrefix(":") {
                guard let p = UInt16(after.dropFirst()), p > 0 else { throw HTTPClientError(.invalidURL, "\"\(url)\": bad port") }
                port = p
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = String(authority[..<colon])
            guard let p = UInt16(authority[authority.index(after: colon)...]), p > 0 else { throw HTTPClientError(.invalidURL, "\"\(url)\": bad port") }
            port = p
        }
        guard target.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw HTTPClientError(.invalidURL, "\"\(url)\": the path must be percent-encoded")
        }
        origin = Origin(host: host, port: port, tls: tls)
        self.target = target
    }

    var hostHeader: String { origin.port == origin.defaultPort ? origin.host : "\(origin.host):\(origin.port)" }
}
