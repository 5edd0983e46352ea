// Web.Router: method + path matching with `:name` parameters, route groups (so /api/v2 can
// sit beside /api/v1), middleware, per-route body handling (buffered with a limit, or
// streamed to the handler), automatic HEAD for GET routes, 405 with Allow, and the
// standard error body for everything that is not found or fails.
//
// Middleware registered on the root builder wraps every request, including 404 and 405
// answers (request id, access log); middleware registered in a group wraps only that
// group's routes (authentication for /api/v1 but not for health checks, for example).
// Errors are mapped in one place, innermost: APIError as is, JSONError as 400/422,
// anything else as a 500 whose detail stays in the server log.
import JSON
import Logging

/// A route's handler. Its throws stay untyped on purpose: handlers are application code
/// that calls anything (stores, engines, files) and the router maps whatever comes out in
/// one place (`run`): APIError as is, JSONError as 400/422, the rest as a logged 500. A
/// typed error here would make every handler wrap every call for no gain in what the
/// client sees. Web's own functions throw typed errors (APIError, RingError,
/// HTTPClientError).
public typealias RouteHandler = nonisolated(nonsending) @Sendable (Request) async throws -> Response
public typealias Middleware = nonisolated(nonsending) @Sendable (Request, _ next: Next) async -> Response
/// What a middleware calls to pass the request on.
public typealias Next = nonisolated(nonsending) @Sendable (Request) async -> Response

/// How a route takes its request body.
public enum BodyMode: Sendable, Equatable {
    /// Read into `Request.body` before the handler runs; over `max` bytes is a 413
    /// (decided from Content-Length before reading, when it is given). nil: the server's default.
    case buffered(max: UInt64?)
    /// Left to the handler, which reads `Request.bodyStream` (up to `max` bytes).
    case streaming(max: UInt64)
}

public final class Router: Sendable {
    /// A class: resolving a request looks at several routes, and a struct with six
    /// reference-counted fields would be copied (six retains and releases) for each.
    final class Route: Sendable {
        let method: String
        let segments: [Substring]
        /// The path pattern as registered ("/api/v1/jobs/:id"): a label for metrics and logs.
        let pattern: String
        let body: BodyMode
        /// Overrides the server's BodyTimeLimits for this route (an upload route, say).
        let timeLimits: BodyTimeLimits?
        /// Each `:name` segment's position and name.
        let parameterNames: [(index: Int, name: String)]
        /// The route's middleware around its handler, composed once (the router puts the
        /// global middleware around it in turn): a request allocates no closure to pass
        /// through the chain.
        let pipeline: Next
        /// The route's synchronous lane (FastLane.swift), if it has one.
        let fast: FastHandler?
        /// `segments` as bytes, for matching a request head's bytes in the fast lane.
        let segmentBytes: [[UInt8]]

        init(method: String, segments: [Substring], pattern: String, handler: @escaping RouteHandler,
             middleware: [Middleware], body: BodyMode, timeLimits: BodyTimeLimits?, fast: FastHandler?, logger: Logger) {
            self.method = method
            self.segments = segments
            self.fast = fast
            segmentBytes = segments.map { Array($0.utf8) }
            self.pattern = pattern
            self.body = body
            self.timeLimits = timeLimits
            parameterNames = segments.indices.compactMap { k in
                segments[k].utf8.first == 0x3A ? (k, String(segments[k].dropFirst())) : nil
            }
            pipeline = Router.compose(middleware) { req in await Router.run(handler, body, req, logger) }
        }

        /// This route with `outer` middleware around its pipeline.
        private init(_ route: Route, pipeline: @escaping Next) {
            method = route.method
            segments = route.segments
            pattern = route.pattern
            body = route.body
            timeLimits = route.timeLimits
            parameterNames = route.parameterNames
            fast = route.fast
            segmentBytes = route.segmentBytes
            self.pipeline = pipeline
        }

        func wrapped(in outer: [Middleware]) -> Route {
            outer.isEmpty ? self : Route(self, pipeline: Router.compose(outer, pipeline))
        }
    }

