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
        public var kernel: JSONScanKernel = .native
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
}
