// JSON.TreeBuilder+DuplicateKeys: a key is refused when an earlier key of the same object
// is equal after unescaping. Small objects keep a 64-bit filter of their keys'
// fingerprints (length and up to 16 bytes; two bits each): a key not in the filter is new
// without a comparison, and the rest compare fingerprints and then bytes. An object past
// 32 keys switches to a hash set of unescaped keys, so a large object never costs a
// quadratic scan.

extension TreeBuilder {
    /// The common case inline: a key without escapes, in a small object, whose two
    /// filter bits are not both set yet, is new; anything else takes the full check.
    @inline(__always)
    mutating func checkDuplicate(_ key: Int) throws(JSONError) {
        let frame = unsafe top
        let k = unsafe nodes[key]
        if unsafe !k.flag && frame.pointee.keySet < 0 && keyCount - frame.pointee.keysStart < 32 {
            let print = unsafe TreeBuilder.fingerprint(k, input)
            let bits: UInt64 = 1 << (print >> 58) | 1 << ((print >> 52) & 63)
            let seen = unsafe frame.pointee.seen
            if seen & bits != bits {
                unsafe frame.pointee.seen = seen | bits
                appendKey(Key(node: key, print: print))
                return
            }
        }
        try checkDuplicateFully(key)
    }

    /// Filter hits (compared by fingerprint, then bytes), escaped keys, large objects.
    @inline(never)
    private mutating func checkDuplicateFully(_ key: Int) throws(JSONError) {
        let frame = unsafe top
        let first = unsafe frame.pointee.keysStart
        let k = unsafe nodes[key]
        if unsafe frame.pointee.keySet < 0 {
            let input = unsafe self.input
            let print = unsafe TreeBuilder.fingerprint(k, input)
            if keyCount - first < 32 {
                let bits: UInt64 = 1 << (print >> 58) | 1 << ((print >> 52) & 63)
                let seen = unsafe frame.pointee.seen
                unsafe frame.pointee.seen = seen | bits
                if seen & bits != bits {
                    appendKey(Key(node: key, print: print))
                    return
                }
                let nodes = unsafe self.nodes
                let ks = unsafe keys
                for j in first..<keyCount where unsafe ks[j].print == print && TreeBuilder.keysEqual(nodes[ks[j].node], k, input) {
                    throw duplicate(k)
                }
                appendKey(Key(node: key, print: print))
                return
            }
            // Large object: switch to a hash set of the unescaped keys (no quadratic scan).
            var set = Set<[UInt8]>()
            for j in first..<keyCount { unsafe set.insert(keyBytes(nodes[keys[j].node])) }
            unsafe frame.pointee.keySet = keySets.count
            keySets.append(set)
        }
        guard unsafe keySets[frame.pointee.keySet].insert(keyBytes(k)).inserted else { throw duplicate(k) }
        appendKey(Key(node: key, print: 0))
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
