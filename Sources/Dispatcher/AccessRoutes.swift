// Dispatcher.AccessRoutes: authentication for /api/v1 and the key endpoints. Every route
// installed after `installAuthentication` needs `Authorization: Bearer KEY` (health,
// version, ready and the OpenAPI document are installed before it and stay open); a
// missing, unknown or revoked key is the standard 401 with WWW-Authenticate. With
// `insecure_no_auth` every caller is the admin of tenant "default".
//
//   POST   /api/v1/keys        admin: {"tenant":"name","admin":false} → 201 with the secret, once
//   GET    /api/v1/keys        admin: paged like every list; never a secret or a hash
//   DELETE /api/v1/keys/{id}   admin: revoke (204); the key gets 401 from then on
import Access
import JSON
import SpoolModel
import Web

extension DispatchServer {
    func installAuthentication(on v1: inout RouteBuilder) {
        if settings.current.insecureNoAuth {
            let principal = Caller(tenant: AccessService.adminTenant, isAdmin: true).principal
            v1.use { request, next in
                var req = request
                req.principal = principal
                return await next(req)
            }
        } else {
            v1.use(StandardMiddleware.bearerToken { [access] token in
                guard let owner = try await access.authenticate(token) else { return nil }
                return Caller(tenant: owner.tenant, isAdmin: owner.isAdmin).principal
            })
        }
    }

    /// Whether the bearer key `req` was let in with still lets it in: for answers that last
    /// (an event stream), checked again before each write so a revoked or expired key stops
    /// reading at once, as it does for new requests. A check that cannot be made (the
    /// database is down and the key not cached) says no: the client reconnects later. A
    /// request let in without a key (--insecure-no-auth, or a router built without the
    /// key middleware) has nothing to re-check.
    func credentialsStillHold(_ req: Request) async -> Bool {
        guard let token = StandardMiddleware.bearerToken(of: req), !settings.current.insecureNoAuth else { return true }
        guard let was = req.principal, let owner = try? await access.authenticate(token) else { return false }
        return Caller(tenant: owner.tenant, isAdmin: owner.isAdmin).principal == was
    }

    func installAccessRoutes(on v1: inout RouteBuilder) {
        v1.post("keys", body: .buffered(max: 4_096)) { [access] req in
            try requireAdmin(req)
            let (tenant, admin) = try parseKeyRequest(req)
            let (record, secret) = try await access.createKey(tenant: tenant, admin: admin)
            return .json(201) { w in writeKey(record, secret: secret, into: &w) }
        }
        v1.get("keys") { [access, cursors] req in
            try requireAdmin(req)
            let page = try cursors.page(of: req, filters: "keys")
            let (records, total) = try await access.list(after: page.after, offset: page.offset, limit: page.limit + 1)
            let shown = records.prefix(page.limit)
            let next = records.count > page.limit
                ? nextPageURL(path: "/api/v1/keys", filters: [], limit: page.limit,
                              cursor: cursors.cursor(after: shown.last!.id.text, filters: "keys"))
                : nil
            return Response.page(shown, total: total, next: next) { r, w in writeKey(r, secret: nil, into: &w) }
        }
        v1.delete("keys/:id") { [access] req in
            try requireAdmin(req)
            guard let id = req.pathParameters["id"].flatMap(AccessKeyID.init) else {
                throw ModelError(.notFound, "no such key")
            }
            try await access.revoke(id)
            return Response(status: 204)
        }
    }
}

func requireAdmin(_ req: Request) throws {
    guard try req.caller().isAdmin else {
        throw APIError(status: 403, code: "forbidden", message: "this needs an admin key")
    }
}

/// `{"tenant": "name", "admin": false}`: tenant required, admin optional, nothing else.
func parseKeyRequest(_ req: Request) throws -> (tenant: String, admin: Bool) {
    let root = try req.json().root
    guard root.kind == .object else { throw ModelError.invalidField("", "must be an object with \"tenant\" and optionally \"admin\"") }
    var tenant: String?, admin = false
    for (key, value) in root.members {
        switch key {
        case "tenant":
            guard value.kind == .string, let t = try? value.string() else { throw ModelError.invalidField("/tenant", "must be a string") }
            tenant = t
        case "admin":
            guard value.kind == .bool, let b = try? value.bool() else { throw ModelError.invalidField("/admin", "must be true or false") }
            admin = b
        default:
            throw ModelError.invalidField(String(value.pointer.prefix(80)), "unknown field")
        }
    }
    guard let tenant else { throw ModelError.invalidField("/tenant", "is required") }
    guard AccessService.isValidTenant(tenant) else {
        throw ModelError.invalidField("/tenant", "must be 1 to 64 characters of a-z, 0-9, '_' and '-'")
    }
    return (tenant, admin)
}

func writeKey(_ r: AccessKeyRecord, secret: String?, into w: inout JSONWriter<[UInt8]>) {
    w.beginObject()
    w.field("id", r.id.text)
    w.field("tenant", r.tenant)
    w.field("admin", r.isAdmin)
    w.field("last4", r.last4)
    w.field("origin", r.origin)
    w.field("created_at", RFC3339.format(r.created))
    w.key("revoked_at")
    if let t = r.revokedAt { w.string(RFC3339.format(t)) } else { w.null() }
    if let secret { w.field("secret", secret) }
    w.endObject()
}
