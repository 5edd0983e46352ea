// JSON.JSONDocument+Reading: the readers behind JSONValue, addressed by node index. They
// read the node array and the text through the document's pointers and make no JSONValue
// (a value holds the document, so making one retains it and dropping it releases it: an
// atomic operation each, which on the benchmark's 1 MB job list cost more than everything
// else the reads did). JSONValue's methods and the typed fields (Typed+Fields) call these.

extension JSONDocument {
    /// Index of the value of member `query` of node `object`; nil when absent or when the
    /// node is not an object. Keys without escapes are compared as bytes; escaped keys are
    /// unescaped first. Inlined into the String form below, which is what callers reach:
    /// one call per look-up rather than two.
    @inline(__always)
    func member(of object: Int, _ query: UnsafeBufferPointer<UInt8>) -> Int? {
        let (word, mask) = unsafe JSONDocument.queryWord(query)
        return unsafe member(of: object, query, word: word, mask: mask)
    }

    /// `member(of:_:)` with the query's word and mask computed by the caller: the
    /// StaticString form below, inlined at call sites where a literal's word and mask
    /// fold to constants.
    @usableFromInline
    func member(of object: Int, literal query: UnsafeBufferPointer<UInt8>, word: UInt64, mask: UInt64) -> Int? {
        unsafe member(of: object, query, word: word, mask: mask)
    }

    /// Index of the value of member `key` of node `object`, for a key written as a literal:
    /// inlined into the caller, where the literal's bytes, length, word and mask are
    /// constants, so what is left is the call of the loop (a String key is decoded at
    /// each look-up instead).
    @inlinable @inline(__always)
    func member(of object: Int, _ key: StaticString) -> Int? {
        key.withUTF8Buffer { q in
            let (word, mask) = unsafe JSONDocument.queryWord(q)
            return unsafe member(of: object, literal: q, word: word, mask: mask)
        }
    }

    /// A query's first eight bytes as a word, and the mask of its length within a word
    /// (all ones from eight bytes on): a key of up to eight bytes is compared as one word.
    @inlinable @inline(__always)
    static func queryWord(_ query: UnsafeBufferPointer<UInt8>) -> (word: UInt64, mask: UInt64) {
        let count = query.count
        let mask: UInt64 = count >= 8 ? ~0 : (1 &<< UInt64(truncatingIfNeeded: 8 &* count)) &- 1
        return unsafe (leadingWord(UnsafeRawBufferPointer(query)), mask)
    }

    /// The look-up loop behind the forms above; `word` and `mask` are `queryWord(query)`.
    @inline(__always)
    func member(of object: Int, _ query: UnsafeBufferPointer<UInt8>, word: UInt64, mask: UInt64) -> Int? {
        let n = node(object)
        guard n.kind == .object else { return nil }
        // Node indices here are below the node count, and offsets below the text's length
        // (under 4 GiB), so the adds wrap: no overflow check (a branch each) per key.
        var c = object &+ 1
        // A query of up to eight bytes is compared as one word: the key's bytes loaded at
        // once (when eight bytes of text follow its start, as they do for every key but
        // one near the end of the document) and masked to its length.
        let count = query.count
        let lastWordStart = length &- 8
        for _ in 0..<n.count {
            let k = node(c)
            if !k.flag {
                let len = Int(k.end &- k.start), start = Int(k.start)
                if len == count {
                    if count <= 8 && start <= lastWordStart {
                        if unsafe UnsafeRawPointer(text + start).loadUnaligned(as: UInt64.self) & mask == word { return c &+ 1 }
                    } else if unsafe plainKey(at: start, equals: query) {
                        return c &+ 1
                    }
                }
            } else if unsafe escapedKey(k, equals: query) {
                return c &+ 1
            }
            // The next key: right after a scalar value, else past the container's subtree.
            // A branch on the value's kind, which the predictor learns for records of one
            // shape, so the next step's loads need not wait for this one's. (A link to the
            // next key stored in each key's node, as stage 2 once wrote, made every step
            // wait for the load before it. ADR 0017 has the measurements.) This is
            // `next(after: c + 1)` written as a branch; giving `next(after:)` itself the
            // branch made the iterators' reads 1-2 % slower, so it keeps its select. The
            // container side is a call, or the compiler turns the branch back into a select
            // (a conditional move of the loaded end), which chains each step to the load
            // before it again.
            let v = node(c &+ 1)
            if _slowPath(v.kind == .object || v.kind == .array) { c = subtreeEnd(c &+ 1) } else { c &+= 2 }
        }
        return nil
    }

    /// Node index one past container `i`'s subtree: the look-up's step over a container
    /// value, out of line so that the step stays a branch (see `member`).
    @inline(never)
    func subtreeEnd(_ i: Int) -> Int { Int(node(i).end) }

