// Webhooks.Signature: Standard Webhooks signing. Each delivery carries `webhook-id` (the
// message id, the same on every retry), `webhook-timestamp` (Unix seconds) and
// `webhook-signature` ("v1," + base64 HMAC-SHA256 over "id.timestamp.body" keyed with the
// tenant's secret, "whsec_" + base64 of 24 random bytes). Receivers verify with the secret
// and refuse timestamps far from their clock (replays).
import Crypto
import Foundation

public enum WebhookSignature {
    /// A new secret: "whsec_" + base64 of 24 random bytes.
    public static func newSecret() -> String {
        var rng = SystemRandomNumberGenerator()
        return "whsec_" + base64((0..<24).map { _ in rng.next() })
    }

    /// The HMAC key a secret stands for (the base64 after "whsec_"); nil when malformed.
    public static func key(of secret: String) -> [UInt8]? {
        guard secret.hasPrefix("whsec_") else { return nil }
        return base64Decode(String(secret.dropFirst(6)))
    }

    /// "v1,<base64 HMAC-SHA256(key, id.timestamp.body)>".
    public static func sign(secret: String, id: String, timestamp: Int64, body: [UInt8]) -> String? {
        guard let key = key(of: secret) else { return nil }
        var message = Array("\(id).\(timestamp).".utf8)
        message.append(contentsOf: body)
        let mac = HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: key))
        return "v1," + base64(Array(mac))
    }

    /// True when one of the space-separated signatures in `header` is this message's.
    /// (Freshness of the timestamp is the receiver's policy: `tolerance` seconds from `now`.)
    public static func verify(secret: String, id: String, timestamp: Int64, body: [UInt8], header: String,
                              now: Int64? = nil, tolerance: Int64 = 300) -> Bool {
        if let now, abs(now - timestamp) > tolerance { return false }
        guard let expected = sign(secret: secret, id: id, timestamp: timestamp, body: body) else { return false }
        return header.split(separator: " ").contains { candidate in
            let a = Array(candidate.utf8), b = Array(expected.utf8)
            guard a.count == b.count else { return false }
            var diff: UInt8 = 0
            for i in 0..<a.count { diff |= a[i] ^ b[i] }
            return diff == 0
        }
    }

    static func base64(_ bytes: [UInt8]) -> String { Data(bytes).base64EncodedString() }

    static func base64Decode(_ s: String) -> [UInt8]? { Data(base64Encoded: s).map { Array($0) } }
}
