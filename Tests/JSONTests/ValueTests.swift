// On-demand reads over whole documents: every value's rawText parses back to the same
// value, every value's JSON Pointer leads back to it, and counts, subscripts, elements and
// members agree with each other. Run on hand-written nestings and on generated documents.
@testable import JSON
import SpoolTestSupport
import XCTest

final class ValueTests: XCTestCase {
    /// Follows an RFC 6901 pointer from `root`.
    func resolve(_ pointer: String, from root: JSONValue) -> JSONValue? {
        guard !pointer.isEmpty else { return root }
        guard pointer.hasPrefix("/") else { return nil }
        var v = root
        for token in pointer.dropFirst().split(separator: "/", omittingEmptySubsequences: false) {
            let name = token.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
            switch v.kind {
            case .object: guard let m = v[name] else { return nil }; v = m
            case .array: guard let i = Int(name), let e = v[i] else { return nil }; v = e
            default: return nil
            }
        }
        return v
    }

    /// Checks `v` and everything under it; returns the number of values visited.
    @discardableResult
    func checkAll(_ v: JSONValue, _ what: String, file: StaticString = #filePath, line: UInt = #line) -> Int {
        var visited = 1
        // rawText is the value's own text: it parses alone, to the same tree.
        do {
            let alone = try JSONDocument(parsing: v.rawText)
            XCTAssertEqual(try JSONTree(json: alone.root), try JSONTree(json: v),
                           "\(what): rawText of \(v.pointer) is \(v.rawText.prefix(80))", file: file, line: line)
        } catch {
            XCTFail("\(what): rawText of \(v.pointer) does not parse (\(error)): \(v.rawText.prefix(80))", file: file, line: line)
        }
        // The pointer leads back to this very value.
        let back = resolve(v.pointer, from: v.document.root)
        XCTAssertEqual(back?.index, v.index, "\(what): pointer \(v.pointer)", file: file, line: line)
        switch v.kind {
        case .array:
            let elements = Array(v.elements)
            XCTAssertEqual(elements.count, v.count, file: file, line: line)
            for (i, e) in elements.enumerated() {
                XCTAssertEqual(v[i]?.index, e.index, file: file, line: line)
                visited += checkAll(e, what, file: file, line: line)
            }
            XCTAssertNil(v[v.count], file: file, line: line)
            XCTAssertNil(v[-1], file: file, line: line)
        case .object:
            let members = Array(v.members)
            XCTAssertEqual(members.count, v.count, file: file, line: line)
            for (k, m) in members {
                XCTAssertEqual(v[k]?.index, m.index, "\(what): member \(k.debugDescription)", file: file, line: line)
                visited += checkAll(m, what, file: file, line: line)
            }
        default:
            XCTAssertEqual(v.count, 0, file: file, line: line)
        }
        return visited
    }