    // The look-up's comparisons other than one word, out of line: inlined, they made the
    // look-up keep more registers, saved and restored on every call.

    /// Whether the `query.count` bytes of text at `start` (a key without escapes) are `query`.
    @inline(never)
    func plainKey(at start: Int, equals query: UnsafeBufferPointer<UInt8>) -> Bool {
        unsafe query.isEmpty || memcmpEqual(text + start, query.baseAddress!, query.count)
    }

    /// Whether key node `k`, which has escapes, is `query` once unescaped.
    @inline(never)
    func escapedKey(_ k: Node, equals query: UnsafeBufferPointer<UInt8>) -> Bool {
        unsafe Escapes.unescape(UnsafeRawBufferPointer(text(Int(k.start)..<Int(k.end)))).elementsEqual(query)
    }

    /// Index of the value of member `key` of node `object` (see `member(of:_:)`).
    @usableFromInline @inline(__always)
    func member(of object: Int, _ key: String) -> Int? {
        // A native string (literals, most keys) lends its UTF-8 in place; others are copied.
        if let found = unsafe key.utf8.withContiguousStorageIfAvailable({ q in unsafe member(of: object, q) }) { return found }
        var k = key
        return k.withUTF8 { q in unsafe member(of: object, q) }
    }

    @usableFromInline
    func string(at i: Int) throws(JSONError) -> String {
        let n = node(i)
        guard n.kind == .string else { throw mismatch(at: i, "string") }
        let range = Int(n.start)..<Int(n.end)
        if !n.flag { return unsafe String(decoding: text(range), as: UTF8.self) }
        return String(decoding: unsafe Escapes.unescape(UnsafeRawBufferPointer(text(range))), as: UTF8.self)
    }

    func bool(at i: Int) throws(JSONError) -> Bool {
        switch node(i).kind {
        case .true: return true
        case .false: return false
        default: throw mismatch(at: i, "boolean")
        }
    }

    /// The value of integer node `i` when it has up to eight digits and eight bytes can be
    /// loaded from its first (nearly every integer an API reads); else nil. The first step
    /// of `int64(at:)` and `uint64(at:)`, which are inlinable with it: a typed integer field
    /// (whose `read` is inlinable too) is then read in the caller, without a call (which
    /// cost more than the conversion).
    @inlinable @inline(__always)
    func smallInteger(at i: Int) -> Int64? {
        let n = node(i)
        guard n.kind == .number && n.flag else { return nil }
        var p = Int(n.start)
        let negative = byte(p) == 0x2D
        if negative { p &+= 1 }
        let digits = Int(n.end) &- p
        guard digits <= 8 && p &+ 8 <= length else { return nil }
        let magnitude = unsafe Int64(truncatingIfNeeded: JSONDocument.eightDigits(text + p, digits))
        return negative ? 0 &- magnitude : magnitude
    }

    /// Integer node `i` as an Int64: `smallInteger`, else the full reader (range and type
    /// errors).
    @inlinable @inline(__always)
    func int64(at i: Int) throws(JSONError) -> Int64 {
        if let v = smallInteger(at: i) { return v }
        return try int64Fully(at: i)
    }

    /// Integer node `i` as a UInt64 ("-0" is 0): `smallInteger`, else the full reader.
    @inlinable @inline(__always)
    func uint64(at i: Int) throws(JSONError) -> UInt64 {
        if let v = smallInteger(at: i), v >= 0 { return UInt64(v) }
        return try uint64Fully(at: i)
    }

    @usableFromInline
    func int64Fully(at i: Int) throws(JSONError) -> Int64 {
        let (negative, magnitude) = try integerParts(at: i)
        if negative {
            guard magnitude <= UInt64(Int64.max) + 1 else { throw outOfRange(at: i, "Int64") }
            return magnitude == UInt64(Int64.max) + 1 ? .min : -Int64(magnitude)
        }
        guard magnitude <= UInt64(Int64.max) else { throw outOfRange(at: i, "Int64") }
        return Int64(magnitude)
    }

    @usableFromInline
    func uint64Fully(at i: Int) throws(JSONError) -> UInt64 {
        let (negative, magnitude) = try integerParts(at: i)
        if negative && magnitude != 0 { throw outOfRange(at: i, "UInt64") }
        return magnitude
    }

