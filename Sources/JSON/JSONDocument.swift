// JSON.JSONDocument: stage 2 of the parser. It walks the structural offsets from stage 1
// once, checks the whole RFC 8259 grammar with an explicit stack (depth limit, never
// recursion), and records one small node per value: its kind and where its bytes are.
// Containers also record their member count and where their subtree ends, so skipping a
// value is O(1). Nothing is converted here: strings stay escaped in the input and
// numbers stay text until a reader asks (JSONValue), which is what keeps parsing cheap.
//
// Everything is validated up front (an API must not act on half a document): literals,
// number syntax, escapes (including UTF-16 surrogate pairing), UTF-8, control characters.
//
// Duplicate keys: refused (`duplicateKey`). A gateway or another parser that keeps the
// first or the last of two equal keys would otherwise see a different request than we
// do; refusing is the only rule on which every reader agrees. Keys are compared after
// unescaping, so {"a":1,"\u0061":2} is a duplicate too.

public final class JSONDocument: Sendable {
    public struct Options: Sendable, Equatable {
        /// Containers nested deeper than this are an error (`tooDeep`), never a crash.
        public var maxDepth = 512
        public var kernel: JSONScanKernel = .simd
        public init() {}
    }

    enum Kind: UInt8 {
        case object, array, string, number, `true`, `false`, null
    }

    struct Node {
        /// Strings: first byte after the opening quote. Numbers/literals: first byte.
        /// Containers: offset of the opening bracket.
        var start: UInt32
        /// Strings: offset of the closing quote. Numbers: one past the last byte.
        /// Containers: node index one past the subtree.
        var end: UInt32
        /// Containers: members or elements.
        var count: UInt32
        var kind: Kind
        /// Strings: has escapes. Numbers: is an integer (no fraction, no exponent).
        var flag: Bool
    }

    let bytes: [UInt8]
    let nodes: [Node]

    /// Parses `bytes` (which the document keeps; no copy is made).
    public init(parsing bytes: [UInt8], options: Options = Options()) throws(JSONError) {
        self.bytes = bytes
        let result = unsafe bytes.withUnsafeBytes { raw -> Result<[Node], JSONError> in
            do throws(JSONError) {
                let index = unsafe try Stage1.index(raw, kernel: options.kernel)
                // A value needs at least one structural, so their count bounds the nodes.
                var failure: JSONError?
                let nodes = unsafe [Node](unsafeUninitializedCapacity: max(1, index.positions.count)) { buffer, written in
                    var builder = unsafe TreeBuilder(input: raw, index: index, maxDepth: options.maxDepth, nodes: buffer.baseAddress!)
                    do throws(JSONError) {
                        written = try builder.build()
                    } catch {
                        failure = error
                        written = 0
                    }
                }
                if let failure { throw failure }
                return .success(nodes)
            } catch {
                return .failure(error)
            }
        }
        self.nodes = try result.get()
    }

    public convenience init(parsing text: String, options: Options = Options()) throws(JSONError) {
        try self.init(parsing: Array(text.utf8), options: options)
    }

    /// The top-level value.
    public var root: JSONValue { JSONValue(document: self, index: 0) }

    /// Number of values (keys included) in the document.
    public var valueCount: Int { nodes.count }

    /// Node index one past `i`'s subtree.
    @inline(__always)
    func next(after i: Int) -> Int {
        let n = nodes[i]
        return n.kind == .object || n.kind == .array ? Int(n.end) : i + 1
    }

    /// JSON Pointer (RFC 6901) of node `target`, found by walking down from the root.
    func pointer(of target: Int) -> String {
        var path = ""
        var at = 0
        while at != target {
            let n = nodes[at]
            var c = at + 1
            var found = false
            if n.kind == .array {
                var k = 0
                while c < Int(n.end) {
                    let e = next(after: c)
                    if target >= c && target < e { path += "/\(k)"; at = c; found = true; break }
                    c = e
                    k += 1
                }
            } else if n.kind == .object {
                while c < Int(n.end) {
                    let v = c + 1
                    let e = next(after: v)
                    if target >= c && target < e {
                        let key = JSONValue(document: self, index: c).unescapedKey
                        path += "/" + key.escapedAsPointerToken()
                        at = target == c ? c : v
                        if target == c { return path }
                        found = true
                        break
                    }
                    c = e
                }
            }
            if !found { break }
        }
        return path
    }
}

