// Web.Middleware: the standard middleware. Request id (kept from X-Request-Id when it is
// sane, generated otherwise, echoed on the response), the access log (one swift-log line
// per request with method, path, status, bytes, duration, request id and peer), and an
// authentication hook (the hook decides; a refusal is the standard 401 error).
import Logging
import Ring
import Synchronization
import Threads

public enum StandardMiddleware {
    /// Gives every request an id: the client's X-Request-Id if it is 1–128 visible ASCII
    /// characters, else 32 hex digits: 8 random bytes drawn once per process, then a
    /// process-wide counter (unique without a getrandom call per request). The response
    /// carries it back.
    public static func requestID() -> Middleware {
        return { request, next in
            var req = request
            let id: String
            if let given = request.header("X-Request-Id"), !given.isEmpty, given.utf8.count <= 128,
               given.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) {
                id = given
            } else {
                id = RequestIDs.next()
            }
            req.requestID = id
            var response = await next(req)
            response.headers.removeAll(named: "X-Request-Id")
            response.headers.append(("X-Request-Id", id))
            return response
        }
    }

    /// `requestID()` on the fast lane: the same rule, the same header, written after the
    /// handler's fields as the middleware appends it after the handler's headers (so a fast
    /// handler calls this last).
    public static func requestID(_ request: FastRequest, _ response: inout FastResponse) {
        if let given = request.header("X-Request-Id"), !given.isEmpty, given.count <= 128,
           given.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) {
            response.header("X-Request-Id", given)
        } else {
            response.fields.append(contentsOf: "X-Request-Id: ".utf8)
            response.madeRequestIDAt = response.fields.count + 16
            RequestIDs.next(into: &response.fields)
            response.fields.append(0x0D); response.fields.append(0x0A)
        }
    }

    /// One log line per request at `level` (server errors at error).
    public static func accessLog(_ logger: Logger, level: Logger.Level = .info) -> Middleware {
        return { request, next in
            let clock: any MonotonicClock = EventLoop.current ?? SystemClock.shared
            let started = clock.now
            let response = await next(request)
            let elapsed = clock.now - started
            let micros = elapsed.components.seconds * 1_000_000 + elapsed.components.attoseconds / 1_000_000_000_000
            let bytes = response.stream == nil ? String(response.body.count) : "stream"
            logger.log(level: response.status >= 500 ? .error : level, "\(request.method) \(request.path) \(response.status)", metadata: [
                "status": "\(response.status)", "bytes": "\(bytes)", "duration_us": "\(micros)",
                "request_id": "\(request.requestID ?? "-")", "peer": "\(request.remoteAddress ?? "-")",
            ])
            return response
        }
    }

    /// Authentication: `hook` returns the principal (who is calling) or nil to refuse with
    /// 401 `unauthorized`. The principal is set on the request for the handler. A hook that
    /// throws could not decide (its store is unreachable): 503 `unavailable` with
    /// Retry-After, never a 401 that would tell a good client its key is bad.
    public static func authenticate(_ hook: nonisolated(nonsending) @escaping @Sendable (Request) async throws -> String?) -> Middleware {
        return { request, next in
            let found: String?
            do {
                found = try await hook(request)
            } catch {
                var r = APIError(status: 503, code: "unavailable", message: "the credentials cannot be checked right now; try again").response
                r.headers.append(("Retry-After", "1"))
                return r
            }
            guard let principal = found else {
                // Only Bearer credentials count as presented (RFC 6750 §3.1: a request with
                // none, or with another scheme's, gets no error code).
                let bearer = request.headers.contains { $0.name.equalsIgnoringCase("Authorization") && $0.value.lowercased().hasPrefix("bearer") }
                return APIError.unauthorized(presented: bearer)
            }
            var req = request
            req.principal = principal
            return await next(req)
        }
    }

    /// A bearer-token hook: `Authorization: Bearer <token>` checked by `validate`, which
    /// returns the principal for a good token.
    public static func bearerToken(_ validate: nonisolated(nonsending) @escaping @Sendable (String) async throws -> String?) -> Middleware {
        authenticate { request in
            guard let token = bearerToken(of: request) else { return nil }
            return try await validate(token)
        }
    }

    /// The token of the request's one `Authorization: Bearer <token>` field. Two fields are
    /// no credentials: which one would count is anyone's guess.
    public static func bearerToken(of request: Request) -> String? {
        guard request.headerCount("Authorization") == 1, let auth = request.header("Authorization"), auth.count > 7,
              auth.prefix(7).lowercased() == "bearer " else { return nil }
        return String(auth.dropFirst(7)).trimmingCharactersSpace()
    }
}

enum RequestIDs {
    private static let prefix: UInt64 = { var g = SystemRandomNumberGenerator(); return g.next() }()
    /// A `SharedWord`: the reap's replay (ADR 0019, addendum 5) counts from it too.
    static let counter = SharedWord()

    static func next() -> String {
        var out: [UInt8] = []
        out.reserveCapacity(32)
        next(into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// The next id's 32 hex digits, appended to `out`.
    static func next(into out: inout [UInt8]) {
        let n = counter.wrappingAdd(1)
        hex16(prefix, into: &out)
        hex16(n, into: &out)
    }

    /// Writes the next id's counter digits (its last 16) over `out[at..<at + 16]`, which
    /// hold an earlier id's: the prefix digits before them stay this process's.
    static func renew(_ out: inout [UInt8], at: Int) {
        let n = counter.wrappingAdd(1)
        out.withUnsafeMutableBufferPointer { o in
            precondition(at >= 0 && at + 16 <= o.count, "request id digits out of range")
            for k in 0..<16 { o[at + k] = digit(n, k) }
        }
    }

    static func hex16(_ v: UInt64, into out: inout [UInt8]) {
        for k in 0..<16 { out.append(digit(v, k)) }
    }

    /// The `k`th of `v`'s 16 lowercase hex digits, most significant first.
    @inline(__always)
    private static func digit(_ v: UInt64, _ k: Int) -> UInt8 {
        let nibble = UInt8(truncatingIfNeeded: v >> UInt64(60 - 4 * k)) & 15
        return nibble < 10 ? 0x30 + nibble : 0x57 + nibble
    }
}

extension String {
    func trimmingCharactersSpace() -> String { String(Substring(self).trimmingSpaces) }
}
