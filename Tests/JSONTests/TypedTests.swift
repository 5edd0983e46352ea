// The typed layer on a job-submission shape: required and optional fields, a nested array
// of renditions, unknown keys refused; errors carry the kind and the JSON Pointer of the
// offending value (or of the missing member), and encoding reads back equal.
import JSON
import XCTest

struct Rendition: JSONDecodable, JSONEncodable, Equatable {
    var name: String
    var width: Int
    var height: Int
    var bitrateKbps: Int?
    var codec: String?

    init(name: String, width: Int, height: Int, bitrateKbps: Int? = nil, codec: String? = nil) {
        self.name = name
        self.width = width
        self.height = height
        self.bitrateKbps = bitrateKbps
        self.codec = codec
    }

    init(json: JSONValue) throws(JSONError) {
        try json.rejectUnknownKeys(["name", "width", "height", "bitrate_kbps", "codec"])
        name = try json.field("name")
        width = try json.field("width")
        height = try json.field("height")
        bitrateKbps = try json.optionalField("bitrate_kbps")
        codec = try json.optionalField("codec")
        guard width > 0 else { throw json["width"]!.invalid("must be positive") }
    }

    func encode<S: JSONSink>(to w: inout JSONWriter<S>) {
        w.beginObject()
        w.field("name", name)
        w.field("width", width)
        w.field("height", height)
        if let bitrateKbps { w.field("bitrate_kbps", bitrateKbps) }
        if let codec { w.field("codec", codec) }
        w.endObject()
    }
}

struct JobSubmission: JSONDecodable, JSONEncodable, Equatable {
    var input: String
    var priority: Int?
    var tags: [String]
    var outputs: [Rendition]
    var notify: Bool?
    var weight: Double?

    init(input: String, priority: Int?, tags: [String], outputs: [Rendition], notify: Bool?, weight: Double?) {
        self.input = input
        self.priority = priority
        self.tags = tags
        self.outputs = outputs
        self.notify = notify
        self.weight = weight
    }

    init(json: JSONValue) throws(JSONError) {
        try json.rejectUnknownKeys(["input", "priority", "tags", "outputs", "notify", "weight"])
        input = try json.field("input")
        priority = try json.optionalField("priority")
        tags = try json.optionalField("tags") ?? []
        outputs = try json.field("outputs")
        notify = try json.optionalField("notify")
        weight = try json.optionalField("weight")
    }

    func encode<S: JSONSink>(to w: inout JSONWriter<S>) {
        w.beginObject()
        w.field("input", input)
        w.key("priority"); priority.encode(to: &w)
        w.field("tags", tags)
        w.field("outputs", outputs)
        if let notify { w.field("notify", notify) }
        if let weight { w.field("weight", weight) }
        w.endObject()
    }
}

