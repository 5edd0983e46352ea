// JSON.TreeBuilder+Shapes: key shapes, the duplicate-key check's fast path for arrays of
// records. For each of the first `Shapes.levels` nesting levels of a document that is not
// tiny (`Shapes.minimumStructurals`), stage 2 remembers the keys of the last object checked
// at that level (up to `Shapes.width` of them, each without escapes and at most 16 bytes
// long), in order. A new object at that level follows the shape while its keys are those
// same keys in the same order: such a key is compared with the remembered one (its length
// and at most two words of text) and is then known to have no escapes and to differ from
// every earlier key of its object, because the remembered keys are one checked object's
// keys and so differ from each other. At the first key that differs, the object leaves
// the shape: the key filter of its earlier keys is built by walking them
// (TreeBuilder+DuplicateKeys), its remaining keys take the filter, and they replace the
// remembered keys from there on, for the next object.
//
// The invariant that makes this exact: a level's remembered keys are always a prefix of
// the keys of one object that passed the duplicate check. An object that leaves the shape
// at key j cuts the shape to its first j entries (which it shares) before it writes entry
// j; a key that cannot be remembered (escaped, longer than 16 bytes, past the width, or
// too near the start of the input for the comparison's load) ends the shape there.
// Errors are unchanged: a key that follows the shape is byte for byte a key that had no
// escapes, so there is nothing in it to refuse.

extension TreeBuilder {
    enum Shapes {
        /// Nesting levels with a shape (the outermost is level 0); deeper objects always
        /// take the filter.
        static let levels = 16
        /// Keys remembered per level.
        static let width = 32
        /// Documents with fewer structurals than this keep no shapes: they hold a handful
        /// of objects at most (an API request body), and the shapes' storage would cost
        /// them more than it saves.
        static let minimumStructurals = 256
    }

    /// A remembered key: its length and bytes, as the comparison reads them.
    struct ShapeKey {
        /// The eight bytes of text before the key's closing quote, masked to the key's own
        /// (all eight from a length of eight).
        var tail: UInt64
        var tailMask: UInt64
        /// The key's first eight bytes, for keys of 9 to 16 bytes (else 0, unused).
        var head: UInt64
        var length: UInt32

        /// The shape entry for key node `k`, or nil when it cannot be one (see the header).
        static func make(_ k: Node, _ text: Text) -> ShapeKey? {
            let start = Int(k.start), close = Int(k.end), length = close - start
            guard !k.flag, length <= 16, close >= 8 else { return nil }
            // Little-endian: the bytes just before the quote are the word's high bytes.
            // A shift by 64 (an empty key) gives 0 with the checked shift.
            let mask: UInt64 = length >= 8 ? ~0 : ~0 << UInt64(8 * (8 - length))
            return ShapeKey(tail: text.loadWord(close - 8) & mask, tailMask: mask,
                            head: length > 8 ? text.loadWord(start) : 0, length: UInt32(length))
        }

        /// Whether the key between `start` and its closing quote `close` is this one.
        @inline(always)
        func matches(_ text: Text, start: Int, close: Int) -> Bool {
            guard UInt32(truncatingIfNeeded: close &- start) == length, close >= 8 else { return false }
            return (text.loadWord(close &- 8) ^ tail) & tailMask == 0 && (length <= 8 || text.loadWord(start) == head)
        }
    }

    /// Whether the key between `openQuote` and `close` is entry `j` of the innermost
    /// object's level, with `following` true (so that level has a shape).
    @inline(always)
    func followsShape(_ j: UInt32, _ text: Text, openQuote: Int, close: Int) -> Bool {
        let level = depth &- 1
        guard unsafe Int(j) < shapeLengths[level] else { return false }
        return unsafe shapes[level &* Shapes.width &+ Int(j)].matches(text, start: openQuote &+ 1, close: close)
    }

    /// The innermost object leaves its level's shape before its key `members` (0-based):
    /// cuts the shape to the keys it shares and returns the key filter of those keys.
    @inline(never)
    mutating func leaveShape(_ members: UInt32) -> UInt64 {
        unsafe shapeLengths[depth &- 1] = Int(members)
        var seen: UInt64 = 0
        let input = unsafe self.input
        forEachEarlierKey(members) { k in seen |= unsafe TreeBuilder.filterBits(TreeBuilder.fingerprint(k, input)) }
        return seen
    }

    /// Remembers key `k`, the innermost object's key `j`, checked by the filter, when the
    /// object is on a level with a shape and its keys so far are all remembered.
    @inline(always)
    mutating func remember(_ k: Node, _ j: UInt32, _ text: Text) {
        let level = depth &- 1
        guard level < shapeLevels, unsafe shapeLengths[level] == Int(j), Int(j) < Shapes.width else { return }
        rememberSlowly(k, j, text, level)
    }

    @inline(never)
    private mutating func rememberSlowly(_ k: Node, _ j: UInt32, _ text: Text, _ level: Int) {
        guard let entry = ShapeKey.make(k, text) else { return }
        unsafe shapes[level &* Shapes.width &+ Int(j)] = entry
        unsafe shapeLengths[level] = Int(j) &+ 1
    }
}
