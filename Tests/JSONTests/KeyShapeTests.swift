// Key shapes (TreeBuilder+Shapes): the duplicate-key check's fast path for objects whose
// keys repeat those of the last object at the same nesting level. The rows put the
// objects in an array behind a padding element, which makes the document large enough to
// keep shapes and puts every key past the first eight bytes of the input; each row would
// let a duplicate through if a shape were kept where it must be cut or compared with too
// few bytes. A seeded random test then checks against an oracle that tracks the keys as
// it writes the document.
@testable import JSON
import SpoolTestSupport
import XCTest

final class KeyShapeTests: XCTestCase {
    /// An array of numbers with enough structurals for the document to keep shapes.
    static let padding = "[" + Array(repeating: "0", count: TreeBuilder.Shapes.minimumStructurals / 2).joined(separator: ",") + "]"

    /// `[PADDING,OBJECTS]` with the offset of the string `marker` (the n-th, 1-based, when
    /// it appears more than once) in the text: where a duplicate key's error points.
    func doc(_ objects: String, dupAt marker: String? = nil, occurrence: Int = 1) -> (String, Int) {
        let text = "[" + Self.padding + "," + objects + "]"
        guard let marker else { return (text, -1) }
        let bytes = Array(text.utf8), m = Array(marker.utf8)
        var seen = 0
        for i in 0...(bytes.count - m.count) where Array(bytes[i..<(i + m.count)]) == m {
            seen += 1
            if seen == occurrence { return (text, i) }
        }
        fatalError("marker \(marker) not found \(occurrence) times")
    }

    func assertDuplicate(_ objects: String, at marker: String, occurrence: Int, file: StaticString = #filePath, line: UInt = #line) {
        let (text, offset) = doc(objects, dupAt: marker, occurrence: occurrence)
        for kernel in allKernels {
            XCTAssertEqual(outcome(parseDocument(q(text), kernel: kernel)), .rejected(.duplicateKey, offset), "\(text) [\(kernel)]", file: file, line: line)
        }
    }

    func assertAccepted(_ objects: String, file: StaticString = #filePath, line: UInt = #line) {
        let (text, _) = doc(objects)
        for kernel in allKernels {
            XCTAssertTrue(outcome(parseDocument(q(text), kernel: kernel)).isAccepted, "\(text) [\(kernel)]", file: file, line: line)
        }
    }

