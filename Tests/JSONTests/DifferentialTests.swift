// Differential: the .native (and .nativeAVX2), .simd and .scalar stage-1 kernels must give
// identical results (the same structural offsets and backslash bitmap, or the same error
// kind and offset), and so must the whole parse, on seeded random documents, random
// mutations of them (bytes flipped, inserted, deleted; quotes and backslashes put at
// 64-byte block boundaries; backslash runs ending at offsets 63/64), and dense strings of
// the bytes stage 1 cares about. The seeds are fixed, so a failure reproduces.
@testable import JSON
import SpoolTestSupport
import XCTest

final class DifferentialTests: XCTestCase {
    /// Compares the kernels on `input` with the scalar reference; returns the (shared) full outcome.
    @discardableResult
    func agree(_ input: [UInt8], _ name: @autoclosure () -> String, file: StaticString = #filePath, line: UInt = #line) -> ParseOutcome {
        let reference = input.withUnsafeBytes { stage1($0, kernel: .scalar) }
        let y = outcome(parseDocument(input, kernel: .scalar))
        for kernel in allKernels where kernel != .scalar {
            let a = input.withUnsafeBytes { stage1($0, kernel: kernel) }
            if a != reference { XCTFail("\(name()): stage 1 differs: \(kernel) \(a), scalar \(reference)", file: file, line: line) }
            let x = outcome(parseDocument(input, kernel: kernel))
            if x != y { XCTFail("\(name()): \(kernel) \(x), scalar \(y)", file: file, line: line) }
        }
        return y
    }

    /// The first CPU's flags in /proc/cpuinfo (empty where it cannot be read).
    static let cpuFlags: Set<String> = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
        .split(separator: "\n").first { $0.hasPrefix("flags") }.map { Set($0.split(separator: " ").map(String.init)) } ?? []

    /// On a CPU with AVX2 and PCLMULQDQ the C kernel runs itself; elsewhere `.native` is
    /// `.simd`, and these tests would compare two Swift kernels only, so say so.
    func testTheNativeKernelRunsWhereTheCPUHasIt() throws {
        let capable = Self.cpuFlags.isSuperset(of: ["avx2", "pclmulqdq", "bmi1"])
        XCTAssertEqual(JSONScanKernel.nativeAvailable, capable, "cpu flags: avx2, pclmulqdq, bmi1 present: \(capable)")
        if !capable { throw XCTSkip("this CPU lacks AVX2, PCLMULQDQ or BMI1: .native runs the .simd kernel") }
    }

    /// Where the CPU (and the kernel, which must save the registers) has AVX-512 F, BW and
    /// VBMI2, `.native` is the AVX-512 form and `.nativeAVX2` the AVX2 one, and the tests
    /// here compare both with the Swift kernels; elsewhere they compare the AVX2 form only.
    func testTheAVX512FormRunsWhereTheCPUHasIt() throws {
        let capable = Self.cpuFlags.isSuperset(of: ["avx2", "pclmulqdq", "bmi1", "avx512f", "avx512bw", "avx512_vbmi2"])
        XCTAssertEqual(JSONScanKernel.nativeAVX512Available, capable, "cpu flags: avx512f, avx512bw, avx512_vbmi2 present: \(capable)")
        if !capable { throw XCTSkip("this CPU lacks AVX-512 F, BW or VBMI2: .native runs the AVX2 form") }
    }

    /// Bytes that change what stage 1 sees.
    static let interesting: [UInt8] = [0x22, 0x5C, 0x5C, 0x22, 0x7B, 0x7D, 0x5B, 0x5D, 0x3A, 0x2C, 0x20, 0x0A, 0x09, 0x0D,
                                       0x00, 0x01, 0x1F, 0x7F, 0x80, 0xBF, 0xC3, 0xE2, 0xED, 0xF0, 0xF4, 0xFF, 0x31, 0x2D,
                                       0x65, 0x74, 0x6E, 0x75, 0x30]

