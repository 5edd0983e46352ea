// HTTP1.Serializer: response heads, chunked framing and Server-Sent Events, as bytes.
//
// Goals: output that our own strict parser (and any RFC 9112 peer) accepts; header
// injection impossible (names must be tokens, values may not hold CR, LF or NUL: such
// input is a programmer error and traps; FieldSyntax, shared with request heads in
// RequestSerializer.swift, which throw instead). Non-goals: writing into sockets (Web does).

public struct ResponseHead: Sendable, Equatable {
    public var status: Int
    public var reason: String
    public var headers: [(name: String, value: String)]

    public init(status: Int, reason: String? = nil, headers: [(name: String, value: String)] = []) {
        precondition((100...999).contains(status), "status \(status) is not three digits")
        self.status = status
        self.reason = reason ?? ResponseHead.standardReason(status)
        self.headers = headers
    }

    public static func == (a: ResponseHead, b: ResponseHead) -> Bool {
        a.status == b.status && a.reason == b.reason && a.headers.elementsEqual(b.headers) { $0.name == $1.name && $0.value == $1.value }
    }

    /// "HTTP/1.1 200 OK\r\nName: value\r\n...\r\n"
    public func serialize(into out: inout [UInt8]) {
        for (name, value) in headers {
            if let problem = FieldSyntax.problem(name: name, value: value) { preconditionFailure(problem) }
        }
        serialize(checkedFields: (), into: &out)
    }

    /// `serialize` for a head whose every field already passed `isValidField` (a server
    /// checks a handler's headers before it frames the response, and answers 500 for a bad
    /// one): the fields are not checked twice.
    public func serialize(checkedFields: Void, into out: inout [UInt8]) {
        Self.serializeStatusLine(status, reason: reason, into: &out)
        FieldSyntax.append(headers, to: &out)
    }

    /// "HTTP/1.1 200 OK\r\n": the status line alone, with the standard reason unless given.
    public static func serializeStatusLine(_ status: Int, reason: String? = nil, into out: inout [UInt8]) {
        precondition((100...999).contains(status), "status \(status) is not three digits")
        out.append(contentsOf: statusLinePrefix)
        out.append(UInt8(0x30 + status / 100)); out.append(UInt8(0x30 + status / 10 % 10)); out.append(UInt8(0x30 + status % 10))
        out.append(0x20)
        let reason = reason ?? standardReason(status)
        for c in reason.utf8 { precondition(c == 0x09 || c >= 0x20 && c != 0x7F, "control character in reason phrase") }
        out.append(contentsOf: reason.utf8)
        out.append(0x0D); out.append(0x0A)
    }

    private static let statusLinePrefix: [UInt8] = Array("HTTP/1.1 ".utf8)

    /// Whether `serialize` accepts this field: a token name, a value without CR, LF, NUL or
    /// other control characters (tab allowed). Requests follow the same rules.
    public static func isValidField(name: String, value: String) -> Bool {
        FieldSyntax.problem(name: name, value: value) == nil
    }

    public var bytes: [UInt8] {
        var out: [UInt8] = []
        serialize(into: &out)
        return out
    }

    public static func standardReason(_ status: Int) -> String {
        switch status {
        case 100: return "Continue"
        case 200: return "OK"
        case 201: return "Created"
        case 202: return "Accepted"
        case 204: return "No Content"
        case 206: return "Partial Content"
        case 301: return "Moved Permanently"
        case 304: return "Not Modified"
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 408: return "Request Timeout"
        case 409: return "Conflict"
        case 410: return "Gone"
        case 411: return "Length Required"
        case 412: return "Precondition Failed"
        case 413: return "Content Too Large"
        case 414: return "URI Too Long"
        case 415: return "Unsupported Media Type"
        case 416: return "Range Not Satisfiable"
        case 417: return "Expectation Failed"
        case 422: return "Unprocessable Content"
        case 429: return "Too Many Requests"
        case 431: return "Request Header Fields Too Large"
        case 500: return "Internal Server Error"
        case 501: return "Not Implemented"
        case 502: return "Bad Gateway"
        case 503: return "Service Unavailable"
        case 504: return "Gateway Timeout"
        case 505: return "HTTP Version Not Supported"
        case 507: return "Insufficient Storage"
        default: return "Status \(status)"
        }
    }
}

/// Chunked transfer coding, writer side.
public enum ChunkedEncoding {
    /// "<hex size>\r\n" for a chunk of `count` (> 0) bytes.
    public static func chunkPrefix(_ count: Int, into out: inout [UInt8]) {
        precondition(count > 0, "a zero-size chunk ends the body: use lastChunk")
        out.append(contentsOf: String(count, radix: 16).utf8)
        out.append(0x0D); out.append(0x0A)
    }

    /// The CRLF after a chunk's data.
    public static let chunkSuffix: [UInt8] = [0x0D, 0x0A]
    /// The last chunk with an empty trailer section.
    public static let lastChunk: [UInt8] = Array("0\r\n\r\n".utf8)

    /// One whole chunk.
    public static func chunk(_ data: some Collection<UInt8>, into out: inout [UInt8]) {
        guard !data.isEmpty else { return }
        chunkPrefix(data.count, into: &out)
        out.append(contentsOf: data)
        out.append(contentsOf: chunkSuffix)
    }
}

/// One Server-Sent Events message (text/event-stream).
public struct ServerSentEvent: Sendable, Equatable {
    public var event: String?
    public var id: String?
    public var data: String
    public var retryMilliseconds: Int?

    public init(event: String? = nil, id: String? = nil, data: String, retryMilliseconds: Int? = nil) {
        self.event = event
        self.id = id
        self.data = data
        self.retryMilliseconds = retryMilliseconds
    }

    /// Each line of `data` becomes its own `data:` field; CR, LF and CRLF all split lines.
    public func serialize(into out: inout [UInt8]) {
        func field(_ name: String, _ value: String) {
            precondition(!value.utf8.contains(0x0A) && !value.utf8.contains(0x0D), "\(name) may not contain a line break")
            out.append(contentsOf: "\(name): \(value)\n".utf8)
        }
        if let event { field("event", event) }
        if let id { field("id", id) }
        if let retryMilliseconds { out.append(contentsOf: "retry: \(retryMilliseconds)\n".utf8) }
        var line: [UInt8] = []
        var previousCR = false
        for c in data.utf8 {
            if c == 0x0A && previousCR { previousCR = false; continue }
            previousCR = c == 0x0D
            if c == 0x0A || c == 0x0D {
                out.append(contentsOf: "data: ".utf8); out.append(contentsOf: line); out.append(0x0A)
                line.removeAll(keepingCapacity: true)
            } else {
                line.append(c)
            }
        }
        out.append(contentsOf: "data: ".utf8); out.append(contentsOf: line); out.append(0x0A)
        out.append(0x0A)
    }
}
