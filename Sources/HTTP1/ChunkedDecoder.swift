// HTTP1.ChunkedDecoder: incremental decoding of the chunked transfer coding (RFC 9112 §7.1).
//
// Goals: body bytes are reported as ranges of the caller's input (never copied); any
// split of the input gives the same result; chunk sizes are checked for overflow and
// against the route's body limit before the data arrives; chunk extensions are parsed
// and ignored; trailers are validated like header fields and dropped.
// Non-goals: exposing trailer fields (none of our routes uses them).
// Reads a borrowed UnsafeRawBufferPointer only; see RequestHead.swift on why that is sound.

public struct ChunkedDecoder: Sendable {
    public enum Event: Equatable, Sendable {
        /// Body bytes: a range of the input passed to `decode`.
        case data(Range<Int>)
        /// The last chunk and the trailer section were read; the message is complete.
        case end
    }

    private enum State: Sendable {
        case size(value: UInt64, digits: Int)
        case extensions(value: UInt64, inQuotes: Bool, escaped: Bool, started: Bool)
        case sizeLF(value: UInt64)
        case data(left: UInt64)
        case dataCR
        case dataLF
        case trailerLineStart
        case trailerName(length: Int)
        case trailerLine(length: Int)
        case trailerLF(endOfTrailers: Bool)
        case done
    }

    private var state: State = .size(value: 0, digits: 0)
    public private(set) var bodyBytes: UInt64 = 0
    public let bodyBytesMax: UInt64
    public let trailerLineMax: Int
    /// Chunk-extension and trailer bytes allowed over the whole message: they carry no
    /// body, so without a cap a client could keep a "body" flowing for ever under the limit.
    public let overheadBytesMax: Int
    private var overheadBytes = 0

    public init(bodyBytesMax: UInt64 = .max, trailerLineMax: Int = 8 * 1024, overheadBytesMax: Int = 64 * 1024) {
        self.overheadBytesMax = overheadBytesMax
        self.bodyBytesMax = bodyBytesMax
        self.trailerLineMax = trailerLineMax
    }

    /// Hex digits a chunk-size may have, leading zeros included.
    static let sizeDigitsMax = 64

    public var isComplete: Bool { if case .done = state { return true } else { return false } }