extension String {
    /// This string as one JSON Pointer reference token (RFC 6901: "~" -> "~0", "/" -> "~1").
    func escapedAsPointerToken() -> String {
        var s = ""
        for ch in self {
            switch ch {
            case "~": s += "~0"
            case "/": s += "~1"
            default: s.append(ch)
            }
        }
        return s
    }
}

/// Stage 2 proper: one pass over the structural offsets.
@safe struct TreeBuilder {
    typealias Node = JSONDocument.Node

    /// An open container. Plain data, so the stack never retains or releases.
    private struct Frame {
        var node: Int
        var isObject: Bool
        var count: UInt32 = 0
        var keysStart: Int
        /// Index into `keySets` once the object has many keys, else -1.
        var keySet: Int = -1
    }

    private enum State { case value, afterValue, objectFirst, objectKey, arrayFirst }

    let input: UnsafeRawBufferPointer
    let index: StructuralIndex
    let maxDepth: Int
    /// Output storage, sized by the caller to the structural count (the bound on nodes).
    private let nodes: UnsafeMutablePointer<Node>
    private var nodeCount = 0
    private var stack: [Frame] = []
    /// Keys of the open objects, by frame: node index and a fingerprint (length and up to
    /// 16 bytes) that settles almost every comparison without touching the bytes again.
    private var keys: [(node: Int, print: UInt64)] = []
    private var keySets: [Set<[UInt8]>] = []

    init(input: UnsafeRawBufferPointer, index: StructuralIndex, maxDepth: Int, nodes: UnsafeMutablePointer<Node>) {
        unsafe self.input = input
        self.index = index
        self.maxDepth = maxDepth
        unsafe self.nodes = nodes
    }

    @inline(__always)
    private mutating func append(_ node: Node) {
        unsafe (nodes + nodeCount).initialize(to: node)
        nodeCount += 1
    }

    /// Builds the nodes; returns how many were written.
    mutating func build() throws(JSONError) -> Int {
        let n = index.positions.count
        guard n > 0 else { throw JSONError(.empty, at: 0) }
        return unsafe try index.positions.withUnsafeBufferPointer { pos throws(JSONError) in unsafe try build(pos, n) }
    }

