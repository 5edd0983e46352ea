// JSON.Typed: the typed layer API code uses instead of Foundation's Codable decoding. A type
// reads itself from a JSONValue (`JSONDecodable`) and writes itself to a JSONWriter
// (`JSONEncodable`); field helpers report missing or mistyped fields with the JSON
// Pointer of the offending value, which the API turns into a 422 `validation_failed`.
// `JSONTree` is a plain value form of any document (numbers kept as their exact text),
// for code that needs to hold or rebuild arbitrary JSON.

public protocol JSONDecodable {
    init(json: JSONValue) throws(JSONError)

    /// Reads node `node` of `document` (an index only the JSON module makes). The default
    /// makes a JSONValue and calls `init(json:)`; the scalar types read the node directly,
    /// so a typed field of a scalar type makes no JSONValue (making one retains the
    /// document and dropping it releases it, and those atomic operations were most of the
    /// cost of reading a field).
    static func read(_ document: JSONDocument, node: Int) throws(JSONError) -> Self
}

extension JSONDecodable {
    public static func read(_ document: JSONDocument, node: Int) throws(JSONError) -> Self {
        try Self(json: JSONValue(document: document, index: node))
    }
}

public protocol JSONEncodable {
    func encode<S: JSONSink>(to writer: inout JSONWriter<S>)
}

extension JSONEncodable {
    /// Compact JSON bytes of this value.
    public var jsonBytes: [UInt8] {
        var w = JSONWriter()
        encode(to: &w)
        return w.bytes
    }
    public var jsonText: String { String(decoding: jsonBytes, as: UTF8.self) }
}

extension JSONDocument {
    /// Parses `bytes` and decodes the root as `T`.
    public static func decode<T: JSONDecodable>(_ type: T.Type, from bytes: [UInt8], options: Options = Options()) throws(JSONError) -> T {
        try T(json: JSONDocument(parsing: bytes, options: options).root)
    }
}

extension JSONValue {
    public func decode<T: JSONDecodable>(_ type: T.Type = T.self) throws(JSONError) -> T { try T(json: self) }

    // `field` and `optionalField` are inlinable, so a caller's module specializes them for
    // the type it reads (a direct call to that type's `read`, not a generic function with
    // its witness table); their errors are built behind calls.

    // Each has a form for a literal name (StaticString), whose bytes and first word are
    // constants where the form is inlined, and a String form for names known only at run
    // time, disfavoured so that a literal takes the other.

    /// A required member of this object.
    @inlinable @_disfavoredOverload
    public func field<T: JSONDecodable>(_ key: String, as type: T.Type = T.self) throws(JSONError) -> T {
        guard let v = document.member(of: index, key) else { throw absentField(key) }
        return try T.read(document, node: v)
    }

    /// A required member of this object, named by a literal.
    @inlinable @inline(__always)
    public func field<T: JSONDecodable>(_ key: StaticString, as type: T.Type = T.self) throws(JSONError) -> T {
        guard let v = document.member(of: index, key) else { throw absentField(key.description) }
        return try T.read(document, node: v)
    }

    /// An optional member: nil when absent or null.
    @inlinable @_disfavoredOverload
    public func optionalField<T: JSONDecodable>(_ key: String, as type: T.Type = T.self) throws(JSONError) -> T? {
        try optionalMember(document.member(of: index, key), as: T.self)
    }

    /// An optional member named by a literal: nil when absent or null.
    @inlinable @inline(__always)
    public func optionalField<T: JSONDecodable>(_ key: StaticString, as type: T.Type = T.self) throws(JSONError) -> T? {
        try optionalMember(document.member(of: index, key), as: T.self)
    }

    /// The optional fields' read of the member found at node `v` (nil: absent).
    @inlinable @inline(__always)
    func optionalMember<T: JSONDecodable>(_ v: Int?, as type: T.Type) throws(JSONError) -> T? {
        guard let v else {
            if kind != .object { throw mismatch("object") }
            return nil
        }
        if document.isNull(at: v) { return nil }
        return try T.read(document, node: v)
    }

    /// The error for a required member `key` that was not found: this is not an object,
    /// or it has no such member.
    @usableFromInline
    func absentField(_ key: String) -> JSONError {
        guard kind == .object else { return mismatch("object") }
        // The pointer names the member that should be there, escaped like any other.
        return JSONError(.missingField, pointer: pointer + "/" + key.escapedAsPointerToken(), detail: "\"\(key)\" is required")
    }

    /// Refuses members other than `allowed` (catches typos in API requests).
    public func rejectUnknownKeys(_ allowed: Set<String>) throws(JSONError) {
        guard kind == .object else { throw mismatch("object") }
        for (k, v) in members where !allowed.contains(k) {
            throw JSONError(.invalidValue, pointer: v.pointer, detail: "unknown field \"\(k)\"")
        }
    }

    /// A typed-read error at this value, for validation beyond types ("must be > 0").
    public func invalid(_ detail: String) -> JSONError { JSONError(.invalidValue, pointer: pointer, detail: detail) }
}

/// A member read as a value, to be read further (`try job.field("input", as: JSONValue.self)`).
extension JSONValue: JSONDecodable {
    public init(json: JSONValue) throws(JSONError) { self = json }
    public static func read(_ document: JSONDocument, node: Int) throws(JSONError) -> JSONValue {
        JSONValue(document: document, index: node)
    }
}