    func mutate(_ doc: inout [UInt8], _ gen: inout DocumentGenerator) {
        func blockEdge(_ gen: inout DocumentGenerator, _ count: Int) -> Int {
            // An offset within two bytes of a 64-byte block boundary inside the document.
            let blocks = max(1, count / 64)
            return min(count, max(0, 64 * gen.int(1...blocks) + gen.int(-2...1)))
        }
        switch gen.int(0...7) {
        case 0 where !doc.isEmpty:
            let i = gen.int(0...doc.count - 1)
            doc[i] ^= UInt8(1) << UInt8(gen.int(0...7))
        case 1:
            doc.insert(Self.interesting[gen.int(0...Self.interesting.count - 1)], at: gen.int(0...doc.count))
        case 2 where !doc.isEmpty:
            doc.remove(at: gen.int(0...doc.count - 1))
        case 3 where !doc.isEmpty:
            doc[gen.int(0...doc.count - 1)] = Self.interesting[gen.int(0...Self.interesting.count - 1)]
        case 4:
            // A quote or backslash right at a block boundary.
            doc.insert(gen.chance(50) ? 0x22 : 0x5C, at: blockEdge(&gen, doc.count))
        case 5:
            // A run of backslashes (odd or even) that ends at offset 63 or 64 of a block,
            // optionally followed by a quote.
            let run = gen.int(1...7)
            let end = 64 * gen.int(1...max(1, doc.count / 64)) + gen.int(-1...0)
            let at = max(0, min(doc.count, end - run))
            var bytes = [UInt8](repeating: 0x5C, count: run)
            if gen.chance(60) { bytes.append(0x22) }
            doc.insert(contentsOf: bytes, at: at)
        case 6 where doc.count > 2:
            // Duplicate a slice somewhere else.
            let a = gen.int(0...doc.count - 2)
            let b = min(doc.count, a + gen.int(1...40))
            doc.insert(contentsOf: doc[a..<b], at: gen.int(0...doc.count))
        default:
            doc.removeLast(gen.int(0...min(3, doc.count)))
        }
    }

    func testRandomDocumentsAndMutations() {
        var gen = DocumentGenerator(seed: 0xD1FF_E4E7_71A1)
        var accepted = 0, rejected = 0
        for i in 0..<3000 {
            var doc = gen.document(maxDepth: gen.int(0...5))
            if i % 3 == 0 {
                // Unmutated: must be accepted (the generator only writes valid JSON) and
                // round-trip.
                let o = agree(doc, "document #\(i): \(show(doc))")
                guard case .accepted = o else { XCTFail("generated document #\(i) refused: \(o): \(show(doc))"); continue }
                if i % 30 == 0, case .success(let d) = parseDocument(doc, kernel: .simd), let p = roundTripProblem(d) {
                    XCTFail("document #\(i): \(p)")
                }
                accepted += 1
                continue
            }
            for _ in 0..<gen.int(1...4) { mutate(&doc, &gen) }
            if agree(doc, "mutant #\(i): \(show(doc))").isAccepted { accepted += 1 } else { rejected += 1 }
        }
        // Both sides of the parser were exercised.
        XCTAssertGreaterThan(accepted, 1000)
        XCTAssertGreaterThan(rejected, 1000)
    }

    /// A run of r backslashes ending at every offset around the first and second block
    /// boundaries, then a quote: an even run is escaped backslashes and the quote closes
    /// the string; an odd run escapes the quote.
    func testBackslashRunsAcrossBlockBoundaries() {
        for r in 1...8 {
            for runEnd in [60, 61, 62, 63, 64, 65, 66, 126, 127, 128, 129] {
                let pad = runEnd - 2 - r      // input is `["` + pad + run + `"` + `,"z"]`
                guard pad >= 0 else { continue }
                let padding = String(repeating: "p", count: pad)
                let input = Array(("[\"" + padding + String(repeating: "\\", count: r) + "\",\"z\"]").utf8)
                let o = agree(input, "run \(r) ending at \(runEnd)")
                if r % 2 == 0 {
                    XCTAssertTrue(o.isAccepted, "even run \(r) ending at \(runEnd): \(o)")
                    if case .success(let d) = parseDocument(input, kernel: .simd) {
                        XCTAssertEqual(try d.root[0]?.string(), padding + String(repeating: "\\", count: r / 2))
                        XCTAssertEqual(try d.root[1]?.string(), "z")
                    }
                } else {
                    // The escaped quote keeps the string open to the `"` before z; the quote
                    // after z then opens a string that never ends.
                    XCTAssertEqual(o, .rejected(.unterminatedString, input.count), "odd run \(r) ending at \(runEnd)")
                }
            }
        }
    }

    /// Quotes and strings placed at every offset across two block boundaries.
    func testStringsAtEveryOffset() {
        for pad in 0..<140 {
            let spaces = String(repeating: " ", count: pad)
            for body in ["\"\"", "\"a\"", "\"\\\"\"", "\"\\\\\"", "[\"\u{E9}\",\"\\u00e9\"]", "{\"k\":\"v\"}"] {
                let o = agree(Array((spaces + body).utf8), "\(pad) spaces + \(body)")
                XCTAssertTrue(o.isAccepted, "\(pad) spaces + \(body): \(o)")
            }
        }
    }

