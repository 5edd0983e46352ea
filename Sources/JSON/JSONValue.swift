// JSON.JSONValue: on-demand reading of one value of a parsed document. Nothing is
// converted until asked: `string()` unescapes (or, without escapes, decodes the bytes in
// place), `int64()`/`uint64()` parse exactly with overflow errors, `double()` is correctly
// rounded (an exact fast path for up to 19 digits and small exponents, otherwise the
// C library's correctly rounded conversion through the standard library). Object lookup
// compares raw key bytes against the query, unescaping only keys that hold escapes.

public enum JSONKind: String, Sendable, Equatable {
    case object, array, string, number, bool, null
}

public struct JSONValue: Sendable {
    public let document: JSONDocument
    @usableFromInline let index: Int

    @usableFromInline
    init(document: JSONDocument, index: Int) {
        self.document = document
        self.index = index
    }

    @inline(__always) var node: JSONDocument.Node { document.node(index) }

    public var kind: JSONKind {
        switch node.kind {
        case .object: return .object
        case .array: return .array
        case .string: return .string
        case .number: return .number
        case .true, .false: return .bool
        case .null: return .null
        }
    }

    /// JSON Pointer of this value within its document ("" for the root).
    public var pointer: String { document.pointer(of: index) }

    public var isNull: Bool { node.kind == .null }

    /// Members of an object or elements of an array; 0 for scalars.
    public var count: Int { Int(node.count) }

    /// The value's source text, exactly as it appeared (strings with their quotes).
    public var rawText: String { document.rawText(of: index) }

    // MARK: Containers

    // Inlinable, with what makes and walks values: a value holds its document, so making
    // one retains it and dropping it releases it, and where the caller's optimizer sees
    // both (and that the value it came from outlives it) it can drop the pair. The look-ups
    // themselves stay behind calls into the module.

    /// The member named `key` of an object; nil when absent or when this is not an object.
    @inlinable
    public subscript(key: String) -> JSONValue? {
        guard let v = document.member(of: index, key) else { return nil }
        return JSONValue(document: document, index: v)
    }

    /// Element `i` of an array; nil when out of range or when this is not an array.
    public subscript(i: Int) -> JSONValue? {
        guard node.kind == .array, i >= 0, i < count else { return nil }
        var c = index + 1
        for _ in 0..<i { c = document.next(after: c) }
        return JSONValue(document: document, index: c)
    }

    /// The elements of an array (empty for anything else).
    @inlinable
    public var elements: Elements { Elements(value: self) }

    /// The members of an object in document order (empty for anything else).
    @inlinable
    public var members: Members { Members(value: self) }

    /// Where an iterator is among a container's nodes: the next one to visit, and one
    /// past the last (the same, for a value that is not a container of that kind).
    @usableFromInline
    struct NodeWalk: Sendable {
        @usableFromInline let document: JSONDocument
        @usableFromInline var at: Int
        @usableFromInline let end: Int
        @usableFromInline init(_ value: JSONValue, ifKind kind: JSONDocument.Kind) {
            document = value.document
            at = value.index + 1
            end = value.document.end(of: value.index, ifKind: kind)
        }
    }

    public struct Elements: Sequence, Sendable {
        @usableFromInline let value: JSONValue
        @usableFromInline init(value: JSONValue) { self.value = value }
        @inlinable
        public func makeIterator() -> Iterator { Iterator(walk: NodeWalk(value, ifKind: .array)) }
        public struct Iterator: IteratorProtocol {
            @usableFromInline var walk: NodeWalk
            @usableFromInline init(walk: NodeWalk) { self.walk = walk }
            @inlinable
            public mutating func next() -> JSONValue? {
                let i = walk.at
                guard i < walk.end else { return nil }
                walk.at = walk.document.next(after: i)
                return JSONValue(document: walk.document, index: i)
            }
        }
    }

    public struct Members: Sequence, Sendable {
        @usableFromInline let value: JSONValue
        @usableFromInline init(value: JSONValue) { self.value = value }
        @inlinable
        public func makeIterator() -> Iterator { Iterator(walk: NodeWalk(value, ifKind: .object)) }
        public struct Iterator: IteratorProtocol {
            @usableFromInline var walk: NodeWalk
            @usableFromInline init(walk: NodeWalk) { self.walk = walk }
            @inlinable
            public mutating func next() -> (key: String, value: JSONValue)? {
                let k = walk.at
                guard k < walk.end else { return nil }
                walk.at = walk.document.next(after: k + 1)
                return ((try? walk.document.string(at: k)) ?? "", JSONValue(document: walk.document, index: k + 1))
            }
        }
    }

    // MARK: Scalars

    var unescapedKey: String { (try? string()) ?? "" }

    /// The unescaped string.
    public func string() throws(JSONError) -> String { try document.string(at: index) }

    /// The string's UTF-8 bytes, unescaped, passed to `body` without building a String
    /// when the string has no escapes. Do not let the pointer escape.
    public func withUTF8<R>(_ body: (UnsafeBufferPointer<UInt8>) throws -> R) throws -> R {
        let n = node
        guard n.kind == .string else { throw mismatch("string") }
        let range = Int(n.start)..<Int(n.end)
        // The text lives as long as the document, which this value (borrowed for the call)
        // holds: no retain around the body is needed.
        if !n.flag { return unsafe try body(document.text(range)) }
        let bytes = unsafe Escapes.unescape(UnsafeRawBufferPointer(document.text(range)))
        return unsafe try bytes.withUnsafeBufferPointer(body)
    }

