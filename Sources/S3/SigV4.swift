// S3.SigV4: AWS Signature Version 4, the authentication every S3-compatible store takes.
// Pure functions over a request's parts (no I/O, no clock of its own: the caller passes
// the time), in two forms:
//   - header signing (`sign`): x-amz-date, x-amz-content-sha256 and Authorization for a
//     request the dispatcher sends itself, its payload's SHA-256 signed in, so the store
//     refuses a body changed on the way;
//   - query signing (`presign`): a URL anyone may use until it expires, for one method on
//     one key (the body unsigned), which is what engines are handed instead of secrets.
// The canonical forms follow AWS's specification: names lower-cased and sorted, values
// trimmed, RFC 3986 percent-encoding (S3 paths encoded once, '/' kept).
import Crypto
import SpoolModel

/// An access key pair. The secret never appears in a description.
public struct S3Credentials: Sendable, Equatable, CustomStringConvertible {
    public var accessKeyID: String
    public var secretAccessKey: String
    public init(accessKeyID: String, secretAccessKey: String) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
    }
    public var description: String { "S3Credentials(\(accessKeyID), secret hidden)" }
}

public struct SigV4Signer: Sendable {
    public let credentials: S3Credentials
    public let region: String
    public let service: String

    /// The SHA-256 of an empty payload.
    public static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    /// What a presigned URL signs for the payload.
    public static let unsignedPayload = "UNSIGNED-PAYLOAD"

    public init(credentials: S3Credentials, region: String, service: String = "s3") {
        self.credentials = credentials
        self.region = region
        self.service = service
    }

    /// The headers to add to a request (`x-amz-date`, `x-amz-content-sha256`,
    /// `Authorization`). `host` is the Host field as sent; `path` the encoded path;
    /// `query` the decoded parameters; `headers` the other fields to sign (Range,
    /// Content-Type, x-amz-meta-*); `payloadHash` the body's SHA-256 in hex.
    public func sign(method: String, host: String, path: String, query: [(String, String)] = [],
                     headers: [(String, String)] = [], payloadHash: String,
                     unixSeconds: Int64) -> [(name: String, value: String)] {
        let (day, stamp) = Self.timestamp(unixSeconds)
        var signed = headers.map { (Self.lower($0.0), Self.trimmed($0.1)) }
        signed.append(("host", host))
        signed.append(("x-amz-content-sha256", payloadHash))
        signed.append(("x-amz-date", stamp))
        signed.sort { $0.0 < $1.0 }
        let names = signed.map(\.0).joined(separator: ";")
        let canonical = Self.canonicalRequest(method: method, path: path, query: Self.canonicalQuery(query),
                                              headers: signed, signedNames: names, payloadHash: payloadHash)
        let scope = "\(day)/\(region)/\(service)/aws4_request"
        let signature = self.signature(canonical, stamp: stamp, day: day, scope: scope)
        return [("x-amz-date", stamp), ("x-amz-content-sha256", payloadHash),
                ("Authorization", "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(scope), SignedHeaders=\(names), Signature=\(signature)")]
    }

    /// The query string (without '?') of a presigned URL for `method` on `path`, valid
    /// for `expires` seconds (1 to 604800) from `unixSeconds`. Only Host is signed, so the
    /// user of the URL may add a Range.
    public func presign(method: String, host: String, path: String, query: [(String, String)] = [],
                        expires: Int, unixSeconds: Int64) -> String {
        let (day, stamp) = Self.timestamp(unixSeconds)
        let scope = "\(day)/\(region)/\(service)/aws4_request"
        var params = query
        params.append(("X-Amz-Algorithm", "AWS4-HMAC-SHA256"))
        params.append(("X-Amz-Credential", "\(credentials.accessKeyID)/\(scope)"))
        params.append(("X-Amz-Date", stamp))
        params.append(("X-Amz-Expires", String(max(1, min(604_800, expires)))))
        params.append(("X-Amz-SignedHeaders", "host"))
        let canonicalQuery = Self.canonicalQuery(params)
        let canonical = Self.canonicalRequest(method: method, path: path, query: canonicalQuery,
                                              headers: [("host", host)], signedNames: "host", payloadHash: Self.unsignedPayload)
        return canonicalQuery + "&X-Amz-Signature=" + signature(canonical, stamp: stamp, day: day, scope: scope)
    }

    // MARK: The canonical forms

    static func canonicalRequest(method: String, path: String, query: String, headers: [(String, String)],
                                 signedNames: String, payloadHash: String) -> String {
        var lines = method + "\n" + path + "\n" + query + "\n"
        for (name, value) in headers { lines += name + ":" + value + "\n" }
        return lines + "\n" + signedNames + "\n" + payloadHash
    }

    /// Parameters encoded, then sorted by name and value, joined with '&'.
    static func canonicalQuery(_ query: [(String, String)]) -> String {
        query.map { (uriEncode($0.0), uriEncode($0.1)) }
            .sorted { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
            .map { $0.0 + "=" + $0.1 }
            .joined(separator: "&")
    }

    func signature(_ canonicalRequest: String, stamp: String, day: String, scope: String) -> String {
        let digest = Hex.encode(SHA256.hash(data: Array(canonicalRequest.utf8)))
        let toSign = "AWS4-HMAC-SHA256\n\(stamp)\n\(scope)\n\(digest)"
        var key = SymmetricKey(data: Array(("AWS4" + credentials.secretAccessKey).utf8))
        for part in [day, region, service, "aws4_request"] {
            key = SymmetricKey(data: Array(HMAC<SHA256>.authenticationCode(for: Array(part.utf8), using: key)))
        }
        return Hex.encode(HMAC<SHA256>.authenticationCode(for: Array(toSign.utf8), using: key))
    }

    /// RFC 3986 percent-encoding of everything but the unreserved characters; '/' kept
    /// when `keepSlash` (object paths).
    public static func uriEncode(_ text: String, keepSlash: Bool = false) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        for b in text.utf8 {
            switch b {
            case 0x41...0x5A, 0x61...0x7A, 0x30...0x39, 0x2D, 0x2E, 0x5F, 0x7E: out.append(b)
            case 0x2F where keepSlash: out.append(b)
            default: out += [0x25, hex[Int(b >> 4)], hex[Int(b & 15)]]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// ("20130524", "20130524T000000Z") for a Unix time.
    static func timestamp(_ unixSeconds: Int64) -> (day: String, stamp: String) {
        // RFC3339.format gives "2013-05-24T00:00:00.000Z": keep its digits and the T and Z.
        let iso = RFC3339.format(unixSeconds * 1000).utf8
        let digits = iso.prefix(19).filter { $0 != 0x2D && $0 != 0x3A }
        let stamp = String(decoding: digits, as: UTF8.self) + "Z"
        return (String(stamp.prefix(8)), stamp)
    }

    static func lower(_ s: String) -> String {
        String(decoding: s.utf8.map { $0 >= 0x41 && $0 <= 0x5A ? $0 + 32 : $0 }, as: UTF8.self)
    }

    /// Leading and trailing spaces removed, inner runs of spaces made one.
    static func trimmed(_ s: String) -> String {
        s.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
    }
}