    /// The escape check stage 2 makes per string against stage 1's backslash bitmap,
    /// against a byte-by-byte look, for every range up to three words long at every
    /// offset in a word (both the one-load path, up to 56 bytes, and the word path), with
    /// backslashes at the edges, inside, and just outside.
    func testBackslashRangesAgainstABytewiseLook() {
        var rng = SplitMix(seed: 7)
        for _ in 0..<24 {
            var bits = [Bool](repeating: false, count: 256)
            for _ in 0..<Int(rng.next() % 6) { bits[Int(rng.next() % 256)] = true }
            // Four words of bits and the spare zero word stage 1's bitmap ends with.
            var words = [UInt64](repeating: 0, count: 5)
            for (i, b) in bits.enumerated() where b { words[i >> 6] |= 1 << UInt64(i & 63) }
            words.withUnsafeBufferPointer { w in
                for lo in 0..<200 {
                    for hi in lo...min(256, lo + 192) {
                        let expected = bits[lo..<hi].contains(true)
                        if StructuralIndex.hasBackslash(w.baseAddress!, lo, hi) != expected {
                            XCTFail("range \(lo)..<\(hi): expected \(expected)")
                            return
                        }
                    }
                }
            }
        }
        // Through the parser: escapes on both sides of a word boundary are seen (so
        // unescaped), and a plain string next to an escaped one is not.
        for pad in 0..<70 {
            let plain = String(repeating: "a", count: pad)
            let text = "[\"\(plain)\\n\(plain)\",\"\(plain)\",\"\\u0041\(plain)\"]"
            let doc = try! JSONDocument(parsing: text)
            XCTAssertEqual(try doc.root[0]?.string(), plain + "\n" + plain)
            XCTAssertEqual(try doc.root[1]?.string(), plain)
            XCTAssertEqual(try doc.root[2]?.string(), "A" + plain)
        }
        // Escapes are checked from backslash to backslash by the bitmap: a bad escape after
        // valid ones (an escaped backslash among them, whose second byte is no escape) is
        // found at its offset wherever the two fall against the bitmap's 64-bit words.
        for pad in 0..<70 {
            for gap in [0, 1, 7, 63, 64, 65, 130] {
                let text = "\"" + String(repeating: "a", count: pad) + #"\n\\"# + String(repeating: "b", count: gap) + #"\q"#
                    + String(repeating: "c", count: pad) + "\""
                let expected = 1 + pad + 4 + gap
                XCTAssertThrowsError(try JSONDocument(parsing: text)) { error in
                    XCTAssertEqual((error as? JSONError)?.kind, .invalidEscape, "pad \(pad), gap \(gap)")
                    XCTAssertEqual((error as? JSONError)?.offset, expected, "pad \(pad), gap \(gap)")
                }
                let valid = "\"" + String(repeating: "a", count: pad) + #"\n\\"# + String(repeating: "b", count: gap) + #"\u00e9"# + "\""
                XCTAssertEqual(try JSONDocument(parsing: valid).root.string(),
                               String(repeating: "a", count: pad) + "\n\\" + String(repeating: "b", count: gap) + "\u{e9}")
            }
        }
    }

    func testRawTextOfNestedContainers() throws {
        let doc = try JSONDocument(parsing: #"{"a":[[1]],"b":{"c":{"d":[]}},"e":[ [ 1 , { } ] ] }"#)
        XCTAssertEqual(doc.root["a"]?[0]?.rawText, "[1]")
        XCTAssertEqual(doc.root["a"]?.rawText, "[[1]]")
        XCTAssertEqual(doc.root["b"]?["c"]?.rawText, #"{"d":[]}"#)
        XCTAssertEqual(doc.root["b"]?["c"]?["d"]?.rawText, "[]")
        XCTAssertEqual(doc.root["e"]?[0]?.rawText, "[ 1 , { } ]")
        XCTAssertEqual(doc.root["e"]?[0]?[1]?.rawText, "{ }")
        XCTAssertEqual(try JSONDocument(parsing: "[[1]]").root[0]?.rawText, "[1]")
        XCTAssertEqual(try JSONDocument(parsing: #" [ "]" , "\"]" ] "#).root.rawText, #"[ "]" , "\"]" ]"#)
        XCTAssertEqual(try JSONDocument(parsing: #"[{"k":"}\\"}]"#).root[0]?.rawText, #"{"k":"}\\"}"#)
        checkAll(doc.root, "hand-written")
    }

    func testEveryValueOfGeneratedDocuments() {
        var gen = DocumentGenerator(seed: 0xA11_7A1E)
        var visited = 0
        for i in 0..<150 {
            let bytes = gen.document(maxDepth: 5)
            guard case .success(let doc) = parseDocument(bytes, kernel: .simd) else {
                XCTFail("generated document #\(i) refused: \(show(bytes))")
                continue
            }
            // The root's subtree is every node.
            XCTAssertEqual(doc.next(after: 0), doc.valueCount)
            visited += checkAll(doc.root, "document #\(i)")
        }
        XCTAssertGreaterThan(visited, 2000)
    }
}
