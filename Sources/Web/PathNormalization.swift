// Web.PathNormalization: one canonical path before routing and before any middleware.
//
// The router ignores empty segments, so `//api/v1` routed like `/api/v1`; but `.` and `..`
// were compared as names, and a middleware checking a prefix saw the raw path. Both now see
// the same normalized path: empty segments collapsed, `.` removed, `..` removing the
// segment before it (RFC 3986 §5.2.4 remove_dot_segments), `%2E`/`%2e` counted as a dot;
// a `..` above the root is a 400. A trailing slash is kept. The query is left as sent.
// Non-goals: decoding other percent-escapes (a `%2F` stays part of its segment).
import HTTP1

enum PathNormalization {
    /// The target with its path normalized; nil when `..` climbs above the root. A target
    /// that needs nothing done is returned as is (no allocation).
    static func normalize(_ target: String) -> String? {
        let u = target.utf8
        let queryStart = u.firstIndex(of: 0x3F) ?? u.endIndex
        guard needsWork(u[..<queryStart]) else { return target }
        let path = Array(u[..<queryStart])
        var kept: [ArraySlice<UInt8>] = []
        var trailingSlash = false
        for segment in path.split(separator: 0x2F, omittingEmptySubsequences: false).dropFirst() {
            switch dots(segment) {
            case 1:
                trailingSlash = true
            case 2:
                guard !kept.isEmpty else { return nil }
                kept.removeLast()
                trailingSlash = true
            default:
                if segment.isEmpty {
                    trailingSlash = true
                } else {
                    kept.append(segment)
                    trailingSlash = false
                }
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(u.count)
        for s in kept {
            out.append(0x2F)
            out.append(contentsOf: s)
        }
        if out.isEmpty || trailingSlash { out.append(0x2F) }
        out.append(contentsOf: u[queryStart...])
        return String(decoding: out, as: UTF8.self)
    }

    /// Whether the path has an empty segment or a segment starting with `.` or `%`.
    private static func needsWork(_ path: Substring.UTF8View) -> Bool {
        var afterSlash = false
        for c in path {
            if afterSlash && (c == 0x2F || c == 0x2E || c == 0x25) { return true }
            afterSlash = c == 0x2F
        }
        return false
    }

    /// 1 for a `.` segment, 2 for `..` (with `%2E` for any dot), 0 otherwise.
    private static func dots(_ segment: ArraySlice<UInt8>) -> Int {
        guard !segment.isEmpty, segment.count <= 6 else { return 0 }
        var n = 0
        var i = segment.startIndex
        while i < segment.endIndex {
            if segment[i] == 0x2E {
                i += 1
            } else if segment[i] == 0x25, i + 2 < segment.endIndex, segment[i + 1] == 0x32, segment[i + 2] | 0x20 == 0x65 {
                i += 3
            } else {
                return 0
            }
            n += 1
        }
        return n <= 2 ? n : 0
    }
}

extension Request {
    /// The request a parsed head describes, with its target in normalized origin form. An
    /// absolute-form target's authority replaces Host (RFC 9112 §3.2.2). Throws 400 for a
    /// target that is not origin form (or `*` with OPTIONS), or whose path climbs above the root.
    init(head: RequestHead, in raw: UnsafeRawBufferPointer) throws(APIError) {
        let method = head.string(head.method, in: raw)
        var target = head.originForm(in: raw)
        var headers = head.fields.map { (name: head.string($0.name, in: raw), value: head.string($0.value, in: raw)) }
        if let authority = head.authority {
            headers.removeAll(named: "Host")
            headers.append(("Host", head.string(authority, in: raw)))
        }
        if target.utf8.first != 0x2F && !(target == "*" && method == "OPTIONS") {
            throw APIError(status: 400, code: "bad_request", message: "the request target must be a path starting with /")
        }
        if target != "*" {
            guard let normalized = PathNormalization.normalize(target) else {
                throw APIError(status: 400, code: "bad_request", message: "the request path climbs above the root")
            }
            target = normalized
        }
        self.init(method: method, target: target, headers: headers)
    }
}
