// SpoolModel.Hex: lowercase hexadecimal, the one encoder for digests, tokens and message
// ids, and random tokens drawn from the system's generator.
public enum Hex {
    /// Two lowercase hex digits per byte.
    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        if let s = bytes.withContiguousStorageIfAvailable({ encode(contiguous: $0) }) { return s }
        return encode(contiguous: Array(bytes))
    }

    /// Two lowercase hex digits per byte, the digits written in place (an API key's hash
    /// is hex-encoded on every authenticated request).
    public static func encode(contiguous bytes: some RandomAccessCollection<UInt8>) -> String {
        var out = [UInt8](repeating: 0, count: bytes.count * 2)
        var i = 0
        for b in bytes {
            out[i] = nibble(b >> 4)
            out[i + 1] = nibble(b & 15)
            i += 2
        }
        return String(decoding: out, as: UTF8.self)
    }

    @inline(__always)
    static func nibble(_ v: UInt8) -> UInt8 { v < 10 ? 0x30 + v : 0x57 + v }

    /// The bytes of an even run of hex digits (either case), or nil.
    public static func decode(_ text: String) -> [UInt8]? {
        let u = Array(text.utf8)
        guard u.count % 2 == 0 else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: c - 0x30
            case 0x61...0x66: c - 0x61 + 10
            case 0x41...0x46: c - 0x41 + 10
            default: nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(u.count / 2)
        var i = 0
        while i < u.count {
            guard let hi = nibble(u[i]), let lo = nibble(u[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }

    /// `bytes` random bytes (SystemRandomNumberGenerator), as 2 × bytes hex digits.
    public static func random(bytes: Int) -> String {
        var rng = SystemRandomNumberGenerator()
        return encode((0..<max(0, bytes)).map { _ in UInt8.random(in: 0...255, using: &rng) })
    }
}
