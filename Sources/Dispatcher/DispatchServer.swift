// Dispatcher: the dispatch server's HTTP side. `DispatchServer.open` builds the services
// on one data directory (SQLite file + local storage), `makeRouter` puts every route of
// /api/v1 on a Web router, and `spool serve` runs that router on the ring. Services never
// see HTTP; routes never see SQL.
//
// Files here: this wiring and the caller's identity; one `*Routes.swift` per service.
import Access
import Engines
import Events
import Files
import Glibc
import JSON
import Jobs
import Logging
import MessageQueue
import Persistence
import Redis
import RedisQueue
import RedisEvents
import ServerConfig
import SpoolAPI
import SpoolModel
import Storage
import Threads
import Web
import Webhooks
import Ring

/// Everything the routes reach: the services, the live settings, the clock.
public final class DispatchServer: Sendable {
    public let dataDirectory: String
    public let database: SQLiteDatabase
    public let settings: LiveSettings
    public let clock: any ServiceClock
    public let logger: Logger
    public let started: MonotonicInstant
    /// Signs list cursors (a secret kept in the data directory, so cursors outlive restarts).
    public let cursors: PageCursorKey
    public let access: AccessService
    public let engines: EngineRegistry
    /// The Prometheus registry behind GET /metrics (one per server).
    public let metrics: ServerMetrics
    /// Job and engine events (SSE, webhooks, metrics listen here).
    public let events: any EventBus
    public let jobs: JobService
    /// Uploaded files (metadata in SQLite, bytes under dataDirectory/files).
    public let files: FileService
    /// Gives pending jobs to the engines that ask (fair across tenants).
    public let scheduler: Scheduler
    /// Tells finished jobs' webhook URLs (signed, retried, logged).
    public let webhooks: WebhookService
    /// Where pending jobs wait for the scheduler: in-process, or Redis Streams (queue.url).
    public let queue: any MessageQueue
    /// The Redis client behind the queue, when it is Redis.
    public let redis: RedisClient?

    /// Opens the database and the services under `dataDirectory` (created if missing).
    public static func open(dataDirectory: String, settings: LiveSettings, clock: any ServiceClock = SystemClock.shared,
                            logger: Logger = Logger(label: "spool.dispatch"),
                            webhookResolver: (@Sendable (String, UInt16) async throws(RingError) -> [SocketAddress])? = nil) async throws -> DispatchServer {
        try makeDirectory(dataDirectory)
        let metrics = ServerMetrics()
        let database = try SQLiteDatabase(path: dataDirectory + "/spool.sqlite",
                                          observer: { kind, seconds in metrics.recordDatabase(kind: kind, seconds: seconds) })
        let secret = try loadOrCreateSecret(dataDirectory + "/cursor.secret")
        let access = try await AccessService.open(database: database, clock: clock)
        // The job queue: every job that becomes pending is published (after its commit); a
        // job that failed for good goes to the dead letters. A publish that fails (Redis
        // down) loses nothing: the job is pending in the database, and the reconciler
        // publishes it again. With Redis, events go through it too, so every dispatcher's
        // SSE clients follow every job.
        let (queue, redis) = try await openQueue(settings.current.queue, clock: clock, logger: logger)
        let events: any EventBus = redis.map { client in
            RedisEventBus(client: client, keyPrefix: settings.current.queue.keyPrefix,
                          replayWindow: { settings.current.events.replayWindow }, logger: logger)
        } ?? InProcessEventBus(replayWindow: { settings.current.events.replayWindow })
        let engines = try await EngineRegistry.open(database: database, clock: clock, settings: {
            var e = EngineSettings()
            e.heartbeatTimeoutMilliseconds = settings.current.engines.heartbeatTimeoutSeconds * 1000
            return e
        }, events: events)
        let jobs = JobService(store: SQLiteJobStore(database: database), events: events, clock: clock,
                              settings: { JobSettings(settings.current.jobs) },
                              hooks: JobHooks(onPending: { ready in
                                  for job in ready {
                                      do { try await queue.publish(topic: Scheduler.topic, body: job.id.text) } catch {
                                          logger.warning("job \(job.id.text) not published (the reconciler will): \(error)")
                                      }
                                  }
                              }, onDead: { job in
                                  try? await queue.deadLetter(topic: Scheduler.topic, body: job.id.text,
                                                              reason: "failed after \(job.attempts) attempt(s): \(job.reason ?? "failed")")
                              }))
        try await jobs.migrate()
        let files = try await FileService.open(database: database, storage: try await LocalStorage.open(root: dataDirectory + "/files"),
                                               settings: fileSettings(settings),
                                               clock: clock, logger: logger)
        let scheduler = Scheduler(jobs: jobs, files: files, queue: queue, clock: clock, logger: logger,
                                  consumer: "scheduler-\(hostName())-\(getpid())",
                                  visibility: redis == nil ? .seconds(600) : .seconds(settings.current.queue.visibilitySeconds),
                                  weights: { settings.current.scheduler.tenantWeights })
        let webhooks = try await WebhookService.open(database: database, jobs: jobs, clock: clock,
                                                     settings: { webhookSettings(settings.current.webhooks) }, logger: logger,
                                                     resolve: webhookResolver)
        let server = DispatchServer(dataDirectory: dataDirectory, database: database, settings: settings, clock: clock,
                                    cursors: PageCursorKey(secret: secret), access: access, engines: engines, metrics: metrics,
                                    logger: logger, events: events, jobs: jobs, files: files, scheduler: scheduler,
                                    webhooks: webhooks, queue: queue, redis: redis)
        // The reconciler's first pass: what is pending in the database is ready (the
        // in-process queue starts empty; Redis may have lost what it held).
        try await server.reconcileQueue()
        // Jobs by state and the queue depth (pending jobs), read fresh for each scrape.
        metrics.onScrape { [jobs] m in
            guard let counts = try? await jobs.countsByState() else { return }
            for state in JobState.allCases { m.setJobs(state: state.rawValue, count: counts[state] ?? 0) }
            m.setQueueDepth(counts[.pending] ?? 0)
        }
        return server
    }

