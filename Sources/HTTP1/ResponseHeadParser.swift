// HTTP1.ResponseHeadParser: strict, incremental parsing of HTTP/1.1 response heads, for
// the client side (engines talking to the dispatcher, webhooks, S3). Same rules as the
// request side where they apply (token names, no folding, no bare CR/LF, one
// Content-Length, only a final "chunked"), plus the response-only framing of RFC 9112
// §6.3: no body for HEAD, 1xx, 204 and 304; otherwise chunked, Content-Length, or the
// rest of the connection.
// Reads a borrowed UnsafeRawBufferPointer only; see RequestHead.swift on why that is sound.

public enum ResponseFraming: Equatable, Sendable {
    case none
    case contentLength(UInt64)
    case chunked
    /// No length given: the body is everything until the server closes the connection.
    case untilClose
}

public struct ParsedResponseHead: Equatable, Sendable {
    public var status: Int
    public var version: HTTPVersion
    public var fields: [RequestHead.Field]
    public var framing: ResponseFraming
    public var keepAlive: Bool
    public var headLength: Int

    public func value(of name: StaticString, in b: UnsafeRawBufferPointer) -> String? {
        for f in fields where equalsIgnoringCase(b, f.name, name) {
            return String(decoding: UnsafeRawBufferPointer(rebasing: b[f.value]), as: UTF8.self)
        }
        return nil
    }
}

public struct ResponseHeadParser: Sendable {
    public var limits: HTTPLimits
    private var scanned = 0

    public init(limits: HTTPLimits = HTTPLimits()) { self.limits = limits }

    public mutating func reset() { scanned = 0 }

    /// Parses the response head at the start of `bytes`; nil while incomplete.
    /// `requestMethod` decides whether a body can follow (HEAD: never).
    public mutating func parse(_ b: UnsafeRawBufferPointer, requestMethod: String) throws(HTTPParseError) -> ParsedResponseHead? {
        let n = b.count
        var i = max(0, scanned - 3)
        var end = -1
        while i + 3 < n {
            if b[i] == 0x0D && b[i + 1] == 0x0A && b[i + 2] == 0x0D && b[i + 3] == 0x0A { end = i + 4; break }
            i += 1
        }
        if end < 0 {
            scanned = n
            if n > limits.headBytesMax + 4 { throw HTTPParseError(status: 502, "response head is larger than \(limits.headBytesMax) bytes") }
            return nil
        }
        scanned = 0
        if end > limits.headBytesMax + 4 { throw HTTPParseError(status: 502, "response head is larger than \(limits.headBytesMax) bytes") }
        return try parseComplete(b, headLength: end, requestMethod: requestMethod)
    }

    private func bad(_ reason: String) -> HTTPParseError { HTTPParseError(status: 502, reason) }

    private func parseComplete(_ b: UnsafeRawBufferPointer, headLength: Int, requestMethod: String) throws(HTTPParseError) -> ParsedResponseHead {
        // status-line = HTTP-version SP status-code SP [ reason-phrase ] CRLF
        guard headLength >= 14, b[0] == 0x48, b[1] == 0x54, b[2] == 0x54, b[3] == 0x50, b[4] == 0x2F, b[5] == 0x31, b[6] == 0x2E,
              b[7] == 0x30 || b[7] == 0x31, b[8] == 0x20 else { throw bad("malformed status line") }
        let version: HTTPVersion = b[7] == 0x31 ? .http1_1 : .http1_0
        var status = 0
        for k in 9..<12 {
            guard b[k] >= 0x30 && b[k] <= 0x39 else { throw bad("malformed status code") }
            status = status * 10 + Int(b[k] - 0x30)
        }
        guard status >= 100 && status <= 599 else { throw bad("status code out of range") }
        var p = 12
        if b[p] == 0x20 {
            p += 1
            while b[p] != 0x0D {
                let c = b[p]
                if c == 0x0A || c == 0x7F || (c < 0x20 && c != 0x09) { throw bad("control character in reason phrase") }
                p += 1
            }
        }
        guard b[p] == 0x0D, b[p + 1] == 0x0A else { throw bad("malformed status line") }
        p += 2

        var fields: [RequestHead.Field] = []
        var contentLength: UInt64?
        var transferEncoding = false
        var close = false, keepAliveToken = false
        while p < headLength - 2 {
            let lineStart = p
            if b[p] == 0x20 || b[p] == 0x09 { throw bad("obsolete line folding in a response") }
            while isTChar(b[p]) { p += 1 }
            let name = lineStart..<p
            guard !name.isEmpty, b[p] == 0x3A else { throw bad("malformed response header field") }
            p += 1
            while b[p] == 0x20 || b[p] == 0x09 { p += 1 }
            let valueStart = p
            var valueEnd = p
            while b[p] != 0x0D {
                let c = b[p]
                if c == 0x0A || c == 0x7F || (c < 0x20 && c != 0x09) { throw bad("control character in a response header") }
                p += 1
                if c != 0x20 && c != 0x09 { valueEnd = p }
            }
            guard b[p + 1] == 0x0A else { throw bad("bare CR in a response header") }
            if p - lineStart > limits.headerLineMax { throw bad("a response header field is too long") }
            p += 2
            fields.append(.init(name: name, value: valueStart..<valueEnd))
            if fields.count > limits.headerCountMax { throw bad("too many response header fields") }
            let value = valueStart..<valueEnd
            if equalsIgnoringCase(b, name, "content-length") {
                guard contentLength == nil else { throw bad("more than one Content-Length in a response") }
                var v: UInt64 = 0
                guard !value.isEmpty else { throw bad("empty Content-Length") }
                for k in value {
                    guard b[k] >= 0x30 && b[k] <= 0x39 else { throw bad("malformed Content-Length") }
                    let (m, o1) = v.multipliedReportingOverflow(by: 10)
                    let (s, o2) = m.addingReportingOverflow(UInt64(b[k] - 0x30))
                    guard !o1 && !o2 && s <= UInt64(Int64.max) else { throw bad("Content-Length is too large") }
                    v = s
                }
                contentLength = v
            } else if equalsIgnoringCase(b, name, "transfer-encoding") {
                guard !transferEncoding, equalsIgnoringCase(b, value, "chunked") else { throw bad("unsupported Transfer-Encoding in a response") }
                transferEncoding = true
            } else if equalsIgnoringCase(b, name, "connection") {
                forEachToken(b, value) { t in
                    if equalsIgnoringCase(b, t, "close") { close = true }
                    if equalsIgnoringCase(b, t, "keep-alive") { keepAliveToken = true }
                }
            }
        }
        guard p == headLength - 2 else { throw bad("malformed response header section") }
        if transferEncoding && contentLength != nil { throw bad("both Transfer-Encoding and Content-Length in a response") }

        let framing: ResponseFraming
        if requestMethod == "HEAD" || status < 200 || status == 204 || status == 304 {
            framing = .none
        } else if transferEncoding {
            framing = .chunked
        } else if let n = contentLength {
            framing = n == 0 ? .none : .contentLength(n)
        } else {
            framing = .untilClose
        }
        var keepAlive = version == .http1_1 ? !close : (keepAliveToken && !close)
        if framing == .untilClose { keepAlive = false }
        return ParsedResponseHead(status: status, version: version, fields: fields, framing: framing, keepAlive: keepAlive, headLength: headLength)
    }
}
