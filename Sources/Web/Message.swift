// Web.Message: the request a handler sees and the response it returns.
import JSON
import Ring

public struct Request: Sendable {
    public var method: String
    /// The request target as sent (path and query).
    public var target: String
    public var headers: [(name: String, value: String)]
    /// The whole body, for routes that buffer (the default). Empty on streaming routes:
    /// read `bodyStream` there.
    public var body: [UInt8]
    /// The body as a stream; on buffering routes it is already complete. Bound to the
    /// loop serving the request: read it from the handler's own task (elsewhere it traps).
    public var bodyStream: RequestBody { stream?.value ?? RequestBody() }
    /// The body of a request that has one, as the server received it.
    var stream: LoopBound<RequestBody>?
    public var pathParameters: [String: String] = [:]
    /// Set by the request-id middleware (taken from X-Request-Id or generated).
    public var requestID: String?
    /// The matched route's pattern ("/api/v1/jobs/:id"), set by the router before any
    /// middleware runs; nil when no route matched (404, 405).
    public var route: String?
    /// Set by the authentication middleware: who is calling.
    public var principal: String?
    /// The peer's address, "host:port".
    public var remoteAddress: String?

    public init(method: String, target: String, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
    }

    /// The path without the query.
    public var path: Substring {
        guard let q = target.utf8.firstIndex(of: 0x3F) else { return target[...] }
        return target[..<q]
    }

    /// The first query parameter named `name` (percent-decoded), if any.
    /// How many times `name` is in the query (a list parameter given twice is ambiguous).
    public func queryCount(_ name: String) -> Int {
        guard let q = target.split(separator: "?", maxSplits: 1).dropFirst().first else { return 0 }
        var n = 0
        for pair in q.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            if percentDecode(kv[0]) == name { n += 1 }
        }
        return n
    }

    public func query(_ name: String) -> String? {
        guard let q = target.split(separator: "?", maxSplits: 1).dropFirst().first else { return nil }
        for pair in q.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            if percentDecode(kv[0]) == name { return kv.count > 1 ? percentDecode(kv[1]) : "" }
        }
        return nil
    }

    /// How many fields named `name` the request has: a header that must appear once
    /// (credentials, an idempotency key) is refused when given twice.
    public func headerCount(_ name: String) -> Int { headers.count(of: name) }
    public func header(_ name: String) -> String? { headers.value(of: name) }
    /// A list field (If-Match, If-None-Match...) sent on one line or several, as one list.
    public func headerList(_ name: String) -> String? { headers.list(of: name) }

    /// The body parsed as JSON; malformed JSON is a 400 `invalid_json` with the offset.
    public func json() throws(APIError) -> JSONDocument {
        do {
            return try JSONDocument(parsing: body)
        } catch {
            // A duplicate key is well-formed JSON that is wrong: 422 naming the member.
            if error.kind == .duplicateKey {
                let pointer = JSONLocator.pointerOfKey(at: error.offset, in: body)
                throw APIError(status: 422, code: "validation_failed", message: "\(pointer): duplicate key", details: [(pointer, "duplicate key")])
            }
            throw APIError(error)
        }
    }

    /// The body decoded as `T`: 400 `invalid_json` for syntax, 422 `validation_failed`
    /// (with the JSON Pointer of the field) for a missing or mistyped field.
    public func decode<T: JSONDecodable>(_ type: T.Type) throws(APIError) -> T {
        let doc = try json()
        do {
            return try T(json: doc.root)
        } catch {
            throw APIError(error)
        }
    }
}

func percentDecode(_ s: Substring) -> String {
    // Most path segments and query values have nothing to decode.
    if !s.utf8.contains(where: { $0 == 0x25 || $0 == 0x2B }) { return String(s) }
    var out: [UInt8] = []
    var it = Array(s.utf8)[...]
    while let c = it.popFirst() {
        if c == 0x25, it.count >= 2, let h = hexDigit(it[it.startIndex]), let l = hexDigit(it[it.startIndex + 1]) {
            out.append(h << 4 | l)
            it = it.dropFirst(2)
        } else if c == 0x2B {
            out.append(0x20)
        } else {
            out.append(c)
        }
    }
    return String(decoding: out, as: UTF8.self)
}

