// Same results every way: each input is parsed from an ordinary array and again from a
// copy that ends exactly at an inaccessible (PROT_NONE) page, and from one that starts
// right after one. Any read past either end faults; otherwise stage 1 (structural offsets,
// backslash bitmap, or error) and stage 2 (node array, or error kind and offset) must be
// identical to the ordinary path, with every kernel. JSONDocument only takes [UInt8], so
// stage 1 and stage 2 are driven directly on the mapped buffer (@testable).
@testable import JSON
import SpoolTestSupport
import XCTest

final class GuardPageTests: XCTestCase {
    /// Parses `input` every way and reports any difference from the ordinary path.
    func checkEveryWay(_ input: [UInt8], _ name: @autoclosure () -> String, file: StaticString = #filePath, line: UInt = #line) {
        for kernel in allKernels {
            // The ordinary path: JSONDocument's nodes (or error), and stage 1 on the array.
            let expected = outcome(parseDocument(input, kernel: kernel))
            let expectedStage1 = input.withUnsafeBytes { stage1($0, kernel: kernel) }
            for placement in GuardPlacement.allCases {
                let (s1, full) = withGuardPage(input, placement) { raw in parseRaw(raw, kernel: kernel) }
                if s1 != expectedStage1 {
                    XCTFail("\(name()) [\(kernel), \(placement)]: stage 1 gave \(s1), expected \(expectedStage1)", file: file, line: line)
                }
                if full != expected {
                    XCTFail("\(name()) [\(kernel), \(placement)]: got \(full), expected \(expected)", file: file, line: line)
                }
            }
        }
    }

    func testConformanceRows() {
        for row in Conformance.all { checkEveryWay(row.input, row.name) }
    }

    /// Every prefix of a document rich in tokens: the input can end inside a literal, a
    /// number, an escape, a multi-byte character, at every size of the last partial block.
    func testEveryPrefixOfARichDocument() {
        let doc = Array(#"{"a":[true,false,null,-12.5e+3,0,"x\"y\\z\u00e9\uD83D\uDE00","é€😀"],"b":{"c":[[],{}]},"d":1e5,"#.utf8)
            + Array(#""long":"abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz","t":true}"#.utf8)
        XCTAssertTrue(outcome(parseDocument(doc, kernel: .simd)).isAccepted)
        for n in 0...doc.count { checkEveryWay(Array(doc.prefix(n)), "prefix \(n)") }
    }

    /// Scalars that end the input: the parser must look at the byte after them only when
    /// there is one.
    func testScalarsAtTheEnd() {
        for text in ["1", "-", "-0", "12345", "1.5", "1e5", "1E+", "true", "tru", "false", "null", "nul", "\"x\"", "\"\\u00e9\"",
                     "\"\\uD83D\\uDE00\"", "\"\\uD83D\"", "\"\\u12\"", "[1", "{\"a\":1", "{\"a\":tru"] {
            for pad in [0, 1, 62, 63, 64, 127] {
                checkEveryWay(Array((String(repeating: " ", count: pad) + text).utf8), "\(pad) spaces + \(text)")
            }
        }
    }

    func testGeneratedDocuments() {
        var gen = DocumentGenerator(seed: 0x6A73_6F6E_6775_6172)
        for i in 0..<150 {
            let doc = gen.document(maxDepth: 4)
            checkEveryWay(doc, "generated #\(i): \(show(doc))")
            // And a prefix of it, which is almost always an error near the end.
            let cut = gen.int(0...doc.count)
            checkEveryWay(Array(doc.prefix(cut)), "generated #\(i) cut at \(cut)")
        }
    }
}