    let routes: [Route]
    /// Indices into `routes` by segment count, each list in the order added: a path is
    /// only ever tried against the routes of its own length.
    let routesBySegmentCount: [[Int]]
    /// Whether any route has a fast handler (the server skips the lane otherwise).
    let hasFastRoutes: Bool
    private let global: [Middleware]
    let logger: Logger

    public init(logger: Logger = Logger(label: "spool.http"), _ build: (inout RouteBuilder) -> Void) {
        var b = RouteBuilder(prefix: "", middleware: [], logger: logger)
        build(&b)
        routes = b.routes.map { $0.wrapped(in: b.rootMiddleware) }
        var byCount = [[Int]](repeating: [], count: (b.routes.map(\.segments.count).max() ?? 0) + 1)
        for (i, route) in b.routes.enumerated() { byCount[route.segments.count].append(i) }
        routesBySegmentCount = byCount
        hasFastRoutes = b.routes.contains { $0.fast != nil }
        global = b.rootMiddleware
        self.logger = logger
    }

    /// `middleware` around `end`, the first outermost.
    static func compose(_ middleware: [Middleware], _ end: @escaping Next) -> Next {
        var next = end
        for m in middleware.reversed() {
            let inner = next
            next = { req in await m(req, inner) }
        }
        return next
    }

    /// The methods a path allows when only the method is wrong, and the pattern the path
    /// matched (the 405's route in the metrics).
    struct Allowed {
        var methods: Set<String> = []
        var pattern: String?
        var isEmpty: Bool { methods.isEmpty }
    }

    /// The route `method path` resolves to (HEAD finds GET), with its parameters; or the
    /// methods the path allows when only the method is wrong.
    func resolve(method: String, path: Substring) -> (route: Route?, params: [String: String], allowed: Allowed) {
        var allowed = Allowed()
        let wanted = method == "HEAD" ? "GET" : method
        let segments = Self.segments(of: path)
        guard segments.count < routesBySegmentCount.count else { return (nil, [:], allowed) }
        for i in routesBySegmentCount[segments.count] {
            let route = routes[i]
            guard Self.matches(route.segments, segments) else { continue }
            guard route.method == wanted else {
                allowed.methods.insert(route.method)
                if route.method == "GET" { allowed.methods.insert("HEAD") }
                if allowed.pattern == nil { allowed.pattern = route.pattern }
                continue
            }
            return (route, Self.parameters(route, segments), allowed)
        }
        return (nil, [:], allowed)
    }

    /// Every route as its method and path pattern (`:name` for a parameter), in the order
    /// added: what an API description (OpenAPI) is checked against.
    public var routeTable: [(method: String, path: String)] {
        routes.map { ($0.method, $0.pattern) }
    }

    /// Finds the route for `request` and runs it through the middleware; maps failures to
    /// standard errors. The request's body must already be read for buffering routes.
    nonisolated(nonsending) public func respond(to request: Request) async -> Response {
        var request = request
        if request.target != "*" {
            guard let target = PathNormalization.normalize(request.target) else {
                return APIError(status: 400, code: "bad_request", message: "the request path climbs above the root").response
            }
            request.target = target
        }
        let (route, params, allowed) = resolve(method: request.method, path: request.path)
        return await respond(to: request, route: route, params: params, allowed: allowed)
    }

    /// A matched request goes through its route's composed pipeline (the path parameters
    /// are set before any middleware runs); 404 and 405 through the global middleware.
    nonisolated(nonsending) func respond(to request: Request, route: Route?, params: [String: String], allowed: Allowed) async -> Response {
        var request = request
        // A 405 is counted under the route its path matched; only a 404 is unmatched.
        request.route = route?.pattern ?? allowed.pattern
        if let route {
            request.pathParameters = params
            return await route.pipeline(request)
        }
        let refusal: Next = { req in
            if !allowed.isEmpty {
                var r = APIError(status: 405, code: "method_not_allowed", message: "\(req.method) is not allowed on \(req.path)").response
                r.headers.append(("Allow", allowed.methods.sorted().joined(separator: ", ")))
                return r
            }
            return APIError(status: 404, code: "not_found", message: "no route for \(req.path)").response
        }
        return await Router.compose(global, refusal)(request)
    }

