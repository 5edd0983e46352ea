// Web.ClientURL: the URLs HTTPClient accepts, `http://host[:port][/path][?query]`, split
// into the origin its pool is keyed by and the origin-form target it sends. Plain HTTP
// only (TLS is the gateway's job); no userinfo; the path must already be percent-encoded.

struct Origin: Hashable {
    var host: String
    var port: UInt16
}

struct ParsedURL {
    var origin: Origin
    var target: String

    init(_ url: String) throws(HTTPClientError) {
        guard url.hasPrefix("http://") else {
            throw HTTPClientError(.invalidURL, "\"\(url)\": only http:// URLs are supported (TLS is the gateway's job)")
        }
        let rest = url.dropFirst(7)
        let slash = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        let authority = rest[..<slash]
        var target = String(rest[slash...])
        if target.isEmpty { target = "/" } else if target.hasPrefix("?") { target = "/" + target }
        if let hash = target.firstIndex(of: "#") { target = String(target[..<hash]) }
        guard !authority.isEmpty, !authority.contains("@") else { throw HTTPClientError(.invalidURL, "\"\(url)\": bad host") }
        var host = String(authority), port: UInt16 = 80
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw HTTPClientError(.invalidURL, "\"\(url)\": bad IPv6 host") }
            host = String(authority[...close])
            let after = authority[authority.index(after: close)...]
            if after.hasPrefix(":") {
                guard let p = UInt16(after.dropFirst()) else { throw HTTPClientError(.invalidURL, "\"\(url)\": bad port") }
                port = p
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = String(authority[..<colon])
            guard let p = UInt16(authority[authority.index(after: colon)...]) else { throw HTTPClientError(.invalidURL, "\"\(url)\": bad port") }
            port = p
        }
        guard target.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw HTTPClientError(.invalidURL, "\"\(url)\": the path must be percent-encoded")
        }
        origin = Origin(host: host, port: port)
        self.target = target
    }

    var hostHeader: String { origin.port == 80 ? origin.host : "\(origin.host):\(origin.port)" }
}
