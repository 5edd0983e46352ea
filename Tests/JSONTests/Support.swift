// Helpers shared by the JSON tests: parsing with a chosen kernel into a comparable
// outcome, stage 1 and stage 2 driven directly on a raw buffer (@testable), a buffer that
// ends (or starts) exactly at an inaccessible page, the round-trip check, and a seeded
// generator of varied, valid documents.
@testable import JSON
import SpoolTestSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Every stage-1 kernel; `.native` first (the C kernel where the CPU has AVX2 and PCLMULQDQ,
/// in its AVX-512 form where it has that too, and then `.nativeAVX2` is the other form).
let allKernels: [JSONScanKernel] = [.native, .nativeAVX2, .simd, .scalar]

/// One node of the tree stage 2 builds, as a plain comparable value.
struct NodeSnapshot: Equatable, CustomStringConvertible {
    var start: UInt32
    var end: UInt32
    var count: UInt32
    var kind: UInt8
    var flag: Bool

    init(_ n: JSONDocument.Node) {
        start = n.start
        end = n.end
        count = n.count
        kind = n.kind.rawValue
        flag = n.flag
    }

    var description: String { "(\(kind) \(start)..\(end) n=\(count)\(flag ? " f" : ""))" }
}

/// What a parse gave: the whole node array, or the error's kind and byte offset.
enum ParseOutcome: Equatable, CustomStringConvertible {
    case accepted([NodeSnapshot])
    case rejected(JSONError.Kind, Int)

    init(_ r: Result<[JSONDocument.Node], JSONError>) {
        switch r {
        case .success(let nodes): self = .accepted(nodes.map(NodeSnapshot.init))
        case .failure(let e): self = .rejected(e.kind, e.offset)
        }
    }

    var isAccepted: Bool { if case .accepted = self { return true } else { return false } }

    var description: String {
        switch self {
        case .accepted(let n): return "accepted (\(n.count) nodes)"
        case .rejected(let k, let at): return "rejected \(k) at \(at)"
        }
    }
}

/// What stage 1 gave: the structural offsets and backslash bitmap, or the error.
enum Stage1Outcome: Equatable, CustomStringConvertible {
    case index(positions: [UInt32], backslashWords: [UInt64])
    case rejected(JSONError.Kind, Int)

    var description: String {
        switch self {
        case .index(let p, _): return "index (\(p.count) structurals) \(p.prefix(40))"
        case .rejected(let k, let at): return "rejected \(k) at \(at)"
        }
    }
}

func stage1(_ raw: UnsafeRawBufferPointer, kernel: JSONScanKernel) -> Stage1Outcome {
    do throws(JSONError) {
        let ix = try Stage1.index(raw, kernel: kernel)
        return .index(positions: ix.positions, backslashWords: ix.backslashWords)
    } catch {
        return .rejected(error.kind, error.offset)
    }
}

/// Stage 1 and stage 2 on a raw buffer, the way JSONDocument.init runs them; returns
/// both stages' results.
func parseRaw(_ raw: UnsafeRawBufferPointer, kernel: JSONScanKernel, maxDepth: Int = 512) -> (Stage1Outcome, ParseOutcome) {
    let ix: StructuralIndex
    do throws(JSONError) {
        ix = try Stage1.index(raw, kernel: kernel)
    } catch {
        return (.rejected(error.kind, error.offset), .rejected(error.kind, error.offset))
    }
    let s1 = Stage1Outcome.index(positions: ix.positions, backslashWords: ix.backslashWords)
    var failure: JSONError?
    let nodes = [JSONDocument.Node](unsafeUninitializedCapacity: max(1, ix.positions.count)) { buffer, written in
        var builder = TreeBuilder(input: raw, index: ix, maxDepth: maxDepth, nodes: buffer.baseAddress!)
        do throws(JSONError) {
            written = try builder.build()
        } catch {
            failure = error
            written = 0
        }
    }
    if let failure { return (s1, ParseOutcome(.failure(failure))) }
    return (s1, ParseOutcome(.success(nodes)))
}

/// The public path: JSONDocument(parsing:options:).
func parseDocument(_ bytes: [UInt8], kernel: JSONScanKernel, maxDepth: Int? = nil) -> Result<JSONDocument, JSONError> {
    var o = JSONDocument.Options()
    o.kernel = kernel
    if let maxDepth { o.maxDepth = maxDepth }
    do throws(JSONError) {
        return .success(try JSONDocument(parsing: bytes, options: o))
    } catch {
        return .failure(error)
    }
}

func outcome(_ r: Result<JSONDocument, JSONError>) -> ParseOutcome {
    ParseOutcome(r.map { $0.allNodes })
}

enum GuardPlacement: CaseIterable {
    /// The last byte of the input is the last byte before a PROT_NONE page.
    case endAtGuard
    /// The first byte of the input is the first byte after a PROT_NONE page.
    case startAtGuard
}

/// Copies `bytes` into an mmap'd region so that a read one byte past the end (or one
/// byte before the start) faults, and runs `body` on that copy.
func withGuardPage<R>(_ bytes: [UInt8], _ placement: GuardPlacement, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    let dataPages = max(1, (bytes.count + page - 1) / page)
    // [guard][data pages][guard]
    let total = (dataPages + 2) * page
    guard let base = mmap(nil, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
          base != MAP_FAILED else { fatalError("mmap failed") }
    defer { munmap(base, total) }
    let front = base
    let back = base + (dataPages + 1) * page
    precondition(mprotect(front, page, PROT_NONE) == 0 && mprotect(back, page, PROT_NONE) == 0)
    let start = placement == .endAtGuard ? back - bytes.count : front + page
    if !bytes.isEmpty {
        bytes.withUnsafeBytes { start.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
    }
    return try body(UnsafeRawBufferPointer(start: UnsafeRawPointer(start), count: bytes.count))
}

/// Writes an accepted document back out through JSONTree and the writer, parses that
/// with every kernel, and returns a description of the first difference (nil if none).
/// Also checks the output is stable: writing the re-read tree gives the same bytes.
func roundTripProblem(_ doc: JSONDocument) -> String? {
    let tree: JSONTree
    do throws(JSONError) { tree = try JSONTree(json: doc.root) } catch { return "JSONTree failed: \(error)" }
    let written = tree.jsonBytes
    for kernel in allKernels {
        switch parseDocument(written, kernel: kernel) {
        case .failure(let e):
            return "written form does not parse (\(kernel)): \(e) in \(String(decoding: written.prefix(200), as: UTF8.self))"
        case .success(let again):
            let tree2: JSONTree
            do throws(JSONError) { tree2 = try JSONTree(json: again.root) } catch { return "JSONTree of written form failed: \(error)" }
            if tree2 != tree { return "tree differs after the round trip (\(kernel))" }
            if tree2.jsonBytes != written { return "writing the re-read tree gives different bytes (\(kernel))" }
        }
    }
    return nil
}

func show(_ bytes: [UInt8], limit: Int = 120) -> String {
    var s = ""
    for b in bytes.prefix(limit) {
        if b >= 0x20 && b < 0x7F && b != 0x5C { s.append(Character(Unicode.Scalar(b))) } else { s += "\\x" + String(b, radix: 16) }
    }
    return bytes.count > limit ? s + "…(\(bytes.count) bytes)" : s
}

/// Seeded generator of valid JSON documents of varied shape: every value kind at every
/// level, all escapes, multi-byte UTF-8, long strings that span 64-byte blocks, runs of
/// escaped backslashes, odd whitespace, objects large enough for the hashed duplicate
/// check. Keys are unique within each object (they start with a distinct "k<n>|").
struct DocumentGenerator {
    var rng: SplitMix

    init(seed: UInt64) { rng = SplitMix(seed: seed) }

    mutating func int(_ r: ClosedRange<Int>) -> Int { Int.random(in: r, using: &rng) }
    mutating func chance(_ percent: Int) -> Bool { int(0...99) < percent }

    mutating func document(maxDepth: Int = 6) -> [UInt8] {
        var out: [UInt8] = []
        whitespace(&out)
        value(&out, depth: maxDepth)
        whitespace(&out)
        return out
    }

    mutating func whitespace(_ out: inout [UInt8]) {
        guard chance(30) else { return }
        for _ in 0..<int(1...4) { out.append([0x20, 0x09, 0x0A, 0x0D][int(0...3)]) }
    }

    mutating func value(_ out: inout [UInt8], depth: Int) {
        let pick = depth <= 0 ? int(2...6) : int(0...6)
        switch pick {
        case 0:
            out.append(0x5B)
            let n = chance(10) ? 0 : int(1...6)
            for i in 0..<n {
                if i > 0 { out.append(0x2C) }
                whitespace(&out)
                value(&out, depth: depth - 1)
                whitespace(&out)
            }
            if n == 0 { whitespace(&out) }
            out.append(0x5D)
        case 1:
            out.append(0x7B)
            let n = chance(10) ? 0 : (chance(8) ? int(30...45) : int(1...5))
            for i in 0..<n {
                if i > 0 { out.append(0x2C) }
                whitespace(&out)
                out.append(0x22)
                out += Array("k\(i)|".utf8)
                if chance(50) { stringContent(&out, long: false) }
                out.append(0x22)
                whitespace(&out)
                out.append(0x3A)
                whitespace(&out)
                value(&out, depth: depth - 1)
                whitespace(&out)
            }
            if n == 0 { whitespace(&out) }
            out.append(0x7D)
        case 2, 3:
            out.append(0x22)
            stringContent(&out, long: chance(15))
            out.append(0x22)
        case 4:
            number(&out)
        default:
            out += Array(["true", "false", "null"][int(0...2)].utf8)
        }
    }

    mutating func number(_ out: inout [UInt8]) {
        if chance(30) { out.append(0x2D) }
        if chance(20) { out.append(0x30) } else {
            out.append(UInt8(0x31 + int(0...8)))
            for _ in 0..<int(0...20) { out.append(UInt8(0x30 + int(0...9))) }
        }
        if chance(30) {
            out.append(0x2E)
            for _ in 0..<int(1...20) { out.append(UInt8(0x30 + int(0...9))) }
        }
        if chance(25) {
            out.append(chance(50) ? 0x65 : 0x45)
            if chance(60) { out.append(chance(50) ? 0x2B : 0x2D) }
            for _ in 0..<int(1...3) { out.append(UInt8(0x30 + int(0...9))) }
        }
    }

    static let shortEscapes: [String] = [#"\""#, #"\\"#, #"\/"#, #"\b"#, #"\f"#, #"\n"#, #"\r"#, #"\t"#]
    static let multibyte: [String] = ["\u{E9}", "\u{7FF}", "\u{800}", "\u{20AC}", "\u{2028}", "\u{2029}", "\u{FFFD}", "\u{FFFF}",
                                      "\u{10000}", "\u{1F600}", "\u{10FFFF}", "\u{7F}"]

    mutating func stringContent(_ out: inout [UInt8], long: Bool) {
        let pieces = long ? int(10...40) : int(0...6)
        for _ in 0..<pieces {
            switch int(0...9) {
            case 0, 1, 2:
                let n = long ? int(5...60) : int(1...10)
                for _ in 0..<n {
                    let c = UInt8(int(0x20...0x7E))
                    out.append(c == 0x22 || c == 0x5C ? 0x61 : c)
                }
            case 3:
                out += Array(Self.shortEscapes[int(0...Self.shortEscapes.count - 1)].utf8)
            case 4:
                // A run of escaped backslashes (even number of raw backslashes).
                for _ in 0..<int(1...5) { out += [0x5C, 0x5C] }
            case 5:
                // \uXXXX outside the surrogate range, any case of hex digits.
                var v = int(0...0xFFFF)
                if v >= 0xD800 && v <= 0xDFFF { v -= 0x1000 }
                out += Array(String(format4: v, upper: chance(50)).utf8)
            case 6:
                // A surrogate pair.
                let scalar = int(0x10000...0x10FFFF) - 0x10000
                out += Array(String(format4: 0xD800 + (scalar >> 10), upper: chance(50)).utf8)
                out += Array(String(format4: 0xDC00 + (scalar & 0x3FF), upper: chance(50)).utf8)
            case 7, 8:
                out += Array(Self.multibyte[int(0...Self.multibyte.count - 1)].utf8)
            default:
                out += Array(" \u{7F}".utf8)
            }
        }
    }
}

extension String {
    /// "\uXXXX" for `v`.
    init(format4 v: Int, upper: Bool) {
        var h = String(v, radix: 16, uppercase: upper)
        while h.count < 4 { h = "0" + h }
        self = "\\u" + h
    }
}
