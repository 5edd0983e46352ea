// RESP: the Redis serialization protocol (RESP2), as a pure codec with no I/O: a value
// type, a strict incremental parser (RESPParser) and the command encoder (RESPCommand).
// Redis speaks RESP2 to a client that never sends HELLO 3, which is how Spool talks to
// it, so the RESP3 types are refused as unknown. The parser is fuzzed like HTTP1 and
// JSON (Fuzz/FuzzRESP): it never traps, never reads past its input, and what it accepts
// re-encodes to the same value.

/// One RESP2 reply.
public enum RESPValue: Sendable, Equatable, CustomStringConvertible {
    /// `+OK`: a status line (no CR or LF inside).
    case simple(String)
    /// `-ERR message`: the server refused the command; the value is the whole line.
    case error(String)
    /// `:42`
    case integer(Int64)
    /// `$3 foo`: binary-safe bytes.
    case bulk([UInt8])
    /// `$-1` or `*-1`: no value (a missing key, a timed-out blocking read).
    case null
    /// `*N ...`: N values, nested to any depth the parser allows.
    case array([RESPValue])

    /// The bytes of a bulk or simple string as UTF-8 text (invalid sequences repaired).
    public var text: String? {
        switch self {
        case .bulk(let b): return String(decoding: b, as: UTF8.self)
        case .simple(let s): return s
        default: return nil
        }
    }

    public var integer: Int64? {
        switch self {
        case .integer(let i): return i
        case .bulk(let b): return Int64(String(decoding: b, as: UTF8.self))
        default: return nil
        }
    }

    public var array: [RESPValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    public var isNull: Bool { self == .null }

    public var description: String {
        switch self {
        case .simple(let s): return "+\(s)"
        case .error(let e): return "-\(e)"
        case .integer(let i): return ":\(i)"
        case .bulk(let b): return "\"\(String(decoding: b, as: UTF8.self))\""
        case .null: return "(nil)"
        case .array(let a): return "[" + a.map(\.description).joined(separator: ", ") + "]"
        }
    }

    /// The value in RESP2's wire form (what a server would send; tests and the fuzzer
    /// use it to check the parser round-trips).
    public var encoded: [UInt8] {
        var out: [UInt8] = []
        encode(into: &out)
        return out
    }

    public func encode(into out: inout [UInt8]) {
        switch self {
        case .simple(let s): out.append(UInt8(ascii: "+")); out += s.utf8; out += RESP.crlf
        case .error(let e): out.append(UInt8(ascii: "-")); out += e.utf8; out += RESP.crlf
        case .integer(let i): out.append(UInt8(ascii: ":")); out += String(i).utf8; out += RESP.crlf
        case .bulk(let b):
            out.append(UInt8(ascii: "$")); out += String(b.count).utf8; out += RESP.crlf
            out += b; out += RESP.crlf
        case .null: out += Array("$-1\r\n".utf8)
        case .array(let a):
            out.append(UInt8(ascii: "*")); out += String(a.count).utf8; out += RESP.crlf
            for v in a { v.encode(into: &out) }
        }
    }
}

enum RESP {
    static let crlf: [UInt8] = [13, 10]
}

/// Builds commands in RESP's request form: an array of bulk strings. Several commands
/// appended to one encoder go out as one pipelined write.
public struct RESPCommand: Sendable {
    public private(set) var bytes: [UInt8] = []
    public private(set) var count = 0

    public init() {}

    public init(_ args: [String]) { append(args) }

    public mutating func append(_ args: [String]) {
        bytes.append(UInt8(ascii: "*")); bytes += String(args.count).utf8; bytes += RESP.crlf
        for a in args {
            let u = a.utf8
            bytes.append(UInt8(ascii: "$")); bytes += String(u.count).utf8; bytes += RESP.crlf
            bytes += u; bytes += RESP.crlf
        }
        count += 1
    }
}
