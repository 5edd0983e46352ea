// JSONWriter: the exact escaping of every ASCII code point, raw UTF-8 for the rest of
// Unicode (sampled over all planes), comma and colon placement in nested structures,
// null for non-finite doubles, and doubles that read back bit for bit. Everything written
// must parse back to what was written.
import JSON
import SpoolTestSupport
import XCTest

final class WriterTests: XCTestCase {
    func written(_ body: (inout JSONWriter<[UInt8]>) -> Void) -> String {
        var w = JSONWriter()
        body(&w)
        XCTAssertTrue(w.isComplete)
        return w.text
    }

    func readBack(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> JSONValue? {
        do {
            return try JSONDocument(parsing: text).root
        } catch {
            XCTFail("written text does not parse: \(error): \(text.debugDescription)", file: file, line: line)
            return nil
        }
    }

    func testEveryASCIICodePoint() throws {
        let short: [UInt8: String] = [0x08: #"\b"#, 0x0C: #"\f"#, 0x0A: #"\n"#, 0x0D: #"\r"#, 0x09: #"\t"#,
                                      0x22: #"\""#, 0x5C: #"\\"#]
        let hex = Array("0123456789abcdef")
        for c in UInt8(0)...UInt8(0x7F) {
            let s = String(Unicode.Scalar(c))
            let text = written { $0.string(s) }
            let body: String
            if let e = short[c] {
                body = e
            } else if c < 0x20 {
                body = "\\u00" + String(hex[Int(c >> 4)]) + String(hex[Int(c & 15)])
            } else {
                body = s     // including '/' and DEL: written raw
            }
            XCTAssertEqual(text, "\"" + body + "\"", "code point \(c)")
            XCTAssertEqual(try readBack(text)?.string(), s, "code point \(c)")
            // And as a key.
            let obj = written { w in w.beginObject(); w.key(s); w.int(c); w.endObject() }
            XCTAssertEqual(obj, "{\"" + body + "\":\(c)}")
            XCTAssertEqual(try readBack(obj)?[s]?.int(), Int(c), "key \(c)")
        }
    }

    func testUnicodeIsWrittenRaw() throws {
        var scalars: [UInt32] = [0x80, 0xFF, 0x7FF, 0x800, 0xFFF, 0x2028, 0x2029, 0xD7FF, 0xE000, 0xFEFF, 0xFFFD, 0xFFFE, 0xFFFF,
                                 0x1F600, 0x1F1FA, 0x10FFFF]
        for plane in UInt32(0)...16 {
            for low in [0x0000, 0x0001, 0x1234, 0x8000, 0xABCD, 0xFFFE, 0xFFFF] as [UInt32] {
                let v = plane << 16 | low
                if (0xD800...0xDFFF).contains(v) || v < 0x80 { continue }
                scalars.append(v)
            }
        }
        for v in scalars {
            let s = String(Unicode.Scalar(v)!)
            let text = written { $0.string("a" + s + "b") }
            XCTAssertEqual(Array(text.utf8), Array("\"a\(s)b\"".utf8), String(v, radix: 16))
            let back = try XCTUnwrap(readBack(text)).string()
            XCTAssertTrue(back.unicodeScalars.elementsEqual(("a" + s + "b").unicodeScalars), String(v, radix: 16))
        }
        // Grapheme clusters made of several scalars stay intact.
        for s in ["👩‍👩‍👧", "🇫🇷", "e\u{301}", "\u{1F44D}\u{1F3FD}"] {
            XCTAssertTrue(try XCTUnwrap(readBack(written { $0.string(s) })).string().unicodeScalars.elementsEqual(s.unicodeScalars))
        }
    }

    /// Seeded random strings mixing control characters, quotes, backslashes, ASCII and
    /// scalars from every plane read back unchanged, as values and as keys.
    func testRandomStringsRoundTrip() throws {
        var rng = SplitMix(seed: 0x57A1_2026)
        for _ in 0..<500 {
            var s = String.UnicodeScalarView()
            for _ in 0..<Int.random(in: 0...40, using: &rng) {
                let v: UInt32
                switch Int.random(in: 0...3, using: &rng) {
                case 0: v = UInt32.random(in: 0...0x20, using: &rng)
                case 1: v = [0x22, 0x5C, 0x2F, 0x7F][Int.random(in: 0...3, using: &rng)]
                case 2: v = UInt32.random(in: 0x20...0x7E, using: &rng)
                default: v = UInt32.random(in: 0x80...0x10FFFF, using: &rng)
                }
                if let u = Unicode.Scalar(v) { s.append(u) }
            }
            let str = String(s)
            let text = written { w in w.beginObject(); w.field(str, str); w.endObject() }
            let back = try XCTUnwrap(readBack(text))
            XCTAssertEqual(back.count, 1)
            let (k, v) = try XCTUnwrap(back.members.first { _ in true })
            XCTAssertTrue(k.unicodeScalars.elementsEqual(str.unicodeScalars))
            XCTAssertTrue(try v.string().unicodeScalars.elementsEqual(str.unicodeScalars))
            // Nothing below U+0020 is ever written raw.
            XCTAssertFalse(text.utf8.contains { $0 < 0x20 })
        }
    }

    func testCommasAndColonsInNestedStructures() {
        let text = written { w in
            w.beginObject()
            w.key("a")
            w.beginArray()
            w.int(1)
            w.beginObject(); w.endObject()
            w.beginArray(); w.endArray()
            w.beginArray(); w.int(2); w.beginArray(); w.null(); w.endArray(); w.endArray()
            w.string("x")
            w.endArray()
            w.key("b"); w.null()
            w.key("c")
            w.beginObject()
            w.key("d"); w.bool(true)
            w.key("e"); w.beginObject(); w.key("f"); w.beginArray(); w.endArray(); w.endObject()
            w.field("g", "s")
            w.field("h", -7)
            w.field("i", 0.5)
            w.field("j", false)
            w.endObject()
            w.key("k"); w.rawJSON(#"{"pre":[1,2]}"#)
            w.field("l", [1, 2, 3])
            w.endObject()
        }
        XCTAssertEqual(text, #"{"a":[1,{},[],[2,[null]],"x"],"b":null,"c":{"d":true,"e":{"f":[]},"g":"s","h":-7,"i":0.5,"j":false},"k":{"pre":[1,2]},"l":[1,2,3]}"#)
        XCTAssertNotNil(readBack(text))

        XCTAssertEqual(written { $0.beginArray(); $0.endArray() }, "[]")
        XCTAssertEqual(written { $0.beginObject(); $0.endObject() }, "{}")
        XCTAssertEqual(written { $0.beginArray(); $0.beginArray(); $0.endArray(); $0.beginArray(); $0.endArray(); $0.endArray() }, "[[],[]]")
        XCTAssertEqual(written { $0.string("top") }, #""top""#)
        XCTAssertEqual(written { $0.int(Int64.min) }, "-9223372036854775808")
        XCTAssertEqual(written { $0.int(UInt64.max) }, "18446744073709551615")

        var w = JSONWriter()
        XCTAssertFalse(w.isComplete)
        w.beginArray()
        XCTAssertFalse(w.isComplete)
        w.endArray()
        XCTAssertTrue(w.isComplete)
    }

    func testNonFiniteDoublesWriteNull() {
        XCTAssertEqual(written { w in
            w.beginArray()
            w.double(.nan); w.double(.infinity); w.double(-.infinity); w.double(.signalingNaN); w.double(1)
            w.endArray()
        }, "[null,null,null,null,1.0]")
        XCTAssertEqual(written { $0.beginObject(); $0.field("x", Double.infinity); $0.endObject() }, #"{"x":null}"#)
    }

    /// Finite doubles from random bit patterns (all exponents, subnormals, both signs) and
    /// the edge values are written so that they read back to the same bits.
    func testDoublesRoundTripExactly() throws {
        var values: [Double] = [0, -0.0, 1, -1, 0.1, 1e23, .leastNonzeroMagnitude, -.leastNonzeroMagnitude,
                                .leastNormalMagnitude.nextDown, .leastNormalMagnitude,
                                .greatestFiniteMagnitude, -.greatestFiniteMagnitude, 9007199254740994, 1e-7, 123456.789, 1e16]
        var rng = SplitMix(seed: 0xF10A7)
        while values.count < 5000 {
            let d = Double(bitPattern: rng.next())
            if d.isFinite { values.append(d) }
        }
        // One document holding them all, and each one alone.
        var w = JSONWriter()
        w.beginArray()
        for d in values { w.double(d) }
        w.endArray()
        let doc = try JSONDocument(parsing: w.bytes)
        XCTAssertEqual(doc.root.count, values.count)
        for (i, e) in doc.root.elements.enumerated() {
            XCTAssertEqual(try e.double().bitPattern, values[i].bitPattern, "\(values[i]) written as \(e.rawText)")
        }
        for d in values.prefix(300) {
            XCTAssertEqual(try JSONDocument(parsing: Array(written { $0.double(d) }.utf8)).root.double().bitPattern, d.bitPattern)
        }
    }
}
