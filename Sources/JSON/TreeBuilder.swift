// JSON.TreeBuilder: stage 2 proper, one pass over the structural offsets from stage 1.
// An explicit stack of open containers (never recursion, depth-limited) and two nested
// loops follow the grammar; scalars are checked where they start
// (TreeBuilder+Scalars) and object keys against their siblings (TreeBuilder+DuplicateKeys;
// keys that repeat the last object's at the same level, as in arrays of records, by
// TreeBuilder+Shapes).

/// Stage 2 proper: one pass over the structural offsets. Not copyable: it owns the storage
/// of its stack of open containers.
@safe struct TreeBuilder: ~Copyable {
    typealias Node = JSONDocument.Node

    /// An open container. Plain data, so the stack never retains or releases.
    struct Frame {
        var node: Int
        var isObject: Bool
        /// Members or elements so far, and the key filter (two bits per key so far, picked
        /// by its fingerprint: a key whose two bits are not both set cannot equal an earlier
        /// key). Written when a nested container opens: `build` keeps the innermost
        /// container's in locals.
        var count: UInt32 = 0
        var seen: UInt64 = 0
        /// Index into `keySets` once the object has many keys, else -1.
        var keySet: Int = -1
        /// Whether the object's keys so far are its level's shape (TreeBuilder+Shapes).
        var following = false
    }

    let input: UnsafeRawBufferPointer
    let index: StructuralIndex
    /// Storage of `index.backslashWords` while `build` runs.
    var backslashWords = unsafe UnsafePointer<UInt64>(bitPattern: 8)!
    let maxDepth: Int
    /// Output storage, sized by the caller to the structural count (the bound on nodes).
    let nodes: UnsafeMutablePointer<Node>
    /// The open containers, innermost at `depth - 1`: storage for as many as the depth
    /// limit allows (and never more than there are structurals), allocated once, so a push
    /// or a change to the top frame is a plain store.
    let frames: UnsafeMutablePointer<Frame>
    var depth = 0
    var keySets: [Set<[UInt8]>] = []
    /// Levels with a shape (TreeBuilder+Shapes): `Shapes.levels`, or 0 for a document
    /// too small to repeat an object often (no storage is allocated for it then).
    let shapeLevels: Int
    /// Each level's remembered keys (`Shapes.width` entries per level) and how many of
    /// them are valid; dangling when `shapeLevels` is 0.
    let shapes: UnsafeMutablePointer<ShapeKey>
    let shapeLengths: UnsafeMutablePointer<Int>

    init(input: UnsafeRawBufferPointer, index: StructuralIndex, maxDepth: Int, nodes: UnsafeMutablePointer<Node>) {
        unsafe self.input = unsafe input
        self.index = index
        self.maxDepth = maxDepth
        unsafe self.nodes = unsafe nodes
        unsafe self.frames = UnsafeMutablePointer<Frame>.allocate(capacity: max(0, min(maxDepth, index.positions.count)) + 1)
        shapeLevels = index.positions.count >= Shapes.minimumStructurals ? Shapes.levels : 0
        if shapeLevels > 0 {
            unsafe self.shapes = UnsafeMutablePointer<ShapeKey>.allocate(capacity: shapeLevels * Shapes.width)
            unsafe self.shapeLengths = UnsafeMutablePointer<Int>.allocate(capacity: shapeLevels)
            unsafe shapeLengths.initialize(repeating: 0, count: shapeLevels)
        } else {
            unsafe self.shapes = unsafe UnsafeMutablePointer<ShapeKey>(bitPattern: MemoryLayout<ShapeKey>.alignment)!
            unsafe self.shapeLengths = unsafe UnsafeMutablePointer<Int>(bitPattern: MemoryLayout<Int>.alignment)!
        }
    }

    deinit {
        unsafe frames.deallocate()
        if shapeLevels > 0 {
            unsafe shapes.deallocate()
            unsafe shapeLengths.deallocate()
        }
    }

    /// The innermost open container.
    var top: UnsafeMutablePointer<Frame> { unsafe frames + (depth - 1) }

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

