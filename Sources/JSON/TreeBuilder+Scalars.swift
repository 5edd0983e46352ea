// JSON.TreeBuilder+Scalars: the syntax of the values that are not containers, checked
// once in stage 2 so readers never meet a malformed one: literals, RFC 8259 numbers (no
// leading zeros, digits after a point or an exponent) and string escapes (including
// UTF-16 surrogate pairing). Nothing is converted here.

extension TreeBuilder {
    @inline(__always)
    private func isDelimiter(_ p: Int) -> Bool {
        guard unsafe p < input.count else { return true }
        switch unsafe input[p] {
        case 0x20, 0x09, 0x0A, 0x0D, 0x2C, 0x3A, 0x5B, 0x5D, 0x7B, 0x7D, 0x22: return true
        default: return false
        }
    }

    mutating func literal(_ p: Int, _ word: StaticString, _ kind: JSONDocument.Kind) throws(JSONError) {
        let len = word.utf8CodeUnitCount
        guard unsafe p + len <= input.count, isDelimiter(p + len) else { throw JSONError(.invalidLiteral, at: p) }
        let w = unsafe word.utf8Start
        for k in 0..<len where unsafe input[p + k] != w[k] { throw JSONError(.invalidLiteral, at: p) }
        append(Node(start: UInt32(p), end: UInt32(p + len), count: 0, kind: kind, flag: false))
    }

    mutating func number(_ p: Int) throws(JSONError) {
        let end = unsafe input.count
        var q = p
        @inline(__always) func digit(_ at: Int) -> Bool { unsafe at < end && input[at] &- 0x30 < 10 }
        if unsafe input[q] == 0x2D { q += 1 }
        guard q < end else { throw JSONError(.invalidNumber, at: p, detail: "a minus sign needs digits") }
        if unsafe input[q] == 0x30 {
            q += 1
            if digit(q) { throw JSONError(.invalidNumber, at: p, detail: "leading zeros are not allowed") }
        } else if digit(q) {
            while digit(q) { q += 1 }
        } else {
            throw JSONError(.invalidNumber, at: p, detail: "expected a digit")
        }
        var integer = true
        if unsafe q < end && input[q] == 0x2E {
            q += 1
            guard digit(q) else { throw JSONError(.invalidNumber, at: p, detail: "a decimal point needs digits after it") }
            while digit(q) { q += 1 }
            integer = false
        }
        if unsafe q < end && (input[q] | 0x20) == 0x65 {
            q += 1
            if unsafe q < end && (input[q] == 0x2B || input[q] == 0x2D) { q += 1 }
            guard digit(q) else { throw JSONError(.invalidNumber, at: p, detail: "an exponent needs digits") }
            while digit(q) { q += 1 }
            integer = false
        }
        guard isDelimiter(q) else {
            throw JSONError(.invalidNumber, at: p, detail: "unexpected character in a number")
        }
        append(Node(start: UInt32(p), end: UInt32(q), count: 0, kind: .number, flag: integer))
    }

    @inline(__always)
    mutating func appendString(openQuote: Int, closeQuote: Int) throws(JSONError) {
        let start = openQuote + 1
        let escaped = unsafe StructuralIndex.hasBackslash(backslashWords, start, closeQuote)
        if escaped { try validateEscapes(start, closeQuote) }
        append(Node(start: UInt32(start), end: UInt32(closeQuote), count: 0, kind: .string, flag: escaped))
    }

    private func validateEscapes(_ start: Int, _ end: Int) throws(JSONError) {
        var q = start
        while q < end {
            guard unsafe input[q] == 0x5C else { q += 1; continue }
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
