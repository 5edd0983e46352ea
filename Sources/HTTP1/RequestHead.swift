// HTTP1.RequestHead: strict, incremental HTTP/1.1 request-head parsing (RFC 9112).
//
// Goals: bytes in, a parsed head out, no copies: method, target and header fields are
// byte ranges into the caller's buffer. Re-parsing from the start as bytes arrive is
// cheap because the scan for the end of the head resumes where it stopped (`scanFrom`).
// Framing is decided here, strictly, because a gateway sits in front of us and any
// disagreement about where a request ends is a smuggling hole: Transfer-Encoding with
// Content-Length, duplicate or malformed Content-Length, a transfer coding other than a
// final "chunked", obsolete line folding, bare CR or LF, whitespace before the colon,
// invalid token characters: all 400. Limits carry their own status (414, 431).
// Absolute-form targets (`http://host/path`) are split into authority and origin form.
// Non-goals: HTTP/2; decoding or normalizing the target (the server does that).
// Unsafe code in HTTP1 (justified; otherwise pure safe Swift): every parser reads a
// borrowed `UnsafeRawBufferPointer` over the caller's bytes, only by subscript and
// `rebasing` slices (no pointer arithmetic, no rebinding, no writes), and keeps byte
// ranges, never the pointer. It is the form the server, the client and the fuzz targets
// hand bytes in; RawSpan would say the same with checks in release builds too.

/// Size limits for a request head, each with the status a violation gets.
public struct HTTPLimits: Sendable, Equatable {
    /// Request line, CRLF excluded: over it, 414.
    public var requestLineMax = 8 * 1024
    /// One header line: over it, 431.
    public var headerLineMax = 8 * 1024
    /// The whole head: over it, 431.
    public var headBytesMax = 32 * 1024
    /// Header fields: over it, 431.
    public var headerCountMax = 100
    public init() {}
}

/// Why a request was refused, with the status to answer before closing the connection.
public struct HTTPParseError: Error, Equatable, Sendable, CustomStringConvertible {
    public let status: Int
    public let reason: String
    public init(status: Int, _ reason: String) {
        self.status = status
        self.reason = reason
    }
    static func bad(_ reason: String) -> HTTPParseError { HTTPParseError(status: 400, reason) }
    public var description: String { "\(status): \(reason)" }
}

/// How the request body is delimited.
public enum BodyFraming: Equatable, Sendable {
    case none
    case contentLength(UInt64)
    case chunked
}

public enum HTTPVersion: Equatable, Sendable {
    case http1_0, http1_1
}

/// A parsed request head. Ranges index the buffer that was parsed.
public struct RequestHead: Equatable, Sendable {
    public struct Field: Equatable, Sendable {
        public var name: Range<Int>
        public var value: Range<Int>
    }

    public var method: Range<Int>
    /// The target in origin form (path and query). For an absolute-form target
    /// (`http://host/path?q`) it is the part after the authority, which may be empty
    /// (`http://host` means `/`): use `originForm(in:)` for the string.
    public var target: Range<Int>
    /// The authority of an absolute-form target (RFC 9112 §3.2.2: it replaces Host).
    public var authority: Range<Int>?
    public var version: HTTPVersion
    public var fields: [Field]
    public var framing: BodyFraming
    public var keepAlive: Bool
    public var expectsContinue: Bool
    /// Bytes of the head, final CRLF included: the body starts here.
    public var headLength: Int
}

/// Incremental parser state: where the scan for the end of the head resumes.
public struct RequestHeadParser: Sendable {
    public var limits: HTTPLimits
    private var scanned = 0
    /// A field list given back by `recycle`, reused by the next head (no allocation).
    private var spareFields: [RequestHead.Field] = []

    public init(limits: HTTPLimits = HTTPLimits()) { self.limits = limits }

    /// Empty lines (CRLF) accepted before a request line; one more is a 400.
    public static let emptyLinesMax = 4

    /// Forget progress (after a request is consumed from the buffer).
    public mutating func reset() { scanned = 0 }

    /// Takes back `head`'s field list for the next head to reuse (a server calls it when it
    /// is done with a head; `head.fields` is empty afterwards). Optional: a head not
    /// recycled just keeps its own list.
    public mutating func recycle(_ head: inout RequestHead) {
        swap(&spareFields, &head.fields)
        head.fields.removeAll()
    }

