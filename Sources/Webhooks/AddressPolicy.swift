// Webhooks.AddressPolicy: which addresses a webhook may be delivered to (the SSRF guard).
// Every address a webhook's host resolves to is checked before anything is dialed, and
// the addresses checked are the ones dialed. Refused unless allow-listed: loopback,
// private (RFC 1918, CGNAT 100.64/10, IPv6 ULA fc00::/7), link-local (169.254/16 with the
// cloud metadata address, fe80::/10), multicast, unspecified, broadcast, benchmark and
// documentation ranges; IPv4 inside IPv6 (::ffff:a.b.c.d mapped, ::a.b.c.d compatible,
// 64:ff9b::/96 NAT64, 2002::/16 6to4) is judged by the IPv4 address it carries.
// Pure: bytes in, a reason out.

public struct Network: Sendable, Equatable, CustomStringConvertible {
    public var bytes: [UInt8]
    public var prefix: Int

    /// "127.0.0.1/32", "10.0.0.0/8", "::1/128", "fd00::/8" (a bare address is a host).
    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1)
        guard let first = parts.first, let b = parseIP(String(first)) else { return nil }
        let max = b.count * 8
        var p = max
        if parts.count == 2 {
            guard let n = Int(parts[1]), (0...max).contains(n) else { return nil }
            p = n
        }
        bytes = b
        prefix = p
    }

    public func contains(_ ip: [UInt8]) -> Bool {
        guard ip.count == bytes.count else { return false }
        var left = prefix
        for i in 0..<ip.count where left > 0 {
            let bits = min(8, left)
            let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
            if ip[i] & mask != bytes[i] & mask { return false }
            left -= bits
        }
        return true
    }

    public var description: String { "\(formatIP(bytes))/\(prefix)" }

    /// "a/8, b/16" → networks, or the first entry that is not one.
    public static func parseList(_ text: String) -> Result<[Network], NetworkListError> {
        var out: [Network] = []
        for part in text.split(separator: ",") {
            let t = part.filter { $0 != " " }
            guard let n = Network(String(t)) else { return .failure(NetworkListError(entry: String(part))) }
            out.append(n)
        }
        return .success(out)
    }
}

public struct NetworkListError: Error, Sendable, Equatable, CustomStringConvertible {
    public var entry: String
    public var description: String { "\"\(entry)\" is not an address or CIDR network" }
}

public struct AddressPolicy: Sendable, Equatable {
    public var allowPrivateNetworks: Bool
    public var allowed: [Network]
    public init(allowPrivateNetworks: Bool = false, allowed: [Network] = []) {
        self.allowPrivateNetworks = allowPrivateNetworks; self.allowed = allowed
    }

    /// nil when a webhook may be delivered to `ip` (4 or 16 bytes), else why not.
    public func refusal(_ ip: [UInt8]) -> String? {
        if allowed.contains(where: { $0.contains(ip) }) { return nil }
        guard let why = Self.nonPublic(ip) else { return nil }
        if allowPrivateNetworks && !why.hasPrefix("unspecified") && !why.hasPrefix("multicast") && !why.hasPrefix("broadcast") { return nil }
        return "\(formatIP(ip)) is \(why) (webhooks go to public addresses unless webhooks.allowed_networks lists it)"
    }

    /// What kind of non-public address `ip` is, or nil for a public one.
    public static func nonPublic(_ ip: [UInt8]) -> String? {
        if ip.count == 4 { return nonPublicV4(ip) }
        guard ip.count == 16 else { return "not an IP address" }
        if ip.allSatisfy({ $0 == 0 }) { return "unspecified" }
        if ip[0..<15].allSatisfy({ $0 == 0 }) && ip[15] == 1 { return "loopback" }
        // IPv4 carried in IPv6: judged by the IPv4 address.
        if ip[0..<10].allSatisfy({ $0 == 0 }) && ip[10] == 0xFF && ip[11] == 0xFF { return nonPublicV4(Array(ip[12..<16])).map { "\($0) (IPv4-mapped)" } }
        if ip[0..<12].allSatisfy({ $0 == 0 }) { return nonPublicV4(Array(ip[12..<16])).map { "\($0) (IPv4-compatible)" } ?? "deprecated IPv4-compatible" }
        if ip[0..<12] == [0x00, 0x64, 0xFF, 0x9B, 0, 0, 0, 0, 0, 0, 0, 0] { return nonPublicV4(Array(ip[12..<16])).map { "\($0) (NAT64)" } }
        if ip[0] == 0x20 && ip[1] == 0x02 { return nonPublicV4(Array(ip[2..<6])).map { "\($0) (6to4)" } }
        if ip[0] & 0xFE == 0xFC { return "private (unique local fc00::/7)" }
        if ip[0] == 0xFE && ip[1] & 0xC0 == 0x80 { return "link-local (fe80::/10)" }
        if ip[0] == 0xFE && ip[1] & 0xC0 == 0xC0 { return "site-local (fec0::/10)" }
        if ip[0] == 0xFF { return "multicast" }
        if ip[0] == 0x20 && ip[1] == 0x01 && ip[2] == 0x0D && ip[3] == 0xB8 { return "documentation (2001:db8::/32)" }
        if ip[0] == 0x01 && ip[1..<8].allSatisfy({ $0 == 0 }) { return "discard-only (100::/64)" }
        return nil
    }

