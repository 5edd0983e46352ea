// SpoolModel.Hex: lowercase hexadecimal, the one encoder for digests, tokens and message
// ids, and random tokens drawn from the system's generator.
public enum Hex {
    static let digits = Array("0123456789abcdef".utf8)

    /// Two lowercase hex digits per byte.
    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.underestimatedCount * 2)
        for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }

    /// `bytes` random bytes (SystemRandomNumberGenerator), as 2 × bytes hex digits.
    public static func random(bytes: Int) -> String {
        var rng = SystemRandomNumberGenerator()
        return encode((0..<max(0, bytes)).map { _ in UInt8.random(in: 0...255, using: &rng) })
    }
}