    /// The grammar as two nested loops instead of a state variable: the outer loop is at a
    /// value (after its key and ':' in an object), the inner one after a value (at ',' or a
    /// closer). Each structural then costs one dispatch, on its byte. The node cursor and
    /// the innermost container's member count, kind and key filter stay in
    /// locals; its frame holds them only while a nested container is open.
    private mutating func build(_ pos: UnsafeBufferPointer<UInt32>, _ n: Int) throws(JSONError) -> Int {
        // Stage 1 refuses an empty input, so there is a base address.
        let text = unsafe Text(base: input.baseAddress!.assumingMemoryBound(to: UInt8.self), count: input.count)
        let words = unsafe backslashWords
        var i = 0
        var written = 0
        // Members or elements so far of the innermost open container, whether it is an
        // object, and its key filter (saved in its frame while a nested container is open).
        var count: UInt32 = 0
        var inObject = false
        var seen: UInt64 = 0
        // Whether the innermost object's keys so far are its level's shape (then `seen` is
        // not kept: TreeBuilder+Shapes).
        var following = false
        // The cursors below move with wrapping adds: `i` and `written` stay below the count
        // of structurals and `depth` below the depth limit, so no add can overflow, and the
        // overflow checks were branches on every structural (measured: 2-3 % of a parse).
        // At a member of an object (key, ':' and value) or an element of an array or the
        // top-level value: every `continue value` is at one of those.
        value: while true {
            if inObject {
                guard i < n else { throw JSONError(.unexpectedEnd, at: text.count) }
                let p = unsafe Int(pos[i])
                guard text[p] == 0x22 else {
                    throw JSONError(.unexpectedCharacter, at: p, detail: describe(text[p], expected: "a string key"))
                }
                let close = unsafe Int(pos[i &+ 1])
                if following && followsShape(count, text, openQuote: p, close: close) {
                    // The level's key at this place: no escapes, no earlier equal key.
                    unsafe (nodes + written).initialize(to: Node(start: UInt32(truncatingIfNeeded: p &+ 1), end: UInt32(truncatingIfNeeded: close),
                                                                 count: 0, kind: .string, flag: false))
                } else {
                    if following {
                        following = false
                        seen = leaveShape(count)
                    }
                    let k = unsafe try text.string(openQuote: p, closeQuote: close, backslashWords: words)
                    unsafe (nodes + written).initialize(to: k)
                    // The common case here (see TreeBuilder+DuplicateKeys): a key without
                    // escapes, in a small object, whose two filter bits are not both set yet.
                    var settled = false
                    if !k.flag && count < 32 {
                        let bits = unsafe TreeBuilder.filterBits(TreeBuilder.plainFingerprint(k, input))
                        if seen & bits != bits {
                            seen |= bits
                            settled = true
                        }
                    }
                    if !settled { try checkDuplicateFully(k, members: count, seen: &seen) }
                    remember(k, count, text)
                }
                written &+= 1
                i &+= 2
                guard i < n else { throw JSONError(.unexpectedEnd, at: text.count) }
                let q = unsafe Int(pos[i])
                guard text[q] == 0x3A else {
                    throw JSONError(.unexpectedCharacter, at: q, detail: describe(text[q], expected: "':'"))
                }
                i &+= 1
            }
            guard i < n else { throw JSONError(.unexpectedEnd, at: text.count) }
            let p = unsafe Int(pos[i])
            count &+= 1
            let c = text[p]
            switch c {
            case 0x7B, 0x5B:   // { [
                guard depth < maxDepth else {
                    throw JSONError(.tooDeep, at: p, detail: "the limit is \(maxDepth)")
                }
                let isObject = c == 0x7B
                if depth > 0 {
                    unsafe top.pointee.count = count
                    unsafe top.pointee.seen = seen
                    unsafe top.pointee.following = following
                }
                count = 0
                seen = 0
                inObject = isObject
                following = isObject && depth < shapeLevels
                unsafe (frames + depth).initialize(to: Frame(node: written, isObject: isObject))
                depth &+= 1
                unsafe (nodes + written).initialize(to: Node(start: UInt32(truncatingIfNeeded: p), end: 0, count: 0, kind: isObject ? .object : .array, flag: false))
                written &+= 1
                i &+= 1
                guard i < n else { throw JSONError(.unexpectedEnd, at: text.count) }
                if unsafe text[Int(pos[i])] == (isObject ? 0x7D : 0x5D) {
                    close(&count, &inObject, &seen, &following, written)
                    i &+= 1
                } else {
                    continue value
                }
            case 0x22:
                unsafe (nodes + written).initialize(to: try text.string(openQuote: p, closeQuote: Int(pos[i &+ 1]), backslashWords: words))
                written &+= 1
                i &+= 2
            case 0x2D, 0x30...0x39:
                unsafe (nodes + written).initialize(to: try text.number(p))
                written &+= 1
                i &+= 1
            case 0x74, 0x66, 0x6E:   // t f n
                unsafe (nodes + written).initialize(to: try text.literal(p, c))
                written &+= 1
                i &+= 1
            default:
                throw JSONError(.unexpectedCharacter, at: p, detail: describe(c, expected: "a value"))
            }
            // After a value: ',' goes on to the next one, a closer ends the container.
            while true {
                guard depth > 0 else {
                    if i < n { throw unsafe JSONError(.trailingContent, at: Int(pos[i])) }
                    return written
                }
                guard i < n else { throw JSONError(.unexpectedEnd, at: text.count) }
                let q = unsafe Int(pos[i])
                let d = text[q]
                if d == 0x2C {
                    i &+= 1
                    continue value
                } else if d == (inObject ? 0x7D : 0x5D) {
                    close(&count, &inObject, &seen, &following, written)
                    i &+= 1
                } else {
                    throw JSONError(.unexpectedCharacter, at: q, detail: describe(d, expected: inObject ? "',' or '}'" : "',' or ']'"))
                }
            }
        }
    }

    /// Closes the innermost container, whose member count is `count`, at node `written`;
    /// leaves the count, kind, key filter and shape state of the container it was in (from
    /// its frame).
    @inline(always)
    private mutating func close(_ count: inout UInt32, _ inObject: inout Bool, _ seen: inout UInt64, _ following: inout Bool, _ written: Int) {
        depth &-= 1
        let f = unsafe frames[depth]
        unsafe nodes[f.node].end = UInt32(truncatingIfNeeded: written)
        unsafe nodes[f.node].count = count
        if depth > 0 {
            let outer = unsafe frames[depth &- 1]
            count = outer.count
            inObject = outer.isObject
            seen = outer.seen
            following = outer.following
        }
        if f.keySet >= 0 { keySets.removeLast() }
    }

    private func describe(_ c: UInt8, expected: String) -> String {
        let shown = c >= 0x21 && c < 0x7F ? "'\(Character(Unicode.Scalar(c)))'" : "byte 0x\(String(c, radix: 16))"
        return "expected \(expected), found \(shown)"
    }
}
