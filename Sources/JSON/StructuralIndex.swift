// JSON.StructuralIndex: stage 1 of the parser, simdjson-style. One pass over the input in
// 64-byte blocks classifies every byte (quote, backslash, whitespace, operator, control,
// non-ASCII) into 64-bit masks, works out which bytes are inside strings (escapes resolved,
// quotes prefix-XORed), and records the offsets of the structural bytes: the six operators
// outside strings, both quotes of every string, and the first byte of every bare scalar
// (number or literal). It also validates UTF-8 over the whole input and rejects control
// characters inside strings.
//
// Three kernels: `native` is the whole pass in C (CShims/CJSONScan: AVX-512 or AVX2
// compares, a PCLMULQDQ carry-less multiply for the prefix XOR, offsets stored sixteen or
// eight at a time), used when the CPU has those instructions; `simd` classifies with Swift
// SIMD types and `scalar` byte by byte, and everything after their classification is shared
// Swift. The C kernel follows the same steps in the same order, so all give identical
// results (offsets, backslash bitmap, first error and its offset); the tests and the fuzz
// target check that on every input they see, for both C forms where the CPU has AVX-512.
// Non-goals: validating the grammar (stage 2 does that, see JSONDocument).
import CJSONScan

/// Which kernel stage 1 uses. `.native` is the default: the C kernel's AVX-512 form where
/// the CPU has AVX-512 (F, BW, VBMI2), else its AVX2 form, else `.simd` (no AVX2 and
/// PCLMULQDQ). `.nativeAVX2` is the AVX2 form even where AVX-512 runs, for the tests and
/// benchmarks that compare the two; `.scalar` is the reference.
public enum JSONScanKernel: Sendable, Equatable {
    case native
    case nativeAVX2
    case simd
    case scalar

    /// Whether this CPU runs the `.native` kernel itself (not its `.simd` stand-in).
    public static let nativeAvailable = cjson_stage1_best() != Int32(CJSON_KERNEL_NONE)
    /// Whether `.native` is the AVX-512 form (and `.nativeAVX2` a different kernel).
    public static let nativeAVX512Available = cjson_stage1_best() == Int32(CJSON_KERNEL_AVX512)
}

/// Per-block classification masks; bit i describes byte i of the block.
struct BlockMasks: Equatable {
    var quote: UInt64 = 0
    var backslash: UInt64 = 0
    var whitespace: UInt64 = 0
    var op: UInt64 = 0
    var control: UInt64 = 0
    var nonASCII: Bool = false
}

/// The result of stage 1: structural offsets (ascending) and the backslash bitmap that
/// stage 2 uses to learn, without rescanning, whether a string holds escapes.
struct StructuralIndex {
    var positions: [UInt32] = []
    /// Bit i of word i/64: byte i is an (unescaped or escaped) backslash. One word more
    /// than the input has blocks, always zero, so that eight bytes can be loaded from the
    /// byte holding any input byte's bit.
    var backslashWords: [UInt64] = []

    /// True when some byte in `lo..<hi` (offsets within the input, `lo <= hi`) is a
    /// backslash, with `words` the storage of `backslashWords`. A range of up to 56 bytes
    /// (nearly every string) takes one load: the eight bitmap bytes from the one holding
    /// bit `lo`, shifted to start there, hold at least 57 of its bits. A longer range masks
    /// the first and last words to the range and tests the words between whole.
    @inline(__always)
    static func hasBackslash(_ words: UnsafePointer<UInt64>, _ lo: Int, _ hi: Int) -> Bool {
        let count = hi &- lo
        if count <= 56 {
            let window = unsafe UnsafeRawPointer(words).loadUnaligned(fromByteOffset: lo &>> 3, as: UInt64.self)
                &>> UInt64(truncatingIfNeeded: lo & 7)
            return window & ((1 &<< UInt64(truncatingIfNeeded: count)) &- 1) != 0
        }
        let first = lo &>> 6, last = (hi &- 1) &>> 6
        let low = ~UInt64(0) &<< UInt64(truncatingIfNeeded: lo & 63)
        let high = ~UInt64(0) &>> UInt64(truncatingIfNeeded: 63 &- ((hi &- 1) & 63))
        if first == last { return unsafe words[first] & low & high != 0 }
        if unsafe words[first] & low != 0 || words[last] & high != 0 { return true }
        var w = first + 1
        while w < last {
            if unsafe words[w] != 0 { return true }
            w += 1
        }
        return false
    }