final class TypedTests: XCTestCase {
    static let valid = #"""
    {"input":"s3://bucket/in.mov","priority":5,"tags":["a","b\u00e9"],
     "outputs":[{"name":"1080p","width":1920,"height":1080,"bitrate_kbps":6000},
                {"name":"720p","width":1280,"height":720,"codec":"h264"}],
     "notify":null}
    """#

    func decode(_ text: String) throws(JSONError) -> JobSubmission {
        try JSONDocument.decode(JobSubmission.self, from: Array(text.utf8))
    }

    func assertError(_ text: String, _ kind: JSONError.Kind, pointer: String, file: StaticString = #filePath, line: UInt = #line) {
        do throws(JSONError) {
            let v = try decode(text)
            XCTFail("expected \(kind) at \(pointer), decoded \(v)", file: file, line: line)
        } catch {
            XCTAssertEqual(error.kind, kind, "\(error)", file: file, line: line)
            XCTAssertEqual(error.pointer, pointer, "\(error)", file: file, line: line)
            XCTAssertEqual(error.offset, -1, file: file, line: line)
            XCTAssertFalse(error.isSyntaxError, file: file, line: line)
        }
    }

    /// The valid document with `old` replaced by `new` (which must occur exactly once).
    func edited(_ old: String, _ new: String, file: StaticString = #filePath, line: UInt = #line) -> String {
        let parts = Self.valid.components(separatedBy: old)
        XCTAssertEqual(parts.count, 2, "\(old) must occur once", file: file, line: line)
        return parts.joined(separator: new)
    }

    func testDecodesAndRoundTrips() throws {
        let job = try decode(Self.valid)
        let want = JobSubmission(input: "s3://bucket/in.mov", priority: 5, tags: ["a", "b\u{E9}"],
                                 outputs: [Rendition(name: "1080p", width: 1920, height: 1080, bitrateKbps: 6000),
                                           Rendition(name: "720p", width: 1280, height: 720, codec: "h264")],
                                 notify: nil, weight: nil)
        XCTAssertEqual(job, want)
        XCTAssertEqual(job.jsonText,
                       #"{"input":"s3://bucket/in.mov","priority":5,"tags":["a","b\#u{E9}"],"outputs":[{"name":"1080p","width":1920,"height":1080,"bitrate_kbps":6000},{"name":"720p","width":1280,"height":720,"codec":"h264"}]}"#)
        XCTAssertEqual(try decode(job.jsonText), job)

        var other = want
        other.priority = nil
        other.notify = true
        other.weight = 0.25
        other.tags = []
        XCTAssertEqual(try decode(other.jsonText), other)
        XCTAssertTrue(other.jsonText.contains(#""priority":null"#))
    }

    func testOptionalFieldsMayBeAbsentOrNull() throws {
        let minimal = try decode(#"{"input":"x","outputs":[]}"#)
        XCTAssertNil(minimal.priority)
        XCTAssertEqual(minimal.tags, [])
        XCTAssertNil(minimal.notify)
        XCTAssertEqual(try decode(#"{"input":"x","outputs":[],"priority":null,"tags":null}"#), minimal)
    }

    func testMissingFields() {
        assertError(edited(#""width":1280,"#, ""), .missingField, pointer: "/outputs/1/width")
        assertError(edited(#""name":"1080p","#, ""), .missingField, pointer: "/outputs/0/name")
        assertError(edited(#""input":"s3://bucket/in.mov","#, ""), .missingField, pointer: "/input")
        assertError(#"{"input":"x"}"#, .missingField, pointer: "/outputs")
    }

    func testWrongTypes() {
        assertError(edited(#""height":720"#, #""height":"720""#), .typeMismatch, pointer: "/outputs/1/height")
        assertError(edited(#""width":1920"#, #""width":1920.0"#), .typeMismatch, pointer: "/outputs/0/width")
        assertError(edited(#""priority":5"#, #""priority":"high""#), .typeMismatch, pointer: "/priority")
        assertError(edited(#""tags":["a","b\u00e9"]"#, #""tags":["a",2]"#), .typeMismatch, pointer: "/tags/1")
        assertError(edited(#""tags":["a","b\u00e9"]"#, #""tags":"a""#), .typeMismatch, pointer: "/tags")
        assertError(edited(#""notify":null"#, #""notify":1"#), .typeMismatch, pointer: "/notify")
        assertError(#"{"input":"x","outputs":{}}"#, .typeMismatch, pointer: "/outputs")
        assertError(#"{"input":"x","outputs":[[]]}"#, .typeMismatch, pointer: "/outputs/0")
        assertError(#"[]"#, .typeMismatch, pointer: "")
        assertError(edited(#""width":1920"#, #""width":99999999999999999999"#), .numberOutOfRange, pointer: "/outputs/0/width")
        assertError(edited(#""width":1920"#, #""width":-4"#), .invalidValue, pointer: "/outputs/0/width")
        assertError(edited(#""input":"s3://bucket/in.mov""#, #""input":null"#), .typeMismatch, pointer: "/input")
    }

    /// Typed fields of scalar types read the node directly (no JSONValue is made); they
    /// must agree with reading the member's value, value for value and error for error.
    func testScalarFieldsReadLikeTheirValues() throws {
        let doc = try JSONDocument(parsing: #"""
            {"s":"x\u00e9","e":"","t":true,"f":false,"z":null,"i":-42,"u":18446744073709551615,
             "m":-9223372036854775808,"d":2.5e-3,"big":1e400,"o":{"k":1},"a":[1],"neg0":-0,"w":1.0}
            """#)
        let root = doc.root
        func same<T: JSONDecodable & Equatable>(_ type: T.Type, _ key: String, file: StaticString = #filePath, line: UInt = #line) {
            let direct = Result { () throws(JSONError) in try root.field(key, as: T.self) }
            let viaValue = Result { () throws(JSONError) in try T(json: root[key]!) }
            XCTAssertEqual(direct, viaValue, "\(T.self) from \(key)", file: file, line: line)
            let optional = Result { () throws(JSONError) in try root.optionalField(key, as: T.self) }
            let optionalViaValue = Result { () throws(JSONError) -> T? in root[key]!.isNull ? nil : try T(json: root[key]!) }
            XCTAssertEqual(optional, optionalViaValue, "optional \(T.self) from \(key)", file: file, line: line)
        }
        var reads = 0
        for (key, _) in root.members {
            same(String.self, key); same(Bool.self, key); same(Int64.self, key); same(Int.self, key)
            same(UInt64.self, key); same(Double.self, key); same(Int32.self, key)
            reads += 1
        }
        XCTAssertEqual(reads, 14)
        XCTAssertEqual(try root.field("s", as: String.self), "x\u{e9}")
        XCTAssertEqual(try root.field("m", as: Int64.self), .min)
        XCTAssertEqual(try root.field("u", as: UInt64.self), .max)
        XCTAssertNil(try root.optionalField("z", as: Int.self))
        XCTAssertNil(try root.optionalField("absent", as: Int.self))
    }

    /// A literal name takes the StaticString forms of `field` and `optionalField` (whose
    /// query word is folded where they are inlined); a name in a String variable takes the
    /// String forms. Both must find the same members and give the same errors: short and
    /// long names, the empty name, a one-scalar name (a StaticString without a pointer),
    /// escaped keys, and a key in the document's last eight bytes (compared byte by byte).
    func testLiteralAndStringNamesReadAlike() throws {
        let doc = try JSONDocument(parsing: #"""
            {"a":1,"id":2,"priority":3,"progress_ratio":4,"":5,"\u00e9":6,"caf\u00e9":7,"n":null,"s":"x","é2":8,"z":9}
            """#)
        let root = doc.root
        func same(_ literal: Result<Int, JSONError>, _ name: String, file: StaticString = #filePath, line: UInt = #line) {
            let viaString = Result { () throws(JSONError) in try root.field(name, as: Int.self) }
            XCTAssertEqual(literal, viaString, "field \(name)", file: file, line: line)
        }
        same(Result { () throws(JSONError) in try root.field("a") }, "a")
        same(Result { () throws(JSONError) in try root.field("id") }, "id")
        same(Result { () throws(JSONError) in try root.field("priority") }, "priority")
        same(Result { () throws(JSONError) in try root.field("progress_ratio") }, "progress_ratio")
        same(Result { () throws(JSONError) in try root.field("") }, "")
        same(Result { () throws(JSONError) in try root.field("é") }, "é")
        same(Result { () throws(JSONError) in try root.field("café") }, "café")
        same(Result { () throws(JSONError) in try root.field("é2") }, "é2")
        same(Result { () throws(JSONError) in try root.field("z") }, "z")
        same(Result { () throws(JSONError) in try root.field("absent") }, "absent")
        same(Result { () throws(JSONError) in try root.field("s") }, "s")
        XCTAssertEqual(try root.field("é", as: Int.self), 6)
        XCTAssertEqual(try root.field("z", as: Int.self), 9)
        XCTAssertNil(try root.optionalField("n", as: Int.self))
        XCTAssertNil(try root.optionalField("absent", as: Int.self))
        XCTAssertEqual(try root.optionalField("café", as: Int.self), 7)
        // A member read as a value (JSONValue is JSONDecodable): the same node as the subscript's.
        XCTAssertEqual(try root.field("s", as: JSONValue.self).string(), "x")
        XCTAssertEqual(try root.field("café", as: JSONValue.self).pointer, root["café"]?.pointer)
        XCTAssertNil(try root.optionalField("n", as: JSONValue.self))
        XCTAssertThrowsError(try root.field("absent", as: JSONValue.self))
        let notAnObject = try XCTUnwrap(root["s"])
        XCTAssertEqual(Result { () throws(JSONError) in try notAnObject.optionalField("x", as: Int.self) },
                       Result { () throws(JSONError) in try notAnObject.optionalField(String("x"), as: Int.self) })
        XCTAssertEqual(Result { () throws(JSONError) in try notAnObject.field("x", as: Int.self) },
                       Result { () throws(JSONError) in try notAnObject.field(String("x"), as: Int.self) })
    }

    func testUnknownKeysAreRefused() {
        assertError(edited(#""priority":5"#, #""priority":5,"prority":6"#), .invalidValue, pointer: "/prority")
        assertError(edited(#""codec":"h264""#, #""codec":"h264","widht":1"#), .invalidValue, pointer: "/outputs/1/widht")
        // The first unknown key in document order is the one reported.
        assertError(#"{"zz":1,"input":"x","outputs":[],"aa":2}"#, .invalidValue, pointer: "/zz")
    }

    func testSyntaxErrorsComeThroughAsSyntaxErrors() {
        do throws(JSONError) {
            _ = try decode(#"{"input":"x","outputs":[],}"#)
            XCTFail("accepted")
        } catch {
            XCTAssertEqual(error.kind, .unexpectedCharacter)
            XCTAssertEqual(error.offset, 26)
            XCTAssertTrue(error.isSyntaxError)
        }
    }

    /// Member names holding '/' or '~' are escaped in pointers (RFC 6901), also for a
    /// member that is missing.
    func testPointersEscapeSlashAndTilde() throws {
        let doc = try JSONDocument(parsing: #"{"a/b":{"c~d":"x"}}"#)
        let inner = try XCTUnwrap(doc.root["a/b"])
        XCTAssertEqual(inner["c~d"]?.pointer, "/a~1b/c~0d")
        do throws(JSONError) {
            _ = try inner.field("c~d", as: Int.self)
            XCTFail("accepted")
        } catch {
            XCTAssertEqual(error.kind, .typeMismatch)
            XCTAssertEqual(error.pointer, "/a~1b/c~0d")
        }
        do throws(JSONError) {
            _ = try inner.field("e/f~g", as: Int.self)
            XCTFail("accepted")
        } catch {
            XCTAssertEqual(error.kind, .missingField)
            XCTAssertEqual(error.pointer, "/a~1b/e~1f~0g")
        }
    }

    func testJSONTreeKeepsNumbersAndOrder() throws {
        let text = #"{"z":1.50,"a":[1e2,-0,{"k":null}],"m":"\u00e9"}"#
        let tree = try JSONDocument.decode(JSONTree.self, from: Array(text.utf8))
        XCTAssertEqual(tree, .object([("z", .number("1.50")), ("a", .array([.number("1e2"), .number("-0"), .object([("k", .null)])])),
                                      ("m", .string("\u{E9}"))]))
        XCTAssertEqual(tree.jsonText, #"{"z":1.50,"a":[1e2,-0,{"k":null}],"m":"é"}"#)
    }
}
