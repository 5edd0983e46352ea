// RESP.RESPParser: replies out of a byte stream that arrives in pieces of any size.
// `append` adds bytes; `next` returns the next whole reply, nil while it is incomplete
// (nothing is consumed then), or throws for bytes that are not RESP2. After a throw the
// stream cannot be resynchronized: the connection must be closed.
//
// Strict where Redis is strict: every line ends in CRLF, lengths and integers are plain
// decimal (an optional '-' and digits, no '+', no spaces, no overflow), a bulk string is
// followed by exactly CRLF, simple strings and errors hold no bare CR or LF. Bounded:
// a bulk string's length, an array's count and the nesting depth have limits, checked
// before anything is allocated.
//
// An incomplete reply is parsed again from its start when more bytes come. That costs
// one more pass over the bytes held per piece received: for the replies Spool reads
// (hundreds of KiB at most) it is cheaper than keeping a resumable stack.

public struct RESPError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, Equatable {
        case unknownType = "not a RESP2 type byte"
        case badLineEnding = "a line does not end in CRLF"
        case badInteger = "not a decimal integer"
        case badLength = "a negative length other than -1"
        case bulkTooLarge = "a bulk string longer than the limit"
        case arrayTooLarge = "an array with more elements than the limit"
        case tooDeep = "arrays nested deeper than the limit"
        case lineTooLong = "a line longer than the limit"
    }
    public let kind: Kind
    /// Offset of the problem, from the start of the reply being parsed.
    public let offset: Int

    public var description: String { "malformed RESP reply at byte \(offset): \(kind.rawValue)" }
}

public struct RESPLimits: Sendable, Equatable {
    public var maxBulkBytes = 64 << 20
    public var maxArrayCount = 1 << 20
    public var maxDepth = 32
    /// Simple strings, errors, integers and headers.
    public var maxLineBytes = 64 << 10
    public init() {}
}

public struct RESPParser: Sendable {
    public let limits: RESPLimits
    private var buffer: [UInt8] = []
    private var start = 0

    public init(limits: RESPLimits = RESPLimits()) { self.limits = limits }

    /// Bytes received and not yet returned as a reply.
    public var buffered: Int { buffer.count - start }

    public mutating func append(_ bytes: some Sequence<UInt8>) {
        if start > 0 && start * 2 >= buffer.count {
            buffer.removeFirst(start)
            start = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// The next whole reply, or nil until more bytes arrive.
    public mutating func next() throws(RESPError) -> RESPValue? {
        guard start < buffer.count else { return nil }
        var cursor = Cursor(bytes: buffer, position: start, base: start, limits: limits)
        guard let value = try cursor.value(depth: 0) else { return nil }
        start = cursor.position
        if start == buffer.count { buffer.removeAll(keepingCapacity: buffer.capacity <= 1 << 16); start = 0 }
        return value
    }

    /// Every reply in `bytes` (which must hold whole replies only): tests and the fuzzer.
    public static func parseAll(_ bytes: [UInt8], limits: RESPLimits = RESPLimits()) throws(RESPError) -> (values: [RESPValue], rest: Int) {
        var p = RESPParser(limits: limits)
        p.append(bytes)
        var out: [RESPValue] = []
        while let v = try p.next() { out.append(v) }
        return (out, p.buffered)
    }
}

/// One pass over the buffered bytes from a reply's start. nil: incomplete.
private struct Cursor {
    let bytes: [UInt8]
    var position: Int
    let base: Int
    let limits: RESPLimits

    func fail(_ kind: RESPError.Kind, at: Int) -> RESPError { RESPError(kind: kind, offset: at - base) }

    mutating func value(depth: Int) throws(RESPError) -> RESPValue? {
        guard position < bytes.count else { return nil }
        let typeAt = position
        let type = bytes[position]
        switch type {
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            guard let line = try line(from: position + 1) else { return nil }
            let text = String(decoding: bytes[line], as: UTF8.self)
            return type == UInt8(ascii: "+") ? .simple(text) : .error(text)
        case UInt8(ascii: ":"):
            guard let line = try line(from: position + 1) else { return nil }
            return .integer(try integer(line))
        case UInt8(ascii: "$"):
            guard let line = try line(from: position + 1) else { return nil }
            let n = try integer(line)
            if n == -1 { return .null }
            guard n >= 0 else { throw fail(.badLength, at: line.lowerBound) }
            guard n <= limits.maxBulkBytes else { throw fail(.bulkTooLarge, at: line.lowerBound) }
            let count = Int(n)
            guard bytes.count - position >= count + 2 else { return nil }
            let body = position..<(position + count)
            guard bytes[body.upperBound] == 13, bytes[body.upperBound + 1] == 10 else {
                throw fail(.badLineEnding, at: body.upperBound)
            }
            position = body.upperBound + 2
            return .bulk(Array(bytes[body]))
        case UInt8(ascii: "*"):
            guard depth < limits.maxDepth else { throw fail(.tooDeep, at: typeAt) }
            guard let line = try line(from: position + 1) else { return nil }
            let n = try integer(line)
            if n == -1 { return .null }
            guard n >= 0 else { throw fail(.badLength, at: line.lowerBound) }
            guard n <= limits.maxArrayCount else { throw fail(.arrayTooLarge, at: line.lowerBound) }
            // Each element takes at least 3 bytes: do not reserve for elements that cannot be here yet.
            var items: [RESPValue] = []
            items.reserveCapacity(min(Int(n), (bytes.count - position) / 3))
            for _ in 0..<n {
                guard let v = try value(depth: depth + 1) else { return nil }
                items.append(v)
            }
            return .array(items)
        default:
            throw fail(.unknownType, at: typeAt)
        }
    }

    /// The line's content from `from` up to its CRLF (moves past the CRLF), nil if the CRLF
    /// has not arrived.
    mutating func line(from: Int) throws(RESPError) -> Range<Int>? {
        var i = from
        let end = min(bytes.count, from + limits.maxLineBytes + 1)
        while i < end {
            let b = bytes[i]
            if b == 13 {
                guard i + 1 < bytes.count else { return nil }
                guard bytes[i + 1] == 10 else { throw fail(.badLineEnding, at: i) }
                position = i + 2
                return from..<i
            }
            if b == 10 { throw fail(.badLineEnding, at: i) }
            i += 1
        }
        if i - from > limits.maxLineBytes { throw fail(.lineTooLong, at: from) }
        return nil
    }

    func integer(_ r: Range<Int>) throws(RESPError) -> Int64 {
        var i = r.lowerBound
        let negative = i < r.upperBound && bytes[i] == UInt8(ascii: "-")
        if negative { i += 1 }
        guard i < r.upperBound else { throw fail(.badInteger, at: r.lowerBound) }
        var v: Int64 = 0
        while i < r.upperBound {
            let d = bytes[i] &- UInt8(ascii: "0")
            guard d < 10 else { throw fail(.badInteger, at: i) }
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (s, o2) = negative ? m.subtractingReportingOverflow(Int64(d)) : m.addingReportingOverflow(Int64(d))
            guard !o1, !o2 else { throw fail(.badInteger, at: r.lowerBound) }
            v = s
            i += 1
        }
        return v
    }
}