    /// Parses the head at the start of `bytes`. Returns nil while it is incomplete; the
    /// next call may pass the same bytes plus more. Throws the status to answer with.
    public mutating func parse(_ bytes: UnsafeRawBufferPointer) throws(HTTPParseError) -> RequestHead? {
        let n = bytes.count
        // RFC 9112 §2.2: ignore empty lines before the request line (some clients send a
        // CRLF after a POST body), but only a few: a stream of them is not a client.
        var lead = 0
        var emptyLines = 0
        while lead + 1 < n && bytes[lead] == 0x0D && bytes[lead + 1] == 0x0A {
            lead += 2
            emptyLines += 1
            if emptyLines > Self.emptyLinesMax { throw .bad("too many empty lines before the request line") }
        }
        // Find CRLF CRLF, resuming the scan; enforce the request-line and head limits on
        // incomplete input too, so a client cannot make us buffer without bound. A bare LF
        // or CR can never become valid: refuse it as soon as it arrives (after the limits
        // the bytes before it already break, so every way of feeding agrees).
        var i = max(lead, scanned - 1)
        var end = -1
        while i < n {
            let c = bytes[i]
            if c == 0x0A {
                guard i > lead && bytes[i - 1] == 0x0D else {
                    try checkIncomplete(UnsafeRawBufferPointer(rebasing: bytes[lead..<i]))
                    throw .bad("bare LF in the request head (lines end with CRLF)")
                }
                if i - 3 >= lead && bytes[i - 2] == 0x0A && bytes[i - 3] == 0x0D {
                    end = i + 1
                    break
                }
            } else if c == 0x0D && i + 1 < n && bytes[i + 1] != 0x0A {
                try checkIncomplete(UnsafeRawBufferPointer(rebasing: bytes[lead...i]))
                throw .bad("bare CR in the request head")
            }
            i += 1
        }
        if end < 0 {
            scanned = n
            try checkIncomplete(UnsafeRawBufferPointer(rebasing: bytes[lead...]))
            return nil
        }
        scanned = 0
        if end > limits.headBytesMax + 4 {
            throw HTTPParseError(status: 431, "request head is larger than \(limits.headBytesMax) bytes")
        }
        var fields: [RequestHead.Field] = []
        swap(&fields, &spareFields)
        fields.removeAll(keepingCapacity: true)
        if fields.capacity == 0 { fields.reserveCapacity(12) }   // one allocation for a typical head
        return try parseComplete(bytes, from: lead, headLength: end, fields: &fields)
    }

    private func checkIncomplete(_ b: UnsafeRawBufferPointer) throws(HTTPParseError) {
        // The request line alone past its limit: 414, even before its CRLF arrives.
        var lineEnd = -1
        for k in 0..<min(b.count, limits.requestLineMax + 2) where b[k] == 0x0A || b[k] == 0x0D {
            lineEnd = k
            break
        }
        if lineEnd < 0 && b.count > limits.requestLineMax {
            throw HTTPParseError(status: 414, "request line is longer than \(limits.requestLineMax) bytes")
        }
        if b.count > limits.headBytesMax + 4 {
            throw HTTPParseError(status: 431, "request head is larger than \(limits.headBytesMax) bytes")
        }
        // Fail early on bytes that can never become valid (saves waiting for a deadline).
        if let first = b.first, !isTChar(first), !(first == 0x0D && b.count == 1) {
            throw .bad("request line does not start with a method")
        }
    }