    /// The offset of the first backslash in `q..<end` (offsets within the input), or `end`,
    /// with `words` the storage of `backslashWords`.
    static func nextBackslash(_ words: UnsafePointer<UInt64>, from q: Int, before end: Int) -> Int {
        guard q < end else { return end }
        var w = q &>> 6
        var bits = unsafe words[w] & (~UInt64(0) &<< UInt64(truncatingIfNeeded: q & 63))
        while bits == 0 {
            w &+= 1
            if w &<< 6 >= end { return end }
            bits = unsafe words[w]
        }
        return min(w &<< 6 &+ bits.trailingZeroBitCount, end)
    }
}

enum Stage1 {
    /// Builds the structural index of `input`, or throws the first stage-1 error.
    static func index(_ input: UnsafeRawBufferPointer, kernel: JSONScanKernel) throws(JSONError) -> StructuralIndex {
        precondition(input.count < Int(UInt32.max) - Int(CJSON_POSITIONS_SLACK), "JSON input must be smaller than 4 GiB")
        if kernel == .native || kernel == .nativeAVX2 {
            guard JSONScanKernel.nativeAvailable else { return unsafe try index(input, kernel: .simd) }
            return unsafe try native(input, form: kernel == .native ? cjson_stage1_best() : Int32(CJSON_KERNEL_AVX2))
        }
        var out = StructuralIndex()
        let blocks = (input.count + 63) / 64
        out.backslashWords = [UInt64](repeating: 0, count: blocks + 1)   // + 1: see backslashWords
        var failure: JSONError?
        // Every byte can be structural at most once: write offsets through a pointer into
        // storage of that bound, with no per-append checks.
        out.positions = unsafe [UInt32](unsafeUninitializedCapacity: input.count + 1) { positions, written in
            written = 0
            do throws(JSONError) {
                unsafe try out.backslashWords.withUnsafeMutableBufferPointer { words throws(JSONError) in
                    written = unsafe try scan(input, kernel: kernel, blocks: blocks, positions: positions.baseAddress!, backslashWords: words.baseAddress!)
                }
            } catch {
                failure = error
                written = 0
            }
        }
        if let failure { throw failure }
        return out
    }

    /// The C kernel in `form` (CJSON_KERNEL_AVX2 or CJSON_KERNEL_AVX512): the same index,
    /// or the same first error at the same offset.
    private static func native(_ input: UnsafeRawBufferPointer, form: Int32) throws(JSONError) -> StructuralIndex {
        var out = StructuralIndex()
        let blocks = (input.count + 63) / 64
        out.backslashWords = [UInt64](repeating: 0, count: blocks + 1)   // + 1: see backslashWords
        var result = cjson_stage1_result()
        guard input.count > 0 else { return out }
        // The kernel stores offsets eight or sixteen at a time, touching up to
        // CJSON_POSITIONS_SLACK - 1 slots past the last one it counts.
        out.positions = unsafe [UInt32](unsafeUninitializedCapacity: input.count + Int(CJSON_POSITIONS_SLACK)) { positions, written in
            unsafe out.backslashWords.withUnsafeMutableBufferPointer { words in
                result = unsafe cjson_stage1_with(form, input.baseAddress!.assumingMemoryBound(to: UInt8.self), input.count,
                                                  positions.baseAddress!, words.baseAddress!)
            }
            written = result.error == Int32(CJSON_OK) ? Int(result.written) : 0
        }
        let at = Int(result.offset)
        switch result.error {
        case Int32(CJSON_OK): return out
        case Int32(CJSON_CONTROL_IN_STRING): throw JSONError(.controlCharacterInString, at: at)
        case Int32(CJSON_INVALID_UTF8): throw JSONError(.invalidUTF8, at: at)
        default: throw JSONError(.unterminatedString, at: at)
        }
    }

