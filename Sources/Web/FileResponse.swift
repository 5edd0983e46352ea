// Web.FileResponse: a file as a response, read through the ring in pool buffers, with
// validators (ETag from size and modification time, Last-Modified) and single byte
// ranges (RFC 9110 §14): `bytes=a-b`, `bytes=a-`, `bytes=-n` give 206 with Content-Range;
// a range past the end gives 416 with `Content-Range: bytes */size`; several ranges or a
// malformed header are ignored (the whole file, 200), as the RFC allows. If-Range with a
// validator that no longer matches also gives the whole file. A caller that knows better
// validators (a stored checksum, the upload time) passes them instead of the derived ones.
import Ring

extension Response {
    /// Serves `name` from the directory `root`, where `name` usually comes from the request
    /// (a path parameter): it must be one plain file name, so nothing outside `root` can be
    /// reached ("..", "/", NUL and names starting with "." are refused with 404).
    public static func file(root: String, name: String, for request: Request, contentType: String = "application/octet-stream") async throws(APIError) -> Response {
        guard !name.isEmpty, !name.hasPrefix("."), !name.utf8.contains(where: { $0 == 0x2F || $0 == 0 }) else {
            throw APIError(status: 404, code: "not_found", message: "no such file")
        }
        return try await file(root + "/" + name, for: request, contentType: contentType)
    }

    /// Serves the file at `path` (trusted: never a path taken from a request as is; see
    /// `file(root:name:for:)`). A missing file is the standard 404; only regular files are
    /// served (not devices, FIFOs or directories).
    /// `etag` (a quoted strong tag) and `lastModified` (Unix seconds) replace the validators
    /// derived from the file's inode, size and modification time.
    public static func file(_ path: String, for request: Request, contentType: String = "application/octet-stream",
                            etag givenTag: String? = nil, lastModified givenDate: Int64? = nil) async throws(APIError) -> Response {
        let status: FileStatus
        do {
            status = try await FileSystem.status(path)
        } catch {
            throw APIError(status: 404, code: "not_found", message: "no such file")
        }
        guard status.isRegularFile else { throw APIError(status: 404, code: "not_found", message: "no such file") }
        let size = status.size
        // Inode, size and the modification time to the nanosecond: a file rewritten in place
        // or replaced by rename gets a new tag.
        let etag = givenTag ?? "\"\(String(status.inode, radix: 16))-\(String(size, radix: 16))-\(String(status.modifiedSeconds, radix: 16)).\(String(status.modifiedNanoseconds, radix: 16))\""
        let modified = givenDate ?? status.modifiedSeconds
        var r = Response(status: 200, headers: [
            ("Content-Type", contentType), ("Accept-Ranges", "bytes"),
            ("ETag", etag), ("Last-Modified", HTTPDate.format(modified)),
            // The type is the uploader's word: a browser must not guess another (an
            // uploaded page or script run as the API's origin).
            ("X-Content-Type-Options", "nosniff"),
        ])
        var range: Range<UInt64>? = nil
        // Range applies to GET only (RFC 9110 §14.2: ignored for HEAD and other methods).
        if let header = request.header("Range"), request.method == "GET" {
            // If-Range: the strong tag, or the date only when it is a strong validator (the
            // file last changed at least a second before now, RFC 9110 §13.1.5).
            let dateIsStrong = wallClockSeconds() - modified >= 1
            let ifRangeOK = request.header("If-Range").map { $0 == etag || (dateIsStrong && HTTPDate.parse($0) == modified) } ?? true
            if ifRangeOK {
                switch ByteRange.parse(header, size: size) {
                case .none: break
                case .unsatisfiable:
                    return rangeNotSatisfiable(size: size)
                case .range(let rr):
                    range = rr
                    r.status = 206
                    r.headers.append(("Content-Range", "bytes \(rr.lowerBound)-\(rr.upperBound - 1)/\(size)"))
                }
            }
        }
        r.stream = .file(path: path, range: range ?? 0..<size)
        return r
    }
}

extension Response {
    /// 416 with `Content-Range: bytes */size`, in the standard error shape.
    public static func rangeNotSatisfiable(size: UInt64) -> Response {
        var e = APIError(status: 416, code: "range_not_satisfiable", message: "the range is outside the file's \(size) bytes").response
        e.headers.append(("Content-Range", "bytes */\(size)"))
        return e
    }
}

/// Parsing of a `Range` header for one byte range.
public enum ByteRange: Equatable, Sendable {
    /// No usable range: serve the whole representation.
    case none
    case unsatisfiable
    case range(Range<UInt64>)

    public static func parse(_ header: String, size: UInt64) -> ByteRange {
        let h = Substring(header).trimmingSpaces
        guard h.count > 6, h.prefix(6).lowercased() == "bytes=", !h.contains(",") else { return .none }
        let spec = h.dropFirst(6).trimmingSpaces
        guard let dash = spec.firstIndex(of: "-") else { return .none }
        let first = spec[..<dash], last = spec[spec.index(after: dash)...]
        func number(_ s: Substring) -> UInt64? {
            guard !s.isEmpty, s.utf8.count <= 19, s.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
            return UInt64(s)
        }
        if first.isEmpty {
            guard let n = number(last) else { return .none }
            guard n > 0, size > 0 else { return .unsatisfiable }
            return .range((size - min(n, size))..<size)
        }
        guard let a = number(first) else { return .none }
        var b: UInt64
        if last.isEmpty {
            b = size &- 1
        } else {
            guard let v = number(last), v >= a else { return .none }
            b = v
        }
        guard a < size else { return .unsatisfiable }
        b = min(b, size - 1)
        return .range(a..<(b + 1))
    }
}