    private func parseComplete(_ b: UnsafeRawBufferPointer, from lead: Int, headLength: Int,
                               fields: inout [RequestHead.Field]) throws(HTTPParseError) -> RequestHead {
        var p = lead
        // request-line = method SP request-target SP HTTP-version CRLF
        let methodStart = p
        while p < headLength && isTChar(b[p]) { p += 1 }
        guard p > methodStart, p < headLength, b[p] == 0x20 else { throw .bad("malformed method in request line") }
        let method = methodStart..<p
        p += 1
        let targetStart = p
        while p < headLength && b[p] > 0x20 && b[p] < 0x7F { p += 1 }
        guard p > targetStart, p < headLength, b[p] == 0x20 else { throw .bad("malformed request target") }
        var target = targetStart..<p
        let authority = try splitAbsoluteForm(b, &target)
        p += 1
        guard p + 10 <= headLength,
              b[p] == 0x48, b[p + 1] == 0x54, b[p + 2] == 0x54, b[p + 3] == 0x50, b[p + 4] == 0x2F,   // "HTTP/"
              b[p + 5] == 0x31, b[p + 6] == 0x2E, b[p + 7] >= 0x30 && b[p + 7] <= 0x39,           // "1." DIGIT
              b[p + 8] == 0x0D, b[p + 9] == 0x0A
        else {
            // A well-formed version of another major (HTTP/2.0, HTTP/0.9) is 505; anything
            // else (HTTP/01.1, HTTP/1.x) is malformed, 400.
            if p + 8 <= headLength, b[p] == 0x48, b[p + 1] == 0x54, b[p + 2] == 0x54, b[p + 3] == 0x50, b[p + 4] == 0x2F,
               b[p + 5] >= 0x30 && b[p + 5] <= 0x39, b[p + 5] != 0x31, b[p + 6] == 0x2E, b[p + 7] >= 0x30 && b[p + 7] <= 0x39 {
                throw HTTPParseError(status: 505, "only HTTP/1.0 and HTTP/1.1 are supported")
            }
            throw .bad("malformed HTTP version in request line")
        }
        // A later 1.x is read as 1.1, the highest minor version we implement (RFC 9110
        // §2.5: a recipient SHOULD process it as that version); the answer says HTTP/1.1.
        let version: HTTPVersion = b[p + 7] >= 0x31 ? .http1_1 : .http1_0
        if p - methodStart > limits.requestLineMax {
            throw HTTPParseError(status: 414, "request line is longer than \(limits.requestLineMax) bytes")
        }
        p += 10

        var contentLength: UInt64?
        var transferEncodingSeen = false
        var chunked = false
        var hostCount = 0
        var connectionClose = false, connectionKeepAlive = false
        var expectsContinue = false

        while p < headLength - 2 {
            let lineStart = p
            if b[p] == 0x20 || b[p] == 0x09 { throw .bad("obsolete line folding is not allowed") }
            while p < headLength && isTChar(b[p]) { p += 1 }
            let name = lineStart..<p
            guard !name.isEmpty else { throw .bad("malformed header field name") }
            guard b[p] == 0x3A else {
                if b[p] == 0x20 || b[p] == 0x09 { throw .bad("whitespace before the colon in a header field") }
                throw .bad("invalid character in header field name")
            }
            p += 1
            while b[p] == 0x20 || b[p] == 0x09 { p += 1 }
            let valueStart = p
            var valueEnd = p
            while true {
                let c = b[p]
                if c == 0x0D {
                    guard b[p + 1] == 0x0A else { throw .bad("bare CR in header field") }
                    break
                }
                if c == 0x0A { throw .bad("bare LF in header field") }
                if c == 0x7F || (c < 0x20 && c != 0x09) { throw .bad("control character in header field value") }
                p += 1
                if c != 0x20 && c != 0x09 { valueEnd = p }
            }
            if p - lineStart > limits.headerLineMax {
                throw HTTPParseError(status: 431, "a header field is longer than \(limits.headerLineMax) bytes")
            }
            p += 2
            fields.append(.init(name: name, value: valueStart..<valueEnd))
            if fields.count > limits.headerCountMax {
                throw HTTPParseError(status: 431, "more than \(limits.headerCountMax) header fields")
            }

            let value = valueStart..<valueEnd
            if equalsIgnoringCase(b, name, "content-length") {
                guard contentLength == nil else { throw .bad("more than one Content-Length") }
                contentLength = try parseContentLength(b, value)
            } else if equalsIgnoringCase(b, name, "transfer-encoding") {
                // Only a single, final "chunked" is understood; anything else is refused.
                guard !transferEncodingSeen else { throw .bad("more than one Transfer-Encoding field") }
                transferEncodingSeen = true
                guard equalsIgnoringCase(b, value, "chunked") else {
                    throw .bad("unsupported Transfer-Encoding (only \"chunked\" is accepted)")
                }
                chunked = true
            } else if equalsIgnoringCase(b, name, "host") {
                hostCount += 1
            } else if equalsIgnoringCase(b, name, "connection") {
                forEachToken(b, value) { t in
                    if equalsIgnoringCase(b, t, "close") { connectionClose = true }
                    if equalsIgnoringCase(b, t, "keep-alive") { connectionKeepAlive = true }
                }
            } else if equalsIgnoringCase(b, name, "expect") {
                guard equalsIgnoringCase(b, value, "100-continue") else {
                    throw HTTPParseError(status: 417, "unsupported expectation")
                }
                expectsContinue = true
            }
        }
        guard p == headLength - 2 else { throw .bad("malformed header section") }

        if transferEncodingSeen && contentLength != nil {
            throw .bad("both Transfer-Encoding and Content-Length")
        }
        if transferEncodingSeen && version == .http1_0 {
            throw .bad("Transfer-Encoding in an HTTP/1.0 request")
        }
        if version == .http1_1 && hostCount != 1 {
            throw .bad(hostCount == 0 ? "missing Host header" : "more than one Host header")
        }
        let framing: BodyFraming = chunked ? .chunked : contentLength.map { $0 == 0 ? .none : .contentLength($0) } ?? .none
        let keepAlive = version == .http1_1 ? !connectionClose : (connectionKeepAlive && !connectionClose)
        return RequestHead(method: method, target: target, authority: authority, version: version, fields: fields, framing: framing,
                           keepAlive: keepAlive, expectsContinue: expectsContinue && version == .http1_1, headLength: headLength)
    }