    /// Decodes `input`, appending events to `events`. Returns how many bytes were consumed
    /// (all of them, unless the message ended before the input did: the rest belongs to the
    /// next request on the connection).
    public mutating func decode(_ input: UnsafeRawBufferPointer, into events: inout [Event]) throws(HTTPParseError) -> Int {
        var i = 0
        let n = input.count
        while i < n {
            let c = input[i]
            switch state {
            case .extensions, .trailerLineStart, .trailerName, .trailerLine:
                overheadBytes += 1
                if overheadBytes > overheadBytesMax {
                    throw HTTPParseError(status: 431, "chunk extensions and trailers exceed \(overheadBytesMax) bytes")
                }
            default: break
            }
            switch state {
            case .size(let value, let digits):
                if let d = hexValue(c) {
                    // A size of 2^60 or more (15 significant hex digits) is far beyond any
                    // body we accept; more is an attack. Leading zeros are a valid size
                    // (chunk-size = 1*HEXDIG, "%08x" padding is common): a size line may
                    // have up to `sizeDigitsMax` digits, each line on its own.
                    guard value >> 56 == 0 else { throw .bad("chunk size overflows") }
                    guard digits < Self.sizeDigitsMax else { throw .bad("chunk size has more than \(Self.sizeDigitsMax) digits") }
                    state = .size(value: value << 4 | UInt64(d), digits: digits + 1)
                    i += 1
                } else {
                    guard digits > 0 else { throw .bad("missing chunk size") }
                    if c == 0x0D {
                        state = .sizeLF(value: value)
                    } else if c == 0x3B || c == 0x20 || c == 0x09 {
                        state = .extensions(value: value, inQuotes: false, escaped: false, started: c == 0x3B)
                    } else {
                        throw .bad("invalid character in chunk size")
                    }
                    i += 1
                }
            case .extensions(let value, let inQuotes, let escaped, let started):
                if !started {
                    // Between the size and the first ";" only whitespace may appear.
                    if c == 0x3B {
                        state = .extensions(value: value, inQuotes: false, escaped: false, started: true)
                    } else if c == 0x0D {
                        state = .sizeLF(value: value)
                    } else if c != 0x20 && c != 0x09 {
                        throw .bad("invalid character after chunk size")
                    }
                } else if inQuotes {
                    if escaped {
                        state = .extensions(value: value, inQuotes: true, escaped: false, started: true)
                    } else if c == 0x5C {
                        state = .extensions(value: value, inQuotes: true, escaped: true, started: true)
                    } else if c == 0x22 {
                        state = .extensions(value: value, inQuotes: false, escaped: false, started: true)
                    } else if c < 0x20 && c != 0x09 || c == 0x7F {
                        throw .bad("control character in chunk extension")
                    }
                } else if c == 0x0D {
                    state = .sizeLF(value: value)
                } else if c == 0x22 {
                    state = .extensions(value: value, inQuotes: true, escaped: false, started: true)
                } else if !(isTChar(c) || c == 0x3B || c == 0x3D || c == 0x20 || c == 0x09) {
                    throw .bad("invalid character in chunk extension")
                }
                i += 1
            case .sizeLF(let value):
                guard c == 0x0A else { throw .bad("bare CR after chunk size") }
                i += 1
                if value == 0 {
                    state = .trailerLineStart
                } else {
                    let (total, overflow) = bodyBytes.addingReportingOverflow(value)
                    guard !overflow && total <= bodyBytesMax else {
                        throw HTTPParseError(status: 413, "request body is larger than \(bodyBytesMax) bytes")
                    }
                    state = .data(left: value)
                }
            case .data(let left):
                let take = Int(min(UInt64(n - i), left))
                events.append(.data(i..<(i + take)))
                bodyBytes += UInt64(take)
                i += take
                state = left - UInt64(take) == 0 ? .dataCR : .data(left: left - UInt64(take))
            case .dataCR:
                guard c == 0x0D else { throw .bad("chunk data longer than its size") }
                state = .dataLF
                i += 1
            case .dataLF:
                guard c == 0x0A else { throw .bad("bare CR after chunk data") }
                state = .size(value: 0, digits: 0)
                i += 1
            case .trailerLineStart:
                if c == 0x0D {
                    state = .trailerLF(endOfTrailers: true)
                } else {
                    guard isTChar(c) else { throw .bad("malformed trailer field") }
                    state = .trailerName(length: 1)
                }
                i += 1
            case .trailerName(let length):
                if c == 0x3A {
                    state = .trailerLine(length: length + 1)
                } else if isTChar(c) {
                    guard length < trailerLineMax else { throw HTTPParseError(status: 431, "a trailer field is too long") }
                    state = .trailerName(length: length + 1)
                } else {
                    throw .bad(c == 0x20 || c == 0x09 ? "whitespace before the colon in a trailer field" : "malformed trailer field")
                }
                i += 1
            case .trailerLine(let length):
                if c == 0x0D {
                    state = .trailerLF(endOfTrailers: false)
                } else {
                    if c == 0x0A { throw .bad("bare LF in trailer field") }
                    if c < 0x20 && c != 0x09 || c == 0x7F { throw .bad("control character in trailer field") }
                    guard length < trailerLineMax else { throw HTTPParseError(status: 431, "a trailer field is too long") }
                    state = .trailerLine(length: length + 1)
                }
                i += 1
            case .trailerLF(let endOfTrailers):
                guard c == 0x0A else { throw .bad("bare CR in trailer section") }
                i += 1
                if endOfTrailers {
                    state = .done
                    events.append(.end)
                    return i
                }
                state = .trailerLineStart
            case .done:
                return i
            }
        }
        return i
    }
}

@inline(__always)
func hexValue(_ c: UInt8) -> UInt8? {
    switch c {
    case 0x30...0x39: return c - 0x30
    case 0x41...0x46: return c - 0x41 + 10
    case 0x61...0x66: return c - 0x61 + 10
    default: return nil
    }
}