    func testAnObjectThatLeavesTheShapeIsCheckedAgainstItsEarlierKeys() {
        assertAccepted(#"{"a":1,"b":2},{"a":1,"b":2},{"a":3,"b":4}"#)
        // The second "a" meets the shape's "b".
        assertDuplicate(#"{"a":1,"b":2},{"a":1,"a":2}"#, at: #""a""#, occurrence: 3)
        // Past the end of the shape.
        assertDuplicate(#"{"a":1,"b":2},{"a":1,"b":2,"b":3}"#, at: #""b""#, occurrence: 3)
        // A shorter object keeps the longer shape, which stays one object's keys.
        assertDuplicate(#"{"a":1,"b":2,"c":3},{"a":1,"b":2},{"a":1,"b":2,"c":3,"c":4}"#, at: #""c""#, occurrence: 3)
    }

    func testLeavingTheShapeCutsIt() {
        // The second object leaves the shape at its second key and writes its fourth past
        // the three remembered: without the cut the shape would read [a, b, c, b] and the
        // third object would follow it to the end.
        assertDuplicate(#"{"a":1,"b":2,"c":3},{"a":1,"d":2,"c":3,"b":4},{"a":1,"b":2,"c":3,"b":4}"#, at: #""b""#, occurrence: 4)
        assertDuplicate(#"{"a":1,"b":2,"c":3},{"x":1,"c":2},{"x":1,"c":2,"c":3}"#, at: #""c""#, occurrence: 4)
        assertDuplicate(#"{"a":1,"b":2,"c":3},{"x":1},{"x":1,"b":2,"c":3,"b":4}"#, at: #""b""#, occurrence: 3)
        // Alternating shapes at one level.
        assertAccepted(#"{"a":1,"b":2},{"c":1,"d":2},{"a":1,"b":2},{"c":1,"d":2}"#)
        assertDuplicate(#"{"a":1,"b":2},{"c":1,"d":2},{"a":1,"b":2,"a":3}"#, at: #""a""#, occurrence: 3)
    }

    func testKeysAreComparedWhole() {
        // Short keys: every byte counts ("cb" is not "ab").
        assertDuplicate(#"{"ab":1,"cb":2},{"ab":1,"ab":2}"#, at: #""ab""#, occurrence: 3)
        assertDuplicate(#"{"abcdefgh":1,"xbcdefgh":2},{"abcdefgh":1,"abcdefgh":2}"#, at: #""abcdefgh""#, occurrence: 3)
        // Keys of 9 to 16 bytes: the same last eight bytes, different first ones.
        assertDuplicate(#"{"xxcreated_at":1,"yycreated_at":2},{"xxcreated_at":1,"xxcreated_at":2}"#, at: #""xxcreated_at""#, occurrence: 3)
        assertDuplicate(#"{"created_at_0000":1,"created_at_1000":2},{"created_at_0000":1,"created_at_0000":2}"#,
                        at: #""created_at_0000""#, occurrence: 3)
        assertAccepted(#"{"xxcreated_at":1},{"yycreated_at":1,"xxcreated_at":2}"#)
        // Lengths differ, bytes in the word agree.
        assertDuplicate(#"{"ab":1,"xab":2},{"ab":1,"ab":2}"#, at: #""ab""#, occurrence: 3)
        // Keys longer than 16 bytes are never remembered.
        assertDuplicate(#"{"abcdefghijklmnopq":1,"x":2},{"abcdefghijklmnopq":1,"abcdefghijklmnopq":2}"#,
                        at: #""abcdefghijklmnopq""#, occurrence: 3)
        // The empty key.
        assertDuplicate(#"{"":1,"b":2},{"":1,"":2}"#, at: #""""#, occurrence: 3)
    }

    func testEscapedKeysNeverFollowAShape() {
        assertAccepted(#"{"a":1,"b":2},{"a":1,"\u0062":2}"#)
        assertDuplicate(#"{"a":1,"b":2},{"b":1,"\u0062":2}"#, at: #""\u0062""#, occurrence: 1)
        // A remembered plain key and an escaped spelling of an earlier one.
        assertDuplicate(#"{"a":1,"b":2},{"a":1,"b":2,"\u0061":3}"#, at: #""\u0061""#, occurrence: 1)
        // An escaped key is not remembered, so the shape ends before it.
        assertDuplicate(#"{"a":1,"\u0062":2,"c":3},{"a":1,"b":2,"c":3,"b":4}"#, at: #""b""#, occurrence: 2)
    }

    func testNestedAndDeepObjects() {
        // Level 2 has one shape whichever parent its objects are in.
        assertDuplicate(#"{"x":{"a":1,"b":2}},{"y":{"a":1,"a":2}}"#, at: #""a""#, occurrence: 3)
        assertAccepted(#"{"x":{"a":1,"b":2},"y":{"a":1,"b":2}},{"x":{"a":1,"b":2},"y":{"a":1,"b":2}}"#)
        // An outer object that follows its shape around inner objects that leave theirs.
        assertDuplicate(#"{"o":{"a":1},"p":2},{"o":{"b":1},"p":2,"o":3}"#, at: #""o""#, occurrence: 3)
        // Below the last level with shapes, the filter alone.
        let open = String(repeating: "[", count: TreeBuilder.Shapes.levels)
        let shut = String(repeating: "]", count: TreeBuilder.Shapes.levels)
        assertAccepted(open + #"{"a":1,"b":2},{"a":1,"b":2}"# + shut)
        assertDuplicate(open + #"{"a":1,"b":2},{"a":1,"b":2,"a":3}"# + shut, at: #""a""#, occurrence: 3)
    }

    func testObjectsWiderThanTheShape() {
        func object(_ count: Int, replacing: Int? = nil, with: Int = 0) -> String {
            "{" + (0..<count).map { "\"k\($0 == replacing ? with : $0)\":\($0)" }.joined(separator: ",") + "}"
        }
        let wide = TreeBuilder.Shapes.width + 8
        assertAccepted(object(wide) + "," + object(wide))
        // Past the remembered keys: the hashed check of a large object.
        assertDuplicate(object(wide) + "," + object(wide, replacing: wide - 1, with: 5), at: "\"k5\"", occurrence: 3)
        // Inside them: the filter of the keys followed so far.
        assertDuplicate(object(wide) + "," + object(wide - 9, replacing: wide - 10, with: 5), at: "\"k5\"", occurrence: 3)
    }

    /// Arrays of objects whose keys come from a small pool (plain, escaped, 9 to 16 bytes
    /// and longer), sometimes repeated, with nested objects: the parse must refuse exactly
    /// the documents with a repeated key, at the first one in the text.
    func testRandomRecordsAgainstAnOracle() {
        var rng = SplitMix(seed: 0x5A9E_2026)
        // Names, some with a second spelling (an escape) that a key takes now and then.
        let names = ["id", "state", "priority", "progress", "created_at", "created_by", "a_very_long_key_name", "", "x", "rendition"]
        let escaped = ["id": #"\u0069d"#, "x": #"\u0078"#, "state": #"st\u0061te"#]
        // Most objects repeat one of a few layouts (orders of the names), so shapes are
        // followed and left; now and then a key is drawn at random, which may repeat one.
        let layouts = (0..<4).map { _ in names.shuffled(using: &rng) }
        var refused = 0
        for _ in 0..<1500 {
            var text = "[" + Self.padding
            var firstDuplicate: Int?
            func object(depth: Int) {
                var seen = Set<String>()
                text += "{"
                let count = Int.random(in: 0...7, using: &rng)
                let layout = layouts[Int.random(in: 0..<layouts.count, using: &rng)]
                for j in 0..<count {
                    if j > 0 { text += "," }
                    let name = Int.random(in: 0...99, using: &rng) < 94 ? layout[j] : names[Int.random(in: 0..<names.count, using: &rng)]
                    let spelling = Int.random(in: 0...9, using: &rng) < 3 ? escaped[name] ?? name : name
                    if !seen.insert(name).inserted, firstDuplicate == nil { firstDuplicate = text.utf8.count }
                    text += "\"\(spelling)\":"
                    if depth < 3 && Int.random(in: 0...9, using: &rng) == 0 { object(depth: depth + 1) } else { text += "\(j)" }
                }
                text += "}"
            }
            for _ in 0..<Int.random(in: 1...12, using: &rng) {
                text += ","
                object(depth: 0)
            }
            text += "]"
            let got = outcome(parseDocument(q(text), kernel: .native))
            if let at = firstDuplicate {
                refused += 1
                XCTAssertEqual(got, .rejected(.duplicateKey, at), text)
            } else {
                XCTAssertTrue(got.isAccepted, "\(text): \(got)")
            }
        }
        // Both kinds occur often enough to mean something.
        XCTAssertGreaterThan(refused, 150)
        XCTAssertLessThan(refused, 1350)
    }
}