    /// Runs a route's handler and maps what it throws to the standard errors. A buffering
    /// route's body is read here, after every middleware let the request through: a request
    /// refused by middleware (401, say) never waits for its body.
    nonisolated(nonsending) static func run(_ handler: RouteHandler, _ body: BodyMode, _ request: Request, _ logger: Logger) async -> Response {
        var req = request
        do {
            if case .buffered = body, req.body.isEmpty, !req.bodyStream.isComplete {
                req.body = try await req.bodyStream.collect()
            }
            return try await handler(req)
        } catch let e as APIError {
            return e.response
        } catch let e as JSONError {
            return APIError(e).response
        } catch let e as any APIErrorConvertible {
            let api = e.apiError
            // A server-side failure said as a 503/507 still tells the operator why.
            if api.status >= 500 {
                logger.warning("handler failed", metadata: ["path": "\(req.path)", "status": "\(api.status)", "error": "\(e)", "request_id": "\(req.requestID ?? "-")"])
            }
            return api.response
        } catch {
            // Never leak internals: the detail stays in the server log.
            logger.error("handler failed", metadata: ["path": "\(req.path)", "error": "\(error)", "request_id": "\(req.requestID ?? "-")"])
            return APIError(status: 500, code: "internal", message: "internal error").response
        }
    }


    /// The path's segments (empty ones ignored), split once per request.
    static func segments(of path: Substring) -> [Substring] {
        var out: [Substring] = []
        out.reserveCapacity(8)
        let u = path.utf8
        var i = u.startIndex
        while true {
            while i < u.endIndex && u[i] == 0x2F { i = u.index(after: i) }
            if i == u.endIndex { return out }
            var j = i
            while j < u.endIndex && u[j] != 0x2F { j = u.index(after: j) }
            out.append(path[i..<j])
            i = j
        }
    }

    /// True when every literal segment of `pattern` equals the path's (`:name` takes any);
    /// nothing is allocated, so trying each route in turn stays cheap.
    static func matches(_ pattern: [Substring], _ segments: [Substring]) -> Bool {
        guard pattern.count == segments.count else { return false }
        for k in 0..<pattern.count {
            let p = pattern[k].utf8, q = segments[k].utf8
            if p.first != 0x3A && (p.count != q.count || !p.elementsEqual(q)) { return false }
        }
        return true
    }

    /// The parameters of a pattern that `matches` the segments, percent-decoded.
    static func parameters(_ route: Route, _ segments: [Substring]) -> [String: String] {
        guard !route.parameterNames.isEmpty else { return [:] }
        var params: [String: String] = Dictionary(minimumCapacity: route.parameterNames.count)
        for (k, name) in route.parameterNames { params[name] = percentDecode(segments[k]) }
        return params
    }
}

public struct RouteBuilder {
    let prefix: String
    var middleware: [Middleware]
    var routes: [Router.Route] = []
    var rootMiddleware: [Middleware] = []
    let logger: Logger

    init(prefix: String, middleware: [Middleware], logger: Logger) {
        self.prefix = prefix
        self.middleware = middleware
        self.logger = logger
    }

    /// Adds middleware: at the root it wraps every request; in a group, the group's routes
    /// added after this call. The first added runs outermost.
    public mutating func use(_ m: @escaping Middleware) {
        if isRoot { rootMiddleware.append(m) } else { middleware.append(m) }
    }

    private var isRoot = true

