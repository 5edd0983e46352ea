// Dispatcher.WebhookRoutes: the webhook side of the API.
//
//   GET  /api/v1/jobs/{id}/webhooks          the job's deliveries and every attempt
//   GET  /api/v1/webhooks/secret             the caller's tenant's signing secret (admins: ?tenant=)
//   POST /api/v1/webhooks/secret/rotate      a new secret for it
import Access
import JSON
import ServerConfig
import SpoolModel
import Web
import Webhooks

extension DispatchServer {
    func installWebhookRoutes(on v1: inout RouteBuilder) {
        let webhooks = self.webhooks
        v1.get("jobs/:id/webhooks") { [self] req in
            let job = try await visibleJob(req)
            let list = try await webhooks.deliveries(jobID: job.id.text)
            return .json(200) { w in
                w.beginObject()
                w.key("data")
                w.beginArray()
                for d in list { writeDelivery(d, into: &w) }
                w.endArray()
                w.endObject()
            }
        }
        v1.get("webhooks/secret") { req in
            let tenant = try secretTenant(req)
            let secret = try await webhooks.secret(tenant: tenant)
            return .json(200) { w in w.beginObject(); w.field("tenant", tenant); w.field("secret", secret); w.endObject() }
        }
        v1.post("webhooks/secret/rotate") { req in
            let tenant = try secretTenant(req)
            let secret = try await webhooks.rotateSecret(tenant: tenant)
            return .json(200) { w in w.beginObject(); w.field("tenant", tenant); w.field("secret", secret); w.endObject() }
        }
    }
}

/// The caller's tenant; an admin may name another with ?tenant=.
func secretTenant(_ req: Request) throws -> String {
    let caller = try req.caller()
    if let t = req.query("tenant"), !t.isEmpty {
        guard caller.isAdmin else { throw APIError(status: 403, code: "forbidden", message: "only an admin key names another tenant") }
        guard AccessService.isValidTenant(t) else { throw ModelError.invalidField("tenant", "must be 1 to 64 characters of a-z, 0-9, '_' and '-'") }
        return t
    }
    return caller.tenant
}

func writeDelivery(_ d: Delivery, into w: inout JSONWriter<[UInt8]>) {
    w.beginObject()
    w.field("id", d.id)
    w.field("event", d.event)
    w.field("url", d.url)
    w.field("state", d.state.rawValue)
    w.field("attempts", d.attempts)
    w.key("next_attempt_at"); d.nextAttemptAt.map(RFC3339.format).encode(to: &w)
    w.field("created_at", RFC3339.format(d.createdAt))
    w.key("log")
    w.beginArray()
    for a in d.log {
        w.beginObject()
        w.field("attempt", a.attempt)
        w.field("at", RFC3339.format(a.at))
        w.key("status"); if let s = a.status { w.int(s) } else { w.null() }
        w.key("error"); a.error.encode(to: &w)
        w.field("duration_ms", a.durationMilliseconds)
        w.endObject()
    }
    w.endArray()
    w.endObject()
}

/// The webhook sender's settings from the server's (an unreadable allow-list allows nothing).
func webhookSettings(_ s: ServerSettings.Webhooks) -> WebhookSettings {
    var out = WebhookSettings()
    out.timeoutSeconds = s.timeoutSeconds
    out.maxAttempts = s.maxAttempts
    out.retryBaseMilliseconds = s.retryBaseMilliseconds
    let allowed = (try? Network.parseList(s.allowedNetworks).get()) ?? []
    out.policy = AddressPolicy(allowPrivateNetworks: s.allowPrivateNetworks, allowed: allowed)
    return out
}
