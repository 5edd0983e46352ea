// Web.Router: method + path matching with `:name` parameters, route groups (so /api/v2 can
// sit beside /api/v1), automatic HEAD for GET routes, 405 with Allow, and the standard
// error body for everything that is not found or fails.

public typealias RouteHandler = @Sendable (Request) async throws -> Response

public final class Router: Sendable {
    struct Route: Sendable {
        let method: String
        let segments: [Substring]
        let handler: RouteHandler
    }

    private let routes: [Route]

    public init(_ build: (inout RouteBuilder) -> Void) {
        var b = RouteBuilder(prefix: "")
        build(&b)
        routes = b.routes
    }

    /// Finds the route for `request` and runs it; maps failures to standard errors.
    public func respond(to request: Request) async -> Response {
        let path = request.path.split(separator: "/", omittingEmptySubsequences: true)
        var allowed: Set<String> = []
        for route in routes {
            guard let params = match(route.segments, path) else { continue }
            let wanted = request.method == "HEAD" ? "GET" : request.method
            guard route.method == wanted else {
                allowed.insert(route.method)
                if route.method == "GET" { allowed.insert("HEAD") }
                continue
            }
            var req = request
            req.pathParameters = params
            do {
                return try await route.handler(req)
            } catch let e as APIError {
                return e.response
            } catch {
                // Never leak internals: log-worthy detail stays on the server.
                return APIError(status: 500, code: "internal", message: "internal error").response
            }
        }
        if !allowed.isEmpty {
            var r = APIError(status: 405, code: "method_not_allowed", message: "\(request.method) is not allowed on \(request.path)").response
            r.headers.append(("Allow", allowed.sorted().joined(separator: ", ")))
            return r
        }
        return APIError(status: 404, code: "not_found", message: "no route for \(request.path)").response
    }

    private func match(_ pattern: [Substring], _ path: [Substring]) -> [String: String]? {
        guard pattern.count == path.count else { return nil }
        var params: [String: String] = [:]
        for (p, s) in zip(pattern, path) {
            if p.hasPrefix(":") { params[String(p.dropFirst())] = String(s) } else if p != s { return nil }
        }
        return params
    }
}

public struct RouteBuilder {
    let prefix: String
    var routes: [Router.Route] = []

    init(prefix: String) { self.prefix = prefix }

    public mutating func on(_ method: String, _ path: String, _ handler: @escaping RouteHandler) {
        let full = (prefix + "/" + path).split(separator: "/", omittingEmptySubsequences: true)
        routes.append(.init(method: method.uppercased(), segments: full, handler: handler))
    }

    public mutating func get(_ path: String, _ handler: @escaping RouteHandler) { on("GET", path, handler) }
    public mutating func post(_ path: String, _ handler: @escaping RouteHandler) { on("POST", path, handler) }

    /// Routes under a common prefix, e.g. `group("/api/v1") { ... }`.
    public mutating func group(_ prefix: String, _ build: (inout RouteBuilder) -> Void) {
        var g = RouteBuilder(prefix: self.prefix + prefix)
        build(&g)
        routes += g.routes
    }
}

/// The one error shape every failure leaves as:
/// `{"error":{"code":"...","message":"...","details":{...}}}`.
public struct APIError: Error, Sendable {
    public var status: Int
    public var code: String
    public var message: String
    public var details: [(String, String)]

    public init(status: Int, code: String, message: String, details: [(String, String)] = []) {
        self.status = status
        self.code = code
        self.message = message
        self.details = details
    }

    public static func code(for status: Int) -> String {
        switch status {
        case 400: return "bad_request"
        case 404: return "not_found"
        case 405: return "method_not_allowed"
        case 408: return "request_timeout"
        case 413: return "payload_too_large"
        case 414: return "uri_too_long"
        case 417: return "expectation_failed"
        case 422: return "validation_failed"
        case 429: return "rate_limited"
        case 431: return "header_fields_too_large"
        case 505: return "http_version_not_supported"
        default: return status >= 500 ? "internal" : "error"
        }
    }

    public var response: Response {
        let detailText = details.map { "\(jsonString($0.0)):\(jsonString($0.1))" }.joined(separator: ",")
        return .json(status, "{\"error\":{\"code\":\(jsonString(code)),\"message\":\(jsonString(message)),\"details\":{\(detailText)}}}")
    }
}

/// A JSON string literal for `s` (escapes quotes, backslashes and control characters).
/// Stand-in until the JSON module's writer lands.
func jsonString(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case _ where u.value < 0x20:
            let hex = String(u.value, radix: 16)
            out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default: out.unicodeScalars.append(u)
        }
    }
    return out + "\""
}