    /// Adds a route. `timeLimits` overrides the server's body time limits for it. `fast`, for a
    /// GET route with at most two parameters, is its synchronous lane (see FastLane.swift:
    /// it must answer what the full pipeline, middleware included, would answer, or decline).
    public mutating func on(_ method: String, _ path: String, body: BodyMode = .buffered(max: nil),
                            timeLimits: BodyTimeLimits? = nil, fast: FastHandler? = nil, _ handler: @escaping RouteHandler) {
        let full = (prefix + "/" + path).split(separator: "/", omittingEmptySubsequences: true)
        precondition(fast == nil || (method.uppercased() == "GET" && full.filter { $0.first == ":" }.count <= 2),
                     "a fast handler is for a GET route with at most two parameters")
        routes.append(.init(method: method.uppercased(), segments: full, pattern: "/" + full.joined(separator: "/"),
                            handler: handler, middleware: middleware,
                            body: body, timeLimits: timeLimits, fast: fast, logger: logger))
    }

    public mutating func get(_ path: String, _ handler: @escaping RouteHandler) { on("GET", path, handler) }
    /// A GET route with a synchronous lane beside its handler (FastLane.swift).
    public mutating func get(_ path: String, fast: @escaping FastHandler, _ handler: @escaping RouteHandler) {
        on("GET", path, fast: fast, handler)
    }
    public mutating func post(_ path: String, body: BodyMode = .buffered(max: nil), timeLimits: BodyTimeLimits? = nil, _ handler: @escaping RouteHandler) {
        on("POST", path, body: body, timeLimits: timeLimits, handler)
    }
    public mutating func put(_ path: String, body: BodyMode = .buffered(max: nil), timeLimits: BodyTimeLimits? = nil, _ handler: @escaping RouteHandler) {
        on("PUT", path, body: body, timeLimits: timeLimits, handler)
    }
    public mutating func delete(_ path: String, _ handler: @escaping RouteHandler) { on("DELETE", path, handler) }

    /// Routes under a common prefix, e.g. `group("/api/v1") { ... }`.
    public mutating func group(_ prefix: String, _ build: (inout RouteBuilder) -> Void) {
        var g = RouteBuilder(prefix: self.prefix + prefix, middleware: middleware, logger: logger)
        g.isRoot = false
        build(&g)
        routes += g.routes
    }
}

/// An error type of a layer above Web (the domain model's, say) that knows its standard
/// error: the router answers it as is instead of as a 500.
public protocol APIErrorConvertible: Error {
    var apiError: APIError { get }
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
        case 412: return "precondition_failed"
        case 417: return "expectation_failed"
        case 422: return "validation_failed"
        case 429: return "rate_limited"
        case 431: return "header_fields_too_large"
        case 505: return "http_version_not_supported"
        default: return status >= 500 ? "internal" : "error"
        }
    }

    public var response: Response {
        var r = Response.json(status) { w in
            w.beginObject()
            w.key("error")
            w.beginObject()
            w.field("code", code)
            w.field("message", message)
            w.key("details")
            w.beginObject()
            for (k, v) in details { w.field(k, v) }
            w.endObject()
            w.endObject()
            w.endObject()
        }
        if status == 401 { r.headers.append(("WWW-Authenticate", Self.bearerChallenge(invalidToken: false))) }
        return r
    }

    /// The 401's challenge (RFC 6750 §3): a request that presented credentials which did not
    /// hold is told `error="invalid_token"`; one without any gets no error code.
    public static func bearerChallenge(invalidToken: Bool) -> String {
        invalidToken ? #"Bearer realm="spool", error="invalid_token""# : #"Bearer realm="spool""#
    }

    /// A 401 whose challenge and message say whether credentials were presented.
    public static func unauthorized(presented: Bool) -> Response {
        let message = presented ? "invalid credentials: the key is unknown, revoked or expired, or not a single Bearer token"
                                : "missing credentials: send Authorization: Bearer KEY"
        var r = APIError(status: 401, code: "unauthorized", message: message).response
        if presented, let i = r.headers.firstIndex(where: { $0.name == "WWW-Authenticate" }) {
            r.headers[i].value = bearerChallenge(invalidToken: true)
        }
        return r
    }
}

