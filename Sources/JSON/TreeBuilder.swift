// JSON.TreeBuilder: stage 2 proper, one pass over the structural offsets from stage 1.
// An explicit stack of open containers (never recursion, depth-limited) drives a small
// state machine over the grammar; scalars are checked where they start
// (TreeBuilder+Scalars) and object keys against their siblings (TreeBuilder+DuplicateKeys).

/// Stage 2 proper: one pass over the structural offsets. Not copyable: it owns the storage
/// of its stack of open containers.
@safe struct TreeBuilder: ~Copyable {
    typealias Node = JSONDocument.Node

    /// An open container. Plain data, so the stack never retains or releases.
    struct Frame {
        var node: Int
        var isObject: Bool
        /// Members or elements so far, written when a nested container opens (`build`
        /// keeps the innermost container's count in a local).
        var count: UInt32 = 0
        var keysStart: Int
        /// Index into `keySets` once the object has many keys, else -1.
        var keySet: Int = -1
        /// Two bits per key so far, picked by its fingerprint: a key whose two bits are
        /// not both set cannot equal an earlier key, and skips the comparisons.
        var seen: UInt64 = 0
    }

    private enum State { case value, afterValue, objectFirst, objectKey, arrayFirst }

    let input: UnsafeRawBufferPointer
    let index: StructuralIndex
    /// Storage of `index.backslashWords` while `build` runs.
    var backslashWords = unsafe UnsafePointer<UInt64>(bitPattern: 8)!
    let maxDepth: Int
    /// Output storage, sized by the caller to the structural count (the bound on nodes).
    let nodes: UnsafeMutablePointer<Node>
    var nodeCount = 0
    /// The open containers, innermost at `depth - 1`: storage for as many as the depth
    /// limit allows (and never more than there are structurals), allocated once, so a push
    /// or a change to the top frame is a plain store.
    let frames: UnsafeMutablePointer<Frame>
    var depth = 0
    /// Keys of the open objects, by frame: node index and a fingerprint (length and up to
    /// 16 bytes) that settles almost every comparison without touching the bytes again.
    /// `keyCount` are in use of `keyCapacity`; the storage doubles when full.
    var keys: UnsafeMutablePointer<Key>
    var keyCount = 0
    var keyCapacity = 16
    var keySets: [Set<[UInt8]>] = []

    struct Key {
        var node: Int
        var print: UInt64
    }

    init(input: UnsafeRawBufferPointer, index: StructuralIndex, maxDepth: Int, nodes: UnsafeMutablePointer<Node>) {
        unsafe self.input = unsafe input
        self.index = index
        self.maxDepth = maxDepth
        unsafe self.nodes = unsafe nodes
        unsafe self.frames = UnsafeMutablePointer<Frame>.allocate(capacity: max(0, min(maxDepth, index.positions.count)) + 1)
        unsafe self.keys = UnsafeMutablePointer<Key>.allocate(capacity: keyCapacity)
    }

    deinit {
        unsafe frames.deallocate()
        unsafe keys.deallocate()
    }

    /// Adds a key of the innermost object.
    @inline(__always)
    mutating func appendKey(_ key: Key) {
        if keyCount == keyCapacity {
            let grown = UnsafeMutablePointer<Key>.allocate(capacity: keyCapacity * 2)
            unsafe grown.moveInitialize(from: keys, count: keyCount)
            unsafe keys.deallocate()
            unsafe keys = grown
            keyCapacity *= 2
        }
        unsafe (keys + keyCount).initialize(to: key)
        keyCount += 1
    }

    /// The innermost open container.
    var top: UnsafeMutablePointer<Frame> { unsafe frames + (depth - 1) }

    @inline(__always)
    mutating func append(_ node: Node) {
        unsafe (nodes + nodeCount).initialize(to: node)
        nodeCount += 1
    }

    /// Builds the nodes; returns how many were written.
    mutating func build() throws(JSONError) -> Int {
        let n = index.positions.count
        guard n > 0 else { throw JSONError(.empty, at: 0) }
        let index = self.index
        return unsafe try index.positions.withUnsafeBufferPointer { pos throws(JSONError) in
            unsafe try index.backslashWords.withUnsafeBufferPointer { words throws(JSONError) in
                // Stage 1 writes a word per 64-byte block, so there is one for any input.
                unsafe backslashWords = unsafe words.baseAddress ?? backslashWords
                return unsafe try build(pos, n)
            }
        }
    }

    private mutating func build(_ pos: UnsafeBufferPointer<UInt32>, _ n: Int) throws(JSONError) -> Int {
        var i = 0
        var state = State.value
        // Members or elements so far of the innermost open container, kept here rather
        // than in its frame (saved in the frame while a nested container is open).
        var count: UInt32 = 0
        while true {
            switch state {
            case .value:
                guard i < n else { throw unsafe JSONError(.unexpectedEnd, at: input.count) }
                let p = unsafe Int(pos[i])
                count &+= 1
                switch unsafe input[p] {
                case 0x7B, 0x5B:   // { [
                    guard depth < maxDepth else {
                        throw JSONError(.tooDeep, at: p, detail: "the limit is \(maxDepth)")
                    }
                    let isObject = unsafe input[p] == 0x7B
                    if depth > 0 { unsafe top.pointee.count = count }
                    count = 0
                    unsafe (frames + depth).initialize(to: Frame(node: nodeCount, isObject: isObject, keysStart: keyCount))
                    depth += 1
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
                guard depth > 0 else {
                    if i < n { throw unsafe JSONError(.trailingContent, at: Int(pos[i])) }
                    return nodeCount
                }
                let top = unsafe self.top.pointee
                guard i < n else { throw unsafe JSONError(.unexpectedEnd, at: input.count) }
                let p = unsafe Int(pos[i])
                let c = unsafe input[p]
                if c == 0x2C {
                    i += 1
                    state = top.isObject ? .objectKey : .value
                } else if c == (top.isObject ? 0x7D : 0x5D) {
                    close(&count)
                    i += 1
                } else {
                    throw JSONError(.unexpectedCharacter, at: p, detail: describe(c, expected: top.isObject ? "',' or '}'" : "',' or ']'"))
                }

            case .objectFirst, .arrayFirst:
                guard i < n else { throw unsafe JSONError(.unexpectedEnd, at: input.count) }
                let p = unsafe Int(pos[i])
                let closer: UInt8 = state == .objectFirst ? 0x7D : 0x5D
                if unsafe input[p] == closer {
                    close(&count)
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

    /// Closes the innermost container, whose member count is `count`; leaves the count of
    /// the container it was in (restored from that one's frame) in `count`.
    @inline(__always)
    private mutating func close(_ count: inout UInt32) {
        depth -= 1
        let f = unsafe frames[depth]
        unsafe nodes[f.node].end = UInt32(nodeCount)
        unsafe nodes[f.node].count = count
        if depth > 0 { count = unsafe frames[depth - 1].count }
        keyCount = f.keysStart
        if f.keySet >= 0 { keySets.removeLast() }
    }

    private func describe(_ c: UInt8, expected: String) -> String {
        let shown = c >= 0x21 && c < 0x7F ? "'\(Character(Unicode.Scalar(c)))'" : "byte 0x\(String(c, radix: 16))"
        return "expected \(expected), found \(shown)"
    }
}