private func hexDigit(_ c: UInt8) -> UInt8? {
    switch c {
    case 0x30...0x39: return c - 0x30
    case 0x41...0x46: return c - 0x41 + 10
    case 0x61...0x66: return c - 0x61 + 10
    default: return nil
    }
}

public struct Response: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    /// When set, the content comes from here and `body` is ignored.
    public var stream: ResponseStream?
    /// Set once `Conditional.apply` has run on it (a middleware that counts the final
    /// status applies it before the server does): it runs once per answer.
    var conditionsApplied = false

    public init(status: Int = 200, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public func header(_ name: String) -> String? { headers.value(of: name) }

    public static func json(_ status: Int = 200, _ text: String) -> Response {
        Response(status: status, headers: [("Content-Type", "application/json")], body: Array(text.utf8))
    }

    /// A JSON response written by `build` with the JSON writer.
    public static func json(_ status: Int = 200, _ build: (inout JSONWriter<[UInt8]>) -> Void) -> Response {
        var w = JSONWriter()
        build(&w)
        return Response(status: status, headers: [("Content-Type", "application/json")], body: w.bytes)
    }

    /// `value` encoded as JSON.
    public static func json(_ status: Int = 200, encoding value: some JSONEncodable) -> Response {
        Response(status: status, headers: [("Content-Type", "application/json")], body: value.jsonBytes)
    }

    /// A chunked response written by `producer`.
    public static func streaming(status: Int = 200, contentType: String, _ producer: @escaping ResponseProducer) -> Response {
        var r = Response(status: status, headers: [("Content-Type", contentType)])
        r.stream = .chunked(producer)
        return r
    }

    /// A Server-Sent Events stream (text/event-stream, not cached).
    public static func events(_ producer: @escaping ResponseProducer) -> Response {
        var r = streaming(contentType: "text/event-stream", producer)
        r.headers.append(("Cache-Control", "no-cache"))
        return r
    }
}

extension APIError {
    /// JSON errors as API errors: syntax is 400 `invalid_json`; a typed read that failed
    /// is 422 `validation_failed` with the pointer and the reason in `details`.
    public init(_ e: JSONError) {
        if e.isSyntaxError {
            self.init(status: 400, code: "invalid_json", message: "the request body is not valid JSON: \(e.description)",
                      details: [("offset", String(e.offset)), ("reason", e.kind.description)])
        } else {
            self.init(status: 422, code: "validation_failed", message: e.description,
                      details: [("field", e.pointer), ("reason", e.detail.isEmpty ? e.kind.description : e.detail)])
        }
    }
}

extension String {
    /// ASCII case-insensitive equality, without allocating (header names are ASCII).
    @inline(__always)
    func equalsIgnoringCase(_ other: String) -> Bool {
        var a = self.utf8.makeIterator(), b = other.utf8.makeIterator()
        while true {
            switch (a.next(), b.next()) {
            case (nil, nil): return true
            case let (x?, y?):
                if x != y {
                    let lx = x | 0x20
                    guard lx == y | 0x20, lx >= 0x61, lx <= 0x7A else { return false }
                }
            default: return false
            }
        }
    }
}

extension Array where Element == (name: String, value: String) {
    /// The value of the first field named `name` (ASCII case-insensitive).
    func value(of name: String) -> String? {
        for f in self where f.name.utf8.count == name.utf8.count && f.name.equalsIgnoringCase(name) { return f.value }
        return nil
    }

    /// Every field named `name` as one comma-separated list, in order (RFC 9110 §5.3: a
    /// list field sent on several lines is the same as one line); nil when there is none.
    func list(of name: String) -> String? {
        let values = filter { $0.name.utf8.count == name.utf8.count && $0.name.equalsIgnoringCase(name) }.map(\.value)
        return values.isEmpty ? nil : values.joined(separator: ", ")
    }

    /// How many fields are named `name` (ASCII case-insensitive).
    func count(of name: String) -> Int {
        reduce(0) { $0 + ($1.name.utf8.count == name.utf8.count && $1.name.equalsIgnoringCase(name) ? 1 : 0) }
    }

    mutating func removeAll(named name: String) {
        removeAll { $0.name.equalsIgnoringCase(name) }
    }
}