    static func nonPublicV4(_ b: [UInt8]) -> String? {
        switch (b[0], b[1]) {
        case (0, _): return "unspecified (0.0.0.0/8)"
        case (10, _): return "private (10.0.0.0/8)"
        case (100, 64...127): return "shared (100.64.0.0/10)"
        case (127, _): return "loopback"
        case (169, 254): return b[2] == 169 && b[3] == 254 ? "the cloud metadata address" : "link-local (169.254.0.0/16)"
        case (172, 16...31): return "private (172.16.0.0/12)"
        case (192, 0) where b[2] == 0: return "IETF protocol assignments (192.0.0.0/24)"
        case (192, 0) where b[2] == 2: return "documentation (192.0.2.0/24)"
        case (192, 168): return "private (192.168.0.0/16)"
        case (198, 18...19): return "benchmarking (198.18.0.0/15)"
        case (198, 51) where b[2] == 100: return "documentation (198.51.100.0/24)"
        case (203, 0) where b[2] == 113: return "documentation (203.0.113.0/24)"
        case (224...239, _): return "multicast"
        case (240...255, _): return b == [255, 255, 255, 255] ? "broadcast" : "reserved (240.0.0.0/4)"
        default: return nil
        }
    }
}

/// Numeric IPv4 ("1.2.3.4") or IPv6 ("::1", "::ffff:1.2.3.4") to bytes.
func parseIP(_ s: String) -> [UInt8]? {
    if !s.contains(":") {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var out: [UInt8] = []
        for p in parts {
            guard !p.isEmpty, p.count <= 3, p.allSatisfy(\.isNumber), let v = UInt8(p) else { return nil }
            out.append(v)
        }
        return out
    }
    var text = Substring(s)
    var tail: [UInt8] = []
    if let lastColon = text.lastIndex(of: ":"), text[text.index(after: lastColon)...].contains(".") {
        guard let v4 = parseIP(String(text[text.index(after: lastColon)...])) else { return nil }
        tail = v4
        text = text[...lastColon]
        if text.hasSuffix("::") { } else { text = text.dropLast() }
    }
    let halves = text.split(separator: "::", omittingEmptySubsequences: false).map(String.init)
    guard halves.count <= 2 else { return nil }
    func groups(_ h: String) -> [UInt16]? {
        if h.isEmpty { return [] }
        var out: [UInt16] = []
        for g in h.split(separator: ":", omittingEmptySubsequences: false) {
            guard (1...4).contains(g.count), let v = UInt16(g, radix: 16) else { return nil }
            out.append(v)
        }
        return out
    }
    guard let head = groups(halves[0]) else { return nil }
    let rest = halves.count == 2 ? groups(halves[1]) : []
    guard let rest else { return nil }
    let total = 8 - tail.count / 2
    var all: [UInt16]
    if halves.count == 2 {
        guard head.count + rest.count < total else { return nil }
        all = head + Array(repeating: 0, count: total - head.count - rest.count) + rest
    } else {
        guard head.count == total else { return nil }
        all = head
    }
    var out: [UInt8] = []
    for g in all { out.append(UInt8(g >> 8)); out.append(UInt8(g & 0xFF)) }
    return out + tail
}

func formatIP(_ b: [UInt8]) -> String {
    if b.count == 4 { return b.map(String.init).joined(separator: ".") }
    var groups: [String] = []
    for i in stride(from: 0, to: b.count, by: 2) { groups.append(String(UInt16(b[i]) << 8 | UInt16(b[i + 1]), radix: 16)) }
    return groups.joined(separator: ":")
}