extension String: JSONDecodable, JSONEncodable {
    public init(json: JSONValue) throws(JSONError) { self = try json.string() }
    public static func read(_ document: JSONDocument, node: Int) throws(JSONError) -> Self { try document.string(at: node) }
    public func encode<S: JSONSink>(to w: inout JSONWriter<S>) { w.string(self) }
}
extension Bool: JSONDecodable, JSONEncodable {
    public init(json: JSONValue) throws(JSONError) { self = try json.bool() }
    public static func read(_ document: JSONDocument, node: Int) throws(JSONError) -> Self { try document.bool(at: node) }
    public func encode<S: JSONSink>(to w: inout JSONWriter<S>) { w.bool(self) }
}
extension Int64: JSONDecodable, JSONEncodable {
    public init(json: JSONValue) throws(JSONError) { self = try json.int64() }
    @inlinable
    public static func read(_ document: JSONDocument, node: Int) throws(JSONError) -> Self { try document.int64(at: node) }
    public func encode<S: JSONSink>(to w: inout JSONWriter<S>) { w.int(self) }
}
extension Int: JSONDecodable, JSONEncodable {
    public init(json: JSONValue) throws(JSONError) { self = try json.int() }
    @inlinable
    public static func read(_ document: JSONDocument, node: Int) throws(JSONError) -> Self { Int(try document.int64(at: node)) }
    public func encode<S: JSONSink>(to w: inout JSONWriter<S>) { w.int(self) }
}
extension Int32: JSONDecodable, JSONEncodable {
    public init(json: JSONValue) throws(JSONError) {
        let v = try json.int64()
        guard let x = Int32(exactly: v) else { throw json.outOfRange("Int32") }
        self = x
    }
    public func encode<S: JSONSink>(to w: inout JSONWriter<S>) { w.int(self) }
}
extension UInt64: JSONDecodable, JSONEncodable {
    public init(json: JSONValue) throws(JSONError) { self = try json.uint64() }
    @inlinable
    public static func read(_ document: JSONDocument, node: Int) throws(JSONError) -> Self { try document.uint64(at: node) }
    public func encode<S: JSONSink>(to w: inout JSONWriter<S>) { w.int(self) }
}
extension Double: JSONDecodable, JSONEncodable {
    public init(json: JSONValue) throws(JSONError) { self = try json.double() }
    public static func read(_ document: JSONDocument, node: Int) throws(JSONError) -> Self { try document.double(at: node) }
    public func encode<S: JSONSink>(to w: inout JSONWriter<S>) { w.double(self) }
}
extension Array: JSONDecodable where Element: JSONDecodable {
    public init(json: JSONValue) throws(JSONError) {
        guard json.kind == .array else { throw json.mismatch("array") }
        var out: [Element] = []
        out.reserveCapacity(json.count)
        // By node index, so elements of a scalar type are read without making a value each.
        let document = json.document
        var i = json.index + 1
        let end = Int(json.node.end)
        while i < end {
            out.append(try Element.read(document, node: i))
            i = document.next(after: i)
        }
        self = out
    }
}
extension Array: JSONEncodable where Element: JSONEncodable {
    public func encode<S: JSONSink>(to w: inout JSONWriter<S>) {
        w.beginArray()
        for e in self { e.encode(to: &w) }
        w.endArray()
    }
}
extension Optional: JSONEncodable where Wrapped: JSONEncodable {
    public func encode<S: JSONSink>(to w: inout JSONWriter<S>) {
        if let v = self { v.encode(to: &w) } else { w.null() }
    }
}

/// Any JSON value as a plain Swift value. Numbers keep their exact source text, so a
/// tree writes back exactly what was read; objects keep member order.
public indirect enum JSONTree: Equatable, Sendable, JSONDecodable, JSONEncodable {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([JSONTree])
    case object([(key: String, value: JSONTree)])

    public init(json: JSONValue) throws(JSONError) {
        switch json.kind {
        case .null: self = .null
        case .bool: self = .bool(try json.bool())
        case .number: self = .number(json.rawText)
        case .string: self = .string(try json.string())
        case .array: self = .array(try json.elements.map { e throws(JSONError) in try JSONTree(json: e) })
        case .object:
            var members: [(key: String, value: JSONTree)] = []
            for (k, v) in json.members { members.append((k, try JSONTree(json: v))) }
            self = .object(members)
        }
    }

    public func encode<S: JSONSink>(to w: inout JSONWriter<S>) {
        switch self {
        case .null: w.null()
        case .bool(let b): w.bool(b)
        case .number(let t): w.rawJSON(t)
        case .string(let s): w.string(s)
        case .array(let a):
            w.beginArray()
            for e in a { e.encode(to: &w) }
            w.endArray()
        case .object(let m):
            w.beginObject()
            for (k, v) in m { w.key(k); v.encode(to: &w) }
            w.endObject()
        }
    }

    public static func == (a: JSONTree, b: JSONTree) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.number(x), .number(y)): return x == y
        case let (.string(x), .string(y)): return x.unicodeScalars.elementsEqual(y.unicodeScalars)
        case let (.array(x), .array(y)): return x == y
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.key.unicodeScalars.elementsEqual($1.key.unicodeScalars) && $0.value == $1.value }
        default: return false
        }
    }
}
