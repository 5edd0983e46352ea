// JSON.TreeBuilder+Scalars: the syntax of the values that are not containers, checked
// once in stage 2 so readers never meet a malformed one: literals, RFC 8259 numbers (no
// leading zeros, digits after a point or an exponent) and string escapes (including
// UTF-16 surrogate pairing). Nothing is converted here.

// Offsets here are below the input's length, which stage 1 keeps under 4 GiB: the adds
// wrap and the conversions to the nodes' 32-bit fields truncate, without the overflow
// checks (a branch each, several per value).
//
// The checks are methods of `Text`, the input as a plain pointer and length that `build`
// holds in a local: read through the builder instead, the input's address and length were
// loaded again after every node written (a store through a pointer may alias the builder)
// and its optional base address tested for nil.

extension TreeBuilder {
    /// The input, never empty: its first byte's address and its length.
    @safe struct Text {
        let base: UnsafePointer<UInt8>
        let count: Int

        @inline(__always)
        subscript(_ i: Int) -> UInt8 { unsafe base[i] }

        @inline(__always)
        func loadWord(_ at: Int) -> UInt64 { unsafe UnsafeRawPointer(base + at).loadUnaligned(as: UInt64.self) }

        /// The same bytes as a buffer (for the escape helpers shared with the readers).
        var buffer: UnsafeRawBufferPointer { unsafe UnsafeRawBufferPointer(start: base, count: count) }
    }
}

extension TreeBuilder.Text {
    typealias Node = JSONDocument.Node

    /// Bytes that may follow a number or a literal: whitespace, the operators and '"' (a
    /// bit per byte value, below 64 and from 64 to 127), and the end of the input.
    private static let delimitersLow: UInt64 = 1 << 0x20 | 1 << 0x09 | 1 << 0x0A | 1 << 0x0D | 1 << 0x2C | 1 << 0x3A | 1 << 0x22
    private static let delimitersHigh: UInt64 = 1 << (0x5B - 64) | 1 << (0x5D - 64) | 1 << (0x7B - 64) | 1 << (0x7D - 64)

    @inline(always)
    private func isDelimiter(_ p: Int) -> Bool {
        guard p < count else { return true }
        let c = self[p]
        let word = c & 0x40 == 0 ? Self.delimitersLow : Self.delimitersHigh
        return c < 0x80 && (word >> UInt64(c & 63)) & 1 != 0
    }

    /// `true`, `false` or `null` at `p`, whose first byte is `c`.
    @inline(always)
    func literal(_ p: Int, _ c: UInt8) throws(JSONError) -> Node {
        let word: StaticString = c == 0x74 ? "true" : c == 0x66 ? "false" : "null"
        let kind: JSONDocument.Kind = c == 0x74 ? .true : c == 0x66 ? .false : .null
        let len = word.utf8CodeUnitCount
        guard p &+ len <= count, isDelimiter(p &+ len) else { throw JSONError(.invalidLiteral, at: p) }
        let w = unsafe word.utf8Start
        for k in 1..<len where unsafe self[p &+ k] != w[k] { throw JSONError(.invalidLiteral, at: p) }
        return Node(start: UInt32(truncatingIfNeeded: p), end: UInt32(truncatingIfNeeded: p &+ len), count: 0, kind: kind, flag: false)
    }

    /// How many ASCII digits start at `q`. Eight bytes are classified at a time when eight
    /// are there to read: a byte is a digit when its high nibble is 3 and adding 6 keeps it
    /// 3 (0x39 + 6 = 0x3F, 0x3A + 6 = 0x40). An addition that carries out of a byte (bytes
    /// from 0xFA) only disturbs the bytes after it, and the count stops at that byte anyway.
    @inline(always)
    func digitRun(_ q: Int) -> Int {
        let end = count
        var at = q
        while at &+ 8 <= end {
            let x = loadWord(at)
            let highNibble: UInt64 = 0xF0F0_F0F0_F0F0_F0F0, threes: UInt64 = 0x3030_3030_3030_3030
            let notDigit = ((x ^ threes) | ((x &+ 0x0606_0606_0606_0606) ^ threes)) & highNibble
            if notDigit != 0 { return at &+ notDigit.trailingZeroBitCount &>> 3 &- q }
            at &+= 8
        }
        while at < end && self[at] &- 0x30 < 10 { at &+= 1 }
        return at &- q
    }

