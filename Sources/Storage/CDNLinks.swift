// Storage.CDNLinks: the URLs job results give for outputs when a CDN (or Spool's own
// media edge, `spool gateway --media-origin`) fronts the object store: the configured
// base URL plus the object's key, and, with a secret, signed in the form nginx's
// secure_link module checks:
//
//   BASE/KEY?md5=TOKEN&expires=E    TOKEN = base64url(MD5("E" + PATH + " " + SECRET)), unpadded
//
// where PATH is the URL's path (BASE's path + "/" + KEY) and E a Unix time. The edge
// answers 403 to a token that does not match (another key, another expiry, a changed
// path) and 410 past E; no request reaches the store or the dispatcher for either.
// (secure_link's keyed MD5 is what nginx offers; the secret never leaves the dispatcher
// and the edge.)
import Crypto

public struct CDNLinks: Sendable, Equatable {
    /// "https://media.example.com/media" (no trailing '/').
    public let base: String
    /// The path part of `base` ("/media"), which the signature covers.
    public let basePath: String
    public let secret: String?
    /// How long a signed URL stays valid.
    public let lifetimeSeconds: Int64

    /// nil when `base` is not an http(s) URL.
    public init?(base: String, secret: String?, lifetimeSeconds: Int64) {
        var b = base
        while b.hasSuffix("/") { b.removeLast() }
        let https = b.hasPrefix("https://")
        guard https || b.hasPrefix("http://") else { return nil }
        let rest = b.dropFirst(https ? 8 : 7)
        guard !rest.isEmpty, !rest.hasPrefix("/"), !b.contains("?"), !b.contains("#") else { return nil }
        self.base = b
        basePath = rest.firstIndex(of: "/").map { String(rest[$0...]) } ?? ""
        self.secret = secret.flatMap { $0.isEmpty ? nil : $0 }
        self.lifetimeSeconds = lifetimeSeconds
    }

    /// The URL of the object `key` (letters, digits, '_', '-', '.' and '/'), signed to
    /// expire `lifetimeSeconds` after `unixSeconds` when there is a secret.
    public func url(objectKey key: String, unixSeconds: Int64) -> String {
        let path = basePath + "/" + key
        guard let secret else { return base + "/" + key }
        let expires = unixSeconds + lifetimeSeconds
        return base + "/" + key + "?md5=" + Self.token(expires: expires, path: path, secret: secret) + "&expires=\(expires)"
    }

    static func token(expires: Int64, path: String, secret: String) -> String {
        let digest = Insecure.MD5.hash(data: Array("\(expires)\(path) \(secret)".utf8))
        return base64URL(Array(digest))
    }

    static func base64URL(_ bytes: [UInt8]) -> String {
        let table = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        var out: [UInt8] = []
        var i = 0
        while i < bytes.count {
            let n = min(3, bytes.count - i)
            let v = (UInt32(bytes[i]) << 16) | (n > 1 ? UInt32(bytes[i + 1]) << 8 : 0) | (n > 2 ? UInt32(bytes[i + 2]) : 0)
            out.append(table[Int(v >> 18 & 63)])
            out.append(table[Int(v >> 12 & 63)])
            if n > 1 { out.append(table[Int(v >> 6 & 63)]) }
            if n > 2 { out.append(table[Int(v & 63)]) }
            i += 3
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// A secret nginx can hold in its configuration unquoted: 16 to 128 letters, digits,
    /// '-' and '_'.
    public static func isValidSecret(_ s: String) -> Bool {
        (16...128).contains(s.utf8.count) && s.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2D || b == 0x5F
        }
    }
}