    private mutating func build(_ pos: UnsafeBufferPointer<UInt32>, _ n: Int) throws(JSONError) -> Int {
        var i = 0
        var state = State.value
        while true {
            switch state {
            case .value:
                guard i < n else { throw unsafe JSONError(.unexpectedEnd, at: input.count) }
                let p = unsafe Int(pos[i])
                if !stack.isEmpty { stack[stack.count - 1].count &+= 1 }
                switch unsafe input[p] {
                case 0x7B, 0x5B:   // { [
                    guard stack.count < maxDepth else {
                        throw JSONError(.tooDeep, at: p, detail: "the limit is \(maxDepth)")
                    }
                    let isObject = unsafe input[p] == 0x7B
                    stack.append(Frame(node: nodeCount, isObject: isObject, keysStart: keys.count))
                    append(Node(start: UInt32(p), end: 0, count: 0, kind: isObject ? .object : .array, flag: false))
                    i += 1
                    state = isObject ? .objectFirst : .arrayFirst
                    continue
                case 0x22:
                    unsafe try appendString(openQuote: p, closeQuote: Int(pos[i + 1]))
                    i += 2
                case 0x74: try literal(p, "true", .true); i += 1
                case 0x66: try literal(p, "false", .false); i += 1
                case 0x6E: try literal(p, "null", .null); i += 1
                case 0x2D, 0x30...0x39: try number(p); i += 1
                default:
                    throw unsafe JSONError(.unexpectedCharacter, at: p, detail: describe(input[p], expected: "a value"))
                }
                state = .afterValue

            case .afterValue:
                guard let top = stack.last else {
                    if i < n { throw unsafe JSONError(.trailingContent, at: Int(pos[i])) }
                    return nodeCount
                }
                guard i < n else { throw unsafe JSONError(.unexpectedEnd, at: input.count) }
                let p = unsafe Int(pos[i])
                let c = unsafe input[p]
                if c == 0x2C {
                    i += 1
                    state = top.isObject ? .objectKey : .value
                } else if c == (top.isObject ? 0x7D : 0x5D) {
                    close()
                    i += 1
                } else {
                    throw JSONError(.unexpectedCharacter, at: p, detail: describe(c, expected: top.isObject ? "',' or '}'" : "',' or ']'"))
                }

            case .objectFirst, .arrayFirst:
                guard i < n else { throw unsafe JSONError(.unexpectedEnd, at: input.count) }
                let p = unsafe Int(pos[i])
                let closer: UInt8 = state == .objectFirst ? 0x7D : 0x5D
                if unsafe input[p] == closer {
                    close()
                    i += 1
                    state = .afterValue
                } else {
                    state = state == .objectFirst ? .objectKey : .value
                }

            case .objectKey:
                guard i < n else { throw unsafe JSONError(.unexpectedEnd, at: input.count) }
                let p = unsafe Int(pos[i])
                guard unsafe input[p] == 0x22 else {
                    throw unsafe JSONError(.unexpectedCharacter, at: p, detail: describe(input[p], expected: "a string key"))
                }
                unsafe try appendString(openQuote: p, closeQuote: Int(pos[i + 1]))
                try checkDuplicate(nodeCount - 1)
                i += 2
                guard i < n else { throw unsafe JSONError(.unexpectedEnd, at: input.count) }
                let q = unsafe Int(pos[i])
                guard unsafe input[q] == 0x3A else {
                    throw unsafe JSONError(.unexpectedCharacter, at: q, detail: describe(input[q], expected: "':'"))
                }
                i += 1
                state = .value
            }
        }
    }

    private mutating func close() {
        let f = stack.removeLast()
        unsafe nodes[f.node].end = UInt32(nodeCount)
        unsafe nodes[f.node].count = f.count
        keys.removeSubrange(f.keysStart...)
        if f.keySet >= 0 { keySets.removeLast() }
    }

    private func describe(_ c: UInt8, expected: String) -> String {
        let shown = c >= 0x21 && c < 0x7F ? "'\(Character(Unicode.Scalar(c)))'" : "byte 0x\(String(c, radix: 16))"
        return "expected \(expected), found \(shown)"
    }

    // MARK: Scalars

    @inline(__always)
    private func isDelimiter(_ p: Int) -> Bool {
        guard unsafe p < input.count else { return true }
        switch unsafe input[p] {
        case 0x20, 0x09, 0x0A, 0x0D, 0x2C, 0x3A, 0x5B, 0x5D, 0x7B, 0x7D, 0x22: return true
        default: return false
        }
    }

    private mutating func literal(_ p: Int, _ word: StaticString, _ kind: JSONDocument.Kind) throws(JSONError) {
        let len = word.utf8CodeUnitCount
        guard unsafe p + len <= input.count, isDelimiter(p + len) else { throw JSONError(.invalidLiteral, at: p) }
        let w = unsafe word.utf8Start
        for k in 0..<len where unsafe input[p + k] != w[k] { throw JSONError(.invalidLiteral, at: p) }
        append(Node(start: UInt32(p), end: UInt32(p + len), count: 0, kind: kind, flag: false))
    }

