// Webhooks.WebhookService: tells a job's webhook URL when the job completed or failed for
// good. Deliveries are rows (table webhooks_deliveries) written when the JobFinished
// event arrives, then sent by a loop of its own: POST of the JSON payload, signed the
// Standard Webhooks way with the tenant's secret (webhooks_secrets), no redirects
// followed; https:// receivers must present a certificate that verifies (the system's
// trust store, or webhooks.ca_file). 2xx: delivered. 5xx, 408, 429, a timeout or a connection failure: retried
// with exponential backoff and jitter until webhooks.max_attempts. 410 Gone: the URL is
// disabled (webhooks_disabled) and nothing more is sent to it. Any other answer, or an
// address the SSRF guard refuses (AddressPolicy, checked on the very addresses dialed):
// failed at once. Every attempt is logged (webhooks_attempts) and readable per job.
// Pending deliveries survive a restart (they are rows; the loop reads what is due), and a
// finished job whose delivery row was never written (the dispatcher died between the job's
// commit and the event) is found by the outbox sweep (WebhookService+Outbox). Each
// attempt is claimed first, by one conditional update that moves the row's next attempt
// past the attempt's timeout, so of several dispatchers on one database exactly one sends
// it, and a dispatcher that dies mid-attempt leaves it to another once that time passes.
import Crypto
import Events
import JSON
import Jobs
import Logging
import Relational
import Ring
import SpoolModel
import Synchronization
import Threads
import TLS
import Web

public struct WebhookSettings: Sendable, Equatable {
    public var timeoutSeconds: Int64 = 10
    public var maxAttempts = 8
    /// The first retry waits about this long; each later one twice the one before (±50 % jitter), at most an hour.
    public var retryBaseMilliseconds: Int64 = 1_000
    public var policy = AddressPolicy()
    public init() {}
}

public struct DeliveryAttempt: Sendable, Equatable {
    public var attempt: Int
    public var at: Int64
    public var status: Int?
    public var error: String?
    public var durationMilliseconds: Int64
}

public struct Delivery: Sendable, Equatable {
    public enum State: String, Sendable { case pending, delivered, failed, disabled }
    public var id: String
    public var jobID: String
    public var tenant: String
    public var url: String
    public var event: String
    public var payload: String
    public var state: State
    public var attempts: Int
    public var nextAttemptAt: Int64?
    public var createdAt: Int64
    public var updatedAt: Int64
    public var log: [DeliveryAttempt] = []
}

public final class WebhookService: Sendable {
    let database: any RelationalDatabase
    let jobs: JobService
    let clock: any ServiceClock
    let settings: @Sendable () -> WebhookSettings
    let logger: Logger
    /// Tests inject host names here (the SSRF guard still judges what they resolve to).
    let resolve: (@Sendable (String, UInt16) async throws(RingError) -> [SocketAddress])?
    /// Whom https:// receivers must be certified by (nil: the system's trust store).
    let tls: TLSContext?
    let wake: AsyncStream<Void>.Continuation
    let wakes: AsyncStream<Void>
    let inFlight = Mutex<Set<String>>([])
    /// Passes of `run`'s loop so far: about five a second while idle (for tests).
    let passes = Atomic<Int>(0)
    public var runPasses: Int { passes.load(ordering: .relaxed) }

