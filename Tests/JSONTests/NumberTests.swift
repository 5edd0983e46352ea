// Numbers on read: exact Int64/UInt64 with their bounds, integers only from integer
// syntax, and doubles correctly rounded: checked against the compiler's own conversion of
// the same text as a literal (independent of the runtime) for hand-picked hard cases, and
// against the standard library's Double(String) for seeded random decimal strings.
import JSON
import SpoolTestSupport
import XCTest

final class NumberTests: XCTestCase {
    func value(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> JSONValue? {
        do {
            return try JSONDocument(parsing: text).root
        } catch {
            XCTFail("\(text) does not parse: \(error)", file: file, line: line)
            return nil
        }
    }

    func assertError<T>(_ kind: JSONError.Kind, _ body: @autoclosure () throws -> T, pointer: String = "",
                        file: StaticString = #filePath, line: UInt = #line) {
        do {
            let v = try body()
            XCTFail("expected \(kind), got \(v)", file: file, line: line)
        } catch let e as JSONError {
            XCTAssertEqual(e.kind, kind, "\(e)", file: file, line: line)
            XCTAssertEqual(e.pointer, pointer, "\(e)", file: file, line: line)
            XCTAssertFalse(e.isSyntaxError, file: file, line: line)
        } catch {
            XCTFail("unexpected \(error)", file: file, line: line)
        }
    }

    func testInt64Bounds() throws {
        XCTAssertEqual(try value("9223372036854775807")?.int64(), Int64.max)
        XCTAssertEqual(try value("-9223372036854775808")?.int64(), Int64.min)
        XCTAssertEqual(try value("-9223372036854775807")?.int64(), Int64.min + 1)
        XCTAssertEqual(try value("0")?.int64(), 0)
        XCTAssertEqual(try value("-0")?.int64(), 0)
        XCTAssertEqual(try value("-1")?.int64(), -1)
        XCTAssertEqual(try value("9223372036854775807")?.int(), Int.max)
        assertError(.numberOutOfRange, try self.value("9223372036854775808")?.int64())
        assertError(.numberOutOfRange, try self.value("-9223372036854775809")?.int64())
        assertError(.numberOutOfRange, try self.value("18446744073709551615")?.int64())
        assertError(.numberOutOfRange, try self.value("18446744073709551616")?.int64())
        assertError(.numberOutOfRange, try self.value("-18446744073709551616")?.int64())
        assertError(.numberOutOfRange, try self.value("123456789012345678901234567890")?.int64())
        assertError(.numberOutOfRange, try self.value("9223372036854775808")?.int())
    }

    func testUInt64Bounds() throws {
        XCTAssertEqual(try value("18446744073709551615")?.uint64(), UInt64.max)
        XCTAssertEqual(try value("18446744073709551614")?.uint64(), UInt64.max - 1)
        XCTAssertEqual(try value("0")?.uint64(), 0)
        XCTAssertEqual(try value("-0")?.uint64(), 0)
        XCTAssertEqual(try value("9223372036854775808")?.uint64(), 1 << 63)
        assertError(.numberOutOfRange, try self.value("18446744073709551616")?.uint64())
        assertError(.numberOutOfRange, try self.value("184467440737095516150")?.uint64())
        assertError(.numberOutOfRange, try self.value("-1")?.uint64())
        assertError(.numberOutOfRange, try self.value("-18446744073709551615")?.uint64())
    }

    /// Integers of every length from 1 to 20 digits, signed and not, read from an array
    /// (eight digits at a time, where eight bytes of text follow a number's start) and as
    /// the document's last bytes (a digit at a time): each read equals the standard
    /// library's conversion of the same text, or is out of range exactly when that fails.
    func testIntegersOfEveryLengthMatchTheStandardLibrary() throws {
        var gen = DocumentGenerator(seed: 0x1_2345_6789)
        var texts: [String] = []
        for digits in 1...20 {
            texts.append(String(repeating: "9", count: digits))
            texts.append("1" + String(repeating: "0", count: digits - 1))
            for _ in 0..<40 {
                let first = String(gen.int(1...9))
                texts.append(first + (1..<digits).map { _ in String(gen.int(0...9)) }.joined())
            }
        }
        texts.append("0")
        for body in texts {
            for text in [body, "-" + body] {
                // In an array, followed by more numbers; and as the whole document.
                for doc in ["[" + text + ",7,8]", text] {
                    guard let v = value(doc), let n = doc.hasPrefix("[") ? v[0] : v else { continue }
                    if let expected = Int64(text) {
                        XCTAssertEqual(try n.int64(), expected, doc)
                    } else {
                        assertError(.numberOutOfRange, try n.int64(), pointer: n.pointer)
                    }
                    // "-0" is 0; any other negative number is out of a UInt64's range.
                    let magnitude = UInt64(body)
                    if let expected = text.hasPrefix("-") ? (magnitude == 0 ? 0 : nil) : magnitude {
                        XCTAssertEqual(try n.uint64(), expected, doc)
                    } else {
                        assertError(.numberOutOfRange, try n.uint64(), pointer: n.pointer)
                    }
                }
                // The typed fields (Int64.read, Int.read, UInt64.read, which read up to
                // eight digits in the caller when eight bytes follow the number's start):
                // the same values and errors, near the end of the text and away from it.
                for doc in ["{\"n\":" + text + "}", "[{\"n\":" + text + "},\"and more than eight bytes\"]"] {
                    guard let v = value(doc), let o = doc.hasPrefix("[") ? v[0] : v else { continue }
                    let magnitude = UInt64(body)
                    if let expected = Int64(text) {
                        XCTAssertEqual(try o.field("n", as: Int64.self), expected, doc)
                        XCTAssertEqual(try o.field("n", as: Int.self), Int(expected), doc)
                    } else {
                        assertError(.numberOutOfRange, try o.field("n", as: Int64.self), pointer: o.pointer + "/n")
                        assertError(.numberOutOfRange, try o.field("n", as: Int.self), pointer: o.pointer + "/n")
                    }
                    if let expected = text.hasPrefix("-") ? (magnitude == 0 ? 0 : nil) : magnitude {
                        XCTAssertEqual(try o.field("n", as: UInt64.self), expected, doc)
                    } else {
                        assertError(.numberOutOfRange, try o.field("n", as: UInt64.self), pointer: o.pointer + "/n")
                    }
                }
            }
        }
    }

    func testIntegersNeedIntegerSyntax() throws {
        // The typed fields too, with eight bytes of text after the value.
        for text in ["1.0", "1e2", "0E0", "\"1\"", "true", "null", "[1]", "{}"] {
            let o = value("[{\"n\":" + text + "},\"and more than eight bytes\"]")?[0]
            assertError(.typeMismatch, try o?.field("n", as: Int64.self), pointer: "/0/n")
            assertError(.typeMismatch, try o?.field("n", as: Int.self), pointer: "/0/n")
            assertError(.typeMismatch, try o?.field("n", as: UInt64.self), pointer: "/0/n")
        }
        assertError(.typeMismatch, try self.value("1.0")?.int64())
        assertError(.typeMismatch, try self.value("1.0")?.int())
        assertError(.typeMismatch, try self.value("1.0")?.uint64())
        assertError(.typeMismatch, try self.value("1e2")?.int64())
        assertError(.typeMismatch, try self.value("0E0")?.uint64())
        assertError(.typeMismatch, try self.value("\"1\"")?.int64())
        assertError(.typeMismatch, try self.value("true")?.int64())
        assertError(.typeMismatch, try self.value("null")?.double())
        assertError(.typeMismatch, try self.value("\"1.5\"")?.double())
        // Integer syntax still reads as a double.
        XCTAssertEqual(try value("42")?.double(), 42)
        XCTAssertEqual(try value("-9223372036854775808")?.double(), -9223372036854775808.0)
    }

    func testErrorsCarryThePointer() throws {
        let doc = try JSONDocument(parsing: #"{"a":[0,9223372036854775808,1.5,1e400],"b/c":{"~":-1}}"#)
        let a = try XCTUnwrap(doc.root["a"])
        assertError(.numberOutOfRange, try a[1]?.int64(), pointer: "/a/1")
        assertError(.typeMismatch, try a[2]?.int64(), pointer: "/a/2")
        assertError(.numberOutOfRange, try a[3]?.double(), pointer: "/a/3")
        assertError(.numberOutOfRange, try doc.root["b/c"]?["~"]?.uint64(), pointer: "/b~1c/~0")
        assertError(.typeMismatch, try doc.root.int64(), pointer: "")
        // Int32 through the typed layer.
        XCTAssertEqual(try JSONDocument(parsing: "-2147483648").root.decode(Int32.self), Int32.min)
        assertError(.numberOutOfRange, try JSONDocument(parsing: "[2147483648]").root[0]!.decode(Int32.self), pointer: "/0")
    }

    /// Cases where a naive conversion goes wrong. The expected value is the same text as a
    /// Swift literal, converted by the compiler.
    func testHardDoubles() throws {
        let cases: [(String, Double)] = [
            ("0.1", 0.1),
            ("0.2", 0.2),
            ("0.30000000000000004", 0.30000000000000004),
            ("1e23", 1e23),
            ("100000000000000000000000", 1e23),
            ("8.98846567431158e307", 8.98846567431158e307),
            ("1.7976931348623157e308", 1.7976931348623157e308),
            ("1.7976931348623158e308", 1.7976931348623157e308),     // rounds down to the largest
            ("2.2250738585072011e-308", Double.leastNormalMagnitude.nextDown),   // largest subnormal
            ("2.2250738585072012e-308", Double.leastNormalMagnitude),   // just past the midpoint
            ("2.2250738585072014e-308", 2.2250738585072014e-308),   // smallest normal
            ("4.9e-324", Double.leastNonzeroMagnitude),
            ("5e-324", Double.leastNonzeroMagnitude),
            ("2.4703282292062328e-324", Double.leastNonzeroMagnitude),   // just above half the smallest subnormal
            ("2.4703282292062327e-324", 0),        // just below: rounds to zero
            ("9007199254740993", 9007199254740992.0), // halfway, ties to even (down)
            ("9007199254740995", 9007199254740996.0), // halfway, ties to even (up)
            ("9007199254740992e22", 9007199254740992e22),
            ("1.00000000000000011102230246251565404236316680908203125", 1.0),      // exact tie -> even
            ("1.00000000000000011102230246251565404236316680908203126", 1.0000000000000002),
            ("123456789012345678901234567890", 123456789012345678901234567890.0),
            ("1e22", 1e22),
            ("1e-22", 1e-22),
            ("7.038531e-26", 7.038531e-26),
            ("3.4028235677973366e38", 3.4028235677973366e38),
            ("-123.456e-7", -123.456e-7),
            ("0.0000000000000000000000000000000000000000000001", 1e-46),
            ("1.5e300", 1.5e300),
            ("1e-400", 0),
            ("1e-99999999999999999999", 0),
            ("0e99999999999999999999", 0),
            ("1" + String(repeating: "0", count: 400) + "e-400", 1),
            ("0." + String(repeating: "0", count: 399) + "1e400", 1),
            ("0." + String(repeating: "0", count: 30) + "123456789012345678901234567", 1.23456789012345678901234567e-31),
        ]
        for (text, want) in cases {
            let got = try XCTUnwrap(value(text)).double()
            XCTAssertEqual(got.bitPattern, want.bitPattern, "\(text): got \(got), want \(want)")
            XCTAssertEqual(got.bitPattern, Double(text)?.bitPattern, "\(text): differs from Double(String)")
        }
        // Signs of zero survive.
        XCTAssertEqual(try value("-0")?.double().bitPattern, (-0.0).bitPattern)
        XCTAssertEqual(try value("-0.0e5")?.double().bitPattern, (-0.0).bitPattern)
        XCTAssertEqual(try value("-1e-400")?.double().bitPattern, (-0.0).bitPattern)
        XCTAssertEqual(try value("0")?.double().bitPattern, 0.0.bitPattern)
    }

    func testOverflowIsAnError() throws {
        for text in ["1e400", "-1e400", "1.7976931348623159e308", "1e99999999999999999999",
                     "1" + String(repeating: "0", count: 400)] {
            assertError(.numberOutOfRange, try self.value(text)?.double())
        }
    }

    /// Random decimal strings (1 to 25 significant digits, a decimal point anywhere or
    /// none, exponents -350...350) against Double(String).
    func testRandomDecimalsMatchTheStandardLibrary() throws {
        var rng = SplitMix(seed: 0xD0_0B1E)
        var checked = 0
        for _ in 0..<4000 {
            let nDigits = Int.random(in: 1...25, using: &rng)
            var digits = (0..<nDigits).map { _ in Character(Unicode.Scalar(UInt8.random(in: 0x30...0x39, using: &rng))) }
            if digits.count > 1 && digits[0] == "0" { digits[0] = "1" }
            var text = Bool.random(using: &rng) ? "-" : ""
            let point = Int.random(in: 0...nDigits, using: &rng)
            if point == 0 || point == nDigits {
                text += String(digits)
            } else {
                text += String(digits[..<point]) + "." + String(digits[point...])
            }
            if Int.random(in: 0...3, using: &rng) > 0 {
                text += ["e", "E", "e+", "e-"][Int.random(in: 0...3, using: &rng)]
                let e = Int.random(in: -350...350, using: &rng)
                text += text.hasSuffix("-") || text.hasSuffix("+") ? String(abs(e)) : String(e)
            }
            let reference = try XCTUnwrap(Double(text), text)
            let v = try XCTUnwrap(value(text))
            if reference.isFinite {
                let got = try v.double()
                XCTAssertEqual(got.bitPattern, reference.bitPattern, "\(text): got \(got), want \(reference)")
            } else {
                assertError(.numberOutOfRange, try v.double())
            }
            checked += 1
        }
        XCTAssertEqual(checked, 4000)
    }

    /// Short decimals with small exponents take the exact fast path; make sure it agrees
    /// everywhere near its limits (2^53 mantissas, exponents up to +-22).
    func testFastPathLimits() throws {
        var rng = SplitMix(seed: 42)
        for _ in 0..<2000 {
            let m = UInt64.random(in: 0...(1 << 54), using: &rng)
            let e = Int.random(in: -24...24, using: &rng)
            let text = "\(m)e\(e)"
            let want = try XCTUnwrap(Double(text))
            XCTAssertEqual(try value(text)?.double().bitPattern, want.bitPattern, text)
        }
    }

    /// The number grammar is checked eight bytes at a time where eight bytes follow and
    /// byte by byte near the end of the input. Seeded random tokens from number-ish
    /// characters (and neighbours of the digits: '/', ':', ';', '?'), ending at every
    /// distance from the end of the document, are accepted exactly when RFC 8259 says so.
    func testNumberGrammarAtEveryDistanceFromTheEnd() throws {
        var rng = SplitMix(seed: 0x5A4D)
        let alphabet = Array("0123456789.eE+-/:;?a".utf8)
        var accepted = 0
        for _ in 0..<4000 {
            let token = (0..<Int(rng.next() % 24) + 1).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] }
            let padding = [UInt8](repeating: 0x20, count: Int(rng.next() % 10))
            let valid = Self.isJSONNumber(token)
            for document in [Array("[".utf8) + token + Array("]".utf8) + padding, token + padding, Array("[".utf8) + token + Array(",1]".utf8)] {
                let text = String(decoding: token, as: UTF8.self)
                let result = Result { () throws(JSONError) in try JSONDocument(parsing: document) }
                switch result {
                case .success(let doc):
                    XCTAssertTrue(valid, "accepted \(text.debugDescription)")
                    let v = doc.root.kind == .array ? doc.root[0] : doc.root
                    XCTAssertEqual(v?.rawText, text)
                    accepted += 1
                case .failure:
                    XCTAssertFalse(valid, "refused \(text.debugDescription)")
                }
            }
        }
        XCTAssertGreaterThan(accepted, 300)
    }

    /// RFC 8259's number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
    static func isJSONNumber(_ s: [UInt8]) -> Bool {
        var i = 0
        func digits() -> Int {
            let start = i
            while i < s.count && s[i] >= 0x30 && s[i] <= 0x39 { i += 1 }
            return i - start
        }
        if i < s.count && s[i] == 0x2D { i += 1 }
        guard i < s.count else { return false }
        if s[i] == 0x30 { i += 1 } else if digits() == 0 { return false }
        if i < s.count && s[i] == 0x2E {
            i += 1
            if digits() == 0 { return false }
        }
        if i < s.count && (s[i] == 0x65 || s[i] == 0x45) {
            i += 1
            if i < s.count && (s[i] == 0x2B || s[i] == 0x2D) { i += 1 }
            if digits() == 0 { return false }
        }
        return i == s.count
    }
}