    private static func scan(_ input: UnsafeRawBufferPointer, kernel: JSONScanKernel, blocks: Int,
                             positions: UnsafeMutablePointer<UInt32>, backslashWords: UnsafeMutablePointer<UInt64>) throws(JSONError) -> Int {
        var written = 0
        var utf8 = UTF8Validator()
        var escapeCarry = false      // the first byte of the next block is escaped
        var inStringCarry = false    // the next block starts inside a string
        var scalarCarry = false      // the previous block ended inside a bare scalar
        var tail = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        let base = input.baseAddress
        for block in 0..<blocks {
            let start = block * 64
            let count = min(64, input.count - start)
            var m: BlockMasks
            if count == 64 {
                let p = unsafe base! + start
                m = unsafe kernel == .simd ? classifySIMD(p) : classifyScalar(UnsafeRawBufferPointer(start: p, count: 64))
            } else {
                // Pad the last partial block with spaces in a stack copy (never read past
                // the caller's buffer).
                m = unsafe withUnsafeMutableBytes(of: &tail) { t in
                    unsafe t.initializeMemory(as: UInt8.self, repeating: 0x20)
                    if count > 0 { unsafe t.copyMemory(from: UnsafeRawBufferPointer(start: base! + start, count: count)) }
                    return unsafe kernel == .simd ? classifySIMD(UnsafeRawPointer(t.baseAddress!)) : classifyScalar(UnsafeRawBufferPointer(t))
                }
            }
            unsafe backslashWords[block] = m.backslash

            // Escapes: walk the (rare) backslashes in order. A backslash that is not itself
            // escaped escapes the next byte.
            var escaped: UInt64 = escapeCarry ? 1 : 0
            escapeCarry = false
            var bs = m.backslash
            while bs != 0 {
                let p = bs.trailingZeroBitCount
                bs &= bs &- 1
                if escaped & (1 << UInt64(p)) != 0 { continue }
                if p == 63 { escapeCarry = true } else { escaped |= 1 << UInt64(p + 1) }
            }
            let quotes = m.quote & ~escaped
            // Inside-string mask: prefix XOR of the real quotes (opening quote set, closing
            // quote clear), flipped when the block starts inside a string.
            var inString = prefixXOR(quotes)
            if inStringCarry { inString = ~inString }
            inStringCarry = (inString >> 63) & 1 == 1

            if m.control & inString != 0 {
                let at = start + (m.control & inString).trailingZeroBitCount
                throw JSONError(.controlCharacterInString, at: at)
            }
            if m.nonASCII {
                unsafe try utf8.validate(UnsafeRawBufferPointer(start: base! + start, count: count), offset: start)
            } else if utf8.pending {
                throw JSONError(.invalidUTF8, at: start)
            }

            // Structurals: operators outside strings, every real quote, and the first byte
            // of each bare scalar run (not whitespace, operator, quote or string content).
            let ops = m.op & ~inString
            let scalar = ~(m.whitespace | m.op | quotes | inString)
            let scalarStart = scalar & ~((scalar << 1) | (scalarCarry ? 1 : 0))
            scalarCarry = (scalar >> 63) & 1 == 1
            var structural = ops | quotes | scalarStart
            if count < 64 { structural &= (1 << UInt64(count)) - 1 }
            while structural != 0 {
                unsafe positions[written] = UInt32(start + structural.trailingZeroBitCount)
                written += 1
                structural &= structural &- 1
            }
        }
        if utf8.pending { throw JSONError(.invalidUTF8, at: input.count) }
        if inStringCarry { throw JSONError(.unterminatedString, at: input.count) }
        return written
    }

    @inline(__always)
    static func prefixXOR(_ x: UInt64) -> UInt64 {
        var v = x
        v ^= v << 1
        v ^= v << 2
        v ^= v << 4
        v ^= v << 8
        v ^= v << 16
        v ^= v << 32
        return v
    }

    /// The reference classifier: one byte at a time.
    static func classifyScalar(_ b: UnsafeRawBufferPointer) -> BlockMasks {
        var m = BlockMasks()
        for i in 0..<64 {
            let c = unsafe b[i]
            let bit: UInt64 = 1 << UInt64(i)
            switch c {
            case 0x22: m.quote |= bit
            case 0x5C: m.backslash |= bit
            case 0x20, 0x09, 0x0A, 0x0D: m.whitespace |= bit
            case 0x7B, 0x7D, 0x5B, 0x5D, 0x3A, 0x2C: m.op |= bit
            default: break
            }
            if c < 0x20 { m.control |= bit }
            if c >= 0x80 { m.nonASCII = true }
        }
        return m
    }