    public static let migrations: [SQLMigration] = [
        SQLMigration("webhooks.1", sqlite: """
            CREATE TABLE webhooks_secrets (tenant TEXT PRIMARY KEY NOT NULL, secret TEXT NOT NULL, created_at INTEGER NOT NULL) WITHOUT ROWID;
            CREATE TABLE webhooks_deliveries (
                id TEXT PRIMARY KEY NOT NULL, job_id TEXT NOT NULL, tenant TEXT NOT NULL, url TEXT NOT NULL,
                event TEXT NOT NULL, payload TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL,
                next_attempt_at INTEGER, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL
            ) WITHOUT ROWID;
            CREATE INDEX webhooks_deliveries_due ON webhooks_deliveries(next_attempt_at) WHERE state = 'pending';
            CREATE INDEX webhooks_deliveries_job ON webhooks_deliveries(job_id);
            CREATE TABLE webhooks_attempts (
                delivery_id TEXT NOT NULL, attempt INTEGER NOT NULL, at INTEGER NOT NULL, status INTEGER, error TEXT,
                duration_ms INTEGER NOT NULL, PRIMARY KEY (delivery_id, attempt)
            ) WITHOUT ROWID;
            CREATE TABLE webhooks_disabled (url TEXT PRIMARY KEY NOT NULL, at INTEGER NOT NULL, status INTEGER NOT NULL) WITHOUT ROWID;
            """, postgresql: """
            CREATE TABLE webhooks_secrets (tenant TEXT PRIMARY KEY NOT NULL, secret TEXT NOT NULL, created_at BIGINT NOT NULL);
            CREATE TABLE webhooks_deliveries (
                id TEXT PRIMARY KEY NOT NULL, job_id TEXT NOT NULL, tenant TEXT NOT NULL, url TEXT NOT NULL,
                event TEXT NOT NULL, payload TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL,
                next_attempt_at BIGINT, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL
            );
            CREATE INDEX webhooks_deliveries_due ON webhooks_deliveries(next_attempt_at) WHERE state = 'pending';
            CREATE INDEX webhooks_deliveries_job ON webhooks_deliveries(job_id);
            CREATE TABLE webhooks_attempts (
                delivery_id TEXT NOT NULL, attempt INTEGER NOT NULL, at BIGINT NOT NULL, status INTEGER, error TEXT,
                duration_ms BIGINT NOT NULL, PRIMARY KEY (delivery_id, attempt)
            );
            CREATE TABLE webhooks_disabled (url TEXT PRIMARY KEY NOT NULL, at BIGINT NOT NULL, status INTEGER NOT NULL);
            """),
        SQLMigration("webhooks.2", sqlite: """
            CREATE TABLE webhooks_outbox (name TEXT PRIMARY KEY NOT NULL, updated_at INTEGER NOT NULL, job_id TEXT NOT NULL) WITHOUT ROWID;
            """, postgresql: """
            CREATE TABLE webhooks_outbox (name TEXT PRIMARY KEY NOT NULL, updated_at BIGINT NOT NULL, job_id TEXT NOT NULL);
            """),
    ]

    public static func open(database: any RelationalDatabase, jobs: JobService, clock: any ServiceClock,
                            settings: @escaping @Sendable () -> WebhookSettings, logger: Logger,
                            resolve: (@Sendable (String, UInt16) async throws(RingError) -> [SocketAddress])? = nil,
                            tls: TLSContext? = nil) async throws -> WebhookService {
        try await database.migrate(migrations)
        return WebhookService(database: database, jobs: jobs, clock: clock, settings: settings, logger: logger, resolve: resolve, tls: tls)
    }

