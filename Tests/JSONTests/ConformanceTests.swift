// Conformance: a table over RFC 8259's grammar (values, whitespace, numbers, strings and
// escapes, UTF-8, structure, object names, nesting), each row an input and what must
// happen: accepted, or refused with a given error kind at a given byte offset. Every row
// runs with both stage-1 kernels (.simd and .scalar), which must agree exactly; accepted
// rows must round-trip (JSONTree -> writer -> parse -> the same tree), and some also state
// the value they must read as.
//
// Implementation-defined choices (RFC 8259 leaves them to the parser) that this table pins:
//   - Any value is accepted at top level, scalars included (RFC 8259 section 2).
//   - Numbers: any syntactically valid number is accepted, whatever its size or precision
//     (1e400, 30-digit integers); range is checked when a value is read (NumberTests).
//   - Nesting: containers deeper than Options.maxDepth (512 by default) are refused with
//     tooDeep, at the opening bracket that goes past the limit (section 9 allows limits).
//   - Duplicate object names are refused (duplicateKey, at the second name's quote), also
//     when they are only equal after unescaping; names are compared as code points (no
//     Unicode normalization), so "é" and "e\u0301" are different names.
//   - A byte order mark is refused like any other stray byte (section 8.1: implementations
//     MUST NOT add one and MAY ignore it; we do not ignore it).
//   - Escapes: \u escapes must form valid UTF-16, so lone or mispaired surrogates are
//     refused (loneSurrogate); \u0000 and noncharacters (\uFFFF) are accepted.
//   - Raw bytes must be valid UTF-8 (RFC 3629) everywhere, not only inside strings.
//   - Stage 1 (UTF-8, control characters in strings, unterminated strings) runs over the
//     whole input before the grammar is checked, so when an input has both kinds of
//     problem the stage-1 one is reported even if the grammar error comes earlier.
//   - Only whitespace, or nothing, is `empty` at offset 0.
@testable import JSON
import XCTest

enum Expected: Equatable, Sendable {
    case accept
    case reject(JSONError.Kind, at: Int)
}

struct Row: Sendable {
    var name: String
    var input: [UInt8]
    var expected: Expected
    /// For some accepted rows: the value the document must read as.
    var value: JSONTree?
}

func ok(_ name: String, _ text: String, _ value: JSONTree? = nil) -> Row {
    Row(name: name, input: Array(text.utf8), expected: .accept, value: value)
}
func ok(_ name: String, bytes: [UInt8], _ value: JSONTree? = nil) -> Row {
    Row(name: name, input: bytes, expected: .accept, value: value)
}
func bad(_ name: String, _ text: String, _ kind: JSONError.Kind, at: Int) -> Row {
    Row(name: name, input: Array(text.utf8), expected: .reject(kind, at: at), value: nil)
}
func bad(_ name: String, bytes: [UInt8], _ kind: JSONError.Kind, at: Int) -> Row {
    Row(name: name, input: bytes, expected: .reject(kind, at: at), value: nil)
}
func q(_ s: String) -> [UInt8] { Array(s.utf8) }