    /// Absolute form (RFC 9112 §3.2.2): `http://` or `https://`, an authority without
    /// userinfo, then the path and query. Narrows `target` to the path and query and returns
    /// the authority; nil for every other form (origin, asterisk, authority form).
    private func splitAbsoluteForm(_ b: UnsafeRawBufferPointer, _ target: inout Range<Int>) throws(HTTPParseError) -> Range<Int>? {
        let t = target
        guard t.count > 0, b[t.lowerBound] != 0x2F, let colon = t.firstIndex(where: { b[$0] == 0x3A }),
              colon + 2 < t.upperBound, b[colon + 1] == 0x2F, b[colon + 2] == 0x2F else { return nil }
        let scheme = t.lowerBound..<colon
        guard equalsIgnoringCase(b, scheme, "http") || equalsIgnoringCase(b, scheme, "https") else {
            throw .bad("unsupported scheme in an absolute-form request target")
        }
        let hostStart = colon + 3
        var q = hostStart
        while q < t.upperBound && b[q] != 0x2F && b[q] != 0x3F && b[q] != 0x23 {
            if b[q] == 0x40 { throw .bad("userinfo in a request target") }
            q += 1
        }
        guard q > hostStart else { throw .bad("empty authority in an absolute-form request target") }
        target = q..<t.upperBound
        return hostStart..<q
    }

    private func parseContentLength(_ b: UnsafeRawBufferPointer, _ r: Range<Int>) throws(HTTPParseError) -> UInt64 {
        guard !r.isEmpty else { throw .bad("empty Content-Length") }
        var v: UInt64 = 0
        for i in r {
            let c = b[i]
            guard c >= 0x30 && c <= 0x39 else { throw .bad("malformed Content-Length") }
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(UInt64(c - 0x30))
            guard !o1 && !o2 && s <= UInt64(Int64.max) else { throw .bad("Content-Length is too large") }
            v = s
        }
        return v
    }
}

// MARK: Byte classes and comparisons

/// tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA,
/// as two 64-bit masks over ASCII: constants, so no lazily initialised global on the
/// per-byte path. `TokenCharTests` checks them against the grammar's definition.
@inline(__always)
func isTChar(_ c: UInt8) -> Bool {
    if c < 64 { return (0x03FF_6CFA_0000_0000 as UInt64) >> UInt64(c) & 1 == 1 }
    if c < 128 { return (0x57FF_FFFF_C7FF_FFFE as UInt64) >> UInt64(c - 64) & 1 == 1 }
    return false
}

/// ASCII case-insensitive comparison of a byte range with a lowercase literal.
func equalsIgnoringCase(_ b: UnsafeRawBufferPointer, _ r: Range<Int>, _ lower: StaticString) -> Bool {
    guard r.count == lower.utf8CodeUnitCount else { return false }
    let l = lower.utf8Start
    var k = 0
    for i in r {
        var c = b[i]
        if c >= 0x41 && c <= 0x5A { c |= 0x20 }
        if c != l[k] { return false }
        k += 1
    }
    return true
}

/// Calls `body` for each comma-separated token of a list value, whitespace trimmed.
func forEachToken(_ b: UnsafeRawBufferPointer, _ r: Range<Int>, _ body: (Range<Int>) -> Void) {
    var i = r.lowerBound
    while i < r.upperBound {
        while i < r.upperBound && (b[i] == 0x20 || b[i] == 0x09 || b[i] == 0x2C) { i += 1 }
        let s = i
        while i < r.upperBound && b[i] != 0x2C { i += 1 }
        var e = i
        while e > s && (b[e - 1] == 0x20 || b[e - 1] == 0x09) { e -= 1 }
        if e > s { body(s..<e) }
    }
}

extension RequestHead {
    /// The value of the first field named `name` (lowercase), as a String.
    public func value(of name: StaticString, in b: UnsafeRawBufferPointer) -> String? {
        for f in fields where equalsIgnoringCase(b, f.name, name) {
            return String(decoding: UnsafeRawBufferPointer(rebasing: b[f.value]), as: UTF8.self)
        }
        return nil
    }

    /// The target in origin form: the path (at least `/`) and query.
    public func originForm(in b: UnsafeRawBufferPointer) -> String {
        let t = string(target, in: b)
        return t.utf8.first == 0x2F || (authority == nil && !t.isEmpty) ? t : "/" + t
    }

    public func string(_ r: Range<Int>, in b: UnsafeRawBufferPointer) -> String {
        String(decoding: UnsafeRawBufferPointer(rebasing: b[r]), as: UTF8.self)
    }
}