    init(database: any RelationalDatabase, jobs: JobService, clock: any ServiceClock, settings: @escaping @Sendable () -> WebhookSettings,
         logger: Logger, resolve: (@Sendable (String, UInt16) async throws(RingError) -> [SocketAddress])?, tls: TLSContext?) {
        self.database = database
        self.jobs = jobs
        self.clock = clock
        self.settings = settings
        self.logger = logger
        self.resolve = resolve
        self.tls = tls
        (wakes, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    // MARK: Secrets

    /// The tenant's signing secret (made on first use).
    public func secret(tenant: String) async throws -> String {
        let now = clock.unixMilliseconds
        let fresh = WebhookSignature.newSecret()
        return try await database.writing { db in
            // The first dispatcher to make one wins; everyone reads the winner's.
            try db.execute("INSERT INTO webhooks_secrets (tenant, secret, created_at) VALUES (?, ?, ?) ON CONFLICT (tenant) DO NOTHING",
                           [tenant, fresh, now])
            return try db.one("SELECT secret FROM webhooks_secrets WHERE tenant = ?", [tenant])?.string("secret") ?? fresh
        }
    }

    /// A new secret for the tenant; deliveries from now on are signed with it.
    public func rotateSecret(tenant: String) async throws -> String {
        let now = clock.unixMilliseconds
        let s = WebhookSignature.newSecret()
        try await database.writing { db in
            try db.execute("""
                INSERT INTO webhooks_secrets (tenant, secret, created_at) VALUES (?, ?, ?)
                ON CONFLICT (tenant) DO UPDATE SET secret = excluded.secret, created_at = excluded.created_at
                """, [tenant, s, now])
        }
        return s
    }

    // MARK: Deliveries

    /// Records a delivery for a finished job (completed, or failed with no retry left) that
    /// has a webhook URL; nil otherwise. Idempotent: the delivery's id is made from the job,
    /// its state and the time it entered it, so the event path and the outbox sweep (on any
    /// dispatcher) record one delivery per finish; a second call returns the first's row.
    @discardableResult
    public func enqueue(_ job: Job) async throws -> Delivery? { try await record(job)?.delivery }

    /// `enqueue`, and whether this call wrote the row.
    func record(_ job: Job) async throws -> (delivery: Delivery, inserted: Bool)? {
        guard let url = job.webhookURL, job.state == .completed || job.state == .failed else { return nil }
        let now = clock.unixMilliseconds
        let event = "job." + job.state.rawValue
        var w = JSONWriter()
        w.beginObject()
        w.field("type", event)
        w.field("timestamp", RFC3339.format(now))
        w.key("data")
        w.beginObject()
        w.field("job_id", job.id.text)
        w.field("state", job.state.rawValue)
        w.key("reason"); job.reason.encode(to: &w)
        w.key("outputs")
        w.beginArray()
        for o in job.result?.outputs ?? [] { o.encode(to: &w) }
        w.endArray()
        w.key("quality_report")
        if let q = job.result?.qualityReport { w.rawJSON(q) } else { w.null() }
        w.key("metadata"); w.beginObject(); for k in job.metadata.keys.sorted() { w.field(k, job.metadata[k]!) }; w.endObject()
        w.endObject()
        w.endObject()
        let id = Self.deliveryID(job)
        let d = Delivery(id: id, jobID: job.id.text, tenant: job.tenant, url: url, event: event, payload: w.text, state: .pending,
                         attempts: 0, nextAttemptAt: now, createdAt: now, updatedAt: now)
        let existing = try await database.writing { db -> Delivery?? in
            let inserted = try db.execute("""
                INSERT INTO webhooks_deliveries (id, job_id, tenant, url, event, payload, state, attempts, next_attempt_at, created_at, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?) ON CONFLICT (id) DO NOTHING
                """, [d.id, d.jobID, d.tenant, d.url, d.event, d.payload, now, now, now])
            if inserted == 1 { return .none }
            return .some(try db.one("SELECT * FROM webhooks_deliveries WHERE id = ?", [d.id]).flatMap(Self.delivery))
        }
        guard case .some(let earlier) = existing else {
            wake.yield()
            return (d, true)
        }
        return (earlier ?? d, false)
    }

    /// The delivery id of a job's finish: "msg_" and 32 hex digits of SHA-256 over the job's
    /// id, state and the time it entered that state.
    static func deliveryID(_ job: Job) -> String {
        let digest = SHA256.hash(data: Array("\(job.id.text)|\(job.state.rawValue)|\(job.updatedAt)".utf8))
        return "msg_" + Hex.encode(Array(digest.prefix(16)))
    }

    /// The deliveries of a job with their attempts, oldest first.
    public func deliveries(jobID: String) async throws -> [Delivery] {
        try await database.reading { db in
            let rows = try db.query("SELECT * FROM webhooks_deliveries WHERE job_id = ? ORDER BY created_at, id", [jobID])
            return try rows.compactMap { row -> Delivery? in
                guard var d = try Self.delivery(row) else { return nil }
                d.log = try db.query("SELECT * FROM webhooks_attempts WHERE delivery_id = ? ORDER BY attempt", [d.id]).map { r in
                    DeliveryAttempt(attempt: try r.int("attempt"), at: try r.int64("at"), status: try r.optionalInt64("status").map(Int.init),
                                    error: try r.optionalString("error"), durationMilliseconds: try r.int64("duration_ms"))
                }
                return d
            }
        }
    }

    static func delivery(_ row: SQLRow) throws -> Delivery? {
        guard let state = Delivery.State(rawValue: try row.string("state")) else { return nil }
        return Delivery(id: try row.string("id"), jobID: try row.string("job_id"), tenant: try row.string("tenant"),
                        url: try row.string("url"), event: try row.string("event"), payload: try row.string("payload"), state: state,
                        attempts: try row.int("attempts"), nextAttemptAt: try row.optionalInt64("next_attempt_at"),
                        createdAt: try row.int64("created_at"), updatedAt: try row.int64("updated_at"))
    }

    // MARK: Running

    /// Enqueues on JobFinished events and sends what is due, until cancelled. Call on an
    /// event loop (the HTTP client lives there).
    public func run(events: any EventBus) async {
        guard let loop = EventLoop.current else { preconditionFailure("WebhookService.run must be called on an event loop") }
        let listener = Task { [self] in
            for await e in await events.subscribeAll() where e.type == .jobFinished {
                guard let doc = try? JSONDocument(parsing: e.payload), let text = try? doc.root["job_id"]?.string(),
                      let id = JobID(text), let job = try? await jobs.get(id), job.webhookURL != nil else { continue }
                do { try await enqueue(job) } catch { logger.error("webhook for job \(text) not recorded: \(error)") }
            }
        }
        defer { listener.cancel() }
        var woken = wakes.makeAsyncIterator()
        var nextSweep: Int64 = 0
        while !Task.isCancelled {
            passes.add(1, ordering: .relaxed)
            let now = clock.unixMilliseconds
            if now >= nextSweep {
                nextSweep = now + Self.outboxSweepIntervalMilliseconds
                do { try await sweepOutbox() } catch { logger.error("webhook outbox sweep failed: \(error)") }
            }
            let due = (try? await dueDeliveries(now: now, limit: 16)) ?? []
            for d in due {
                // At most 8 at once, each delivery once at a time.
                let start = inFlight.withLock { f -> Bool in
                    guard f.count < 8, !f.contains(d.id) else { return false }
                    f.insert(d.id)
                    return true
                }
                guard start else { continue }
                loop.spawn { [self] in
                    await attempt(d)
                    inFlight.withLock { _ = $0.remove(d.id) }
                    wake.yield()
                }
            }
            // Sleep until woken (a new delivery, one finished) or a short tick for retries coming due.
            // Only a tick that slept its whole time wakes the loop: one cancelled because
            // something else woke it first must not, or its wake (kept in the stream's
            // buffer) would end the next sleep at once, that pass's cancelled tick the
            // one after, and the loop would spin on a core until the process ended.
            let tick = loop.spawn { [wake] in
                guard (try? await loop.sleep(until: loop.now + .milliseconds(200))) != nil, !Task.isCancelled else { return }
                wake.yield()
            }
            _ = await woken.next()
            tick.cancel()
        }
    }

    func dueDeliveries(now: Int64, limit: Int) async throws -> [Delivery] {
        try await database.reading { db in
            try db.query("SELECT * FROM webhooks_deliveries WHERE state = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?",
                         [now, limit]).compactMap(Self.delivery)
        }
    }

    enum Outcome {
        case delivered(Int)
        case retry(Int?, String?)
        case failed(Int?, String)
        case disabled(Int)
    }

    /// One attempt of one delivery, recorded. The attempt is claimed first: one update, on
    /// the row as listed (pending, the same attempt count, due), moves its next attempt past
    /// this attempt's timeout. The list may predate the previous attempt's commit, or
    /// another dispatcher may have claimed it: then nothing changes and nothing is sent.
    func attempt(_ listed: Delivery) async {
        let s = settings()
        let claimedAt = clock.unixMilliseconds
        let leaseEnd = claimedAt + s.timeoutSeconds * 1000 + 30_000
        guard let d = try? await database.writing({ db in
            try db.one("""
                UPDATE webhooks_deliveries SET next_attempt_at = ?
                WHERE id = ? AND state = 'pending' AND attempts = ? AND next_attempt_at <= ? RETURNING *
                """, [leaseEnd, listed.id, listed.attempts, claimedAt]).flatMap(Self.delivery)
        }) else { return }
        let started = clock.unixMilliseconds
        let outcome: Outcome
        if (try? await isDisabled(d.url)) == true {
            outcome = .disabled(410)
        } else {
            outcome = await send(d, settings: s)
        }
        let finished = clock.unixMilliseconds
        let attempt = d.attempts + 1
        var state = Delivery.State.pending
        var next: Int64? = nil
        var status: Int?
        var error: String?
        switch outcome {
        case .delivered(let code): state = .delivered; status = code
        case .disabled(let code): state = .disabled; status = code; error = "the receiver answered 410 Gone: this URL gets no more webhooks"
        case .failed(let code, let why): state = .failed; status = code; error = why
        case .retry(let code, let why):
            status = code; error = why
            if attempt >= s.maxAttempts {
                state = .failed
                error = (why ?? "status \(code ?? 0)") + "; gave up after \(attempt) attempts"
            } else {
                next = finished + Self.backoff(attempt: attempt, base: s.retryBaseMilliseconds)
            }
        }
        do {
            let disabled = if case .disabled = outcome { true } else { false }
            try await database.writing { [state, next, status, error] db in
                // On the attempt count claimed: a dispatcher whose claim ran out records nothing twice.
                guard try db.execute("UPDATE webhooks_deliveries SET state = ?, attempts = ?, next_attempt_at = ?, updated_at = ? WHERE id = ? AND attempts = ?",
                                     [state.rawValue, attempt, next, finished, d.id, d.attempts]) == 1 else { return }
                try db.execute("""
                    INSERT INTO webhooks_attempts (delivery_id, attempt, at, status, error, duration_ms) VALUES (?, ?, ?, ?, ?, ?)
                    ON CONFLICT (delivery_id, attempt) DO UPDATE SET at = excluded.at, status = excluded.status,
                    error = excluded.error, duration_ms = excluded.duration_ms
                    """, [d.id, attempt, started, status, error, finished - started])
                if disabled {
                    try db.execute("INSERT INTO webhooks_disabled (url, at, status) VALUES (?, ?, 410) ON CONFLICT (url) DO NOTHING",
                                   [d.url, finished])
                }
            }
        } catch {
            logger.error("webhook \(d.id): attempt \(attempt) not recorded: \(error)")
        }
        if state != .pending && state != .delivered {
            logger.warning("webhook \(d.id) for job \(d.jobID) to \(d.url): \(state.rawValue): \(error ?? "")")
        }
    }

    func isDisabled(_ url: String) async throws -> Bool {
        try await database.reading { db in try db.exists("SELECT 1 FROM webhooks_disabled WHERE url = ?", [url]) }
    }

    /// The wait before attempt `attempt + 1`: base × 2^(attempt-1), ±50 % jitter, at most an hour.
    static func backoff(attempt: Int, base: Int64) -> Int64 {
        let exp = min(max(0, attempt - 1), 20)
        let raw = min(Int64(3_600_000), max(1, base) << exp)
        return max(1, Int64(Double(raw) * Double.random(in: 0.5...1.5)))
    }

    func send(_ d: Delivery, settings s: WebhookSettings) async -> Outcome {
        let secret: String
        do { secret = try await self.secret(tenant: d.tenant) } catch { return .retry(nil, "no signing secret: \(error)") }
        let body = Array(d.payload.utf8)
        let timestamp = clock.unixMilliseconds / 1000
        guard let signature = WebhookSignature.sign(secret: secret, id: d.id, timestamp: timestamp, body: body) else {
            return .failed(nil, "the tenant's signing secret is malformed")
        }
        var config = HTTPClientConfiguration()
        config.followRedirects = false
        config.totalTimeout = .seconds(max(1, s.timeoutSeconds))
        config.readTimeout = .seconds(max(1, s.timeoutSeconds))
        config.connectTimeout = .seconds(max(1, min(10, s.timeoutSeconds)))
        config.responseBodyMax = 64 << 10
        config.maxIdlePerOrigin = 0
        config.userAgent = "spool-webhooks"
        config.resolve = resolve
        config.tlsContext = tls
        let policy = s.policy
        config.admit = { address in policy.refusal(address.ipBytes) }
        // No connection is kept (maxIdlePerOrigin 0): each attempt dials afresh, through the guard.
        let client = HTTPClient(configuration: config)
        // Only the status counts: the body is read and dropped, and past 64 KiB the
        // reading stops with the status in hand (a 2xx with a huge or endless body was
        // retried as a failure, so the receiver got the event again and again).
        struct StatusKnown: Error { let status: Int }
        let bodyMax = config.responseBodyMax
        var received = 0
        let status: Int
        do {
            status = try await client.execute(ClientRequest(method: "POST", url: d.url, headers: [
                ("Content-Type", "application/json"), ("webhook-id", d.id), ("webhook-timestamp", String(timestamp)),
                ("webhook-signature", signature),
            ], body: .bytes(body)), awaiting: { head, piece in
                received += piece.count
                if received > bodyMax { throw StatusKnown(status: head.status) }
            }).status
        } catch {
            if error.kind == .callbackFailed, let known = error.cause as? StatusKnown {
                status = known.status
            } else {
                // A receiver whose certificate does not verify is not sent the payload; that
                // is retried like a connection failure (a certificate is often fixed within hours).
                if error.kind == .refusedAddress || error.kind == .invalidURL { return .failed(nil, error.description) }
                return .retry(nil, error.description)
            }
        }
        switch status {
        case 200..<300: return .delivered(status)
        case 410: return .disabled(410)
        case 408, 429, 500...599: return .retry(status, "the receiver answered \(status)")
        case 300..<400: return .failed(status, "the receiver answered \(status) (redirects are not followed)")
        default: return .failed(status, "the receiver answered \(status)")
        }
    }
}
