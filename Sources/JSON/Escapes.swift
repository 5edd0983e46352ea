// JSON.Escapes: string escapes, shared by stage 2's validation and the readers'
// unescaping: hex digits, \u escapes with surrogate pairs, UTF-8 encoding of a scalar.

/// Escape handling shared by validation and reading.
enum Escapes {
    @inline(__always)
    static func hexValue(_ c: UInt8) -> UInt32? {
        switch c {
        case 0x30...0x39: return UInt32(c - 0x30)
        case 0x41...0x46: return UInt32(c - 0x41 + 10)
        case 0x61...0x66: return UInt32(c - 0x61 + 10)
        default: return nil
        }
    }

    static func hex4(_ b: UnsafeRawBufferPointer, _ at: Int, _ end: Int) -> UInt32? {
        guard at + 4 <= end else { return nil }
        var v: UInt32 = 0
        for k in 0..<4 {
            guard let h = unsafe hexValue(b[at + k]) else { return nil }
            v = v << 4 | h
        }
        return v
    }

    /// Unescapes validated string content (the bytes between the quotes).
    static func unescape(_ b: UnsafeRawBufferPointer) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(b.count)
        var q = 0
        let end = b.count
        while q < end {
            let c = unsafe b[q]
            guard c == 0x5C else { out.append(c); q += 1; continue }
            let e = unsafe b[q + 1]
            switch e {
            case 0x62: out.append(0x08); q += 2
            case 0x66: out.append(0x0C); q += 2
            case 0x6E: out.append(0x0A); q += 2
            case 0x72: out.append(0x0D); q += 2
            case 0x74: out.append(0x09); q += 2
            case 0x75:
                var v = unsafe hex4(b, q + 2, end)!
                q += 6
                if v >= 0xD800 && v <= 0xDBFF {
                    let w = unsafe hex4(b, q + 2, end)!
                    v = 0x10000 + ((v - 0xD800) << 10) + (w - 0xDC00)
                    q += 6
                }
                appendUTF8(v, &out)
            default: out.append(e); q += 2    // " \ /
            }
        }
        return out
    }

    static func appendUTF8(_ v: UInt32, _ out: inout [UInt8]) {
        switch v {
        case 0..<0x80: out.append(UInt8(v))
        case 0x80..<0x800:
            out.append(UInt8(0xC0 | (v >> 6)))
            out.append(UInt8(0x80 | (v & 0x3F)))
        case 0x800..<0x10000:
            out.append(UInt8(0xE0 | (v >> 12)))
            out.append(UInt8(0x80 | ((v >> 6) & 0x3F)))
            out.append(UInt8(0x80 | (v & 0x3F)))
        default:
            out.append(UInt8(0xF0 | (v >> 18)))
            out.append(UInt8(0x80 | ((v >> 12) & 0x3F)))
            out.append(UInt8(0x80 | ((v >> 6) & 0x3F)))
            out.append(UInt8(0x80 | (v & 0x3F)))
        }
    }
}