    /// UTF-8 sequences, valid and not, inside a string at every offset across two block
    /// boundaries, each followed by ASCII or by another sequence: the C kernel visits only
    /// the bytes that are not ASCII, so a sequence cut short by an ASCII byte, or one left
    /// open at a block's end, must still be refused at the byte a byte-by-byte walk
    /// refuses (the offset, counted from the sequence's first byte, is given per case).
    func testUTF8SequencesAtEveryOffset() {
        let cases: [(bytes: [UInt8], badAt: Int?)] = [
            ([0xC3, 0xA9], nil), ([0xE2, 0x82, 0xAC], nil), ([0xF0, 0x9F, 0x8E, 0xAC], nil),
            ([0xED, 0x9F, 0xBF], nil), ([0xF4, 0x8F, 0xBF, 0xBF], nil),
            ([0xC3], 1), ([0xE2, 0x82], 2), ([0xF0, 0x9F, 0x8E], 3),   // cut short by what follows
            ([0x80], 0), ([0xBF, 0x80], 0), ([0xC0, 0x80], 0), ([0xC1, 0xBF], 0), ([0xF5, 0x80], 0), ([0xFF], 0),
            ([0xE0, 0x80, 0x80], 1), ([0xED, 0xA0, 0x80], 1), ([0xF0, 0x80, 0x80, 0x80], 1),
            ([0xF4, 0x90, 0x80, 0x80], 1), ([0xC3, 0xA9, 0xA9], 2),
        ]
        // ASCII (alone, or before another sequence), the string closed and another begun,
        // or another sequence: none of them starts with a continuation byte, so a sequence
        // cut short is refused where it stops.
        let followers: [[UInt8]] = [[0x61], [0x61, 0xC3, 0xA9], [0x22, 0x2C, 0x22], [0xC3, 0xA9], [0xE2, 0x82, 0xAC]]
        for pad in 0..<140 {
            for c in cases {
                for f in followers {
                    // `["` + pad + sequence + follower + `"]`, or with the string closed right after.
                    let prefix = [0x5B, 0x22] + [UInt8](repeating: 0x61, count: pad)
                    let input = prefix + c.bytes + f + [0x22, 0x5D]
                    let o = agree(input, "\(pad) + \(c.bytes) + \(f)")
                    if let bad = c.badAt {
                        if case .rejected(let kind, let at) = o {
                            XCTAssertEqual(kind, .invalidUTF8, "\(pad) + \(c.bytes) + \(f)")
                            XCTAssertEqual(at, prefix.count + bad, "\(pad) + \(c.bytes) + \(f)")
                        } else {
                            XCTFail("\(pad) + \(c.bytes) + \(f): accepted")
                        }
                    } else {
                        XCTAssertTrue(o.isAccepted, "\(pad) + \(c.bytes) + \(f): \(o)")
                    }
                }
                // The sequence as the input's last bytes: an open one is refused at the end.
                let tail = [UInt8](repeating: 0x20, count: pad) + [0x22] + c.bytes
                agree(tail, "\(pad) spaces + \(c.bytes) at the end")
            }
        }
    }

    /// Random strings over the bytes stage 1 classifies, so quotes, backslashes, control
    /// bytes and UTF-8 fragments fall on every bit of the masks and across blocks.
    func testDenseSpecialBytes() {
        var gen = DocumentGenerator(seed: 0x5EED_0001)
        let alphabet: [UInt8] = [0x22, 0x22, 0x5C, 0x5C, 0x5C, 0x61, 0x20, 0x5B, 0x5D, 0x7B, 0x7D, 0x3A, 0x2C, 0x31,
                                 0x01, 0x0A, 0xC3, 0xA9, 0x80, 0xE2, 0x82, 0xAC]
        for i in 0..<600 {
            let n = gen.int(0...300)
            let input = (0..<n).map { _ in alphabet[gen.int(0...alphabet.count - 1)] }
            agree(input, "dense #\(i): \(show(input))")
        }
    }

    /// The duplicate-key check and member look-up find an object's keys by stepping over
    /// each member's value (two nodes on after a scalar, to the subtree's end after a
    /// container). On generated documents, that walk reaches exactly each object's members
    /// and then its end, and looking up each member by name finds the value the member
    /// iterator (which steps over values with `next(after:)`) gives for it.
    func testKeyWalkReachesEveryMember() throws {
        var gen = DocumentGenerator(seed: 0x11_4E_5A)
        var objects = 0
        for _ in 0..<300 {
            let doc = try JSONDocument(parsing: gen.document())
            for i in 0..<doc.valueCount where doc.node(i).kind == .object {
                let n = doc.node(i)
                var key = i + 1
                for _ in 0..<n.count {
                    XCTAssertEqual(doc.node(key).kind, .string)
                    let value = doc.node(key + 1)
                    key = value.kind == .object || value.kind == .array ? Int(value.end) : key + 2
                }
                XCTAssertEqual(key, Int(n.end), "object at node \(i)")
                let object = JSONValue(document: doc, index: i)
                for (name, value) in object.members {
                    XCTAssertEqual(object[name]?.index, value.index, "member \(name) of node \(i)")
                }
                objects += 1
            }
        }
        XCTAssertGreaterThan(objects, 300)
    }
}
