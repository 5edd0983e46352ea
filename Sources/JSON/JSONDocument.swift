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

@safe public final class JSONDocument: @unchecked Sendable {
    public struct Options: Sendable, Equatable {
        /// Containers nested deeper than this are an error (`tooDeep`), never a crash.
        public var maxDepth = 512
        public var kernel: JSONScanKernel = .native
        public init() {}
    }

    @usableFromInline
    enum Kind: UInt8 {
        case object, array, string, number, `true`, `false`, null
    }

    @usableFromInline
    struct Node {
        /// Strings: first byte after the opening quote. Numbers/literals: first byte.
        /// Containers: offset of the opening bracket.
        @usableFromInline var start: UInt32
        /// Strings: offset of the closing quote. Numbers: one past the last byte.
        /// Containers: node index one past the subtree.
        @usableFromInline var end: UInt32
        /// Containers: members or elements. Other values: 0.
        var count: UInt32
        @usableFromInline var kind: Kind
        /// Strings: has escapes. Numbers: is an integer (no fraction, no exponent).
        @usableFromInline var flag: Bool
    }

    /// The parsed text. The document owns it and never mutates it, so its storage stays
    /// where it is for the document's lifetime: `text` points into it.
    let bytes: [UInt8]
    /// `bytes`' storage. Readers go through this and `nodes` rather than through the
    /// arrays, so a read retains and releases nothing but the values it hands out.
    @usableFromInline let text: UnsafePointer<UInt8>
    /// `bytes.count`.
    @usableFromInline let length: Int
    /// One node per value, `valueCount` of them, owned by the document (freed in deinit).
    /// Immutable once `init` returns, which is what makes the class `Sendable`.
    @usableFromInline let nodes: UnsafeMutablePointer<Node>
    /// Number of values (keys included) in the document.
    public let valueCount: Int

    /// Parses `bytes` (which the document keeps; no copy is made).
    public init(parsing bytes: [UInt8], options: Options = Options()) throws(JSONError) {
        let result = unsafe bytes.withUnsafeBytes { raw -> Result<(UnsafeMutablePointer<Node>, Int), JSONError> in
            do throws(JSONError) {
                let index = unsafe try Stage1.index(raw, kernel: options.kernel)
                // A value needs at least one structural, so their count bounds the nodes.
                let nodes = UnsafeMutablePointer<Node>.allocate(capacity: max(1, index.positions.count))
                var builder = unsafe TreeBuilder(input: raw, index: index, maxDepth: options.maxDepth, nodes: nodes)
                do throws(JSONError) {
                    return unsafe .success(unsafe (nodes, try builder.build()))
                } catch {
                    unsafe nodes.deallocate()
                    throw error
                }
            } catch {
                return unsafe .failure(error)
            }
        }
        // Stage 1 refuses an empty input, so the storage has a base address here.
        let (nodes, count) = unsafe try result.get()
        self.bytes = bytes
        unsafe self.text = unsafe bytes.withUnsafeBufferPointer { $0.baseAddress! }
        self.length = bytes.count
        unsafe self.nodes = nodes
        self.valueCount = count
    }

    deinit {
        unsafe nodes.deallocate()
    }

    public convenience init(parsing text: String, options: Options = Options()) throws(JSONError) {
        try self.init(parsing: Array(text.utf8), options: options)
    }

    /// The top-level value.
    public var root: JSONValue { JSONValue(document: self, index: 0) }

    /// Node `i` (every index a value holds is in range: values are made only from nodes).
    @inlinable @inline(__always)
    func node(_ i: Int) -> Node { unsafe nodes[i] }

    /// Every node, as an array (for tests and diagnostics; readers use `node(_:)`).
    var allNodes: [Node] { unsafe Array(UnsafeBufferPointer(start: nodes, count: valueCount)) }

    /// Byte `i` of the text.
    @inlinable @inline(__always)
    func byte(_ i: Int) -> UInt8 { unsafe text[i] }

    /// The text in `range`.
    @inline(__always)
    func text(_ range: Range<Int>) -> UnsafeBufferPointer<UInt8> {
        unsafe UnsafeBufferPointer(start: text + range.lowerBound, count: range.count)
    }

    /// Whether node `i` is `null`.
    @usableFromInline
    func isNull(at i: Int) -> Bool { unsafe nodes[i].kind == .null }

    /// Node index one past `i`'s subtree. Inlinable: the element and member iterators
    /// call it once per step.
    @inlinable @inline(__always)
    func next(after i: Int) -> Int {
        let n = unsafe nodes[i]
        return n.kind == .object || n.kind == .array ? Int(n.end) : i + 1
    }

    /// Node index one past the members or elements of `i` when it is a container of
    /// `kind`; else `i + 1` (nothing to walk).
    @usableFromInline
    func end(of i: Int, ifKind kind: Kind) -> Int {
        let n = unsafe nodes[i]
        return n.kind == kind ? Int(n.end) : i + 1
    }
}