enum Conformance {
    static let values: [Row] = [
        ok("top-level integer", "1", .number("1")),
        ok("top-level string", #""x""#, .string("x")),
        ok("top-level null", "null", .null),
        ok("top-level true", "true", .bool(true)),
        ok("top-level false", "false", .bool(false)),
        ok("top-level empty string", #""""#, .string("")),
        ok("empty object", "{}", .object([])),
        ok("empty array", "[]", .array([])),
        ok("array of every kind", #"[null,true,false,0,-1.5e3,"s",[],{}]"#,
           .array([.null, .bool(true), .bool(false), .number("0"), .number("-1.5e3"), .string("s"), .array([]), .object([])])),
        ok("object of every kind", #"{"n":null,"t":true,"f":false,"i":7,"s":"","a":[1],"o":{"x":{}}}"#,
           .object([("n", .null), ("t", .bool(true)), ("f", .bool(false)), ("i", .number("7")), ("s", .string("")),
                    ("a", .array([.number("1")])), ("o", .object([("x", .object([]))]))])),
        ok("nested", #"{"a":[1,{"b":null,"c":[true,false,"s",{}]},[]],"d":{"e":{"f":[[[]]]}}}"#),
        ok("nested arrays", "[[1],[2,[3,[4]]],[]]"),
    ]

    static let whitespace: [Row] = {
        let ws = " \t\n\r"
        return [
            ok("all four whitespace bytes around every token",
               "\(ws){\(ws)\"a\"\(ws):\(ws)[\(ws)1\(ws),\(ws)\"x\"\(ws),\(ws){\(ws)}\(ws),\(ws)[\(ws)]\(ws)]\(ws),\(ws)\"b\"\(ws):\(ws)null\(ws)}\(ws)",
               .object([("a", .array([.number("1"), .string("x"), .object([]), .array([])])), ("b", .null)])),
            ok("whitespace around a scalar", "\n\t 1 \r\n", .number("1")),
            ok("whitespace inside empty containers", "[ \n]", .array([])),
            ok("whitespace inside an empty object", "{\t\r}", .object([])),
            ok("whitespace in strings is content", "\" \\t \"", .string(" \t ")),
            bad("form feed is not whitespace", "\u{0C}1", .unexpectedCharacter, at: 0),
            bad("vertical tab is not whitespace", "[1,\u{0B}2]", .unexpectedCharacter, at: 3),
            bad("NBSP is not whitespace", "\u{A0}1", .unexpectedCharacter, at: 0),
            bad("U+2028 outside a string is not whitespace", "[\u{2028}]", .unexpectedCharacter, at: 1),
            bad("NUL outside a string", bytes: [0x5B, 0x00, 0x5D], .unexpectedCharacter, at: 1),
            bad("NUL after a number", bytes: [0x31, 0x00], .invalidNumber, at: 0),
        ]
    }()

    static let numbers: [Row] = [
        ok("zero", "0", .number("0")),
        ok("negative zero", "-0", .number("-0")),
        ok("exponent", "1e5", .number("1e5")),
        ok("capital exponent with plus", "1E+5", .number("1E+5")),
        ok("negative exponent", "1e-5"),
        ok("fraction and big exponent", "1.5e300"),
        ok("negative fraction and negative exponent", "-123.456e-7"),
        ok("huge exponent (range is checked on read)", "1e400", .number("1e400")),
        ok("huge negative", "-1e400"),
        ok("tiny", "1e-400"),
        ok("zero fraction and exponent", "[0.0,0e0,0E-0,-0.0e+00]"),
        ok("30-digit integer", "123456789012345678901234567890"),
        ok("long fraction", "1.000000000000000000000000001"),
        ok("past Int64 both ways", "[9223372036854775808,-9223372036854775809]"),
        ok("exponent with leading zeros", "1e007", .number("1e007")),
        ok("number then delimiter", #"[1,2.5]"#),
        ok("number before a closing brace", "{\"a\":1}"),
        bad("leading zero", "01", .invalidNumber, at: 0),
        bad("negative leading zero", "-01", .invalidNumber, at: 0),
        bad("double zero", "00", .invalidNumber, at: 0),
        bad("leading zero in an array", "[01]", .invalidNumber, at: 1),
        bad("plus sign", "+1", .unexpectedCharacter, at: 0),
        bad("leading point", ".5", .unexpectedCharacter, at: 0),
        bad("negative leading point", "-.5", .invalidNumber, at: 0),
        bad("trailing point", "1.", .invalidNumber, at: 0),
        bad("trailing point in an array", "[1.]", .invalidNumber, at: 1),
        bad("point before exponent", "1.e5", .invalidNumber, at: 0),
        bad("exponent without digits", "1e", .invalidNumber, at: 0),
        bad("exponent sign without digits", "1e+", .invalidNumber, at: 0),
        bad("capital exponent sign without digits", "1E-", .invalidNumber, at: 0),
        bad("two exponent signs", "1e+-5", .invalidNumber, at: 0),
        bad("fractional exponent", "1e5.5", .invalidNumber, at: 0),
        bad("two points", "1.5.5", .invalidNumber, at: 0),
        bad("lone minus", "-", .invalidNumber, at: 0),
        bad("lone minus in an array", "[-]", .invalidNumber, at: 1),
        bad("double minus", "--1", .invalidNumber, at: 0),
        bad("hex", "0x1", .invalidNumber, at: 0),
        bad("hex digits", "0x1F", .invalidNumber, at: 0),
        bad("digit separator", "1_000", .invalidNumber, at: 0),
        bad("letters after digits", "12abc", .invalidNumber, at: 0),
        bad("space inside a number", "1 000", .trailingContent, at: 2),
        bad("NaN", "NaN", .unexpectedCharacter, at: 0),
        bad("negative NaN", "-NaN", .invalidNumber, at: 0),
        bad("Infinity", "Infinity", .unexpectedCharacter, at: 0),
        bad("negative Infinity", "-Infinity", .invalidNumber, at: 0),
        bad("Infinity in an array", "[Infinity]", .unexpectedCharacter, at: 1),
    ]

    static let strings: [Row] = {
        var rows: [Row] = [
            ok("every short escape", #""\"\\\/\b\f\n\r\t""#, .string("\"\\/\u{8}\u{C}\n\r\t")),
            ok("\\u escapes", #""\u0041\u00e9\u20AC\uFFFF""#, .string("A\u{E9}\u{20AC}\u{FFFF}")),
            ok("\\u0000", #""a\u0000b""#, .string("a\u{0}b")),
            ok("\\u001F and \\u007F", #""\u001F\u007f""#, .string("\u{1F}\u{7F}")),
            ok("surrogate pair", #""\uD83D\uDE00""#, .string("\u{1F600}")),
            ok("surrogate pair, mixed case", #""\ud83d\uDE00""#, .string("\u{1F600}")),
            ok("first supplementary code point", #""\uD800\uDC00""#, .string("\u{10000}")),
            ok("last code point", #""\uDBFF\uDFFF""#, .string("\u{10FFFF}")),
            ok("escapes next to each other", #""\\\\\"\\""#, .string("\\\\\"\\")),
            ok("escaped slash and raw slash", #""\//""#, .string("//")),
            ok("raw UTF-8 of 1 to 4 bytes", "\"a\u{E9}\u{20AC}\u{1F600}\"", .string("a\u{E9}\u{20AC}\u{1F600}")),
            ok("UTF-8 boundaries", "\"\u{7F}\u{80}\u{7FF}\u{800}\u{FFFF}\u{10000}\u{10FFFF}\"",
               .string("\u{7F}\u{80}\u{7FF}\u{800}\u{FFFF}\u{10000}\u{10FFFF}")),
            ok("raw U+2028 and U+2029", "\"\u{2028}\u{2029}\"", .string("\u{2028}\u{2029}")),
            ok("raw DEL", "\"\u{7F}\"", .string("\u{7F}")),
            ok("raw BOM inside a string", "\"\u{FEFF}\"", .string("\u{FEFF}")),
            ok("escaped key", #"{"\u00e9\n":1}"#, .object([("\u{E9}\n", .number("1"))])),
            ok("long string across blocks", "\"" + String(repeating: "abcdefghij", count: 20) + "\"",
               .string(String(repeating: "abcdefghij", count: 20))),
            bad("unterminated string", #""abc"#, .unterminatedString, at: 4),
            bad("unterminated string in an array", #"["abc]"#, .unterminatedString, at: 6),
            bad("escaped closing quote", #""abc\""#, .unterminatedString, at: 6),
            bad("single quotes", "'x'", .unexpectedCharacter, at: 0),
            bad("invalid escape \\x", #""\x41""#, .invalidEscape, at: 1),
            bad("short \\u", #""\u12""#, .invalidEscape, at: 1),
            bad("\\u without digits", #""\u""#, .invalidEscape, at: 1),
            bad("\\u with a non-hex digit", #""\u12G4""#, .invalidEscape, at: 1),
            bad("capital \\U", #""\U0041""#, .invalidEscape, at: 1),
            bad("escaped single quote", #""\'""#, .invalidEscape, at: 1),
            bad("escaped zero", #""\0""#, .invalidEscape, at: 1),
            bad("escaped space", #""\ ""#, .invalidEscape, at: 1),
            bad("escape later in the string", #""abc\a""#, .invalidEscape, at: 4),
            // The raw newline is a control character inside the string; stage 1 sees that
            // before the escape is looked at.
            bad("backslash then raw newline", "\"\\\n\"", .controlCharacterInString, at: 2),
            bad("backslash then raw tab", "\"\\\t\"", .controlCharacterInString, at: 2),
            bad("lone high surrogate", #""\uD800""#, .loneSurrogate, at: 1),
            bad("lone high surrogate then text", #""\uDBFFabcdef""#, .loneSurrogate, at: 1),
            bad("lone low surrogate", #""\uDC00""#, .loneSurrogate, at: 1),
            bad("lone low surrogate, last", #""ab\uDFFF""#, .loneSurrogate, at: 3),
            bad("high surrogate then a BMP escape", #""\uD800\u0041""#, .loneSurrogate, at: 1),
            bad("two high surrogates", #""\uD800\uD800""#, .loneSurrogate, at: 1),
            bad("high surrogate then \\n", #""\uD800\n""#, .loneSurrogate, at: 1),
            bad("low then high", #""\uDE00\uD83D""#, .loneSurrogate, at: 1),
            // A high surrogate whose low half is cut short is reported as a lone surrogate.
            bad("high surrogate then a short \\u", #""\uD83D\uDE0""#, .loneSurrogate, at: 1),
        ]
        // Every C0 control character, raw inside a string value and inside a key.
        for c in UInt8(0x00)...UInt8(0x1F) {
            rows.append(bad("raw control 0x\(String(c, radix: 16)) in a string", bytes: q("\"a") + [c] + q("b\""),
                            .controlCharacterInString, at: 2))
            rows.append(bad("raw control 0x\(String(c, radix: 16)) in a key", bytes: q("{\"") + [c] + q("\":1}"),
                            .controlCharacterInString, at: 2))
        }
        return rows
    }()

    static let utf8: [Row] = {
        var rows: [Row] = [
            bad("lone continuation byte", bytes: q("\"") + [0x80] + q("\""), .invalidUTF8, at: 1),
            bad("continuation after ASCII", bytes: q("\"a") + [0xBF] + q("\""), .invalidUTF8, at: 2),
            bad("overlong 2-byte C0 80", bytes: q("\"") + [0xC0, 0x80] + q("\""), .invalidUTF8, at: 1),
            bad("overlong 2-byte C1 BF", bytes: q("\"") + [0xC1, 0xBF] + q("\""), .invalidUTF8, at: 1),
            bad("overlong 3-byte E0 80 80", bytes: q("\"") + [0xE0, 0x80, 0x80] + q("\""), .invalidUTF8, at: 2),
            bad("overlong 3-byte E0 9F BF", bytes: q("\"") + [0xE0, 0x9F, 0xBF] + q("\""), .invalidUTF8, at: 2),
            bad("overlong 4-byte F0 80 80 80", bytes: q("\"") + [0xF0, 0x80, 0x80, 0x80] + q("\""), .invalidUTF8, at: 2),
            bad("overlong 4-byte F0 8F BF BF", bytes: q("\"") + [0xF0, 0x8F, 0xBF, 0xBF] + q("\""), .invalidUTF8, at: 2),
            bad("encoded surrogate ED A0 80", bytes: q("\"") + [0xED, 0xA0, 0x80] + q("\""), .invalidUTF8, at: 2),
            bad("encoded surrogate ED BF BF", bytes: q("\"") + [0xED, 0xBF, 0xBF] + q("\""), .invalidUTF8, at: 2),
            bad("above U+10FFFF F4 90 80 80", bytes: q("\"") + [0xF4, 0x90, 0x80, 0x80] + q("\""), .invalidUTF8, at: 2),
            bad("truncated 3-byte sequence at end of input", bytes: q("\"ab") + [0xE2, 0x82], .invalidUTF8, at: 5),
            bad("truncated 4-byte sequence at end of input", bytes: q("\"") + [0xF0, 0x9F, 0x98], .invalidUTF8, at: 4),
            bad("truncated sequence at end, outside a string", bytes: q("[1]") + [0xE2], .invalidUTF8, at: 4),
            bad("truncated 3-byte sequence mid-string", bytes: q("\"") + [0xE2, 0x82] + q("a\""), .invalidUTF8, at: 3),
            bad("truncated 4-byte sequence before the quote", bytes: q("\"") + [0xF0, 0x9F, 0x98] + q("\""), .invalidUTF8, at: 4),
            bad("truncated 2-byte sequence before the quote", bytes: q("\"") + [0xC3] + q("\""), .invalidUTF8, at: 2),
            bad("invalid byte outside strings", bytes: q("[") + [0xFF] + q("]"), .invalidUTF8, at: 1),
            bad("continuation byte outside strings", bytes: q("[1,") + [0x80] + q("]"), .invalidUTF8, at: 3),
            bad("valid UTF-8 outside strings", "[\u{E9}]", .unexpectedCharacter, at: 1),
            bad("valid UTF-8 after a number", "1\u{E9}", .invalidNumber, at: 0),
            // RFC 8259 8.1: a BOM is not JSON text; implementations MAY ignore it. We refuse it.
            bad("byte order mark", bytes: [0xEF, 0xBB, 0xBF] + q("{}"), .unexpectedCharacter, at: 0),
        ]
        for b in UInt8(0xF5)...UInt8(0xFF) {
            rows.append(bad("byte 0x\(String(b, radix: 16))", bytes: q("\"") + [b, 0x80, 0x80, 0x80] + q("\""), .invalidUTF8, at: 1))
        }
        // Multi-byte characters straddling the 64-byte block boundary at every split,
        // whole (accepted) and cut off by an ASCII byte in the next block (refused).
        for lead in 60...63 {
            let pad = String(repeating: "x", count: lead - 1)
            let emoji = Array("\u{1F600}".utf8)
            rows.append(ok("4-byte character at offset \(lead)", bytes: q("\"" + pad) + emoji + q("\""),
                           .string(pad + "\u{1F600}")))
            let cut = 64 - lead   // bytes of the character that stay in block 0
            if cut < 4 {
                rows.append(bad("4-byte character cut at the block boundary after \(cut) bytes",
                                bytes: q("\"" + pad) + emoji.prefix(cut) + q("a\""), .invalidUTF8, at: 64))
            }
        }
        return rows
    }()

    static let structure: [Row] = [
        bad("empty input", "", .empty, at: 0),
        bad("only whitespace", " \t\r\n ", .empty, at: 0),
        bad("two top-level numbers", "1 2", .trailingContent, at: 2),
        bad("two top-level objects", "{}{}", .trailingContent, at: 2),
        bad("two top-level arrays", "[] []", .trailingContent, at: 3),
        bad("two top-level strings", #""a""b""#, .trailingContent, at: 3),
        bad("two documents on two lines", "{}\n{}", .trailingContent, at: 3),
        bad("comma after the top-level value", "1,", .trailingContent, at: 1),
        bad("extra closing bracket", "[]]", .trailingContent, at: 2),
        bad("closing bracket alone", "]", .unexpectedCharacter, at: 0),
        bad("closing brace alone", "}", .unexpectedCharacter, at: 0),
        bad("colon alone", ":", .unexpectedCharacter, at: 0),
        bad("comma alone", ",", .unexpectedCharacter, at: 0),
        bad("unclosed array", "[", .unexpectedEnd, at: 1),
        bad("unclosed array after a value", "[1", .unexpectedEnd, at: 2),
        bad("unclosed array after a comma", "[1,", .unexpectedEnd, at: 3),
        bad("unclosed object", "{", .unexpectedEnd, at: 1),
        bad("unclosed object after a key", #"{"a""#, .unexpectedEnd, at: 4),
        bad("unclosed object after a colon", #"{"a":"#, .unexpectedEnd, at: 5),
        bad("unclosed object after a value", #"{"a":1"#, .unexpectedEnd, at: 6),
        bad("unclosed object after a comma", #"{"a":1,"#, .unexpectedEnd, at: 7),
        bad("unclosed nested", "[[[]]", .unexpectedEnd, at: 5),
        bad("unclosed nested, trailing whitespace", "[{\"a\":[] \n", .unexpectedEnd, at: 10),
        bad("array closed by a brace", "[1}", .unexpectedCharacter, at: 2),
        bad("object closed by a bracket", #"{"a":1]"#, .unexpectedCharacter, at: 6),
        bad("empty array closed by a brace", "[}", .unexpectedCharacter, at: 1),
        bad("empty object closed by a bracket", "{]", .unexpectedCharacter, at: 1),
        bad("inner mismatch", "[[}]]", .unexpectedCharacter, at: 2),
        bad("trailing comma in an array", "[1,]", .unexpectedCharacter, at: 3),
        bad("trailing comma in an object", #"{"a":1,}"#, .unexpectedCharacter, at: 7),
        bad("only a comma in an array", "[,]", .unexpectedCharacter, at: 1),
        bad("leading comma in an array", "[,1]", .unexpectedCharacter, at: 1),
        bad("only a comma in an object", "{,}", .unexpectedCharacter, at: 1),
        bad("double comma in an array", "[1,,2]", .unexpectedCharacter, at: 3),
        bad("double comma in an object", #"{"a":1,,"b":2}"#, .unexpectedCharacter, at: 7),
        bad("missing comma in an array", "[1 2]", .unexpectedCharacter, at: 3),
        bad("missing comma between strings", #"["a" "b"]"#, .unexpectedCharacter, at: 5),
        bad("missing comma in an object", #"{"a":1 "b":2}"#, .unexpectedCharacter, at: 7),
        bad("missing colon", #"{"a" 1}"#, .unexpectedCharacter, at: 5),
        bad("key without a value", #"{"a"}"#, .unexpectedCharacter, at: 4),
        bad("keys without values", #"{"a","b"}"#, .unexpectedCharacter, at: 4),
        bad("extra colon", #"{"a"::1}"#, .unexpectedCharacter, at: 5),
        bad("colon after a value", #"{"a":1:2}"#, .unexpectedCharacter, at: 6),
        bad("colon without a key", "{:1}", .unexpectedCharacter, at: 1),
        bad("colon in an array", #"["a":1]"#, .unexpectedCharacter, at: 4),
        bad("single-quoted key", "{'a':1}", .unexpectedCharacter, at: 1),
        bad("unquoted key", "{a:1}", .unexpectedCharacter, at: 1),
        bad("number key", "{1:1}", .unexpectedCharacter, at: 1),
        bad("literal key", "{null:1}", .unexpectedCharacter, at: 1),
        bad("object key", #"{{}:1}"#, .unexpectedCharacter, at: 1),
        bad("line comment before", "// c\n1", .unexpectedCharacter, at: 0),
        bad("line comment after", "1 // c", .trailingContent, at: 2),
        bad("block comment before", "/* c */ 1", .unexpectedCharacter, at: 0),
        bad("block comment after a number", "[1/*c*/]", .invalidNumber, at: 1),
        bad("block comment between elements", "[1, /*c*/ 2]", .unexpectedCharacter, at: 4),
        bad("hash comment", "{\"a\":1 # c\n}", .unexpectedCharacter, at: 7),
        bad("truncated true", "tru", .invalidLiteral, at: 0),
        bad("truncated null", "nul", .invalidLiteral, at: 0),
        bad("truncated false", "fals", .invalidLiteral, at: 0),
        bad("lone t", "t", .invalidLiteral, at: 0),
        bad("true with a suffix", "truex", .invalidLiteral, at: 0),
        bad("null with an extra l", "nulll", .invalidLiteral, at: 0),
        bad("mixed-case literal", "trUe", .invalidLiteral, at: 0),
        bad("two literals run together", "[truefalse]", .invalidLiteral, at: 1),
        bad("literal then digit", "[true1]", .invalidLiteral, at: 1),
        bad("truncated literal in an array", "[nul]", .invalidLiteral, at: 1),
        bad("capitalized True", "True", .unexpectedCharacter, at: 0),
        bad("NULL", "NULL", .unexpectedCharacter, at: 0),
        bad("undefined", "undefined", .unexpectedCharacter, at: 0),
        bad("backslash outside a string", #"[\]"#, .unexpectedCharacter, at: 1),
        bad("literal then string", "[true\"x\"]", .unexpectedCharacter, at: 5),
        // Stage-1 problems win over earlier grammar errors (see the header).
        bad("control character after a grammar error", bytes: q("}\"") + [0x01] + q("\""), .controlCharacterInString, at: 2),
        bad("invalid UTF-8 after a grammar error", bytes: q("[1}") + [0xFF], .invalidUTF8, at: 3),
        // A backslash outside a string still escapes the next byte in stage 1, so the quote
        // after it does not open a string and the later one runs to the end.
        bad("backslash-quote outside a string", #"[\"a"]"#, .unterminatedString, at: 6),
    ]

    /// `{"k0":0,...}` with `count` members where member `dupAt` (0-based) repeats the name
    /// of member `of`, spelled `spelling`; with `containers`, the values take turns at being
    /// a number, an array and an object (`{"k0":0,"k1":[1,{"k1":1}],"k2":{"a":[2]},...}`).
    /// Returns the input and the offset of that name.
    static func bigObject(count: Int, dupAt: Int? = nil, of: Int = 0, spelling: String? = nil,
                          containers: Bool = false) -> ([UInt8], Int) {
        var s = "{"
        var at = -1
        for i in 0..<count {
            if i > 0 { s += "," }
            let value = !containers || i % 3 == 0 ? "\(i)" : i % 3 == 1 ? "[\(i),{\"k\(i)\":\(i)}]" : "{\"a\":[\(i)]}"
            if i == dupAt {
                at = s.utf8.count
                s += "\"\(spelling ?? "k\(of)")\":\(value)"
            } else {
                s += "\"k\(i)\":\(value)"
            }
        }
        return (Array((s + "}").utf8), at)
    }

    static let duplicateKeys: [Row] = {
        var rows: [Row] = [
            bad("duplicate key", #"{"a":1,"a":2}"#, .duplicateKey, at: 7),
            bad("duplicate key via \\u escape", #"{"a":1,"\u0061":2}"#, .duplicateKey, at: 7),
            bad("duplicate key, escaped first", #"{"\u0061":1,"a":2}"#, .duplicateKey, at: 12),
            bad("duplicate key via \\/", #"{"/":1,"\/":2}"#, .duplicateKey, at: 7),
            bad("duplicate key via a surrogate pair", "{\"\\uD83D\\uDE00\":1,\"\u{1F600}\":2}", .duplicateKey, at: 18),
            bad("duplicate key, not adjacent", #"{"a":1,"b":2,"a":3}"#, .duplicateKey, at: 13),
            bad("duplicate empty key", #"{"":1,"":2}"#, .duplicateKey, at: 6),
            bad("duplicate key after a nested object", #"{"a":{"b":1},"a":2}"#, .duplicateKey, at: 13),
            bad("duplicate key in a nested object", #"[{"x":{"y":1,"y":2}}]"#, .duplicateKey, at: 13),
            ok("same key in sibling objects", #"{"a":{"a":1},"b":{"a":2}}"#),
            ok("inner key reused in the outer object", #"{"a":{"b":1},"b":2}"#),
            ok("same object twice in an array", #"[{"a":1},{"a":1}]"#),
            ok("keys differ in case", #"{"a":1,"A":2}"#),
            ok("no Unicode normalization of keys", "{\"\u{E9}\":1,\"e\u{301}\":2}"),
            ok("keys that are prefixes", #"{"a":1,"ab":2,"abc":3}"#),
        ]
        // A key whose filter bits are taken is compared with the earlier keys, found by
        // walking the object's nodes: the walk must step over container values whole.
        rows.append(bad("duplicate key after members with container values",
                        #"{"x":[1,{"a":1}],"y":{"z":{}},"a":1,"b":[],"a":2}"#, .duplicateKey, at: 43))
        // 31 keys fill the 64-bit filter enough that later keys hit it; none repeats.
        let (walked, _) = bigObject(count: 31, containers: true)
        rows.append(ok("31 distinct members with container values", bytes: walked))
        let (walkedDup, walkedAt) = bigObject(count: 31, dupAt: 30, of: 9, containers: true)
        rows.append(bad("31 members with container values, the last repeats the 10th", bytes: walkedDup,
                        .duplicateKey, at: walkedAt))
        let (plain, at) = bigObject(count: 45, dupAt: 39, of: 5)
        rows.append(bad("45-member object, the 40th repeats the 6th", bytes: plain, .duplicateKey, at: at))
        let (escaped, at2) = bigObject(count: 45, dupAt: 39, of: 5, spelling: #"k\u0035"#)
        rows.append(bad("45-member object, the 40th repeats the 6th via an escape", bytes: escaped, .duplicateKey, at: at2))
        let (last, at3) = bigObject(count: 40, dupAt: 39, of: 38)
        rows.append(bad("40-member object, the last repeats the one before", bytes: last, .duplicateKey, at: at3))
        let (boundary, at4) = bigObject(count: 33, dupAt: 32, of: 0)
        rows.append(bad("33-member object, the 33rd repeats the first", bytes: boundary, .duplicateKey, at: at4))
        rows.append(ok("45 distinct members", bytes: bigObject(count: 45).0))
        // A large inner object must not leak its names into the large outer one.
        var nested = "{"
        for i in 0..<35 {
            if i > 0 { nested += "," }
            nested += "\"o\(i)\":"
            nested += i == 20 ? String(decoding: bigObject(count: 35).0, as: UTF8.self) : "\(i)"
        }
        rows.append(ok("large object inside a large object", nested + ",\"k3\":0}"))
        let dupOffset = nested.utf8.count + 1
        rows.append(bad("large outer object repeats its own key after a large inner one", nested + ",\"o3\":0}",
                        .duplicateKey, at: dupOffset))
        return rows
    }()

    static let depth: [Row] = [
        ok("512 nested arrays", String(repeating: "[", count: 512) + String(repeating: "]", count: 512)),
        ok("512 nested arrays around a value", String(repeating: "[", count: 512) + "1" + String(repeating: "]", count: 512)),
        bad("513 nested arrays", String(repeating: "[", count: 513) + String(repeating: "]", count: 513), .tooDeep, at: 512),
        ok("512 nested objects", String(repeating: #"{"a":"#, count: 511) + "{}" + String(repeating: "}", count: 511)),
        bad("513 nested objects", String(repeating: #"{"a":"#, count: 513) + "1" + String(repeating: "}", count: 513),
            .tooDeep, at: 512 * 5),
        bad("100,000 opening brackets", String(repeating: "[", count: 100_000), .tooDeep, at: 512),
        bad("100,000 balanced brackets", String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000),
            .tooDeep, at: 512),
        bad("100,000 opening braces", String(repeating: #"{"a":"#, count: 100_000), .tooDeep, at: 512 * 5),
    ]

    static var all: [Row] { values + whitespace + numbers + strings + utf8 + structure + duplicateKeys + depth }
}

final class ConformanceTests: XCTestCase {
    /// Runs each row with every kernel and checks the expectation, kernel agreement, the
    /// round trip of accepted rows, and the stated value.
    func check(_ rows: [Row], file: StaticString = #filePath, line: UInt = #line) {
        for row in rows {
            var outcomes: [ParseOutcome] = []
            for kernel in allKernels {
                let result = parseDocument(row.input, kernel: kernel)
                let o = outcome(result)
                outcomes.append(o)
                switch (row.expected, result) {
                case (.accept, .success(let doc)):
                    if let p = roundTripProblem(doc) { XCTFail("\(row.name) [\(kernel)]: \(p)", file: file, line: line) }
                    if let want = row.value {
                        do {
                            let got = try JSONTree(json: doc.root)
                            XCTAssertEqual(got, want, "\(row.name) [\(kernel)]: value", file: file, line: line)
                        } catch {
                            XCTFail("\(row.name) [\(kernel)]: reading failed: \(error)", file: file, line: line)
                        }
                    }
                case (.accept, .failure(let e)):
                    XCTFail("\(row.name) [\(kernel)]: expected to be accepted, got \(e)", file: file, line: line)
                case (.reject(let kind, let at), .failure(let e)):
                    if e.kind != kind || e.offset != at {
                        XCTFail("\(row.name) [\(kernel)]: expected \(kind) at \(at), got \(e.kind) at \(e.offset) (\(e))", file: file, line: line)
                    }
                case (.reject(let kind, let at), .success):
                    XCTFail("\(row.name) [\(kernel)]: expected \(kind) at \(at), but it was accepted", file: file, line: line)
                }
            }
            for (kernel, o) in zip(allKernels, outcomes).dropFirst() {
                XCTAssertEqual(o, outcomes[0], "\(row.name): .\(kernel) and .\(allKernels[0]) disagree", file: file, line: line)
            }
        }
    }

    func testValues() { check(Conformance.values) }
    func testWhitespace() { check(Conformance.whitespace) }
    func testNumbers() { check(Conformance.numbers) }
    func testStringsAndEscapes() { check(Conformance.strings) }
    func testUTF8() { check(Conformance.utf8) }
    func testStructure() { check(Conformance.structure) }
    func testDuplicateKeys() { check(Conformance.duplicateKeys) }
    func testDepth() { check(Conformance.depth) }

    func testDepthLimitIsAnOption() {
        XCTAssertEqual(JSONDocument.Options().maxDepth, 512)
        for kernel in allKernels {
            XCTAssertTrue(outcome(parseDocument(q("[[[1]]]"), kernel: kernel, maxDepth: 3)).isAccepted)
            XCTAssertEqual(outcome(parseDocument(q("[[[[1]]]]"), kernel: kernel, maxDepth: 3)), .rejected(.tooDeep, 3))
            XCTAssertEqual(outcome(parseDocument(q(#"{"a":[{}]}"#), kernel: kernel, maxDepth: 2)), .rejected(.tooDeep, 6))
            XCTAssertEqual(outcome(parseDocument(q("1"), kernel: kernel, maxDepth: 0)), .accepted([NodeSnapshot(JSONDocument.Node(start: 0, end: 1, count: 0, kind: .number, flag: true))]))
            XCTAssertEqual(outcome(parseDocument(q("[]"), kernel: kernel, maxDepth: 0)), .rejected(.tooDeep, 0))
        }
    }

    /// The table itself: names are unique (so a failure points at one row) and every
    /// kind of syntax error appears in it.
    func testTableCoversEverySyntaxErrorKind() {
        let rows = Conformance.all
        XCTAssertEqual(Set(rows.map(\.name)).count, rows.count, "row names must be unique")
        var kinds = Set<JSONError.Kind>()
        for r in rows { if case .reject(let k, _) = r.expected { kinds.insert(k) } }
        let syntax: [JSONError.Kind] = [.empty, .invalidUTF8, .controlCharacterInString, .unterminatedString, .invalidEscape,
                                        .loneSurrogate, .invalidNumber, .invalidLiteral, .unexpectedCharacter, .unexpectedEnd,
                                        .trailingContent, .tooDeep, .duplicateKey]
        for k in syntax { XCTAssertTrue(kinds.contains(k), "no row refused with \(k)") }
    }
}
