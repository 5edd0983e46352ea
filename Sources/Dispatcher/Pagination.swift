// Dispatcher.Pagination: how every list endpoint pages. `limit` 1...100 (default 20),
// then either `cursor` (keyset: the id after which the next page starts, or for sharded
// jobs each shard's last id; ids sort by creation, so a page never repeats or skips an item
// while others are inserted) or
// `offset`. A cursor is the last id and an HMAC-SHA256 (the server's secret, in the data
// directory) over that id and the list's filters: a cursor edited by hand, or reused with
// other filters, is a 400 `invalid_cursor`, never a query on a value the server did not write.
import Access
import Crypto
import JSON
import SpoolModel
import Web

public struct PageRequest: Sendable, Equatable {
    public var limit: Int
    /// Start after this id (from a cursor), or nil for the first page.
    public var after: String?
    /// Skip this many items (the `offset=` form); 0 with a cursor.
    public var offset: Int

    public static let defaultLimit = 20
    public static let maxLimit = 100
}

public struct PageCursorKey: Sendable {
    let key: SymmetricKey
    public init(secret: [UInt8]) { key = SymmetricKey(data: secret) }

    /// `after` and the filters it was made for, signed.
    public func cursor(after: String, filters: String) -> String {
        after + "." + mac(after, filters)
    }

    /// The id a cursor carries, when its signature matches these filters.
    public func verify(_ cursor: String, filters: String) -> String? {
        guard let dot = cursor.lastIndex(of: "."), dot != cursor.startIndex else { return nil }
        let after = String(cursor[..<dot]), sig = cursor[cursor.index(after: dot)...]
        guard after.utf8.count <= 2048, after.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { return nil }
        // Constant-time compare of equal-length hex strings.
        let expected = mac(after, filters)
        guard sig.utf8.count == expected.utf8.count else { return nil }
        var diff: UInt8 = 0
        for (a, b) in zip(sig.utf8, expected.utf8) { diff |= a ^ b }
        return diff == 0 ? after : nil
    }

    private func mac(_ after: String, _ filters: String) -> String {
        let code = HMAC<SHA256>.authenticationCode(for: Array((after + "\n" + filters).utf8), using: key)
        return code.prefix(16).map { b in String(b >> 4, radix: 16) + String(b & 15, radix: 16) }.joined()
    }

    /// Parses `limit`, `cursor` and `offset` from the query (422 for a limit or offset out of
    /// range, 400 for a bad cursor; cursor and offset together are a 422).
    public func page(of req: Request, filters: String) throws(APIError) -> PageRequest {
        var page = PageRequest(limit: PageRequest.defaultLimit, after: nil, offset: 0)
        for name in ["limit", "offset", "cursor"] {
            if let repeated = repeatedParameter(req, name) { throw repeated.apiError }
        }
        if let l = req.query("limit") {
            guard let n = Int(l), (1...PageRequest.maxLimit).contains(n) else {
                throw APIError(status: 422, code: "validation_failed", message: "limit must be an integer from 1 to \(PageRequest.maxLimit)",
                               details: [("limit", "must be an integer from 1 to \(PageRequest.maxLimit)")])
            }
            page.limit = n
        }
        if let o = req.query("offset") {
            guard let n = Int(o), n >= 0, n <= 1_000_000_000 else {
                throw APIError(status: 422, code: "validation_failed", message: "offset must be an integer from 0 to 1000000000",
                               details: [("offset", "must be an integer from 0 to 1000000000")])
            }
            page.offset = n
        }
        if let c = req.query("cursor") {
            guard req.query("offset") == nil else {
                throw APIError(status: 422, code: "validation_failed", message: "give cursor or offset, not both",
                               details: [("offset", "cannot be combined with cursor")])
            }
            guard let after = verify(c, filters: filters) else {
                throw APIError(status: 400, code: "invalid_cursor", message: "the cursor is not one this server issued for this list")
            }
            page.after = after
        }
        return page
    }
}

/// The next page's URL: `path?` the filters, the limit and the cursor after `lastID`.
public func nextPageURL(path: String, filters: [(String, String)], limit: Int, cursor: String) -> String {
    var q = filters.filter { !$0.1.isEmpty }.map { "\($0.0)=\(percentEncode($0.1))" }
    q.append("limit=\(limit)")
    q.append("cursor=\(percentEncode(cursor))")
    return path + "?" + q.joined(separator: "&")
}

func percentEncode(_ s: String) -> String {
    var out = ""
    for b in s.utf8 {
        switch b {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
            out.unicodeScalars.append(Unicode.Scalar(b))
        default:
            let h = "0123456789ABCDEF".utf8.map { $0 }
            out += "%" + String(decoding: [h[Int(b >> 4)], h[Int(b & 15)]], as: UTF8.self)
        }
    }
    return out
}

extension Response {
    /// The one list envelope: `{"data":[...],"total_count":N,"next_page_url":URL|null}`.
    static func page<Items: Sequence>(_ items: Items, total: Int, next: String?,
                                      _ encode: (Items.Element, inout JSONWriter<[UInt8]>) -> Void) -> Response {
        .json(200) { w in
            w.beginObject()
            w.key("data")
            w.beginArray()
            for item in items { encode(item, &w) }
            w.endArray()
            w.field("total_count", total)
            w.key("next_page_url")
            if let next { w.string(next) } else { w.null() }
            w.endObject()
        }
    }
}

/// A list's filter in the query (`state=`, `tenant=`): nil when absent; when present it
/// must be a tenant name (`tenant`) or pass `valid`, and an empty value is refused like
/// any other invalid one (422 naming the parameter), as the OpenAPI document's
/// parameters say. next_page_url leaves empty filters out, so it never carries one.
func listFilter(_ req: Request, _ name: String, must rule: String, _ valid: (String) -> Bool) throws(ModelError) -> String? {
    guard let value = req.query(name) else { return nil }
    if let repeated = repeatedParameter(req, name) { throw repeated }
    guard valid(value) else { throw ModelError(.validationFailed, "\(name) must be \(rule)", details: [(name, "must be \(rule)")]) }
    return value
}

/// The 422 for a query parameter given more than once (nil when it is not): which of two
/// values would count is anyone's guess, and the first one used to, silently.
func repeatedParameter(_ req: Request, _ name: String) -> ModelError? {
    guard req.queryCount(name) > 1 else { return nil }
    return ModelError(.validationFailed, "\(name) is given more than once", details: [(name, "must be given at most once")])
}

/// The `tenant` filter: 1 to 64 of a-z, 0-9, '_' and '-' (AccessService's rule for tenant names).
func tenantFilter(_ req: Request) throws(ModelError) -> String? {
    try listFilter(req, "tenant", must: "a tenant name (1 to 64 of a-z, 0-9, _ and -)", AccessService.isValidTenant)
}