    public func bool() throws(JSONError) -> Bool { try document.bool(at: index) }

    /// An integer that fits Int64 exactly (no fraction, no exponent).
    public func int64() throws(JSONError) -> Int64 { try document.int64(at: index) }

    /// A non-negative integer that fits UInt64 exactly ("-0" is 0).
    public func uint64() throws(JSONError) -> UInt64 { try document.uint64(at: index) }

    public func int() throws(JSONError) -> Int { Int(try int64()) }

    /// The number as the nearest Double (correctly rounded). Overflow to infinity is an
    /// error; underflow gives zero of the right sign.
    public func double() throws(JSONError) -> Double { try document.double(at: index) }

    @usableFromInline
    func mismatch(_ expected: String) -> JSONError { document.mismatch(at: index, expected) }

    func outOfRange(_ type: String) -> JSONError { document.outOfRange(at: index, type) }
}

/// The first eight bytes of `b` (fewer when it is shorter) as a little-endian word, the
/// rest zero: at most two loads, never outside the buffer. A member look-up's query word
/// and a key's fingerprint (TreeBuilder+DuplicateKeys) both start from it.
@inlinable @inline(__always)
func leadingWord(_ b: UnsafeRawBufferPointer) -> UInt64 {
    let n = b.count
    guard n > 0 else { return 0 }
    let p = unsafe b.baseAddress!
    if n >= 8 { return unsafe p.loadUnaligned(as: UInt64.self) }
    if n >= 4 {   // two four-byte loads that overlap in the middle
        let low = unsafe UInt64(p.loadUnaligned(as: UInt32.self))
        let high = unsafe UInt64(p.loadUnaligned(fromByteOffset: n - 4, as: UInt32.self))
        return low | high << UInt64(8 * (n - 4))
    }
    if n >= 2 {
        let low = unsafe UInt64(p.loadUnaligned(as: UInt16.self))
        let high = unsafe UInt64(p.loadUnaligned(fromByteOffset: n - 2, as: UInt16.self))
        return low | high << UInt64(8 * (n - 2))
    }
    return unsafe UInt64(p.load(as: UInt8.self))
}

@inline(__always)
func memcmpEqual(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ n: Int) -> Bool {
    var k = 0
    while k + 8 <= n {
        if unsafe UnsafeRawPointer(a + k).loadUnaligned(as: UInt64.self) != UnsafeRawPointer(b + k).loadUnaligned(as: UInt64.self) { return false }
        k += 8
    }
    while k < n {
        if unsafe a[k] != b[k] { return false }
        k += 1
    }
    return true
}

/// Text to Double, correctly rounded.
enum NumberParser {
    private static let powersOfTen: [Double] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
        1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    ]

    /// `text` is a validated JSON number.
    static func double(_ text: UnsafeBufferPointer<UInt8>) -> Double {
        // Exact fast path (Clinger): a mantissa below 2^53 and |exponent| <= 22 give an
        // exact product or quotient of two exactly representable doubles.
        var p = 0
        let end = text.count
        let negative = unsafe text[0] == 0x2D
        if negative { p = 1 }
        // Wrapping arithmetic: `p` and the digit counts are below the text's length, and
        // the mantissa takes a digit only while it has fewer than 19 (below 10^18, so
        // times ten plus a digit stays below 2^64).
        var mantissa: UInt64 = 0
        var digits = 0
        var exponent = 0
        while p < end, unsafe text[p] &- 0x30 < 10 {
            if digits < 19 { mantissa = unsafe mantissa &* 10 &+ UInt64(text[p] &- 0x30); if mantissa != 0 { digits &+= 1 } } else { exponent &+= 1; digits &+= 1 }
            p &+= 1
        }
        if unsafe p < end && text[p] == 0x2E {
            p &+= 1
            while p < end, unsafe text[p] &- 0x30 < 10 {
                if digits < 19 { mantissa = unsafe mantissa &* 10 &+ UInt64(text[p] &- 0x30); exponent &-= 1; if mantissa != 0 { digits &+= 1 } } else { digits &+= 1 }
                p &+= 1
            }
        }
        var exact = digits <= 19
        if p < end {   // exponent part
            p += 1
            var expNegative = false
            if unsafe text[p] == 0x2B || text[p] == 0x2D { expNegative = unsafe text[p] == 0x2D; p += 1 }
            var e = 0
            while p < end {
                if e < 100_000 { e = unsafe e * 10 + Int(text[p] &- 0x30) } else { exact = false }
                p += 1
            }
            exponent += expNegative ? -e : e
        }
        if exact && mantissa <= 1 << 53 && exponent >= -22 && exponent <= 22 {
            var d = Double(mantissa)
            if exponent < 0 { d /= powersOfTen[-exponent] } else { d *= powersOfTen[exponent] }
            return negative ? -d : d
        }
        if mantissa == 0 && exact { return negative ? -0.0 : 0.0 }
        // Slow path: strtod through the standard library (correctly rounded).
        let s = unsafe String(decoding: text, as: UTF8.self)
        return Double(s) ?? .nan
    }
}
