// HTTP1.RequestSerializer: request heads as bytes, for clients, under the same field rules
// as ResponseHead (`FieldSyntax`: names are tokens; values hold no CR, LF, NUL or other
// control character but tab), plus a token method and a target of visible ASCII. So no
// part of a request can end a line early and smuggle in a field or a second request.
//
// A response head is built by our own code, so a bad field there is a bug and traps; a
// request's parts come from callers at run time (a URL, a header copied from a job), so a
// bad one is an error the caller gets, and nothing is written.

/// A request head part that cannot be sent as is: which part and why.
public struct HeadSerializationError: Error, Hashable, Sendable, CustomStringConvertible {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// The head of a request to send: "GET /path HTTP/1.1", then the fields in order.
public struct OutgoingRequestHead: Sendable {
    public var method: String
    /// Origin form ("/path?query"): visible ASCII only, percent-encoded by the caller.
    public var target: String
    public var headers: [(name: String, value: String)]

    public init(method: String, target: String, headers: [(name: String, value: String)] = []) {
        self.method = method
        self.target = target
        self.headers = headers
    }

    /// Throws the first part that cannot be sent.
    public func validate() throws(HeadSerializationError) {
        guard !method.isEmpty, method.utf8.allSatisfy(isTChar) else {
            throw HeadSerializationError("\(method.debugDescription) is not a method")
        }
        guard !target.isEmpty, target.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw HeadSerializationError("request target \(target.debugDescription) must be visible ASCII (percent-encode the rest)")
        }
        for (name, value) in headers {
            if let problem = FieldSyntax.problem(name: name, value: value) { throw HeadSerializationError(problem) }
        }
    }

    /// Appends "METHOD target HTTP/1.1\r\nName: value\r\n...\r\n" to `out`, or throws
    /// (leaving `out` as it was) when a part is invalid.
    public func serialize(into out: inout [UInt8]) throws(HeadSerializationError) {
        try validate()
        out.append(contentsOf: method.utf8)
        out.append(0x20)
        out.append(contentsOf: target.utf8)
        out.append(contentsOf: " HTTP/1.1\r\n".utf8)
        FieldSyntax.append(headers, to: &out)
    }
}

/// Field rules shared by every head we serialize (RFC 9110 §5.1, §5.5).
enum FieldSyntax {
    /// Why `name: value` cannot be sent, or nil when it can: the name must be a token,
    /// the value free of control characters (tab allowed), so CR, LF and NUL never pass.
    static func problem(name: String, value: String) -> String? {
        var nameOK = !name.isEmpty
        for c in name.utf8 where !isTChar(c) { nameOK = false; break }
        guard nameOK else { return "header name \(name.debugDescription) is not a token" }
        for c in value.utf8 where !(c == 0x09 || (c >= 0x20 && c != 0x7F)) {
            return "header \(name) has a control character (CR, LF, NUL...) in its value"
        }
        return nil
    }

    /// "Name: value\r\n" for each field, then the empty line that ends the head. The
    /// fields must have been checked with `problem(name:value:)`.
    static func append(_ fields: [(name: String, value: String)], to out: inout [UInt8]) {
        for (name, value) in fields {
            out.append(contentsOf: name.utf8)
            out.append(0x3A); out.append(0x20)
            out.append(contentsOf: value.utf8)
            out.append(0x0D); out.append(0x0A)
        }
        out.append(0x0D); out.append(0x0A)
    }
}