    init(dataDirectory: String, database: SQLiteDatabase, settings: LiveSettings, clock: any ServiceClock,
         cursors: PageCursorKey, access: AccessService, engines: EngineRegistry, metrics: ServerMetrics, logger: Logger,
         events: any EventBus, jobs: JobService, files: FileService, scheduler: Scheduler, webhooks: WebhookService,
         queue: any MessageQueue, redis: RedisClient?) {
        self.scheduler = scheduler
        self.queue = queue
        self.redis = redis
        self.webhooks = webhooks
        self.cursors = cursors
        self.access = access
        self.engines = engines
        self.metrics = metrics
        self.events = events
        self.jobs = jobs
        self.files = files
        self.dataDirectory = dataDirectory
        self.database = database
        self.settings = settings
        self.clock = clock
        self.logger = logger
        self.started = clock.now
    }

    /// The router with every route: health and version without credentials, the rest of
    /// /api/v1 behind the bearer key.
    public func makeRouter() -> Router {
        Router(logger: logger) { r in
            r.use(StandardMiddleware.requestID())
            installMetrics(on: &r)
            SpoolAPI.install(on: &r, clock: clock, started: started)
            r.group("/api/" + SpoolAPI.version) { v1 in
                installOpenAPI(on: &v1)
                installReadiness(on: &v1)
                // Engines authenticate with their own token (or the join token to register).
                installEngineAPIRoutes(on: &v1)
                // Everything after this line needs a key.
                installAuthentication(on: &v1)
                installAccessRoutes(on: &v1)
                installEngineRoutes(on: &v1)
                installFileRoutes(on: &v1, counters: FileTransferCounters(
                    uploaded: { [metrics] n in metrics.recordUpload(bytes: Int(n)) },
                    downloaded: { [metrics] n in metrics.recordDownload(bytes: Int(n)) }))
                installJobRoutes(on: &v1)
                installWebhookRoutes(on: &v1)
            }
        }
    }

    func installReadiness(on v1: inout RouteBuilder) {
        v1.get("ready") { [database, files, self] _ in
            let db = await database.isReachable()
            let storageProblem = await files.storage.problem()
            let queueProblem = await self.queueProblem()
            let ok = db && storageProblem == nil && queueProblem == nil
            return .json(ok ? 200 : 503) { w in
                w.beginObject()
                w.field("status", ok ? "ready" : "unavailable")
                w.key("checks")
                w.beginObject()
                w.field("database", db ? "ok" : "unreachable")
                w.field("storage", storageProblem ?? "ok")
                w.field("queue", queueProblem ?? "ok")
                w.endObject()
                w.endObject()
            }
        }
    }
}

/// Who is calling, as the authentication middleware set it on the request: the tenant
/// the key belongs to, and whether it is an admin key.
public struct Caller: Sendable, Equatable {
    public var tenant: String
    public var isAdmin: Bool
    public init(tenant: String, isAdmin: Bool) { self.tenant = tenant; self.isAdmin = isAdmin }

    /// The principal string the middleware stores ("admin:TENANT" or "tenant:TENANT").
    public var principal: String { (isAdmin ? "admin:" : "tenant:") + tenant }

    public init?(principal: String) {
        if principal.hasPrefix("admin:") { self.init(tenant: String(principal.dropFirst(6)), isAdmin: true) }
        else if principal.hasPrefix("tenant:") { self.init(tenant: String(principal.dropFirst(7)), isAdmin: false) }
        else { return nil }
    }
}

extension Request {
    /// The authenticated caller; a route behind the auth middleware always has one.
    public func caller() throws(APIError) -> Caller {
        guard let p = principal, let c = Caller(principal: p) else {
            throw APIError(status: 401, code: "unauthorized", message: "missing or invalid credentials")
        }
        return c
    }
}

extension ModelError: APIErrorConvertible {
    public var apiError: APIError { APIError(status: code.status, code: code.rawValue, message: message, details: details) }
}

/// mkdir -p with mode 0700 (the data directory holds the keys and the database).
func makeDirectory(_ path: String) throws {
    var prefix = path.hasPrefix("/") ? "/" : ""
    for part in path.split(separator: "/") {
        prefix += part
        if mkdir(prefix, 0o700) != 0 && errno != EEXIST {
            throw PersistenceError("cannot create the directory \(prefix): errno \(errno)")
        }
        prefix += "/"
    }
}

/// 32 random bytes kept in `path` (mode 0600), created on first use.
func loadOrCreateSecret(_ path: String) throws -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd >= 0 {
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 32)
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, 32) }
        if n == 32 { return buf }
        throw PersistenceError("\(path) is damaged (expected 32 bytes); delete it to make a new one (existing list cursors stop working)")
    }
    var secret = [UInt8](repeating: 0, count: 32)
    var rng = SystemRandomNumberGenerator()
    for i in secret.indices { secret[i] = rng.next() }
    let tmp = path + ".tmp"
    let wfd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard wfd >= 0 else { throw PersistenceError("cannot create \(tmp): errno \(errno)") }
    let n = secret.withUnsafeBytes { write(wfd, $0.baseAddress, 32) }
    let synced = fsync(wfd) == 0
    close(wfd)
    guard n == 32, synced, rename(tmp, path) == 0 else { throw PersistenceError("cannot write \(path): errno \(errno)") }
    return secret
}