    /// Sign and magnitude of an integer node (no fraction, no exponent).
    @inline(__always)
    private func integerParts(at i: Int) throws(JSONError) -> (Bool, UInt64) {
        let n = node(i)
        guard n.kind == .number else { throw mismatch(at: i, "integer") }
        guard n.flag else {
            throw JSONError(.typeMismatch, pointer: pointer(of: i), detail: "expected an integer, found \(rawText(of: i))")
        }
        var p = Int(n.start)
        let end = Int(n.end)
        let negative = byte(p) == 0x2D
        // Offsets below the text's length (under 4 GiB): the adds wrap, unchecked.
        if negative { p &+= 1 }
        let digits = end &- p
        // Up to sixteen digits, with eight bytes of text to load from the first (every
        // number but those in the document's last eight bytes): eight digits at a time, the
        // last eight of a longer number loaded from inside it.
        if digits <= 16 && p &+ 8 <= length {
            if digits <= 8 { return unsafe (negative, JSONDocument.eightDigits(text + p, digits)) }
            let high = unsafe JSONDocument.eightDigits(text + p, digits &- 8)
            let low = unsafe JSONDocument.eightDigits(text + (end &- 8), 8)
            return (negative, high &* 100_000_000 &+ low)
        }
        var v: UInt64 = 0
        // Up to 19 digits cannot overflow a UInt64: no checks.
        if digits <= 19 {
            while p < end {
                v = v &* 10 &+ UInt64(byte(p) &- 0x30)
                p += 1
            }
            return (negative, v)
        }
        while p < end {
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(UInt64(byte(p) &- 0x30))
            if o1 || o2 { throw outOfRange(at: i, negative ? "Int64" : "UInt64") }
            v = s
            p += 1
        }
        return (negative, v)
    }

    /// The value of the `count` (1...8) ASCII digits at `p`, where eight bytes can be
    /// loaded. The word is shifted so the digits fill its top bytes (the first, most
    /// significant, lowest), which leaves zeros in front as leading zeros; then pairs of
    /// digits, pairs of pairs and pairs of those are combined by three multiplies, each
    /// scaling the more significant half (the lower lane) and adding the other.
    @inlinable @inline(__always)
    static func eightDigits(_ p: UnsafePointer<UInt8>, _ count: Int) -> UInt64 {
        var x = unsafe UnsafeRawPointer(p).loadUnaligned(as: UInt64.self)
        x = (x & 0x0F0F_0F0F_0F0F_0F0F) &<< UInt64(truncatingIfNeeded: 8 &* (8 &- count))
        x = (x &* (10 << 8 + 1)) &>> 8 & 0x00FF_00FF_00FF_00FF        // two digits per 16 bits
        x = (x &* (100 << 16 + 1)) &>> 16 & 0x0000_FFFF_0000_FFFF     // four per 32 bits
        return (x &* (10_000 << 32 + 1)) &>> 32                       // all eight
    }

    /// The number as the nearest Double (correctly rounded). Overflow to infinity is an
    /// error; underflow gives zero of the right sign. Inlined into Double's `read`, like
    /// the integer readers.
    @inline(__always)
    func double(at i: Int) throws(JSONError) -> Double {
        let n = node(i)
        guard n.kind == .number else { throw mismatch(at: i, "number") }
        let d = unsafe NumberParser.double(UnsafeBufferPointer(start: text + Int(n.start), count: Int(n.end &- n.start)))
        guard d.isFinite else { throw outOfRange(at: i, "Double") }
        return d
    }

    func mismatch(at i: Int, _ expected: String) -> JSONError {
        JSONError(.typeMismatch, pointer: pointer(of: i), detail: "expected \(expected), found \(JSONValue(document: self, index: i).kind.rawValue)")
    }

    func outOfRange(at i: Int, _ type: String) -> JSONError {
        JSONError(.numberOutOfRange, pointer: pointer(of: i), detail: "\(rawText(of: i)) does not fit \(type)")
    }

    /// Node `i`'s source text, exactly as it appeared (strings with their quotes).
    func rawText(of i: Int) -> String {
        let n = node(i)
        let range: Range<Int>
        switch n.kind {
        case .string: range = Int(n.start) - 1..<Int(n.end) + 1
        case .object, .array:
            // Nodes do not record where a container closes. Scanning back from the next
            // value for the last closer is wrong when the container is the last member of
            // its parent ("[[1]]": the inner array would end at the outer bracket), so
            // scan forward to the matching closer, skipping strings. The document is
            // valid, so brackets balance; the cost is linear in the text being copied.
            var depth = 0
            var p = Int(n.start)
            var inString = false
            while true {
                let c = byte(p)
                if inString {
                    if c == 0x5C { p += 1 } else if c == 0x22 { inString = false }
                } else if c == 0x22 {
                    inString = true
                } else if c == 0x5B || c == 0x7B {
                    depth += 1
                } else if c == 0x5D || c == 0x7D {
                    depth -= 1
                    if depth == 0 { break }
                }
                p += 1
            }
            range = Int(n.start)..<p + 1
        default: range = Int(n.start)..<Int(n.end)
        }
        return unsafe String(decoding: text(range), as: UTF8.self)
    }
}