    /// The vector classifier: the whole block as one SIMD64<UInt8>. Only operations that
    /// the standard library lowers to vector instructions for SIMD64 are used (measured:
    /// lane-wise compare and wrapping add are; `|`, `&` and the SIMDMask helpers are
    /// lane-by-lane loops at this width). Compare results are reinterpreted as 0x00/0xFF
    /// bytes, and masks of mutually exclusive bytes are combined with `&+`, which equals
    /// OR when no lane is set twice.
    @inline(__always)
    static func classifySIMD(_ p: UnsafeRawPointer) -> BlockMasks {
        let v = unsafe p.loadUnaligned(as: SIMD64<UInt8>.self)
        var m = BlockMasks()
        m.quote = bits(eq(v, 0x22))
        m.backslash = bits(eq(v, 0x5C))
        m.whitespace = bits(eq(v, 0x20) &+ eq(v, 0x0A) &+ eq(v, 0x0D) &+ eq(v, 0x09))
        m.op = bits(eq(v, 0x7B) &+ eq(v, 0x7D) &+ eq(v, 0x5B) &+ eq(v, 0x5D) &+ eq(v, 0x3A) &+ eq(v, 0x2C))
        // Control bytes (< 0x20): shift the range by 0x80 and compare signed, which lowers
        // to one instruction per 16 lanes; the unsigned compare did not, in context.
        let shifted = unsafe unsafeBitCast(v &+ SIMD64<UInt8>(repeating: 0x80), to: SIMD64<Int8>.self)
        m.control = unsafe ~bits(unsafeBitCast(shifted .>= SIMD64<Int8>(repeating: -96), to: SIMD64<UInt8>.self))
        // Any byte with its top bit set: OR the block down to one word.
        let w = unsafe unsafeBitCast(v, to: SIMD8<UInt64>.self)
        let any = (w[0] | w[1] | w[2] | w[3]) | (w[4] | w[5] | w[6] | w[7])
        m.nonASCII = any & 0x8080_8080_8080_8080 != 0
        return m
    }

    @inline(__always)
    static func eq(_ v: SIMD64<UInt8>, _ c: UInt8) -> SIMD64<UInt8> {
        unsafe unsafeBitCast(v .== SIMD64<UInt8>(repeating: c), to: SIMD64<UInt8>.self)
    }

    /// Packs 64 lanes of 0x00/0xFF into a UInt64 (bit i = lane i): per eight lanes, keep
    /// each byte's top bit and let one multiply gather the eight bits into the top byte.
    @inline(__always)
    static func bits(_ lanes: SIMD64<UInt8>) -> UInt64 {
        let w = unsafe unsafeBitCast(lanes, to: SIMD8<UInt64>.self)
        @inline(__always) func gather(_ x: UInt64) -> UInt64 {
            ((x & 0x8080_8080_8080_8080) &* 0x0002_0408_1020_4081) >> 56
        }
        return gather(w[0]) | gather(w[1]) << 8 | gather(w[2]) << 16 | gather(w[3]) << 24
            | gather(w[4]) << 32 | gather(w[5]) << 40 | gather(w[6]) << 48 | gather(w[7]) << 56
    }
}

/// A UTF-8 validator (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF) that
/// carries an incomplete sequence from one block to the next.
struct UTF8Validator {
    private var need = 0
    private var lo: UInt8 = 0x80
    private var hi: UInt8 = 0xBF

    var pending: Bool { need != 0 }

    mutating func validate(_ bytes: UnsafeRawBufferPointer, offset: Int) throws(JSONError) {
        for i in 0..<bytes.count {
            let b = unsafe bytes[i]
            if need == 0 {
                if b < 0x80 { continue }
                switch b {
                case 0xC2...0xDF: need = 1; lo = 0x80; hi = 0xBF
                case 0xE0: need = 2; lo = 0xA0; hi = 0xBF
                case 0xE1...0xEC, 0xEE, 0xEF: need = 2; lo = 0x80; hi = 0xBF
                case 0xED: need = 2; lo = 0x80; hi = 0x9F
                case 0xF0: need = 3; lo = 0x90; hi = 0xBF
                case 0xF1...0xF3: need = 3; lo = 0x80; hi = 0xBF
                case 0xF4: need = 3; lo = 0x80; hi = 0x8F
                default: throw JSONError(.invalidUTF8, at: offset + i)
                }
            } else {
                guard b >= lo && b <= hi else { throw JSONError(.invalidUTF8, at: offset + i) }
                need -= 1
                lo = 0x80
                hi = 0xBF
            }
        }
    }
}