    /// A number at `p`. The common cases inline: an integer (optional '-', no leading zero),
    /// with or without a fraction, followed by a delimiter; anything else (an exponent, or
    /// not a number at all) takes `numberFully`.
    @inline(always)
    func number(_ p: Int) throws(JSONError) -> Node {
        let q = self[p] == 0x2D ? p &+ 1 : p
        let whole = digitRun(q)
        if whole > 0 && (whole == 1 || self[q] != 0x30) {
            let e = q &+ whole
            if isDelimiter(e) {
                return Node(start: UInt32(truncatingIfNeeded: p), end: UInt32(truncatingIfNeeded: e), count: 0, kind: .number, flag: true)
            }
            // Not a delimiter, so not the end of the input either.
            if self[e] == 0x2E {
                let fraction = digitRun(e &+ 1)
                if fraction > 0 && isDelimiter(e &+ 1 &+ fraction) {
                    return Node(start: UInt32(truncatingIfNeeded: p), end: UInt32(truncatingIfNeeded: e &+ 1 &+ fraction), count: 0, kind: .number, flag: false)
                }
            }
        }
        return try numberFully(p)
    }

    @inline(never)
    private func numberFully(_ p: Int) throws(JSONError) -> Node {
        let end = count
        var q = p
        if self[q] == 0x2D { q += 1 }
        guard q < end else { throw JSONError(.invalidNumber, at: p, detail: "a minus sign needs digits") }
        let whole = digitRun(q)
        if whole == 0 { throw JSONError(.invalidNumber, at: p, detail: "expected a digit") }
        if whole > 1 && self[q] == 0x30 { throw JSONError(.invalidNumber, at: p, detail: "leading zeros are not allowed") }
        q += whole
        var integer = true
        if q < end && self[q] == 0x2E {
            q += 1
            let fraction = digitRun(q)
            guard fraction > 0 else { throw JSONError(.invalidNumber, at: p, detail: "a decimal point needs digits after it") }
            q += fraction
            integer = false
        }
        if q < end && (self[q] | 0x20) == 0x65 {
            q += 1
            if q < end && (self[q] == 0x2B || self[q] == 0x2D) { q += 1 }
            let exponent = digitRun(q)
            guard exponent > 0 else { throw JSONError(.invalidNumber, at: p, detail: "an exponent needs digits") }
            q += exponent
            integer = false
        }
        guard isDelimiter(q) else {
            throw JSONError(.invalidNumber, at: p, detail: "unexpected character in a number")
        }
        return Node(start: UInt32(p), end: UInt32(q), count: 0, kind: .number, flag: integer)
    }

    /// A string between the quotes at `openQuote` and `closeQuote`, with `backslashWords`
    /// stage 1's bitmap of backslashes.
    @inline(always)
    func string(openQuote: Int, closeQuote: Int, backslashWords: UnsafePointer<UInt64>) throws(JSONError) -> Node {
        let start = openQuote &+ 1
        let escaped = unsafe StructuralIndex.hasBackslash(backslashWords, start, closeQuote)
        if escaped { unsafe try validateEscapes(start, closeQuote, backslashWords) }
        return Node(start: UInt32(truncatingIfNeeded: start), end: UInt32(truncatingIfNeeded: closeQuote), count: 0, kind: .string, flag: escaped)
    }

    @inline(never)
    /// Checks the escapes of the string `start..<end`, going from backslash to backslash by
    /// the bitmap (the bytes between need no look).
    private func validateEscapes(_ start: Int, _ end: Int, _ backslashWords: UnsafePointer<UInt64>) throws(JSONError) {
        let input = unsafe buffer
        var q = start
        while true {
            q = unsafe StructuralIndex.nextBackslash(backslashWords, from: q, before: end)
            guard q < end else { return }
            let e = unsafe input[q + 1]    // an escaping backslash is never the last byte before the quote
            switch e {
            case 0x22, 0x5C, 0x2F, 0x62, 0x66, 0x6E, 0x72, 0x74:
                q += 2
            case 0x75:
                guard let v = unsafe Escapes.hex4(input, q + 2, end) else {
                    throw JSONError(.invalidEscape, at: q, detail: "\\u needs four hex digits")
                }
                if v >= 0xD800 && v <= 0xDBFF {
                    guard q + 12 <= end, unsafe input[q + 6] == 0x5C, unsafe input[q + 7] == 0x75,
                          let w = unsafe Escapes.hex4(input, q + 8, end), w >= 0xDC00 && w <= 0xDFFF else {
                        throw JSONError(.loneSurrogate, at: q, detail: "high surrogate without a low surrogate")
                    }
                    q += 12
                } else if v >= 0xDC00 && v <= 0xDFFF {
                    throw JSONError(.loneSurrogate, at: q, detail: "low surrogate without a high surrogate")
                } else {
                    q += 6
                }
            default:
                throw JSONError(.invalidEscape, at: q)
            }
        }
    }
}
