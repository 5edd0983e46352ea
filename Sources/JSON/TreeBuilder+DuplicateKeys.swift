// JSON.TreeBuilder+DuplicateKeys: a key is refused when an earlier key of the same object
// is equal after unescaping. An object of up to 32 keys keeps a 64-bit filter of its keys'
// fingerprints (length and up to 16 bytes; two bits each): a key not in the filter is new
// without a comparison (`build` settles that case inline). A key in the filter is compared
// with the object's earlier keys, found by walking the object's nodes: each earlier
// member's value is complete, so a container value's node says where its subtree ends.
// An object past 32 keys switches to a hash set of unescaped
// keys, so a large object never costs a quadratic scan.

extension TreeBuilder {
    /// The check of a key of the innermost object after `members` earlier ones, with `seen`
    /// the object's filter, for what `build` does not settle inline: filter hits (compared
    /// with the earlier keys), escaped keys, large objects.
    @inline(never)
    mutating func checkDuplicateFully(_ k: Node, members: UInt32, seen: inout UInt64) throws(JSONError) {
        let frame = unsafe top
        let input = unsafe self.input
        if members < 32 {
            let bits = unsafe TreeBuilder.filterBits(TreeBuilder.fingerprint(k, input))
            let hit = seen & bits == bits
            seen |= bits
            guard hit else { return }
            try forEachEarlierKey(members) { earlier throws(JSONError) in
                if unsafe TreeBuilder.keysEqual(earlier, k, input) { throw duplicate(k) }
            }
            return
        }
        if unsafe frame.pointee.keySet < 0 {
            // The 33rd key: the earlier 32 go into a hash set (no quadratic scan from here).
            var set = Set<[UInt8]>()
            forEachEarlierKey(members) { earlier in set.insert(keyBytes(earlier)) }
            unsafe frame.pointee.keySet = keySets.count
            keySets.append(set)
        }
        guard unsafe keySets[frame.pointee.keySet].insert(keyBytes(k)).inserted else { throw duplicate(k) }
    }

    /// Calls `body` with the innermost object's first `members` keys, in order: after a
    /// key, the next one is two nodes on when the value is a scalar, else where the
    /// value's subtree ends.
    func forEachEarlierKey<E: Error>(_ members: UInt32, _ body: (Node) throws(E) -> Void) throws(E) {
        var j = unsafe top.pointee.node + 1
        for _ in 0..<members {
            try body(unsafe nodes[j])
            let value = unsafe nodes[j + 1]
            j = value.kind == .object || value.kind == .array ? Int(value.end) : j + 2
        }
    }

    private func duplicate(_ k: Node) -> JSONError {
        JSONError(.duplicateKey, at: Int(k.start) - 1, detail: "\"\(String(decoding: keyBytes(k), as: UTF8.self))\"")
    }

    /// Two bits of the 64-bit filter, picked by the top twelve bits of a fingerprint.
    @inline(always)
    static func filterBits(_ print: UInt64) -> UInt64 {
        1 &<< (print &>> 58) | 1 &<< ((print &>> 52) & 63)
    }

    /// Length plus the first and last eight bytes (escaped keys: of the unescaped form, so
    /// "a" and "\u0061" print alike).
    static func fingerprint(_ k: Node, _ input: UnsafeRawBufferPointer) -> UInt64 {
        if k.flag { return unsafe keyBytes(k, input).withUnsafeBytes { unsafe fingerprint($0) } }
        return unsafe plainFingerprint(k, input)
    }

    /// `fingerprint` of a key without escapes: its bytes as they are in the input.
    @inline(always)
    static func plainFingerprint(_ k: Node, _ input: UnsafeRawBufferPointer) -> UInt64 {
        let start = Int(k.start), len = Int(k.end &- k.start)
        if start &+ 8 <= input.count {
            // One or two loads (in bounds: the input goes on for eight bytes), the first
            // masked to the key's bytes when it is shorter than eight.
            let a = unsafe input.loadUnaligned(fromByteOffset: start, as: UInt64.self)
            if len < 8 { return mix(len, a & ((1 &<< (8 &* UInt64(truncatingIfNeeded: len))) &- 1), 0) }
            return unsafe mix(len, a, input.loadUnaligned(fromByteOffset: start &+ len &- 8, as: UInt64.self))
        }
        return unsafe fingerprint(UnsafeRawBufferPointer(rebasing: input[start..<(start + len)]))
    }

    /// Length plus the first and last eight bytes (little-endian); shorter keys are their
    /// bytes. Must give the same value as `plainFingerprint`'s loads for the same bytes.
    @inline(__always)
    static func fingerprint(_ b: UnsafeRawBufferPointer) -> UInt64 {
        let len = b.count
        let last = unsafe len >= 8 ? b.loadUnaligned(fromByteOffset: len - 8, as: UInt64.self) : 0
        return unsafe mix(len, leadingWord(b), last)
    }

    /// One multiply by an odd constant: its top bits depend on every bit of the mixed word.
    @inline(always)
    private static func mix(_ len: Int, _ a: UInt64, _ z: UInt64) -> UInt64 {
        (a ^ (z &<< 29 | z &>> 35) ^ UInt64(truncatingIfNeeded: len)) &* 0x9E37_79B9_7F4A_7C15
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