    private mutating func number(_ p: Int) throws(JSONError) {
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

    private mutating func appendString(openQuote: Int, closeQuote: Int) throws(JSONError) {
        let start = openQuote + 1
        let escaped = index.hasBackslash(in: start..<closeQuote)
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

    // MARK: Duplicate keys

    private mutating func checkDuplicate(_ key: Int) throws(JSONError) {
        let f = stack.count - 1
        let first = stack[f].keysStart
        let k = unsafe nodes[key]
        if stack[f].keySet < 0 {
            let input = unsafe self.input
            let print = unsafe TreeBuilder.fingerprint(k, input)
            if keys.count - first < 32 {
                let nodes = unsafe self.nodes
                let clash = unsafe keys.withUnsafeBufferPointer { ks in
                    for j in first..<ks.count where unsafe ks[j].print == print && TreeBuilder.keysEqual(nodes[ks[j].node], k, input) { return true }
                    return false
                }
                if clash { throw duplicate(k) }
                keys.append((key, print))
                return
            }
            // Large object: switch to a hash set of the unescaped keys (no quadratic scan).
            var set = Set<[UInt8]>()
            for j in first..<keys.count { unsafe set.insert(keyBytes(nodes[keys[j].node])) }
            stack[f].keySet = keySets.count
            keySets.append(set)
        }
        guard keySets[stack[f].keySet].insert(keyBytes(k)).inserted else { throw duplicate(k) }
        keys.append((key, 0))
    }

    private func duplicate(_ k: Node) -> JSONError {
        JSONError(.duplicateKey, at: Int(k.start) - 1, detail: "\"\(String(decoding: keyBytes(k), as: UTF8.self))\"")
    }

    /// Length plus the first and last eight bytes (escaped keys: of the unescaped form, so
    /// "a" and "\u0061" print alike).
    @inline(__always)
    private static func fingerprint(_ k: Node, _ input: UnsafeRawBufferPointer) -> UInt64 {
        if k.flag { return unsafe keyBytes(k, input).withUnsafeBytes { unsafe fingerprint($0) } }
        let start = Int(k.start), len = Int(k.end - k.start)
        if len < 8 && start + 8 <= input.count {
            // Short key: one load (in bounds: the input goes on) masked to the key's bytes.
            let a = unsafe input.loadUnaligned(fromByteOffset: start, as: UInt64.self) & ((1 << (8 * UInt64(len))) &- 1)
            return mix(len, a, 0)
        }
        return unsafe fingerprint(UnsafeRawBufferPointer(rebasing: input[start..<(start + len)]))
    }

    /// Length plus the first and last eight bytes (little-endian); shorter keys are their
    /// bytes. Must give the same value as the short-key load above for the same bytes.
    static func fingerprint(_ b: UnsafeRawBufferPointer) -> UInt64 {
        let len = b.count
        if len >= 8 {
            return unsafe mix(len, b.loadUnaligned(fromByteOffset: 0, as: UInt64.self), b.loadUnaligned(fromByteOffset: len - 8, as: UInt64.self))
        }
        var a: UInt64 = 0
        for j in 0..<len { unsafe a |= UInt64(b[j]) << (8 * UInt64(j)) }
        return mix(len, a, 0)
    }

    @inline(__always)
    private static func mix(_ len: Int, _ a: UInt64, _ z: UInt64) -> UInt64 {
        (UInt64(len) &* 0x9E37_79B9_7F4A_7C15) ^ (a &* 0xBF58_476D_1CE4_E5B9) ^ (z &<< 1 | z &>> 63)
    }

    private static func keysEqual(_ a: Node, _ b: Node, _ input: UnsafeRawBufferPointer) -> Bool {
        if !a.flag && !b.flag {
            let n = Int(a.end - a.start)
            guard n == Int(b.end - b.start) else { return false }
            for k in 0..<n where unsafe input[Int(a.start) + k] != input[Int(b.start) + k] { return false }
            return true
        }
        return unsafe keyBytes(a, input) == keyBytes(b, input)
    }

    private func keyBytes(_ k: Node) -> [UInt8] { unsafe TreeBuilder.keyBytes(k, input) }

    private static func keyBytes(_ k: Node, _ input: UnsafeRawBufferPointer) -> [UInt8] {
        let raw = unsafe UnsafeRawBufferPointer(rebasing: input[Int(k.start)..<Int(k.end)])
        return unsafe k.flag ? Escapes.unescape(raw) : Array(raw)
    }
}

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
