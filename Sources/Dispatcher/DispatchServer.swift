// Dispatcher: the dispatch server's HTTP side. `DispatchServer.open` builds the services
// on one data directory (SQLite file, or PostgreSQL with database.url; file contents on local disk or in S3 with storage.backend),
// `makeRouter` puts every route of /api/v1 on a Web router, and `spool serve` runs that
// router on the ring. Services never see HTTP; routes never see SQL.
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
import Relational
import Redis
import RedisQueue
import RedisEvents
import ServerConfig
import SpoolAPI
import SpoolModel
import S3
import Storage
import Threads
import TLS
import Web
import Webhooks
import Ring
import Synchronization

/// Everything the routes reach: the services, the live settings, the clock.
public final class DispatchServer: Sendable {
    public let dataDirectory: String
    /// SQLite in the data directory, or a PostgreSQL pool (database.url).
    public let database: DispatchDatabase
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
    /// Jobs and engines read by id, cached in Redis (nil without Redis or with cache.ttl_seconds 0).
    public let recordCache: RedisRecordCache?
    /// Each caller's last write position, for reads on replicas (ReadRouting.swift).
    let consistency = ConsistencyFloors()
    /// Room held back beside the SQLite database for a file delete on a full disk
    /// (Persistence/DiskBallast.swift); nil on PostgreSQL.
    public let ballast: DiskBallast?

    /// Opens the database and the services under `dataDirectory` (created if missing).
    /// `wrapQueue` wraps the job queue the settings choose (tests: a queue slower than
    /// the events, to pin down the order in which the scheduler hears of a job).
    public static func open(dataDirectory: String, settings: LiveSettings, clock: any ServiceClock = SystemClock.shared,
                            logger: Logger = Logger(label: "spool.dispatch"),
                            webhookResolver: (@Sendable (String, UInt16) async throws(RingError) -> [SocketAddress])? = nil,
                            wrapQueue: (@Sendable (any MessageQueue) -> any MessageQueue)? = nil) async throws -> DispatchServer {
        try makeDirectory(dataDirectory)
        let metrics = ServerMetrics()
        let database = try await DispatchDatabase.open(settings.current.database, dataDirectory: dataDirectory, metrics: metrics)
        do {
            return try await open(database: database, dataDirectory: dataDirectory, settings: settings, clock: clock, logger: logger,
                                  metrics: metrics, webhookResolver: webhookResolver, wrapQueue: wrapQueue)
        } catch {
            await database.close()
            throw error
        }
    }

    private static func open(database: DispatchDatabase, dataDirectory: String, settings: LiveSettings, clock: any ServiceClock,
                             logger: Logger, metrics: ServerMetrics,
                             webhookResolver: (@Sendable (String, UInt16) async throws(RingError) -> [SocketAddress])?,
                             wrapQueue: (@Sendable (any MessageQueue) -> any MessageQueue)?) async throws -> DispatchServer {
        let relational = database.relational
        // Cursors made by one dispatcher are read by another: the key is in the database.
        // (An older data directory's cursor.secret seeds it, so its cursors keep working.)
        let secret = try await SharedSecrets.load("cursors", from: relational,
                                                  proposed: try readSecretFile(dataDirectory + "/cursor.secret") ?? randomSecret())
        // Other dispatchers can revoke keys: a cached authentication is trusted 2 s at most.
        let access = try await AccessService.open(database: relational, clock: clock,
                                                  cacheLifetime: database.isShared ? .seconds(2) : nil)
        // The job queue: every job that becomes pending is published (after its commit); a
        // job that failed for good goes to the dead letters. A publish that fails (Redis
        // down) loses nothing: the job is pending in the database, and the reconciler
        // publishes it again. With Redis, events go through it too, so every dispatcher's
        // SSE clients follow every job.
        let (openedQueue, redis) = try await openQueue(settings.current.queue, clock: clock, logger: logger)
        let queue = wrapQueue?(openedQueue) ?? openedQueue
        let events: any EventBus = redis.map { client in
            RedisEventBus(client: client, keyPrefix: settings.current.queue.keyPrefix,
                          replayWindow: { settings.current.events.replayWindow }, logger: logger)
        } ?? InProcessEventBus(replayWindow: { settings.current.events.replayWindow }, clock: clock)
        if database.isShared && redis == nil {
            logger.notice("database.url is shared but queue.url is empty: each dispatcher schedules from its own in-process queue and events reach only its own clients; give every dispatcher the same redis:// queue.url")
        }
        let engines = try await EngineRegistry.open(database: relational, clock: clock, settings: {
            var e = EngineSettings()
            let now = settings.current.engines
            e.heartbeatTimeoutMilliseconds = now.heartbeatTimeoutSeconds * 1000
            e.offlineRetentionMilliseconds = now.offlineRetentionSeconds * 1000
            e.maxRegistered = now.maxRegistered
            return e
        }, events: events)
        // The scheduler is made after the job service (it reads jobs through it) and woken
        // by the pending hook: the job's event goes out before its queue message (so
        // JobCreated always precedes JobAssigned), and a round the event woke may have
        // found the queue still without the job; the wake after the publish settles it
        // at once instead of at the scheduler's 1-second backstop.
        let wakeScheduler = SchedulerWaker()
        let jobs = JobService(store: database.jobStore(), events: events, clock: clock,
                              settings: { JobSettings(settings.current.jobs) },
                              hooks: JobHooks(onPending: { ready in
                                  for job in ready {
                                      do { try await queue.publish(topic: Scheduler.topic, body: job.id.text) } catch {
                                          logger.warning("job \(job.id.text) not published (the reconciler will): \(error)")
                                      }
                                  }
                                  wakeScheduler.wake()
                              }, onDead: { job in
                                  try? await queue.deadLetter(topic: Scheduler.topic, body: job.id.text,
                                                              reason: "failed after \(job.attempts) attempt(s): \(job.reason ?? "failed")")
                              }))
        try await jobs.migrate()
        let storage = try await openStorage(settings.current.storage, dataDirectory: dataDirectory, shared: database.isShared,
                                              clock: clock, logger: logger)
        let files: FileService
        do {
            files = try await FileService.open(database: relational, storage: storage, settings: fileSettings(settings),
                                               clock: clock, logger: logger,
                                               // A bucket may hold other deployments' objects (a prefix set
                                               // wrong, a second dispatcher on SQLite): objects without a
                                               // row are left alone there, never removed at start.
                                               shared: database.isShared || storage is S3Storage)
        } catch {
            if let s3 = storage as? S3Storage { await s3.shutdown() }
            throw error
        }
        let scheduler = Scheduler(jobs: jobs, files: files, queue: queue, clock: clock, logger: logger,
                                  consumer: "scheduler-\(hostName())-\(getpid())",
                                  visibility: redis == nil ? .seconds(600) : .seconds(settings.current.queue.visibilitySeconds),
                                  weights: { settings.current.scheduler.tenantWeights })
        wakeScheduler.set(scheduler)
        let webhookTrust: TLSContext?
        if settings.current.webhooks.caFile.isEmpty { webhookTrust = nil } else {
            do { webhookTrust = try TLSContext(caFile: settings.current.webhooks.caFile) } catch {
                throw ConfigError(["webhooks.ca_file: \(error.message)"])
            }
        }
        let webhooks = try await WebhookService.open(database: relational, jobs: jobs, clock: clock,
                                                     settings: { webhookSettings(settings.current.webhooks) }, logger: logger,
                                                     resolve: webhookResolver, tls: webhookTrust)
        // With Redis: jobs and engines read by id are cached there, invalidated by the event
        // bus's publish of every change (docs/adr/0014-redis-record-cache.md).
        let ttl = settings.current.cache.ttlSeconds
        let recordCache = (events as? RedisEventBus).flatMap { bus in ttl > 0 ? RedisRecordCache(bus: bus, ttl: .seconds(ttl)) : nil }
        let server = DispatchServer(dataDirectory: dataDirectory, database: database, settings: settings, clock: clock,
                                    cursors: PageCursorKey(secret: secret), access: access, engines: engines, metrics: metrics,
                                    logger: logger, events: events, jobs: jobs, files: files, scheduler: scheduler,
                                    webhooks: webhooks, queue: queue, redis: redis, recordCache: recordCache)
        if let recordCache {
            metrics.onScrape { m in m.setRecordCache(recordCache.figures) }
        }
        if let ballast = server.ballast, await !ballast.ensure(keepFree: server.uploadReserveBytes) {
            logger.warning("cannot hold \(ballast.bytes >> 20) MiB beside the database at \(ballast.path) (no room?): a full disk may refuse even file deletes until room is made outside the server")
        }
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

    init(dataDirectory: String, database: DispatchDatabase, settings: LiveSettings, clock: any ServiceClock,
         cursors: PageCursorKey, access: AccessService, engines: EngineRegistry, metrics: ServerMetrics, logger: Logger,
         events: any EventBus, jobs: JobService, files: FileService, scheduler: Scheduler, webhooks: WebhookService,
         queue: any MessageQueue, redis: RedisClient?, recordCache: RedisRecordCache? = nil) {
        self.recordCache = recordCache
        if case .sqlite = database { ballast = DiskBallast(path: dataDirectory + "/spool.ballast") } else { ballast = nil }
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
        // Upload and download bytes: the file routes' and the engines' input and outputs.
        let transferCounters = FileTransferCounters(
            uploaded: { [metrics] n in metrics.recordUpload(bytes: Int(n)) },
            downloaded: { [metrics] n in metrics.recordDownload(bytes: Int(n)) })
        return Router(logger: logger) { r in
            r.use(StandardMiddleware.requestID())
            installMetrics(on: &r)
            SpoolAPI.install(on: &r, clock: clock, started: started)
            r.group("/api/" + SpoolAPI.version) { v1 in
                installOpenAPI(on: &v1)
                installReadiness(on: &v1)
                // Engines authenticate with their own token (or the join token to register).
                installEngineAPIRoutes(on: &v1, counters: transferCounters)
                installEngineUploadRoutes(on: &v1)
                // Everything after this line needs a key.
                installAuthentication(on: &v1)
                // With read replicas: which reads may use them, and each caller's own writes.
                if database.hasReplicas { v1.use(consistency.middleware()) }
                installAccessRoutes(on: &v1)
                installEngineRoutes(on: &v1)
                installFileRoutes(on: &v1, counters: transferCounters)
                installJobRoutes(on: &v1, fastLane: true)
                installWebhookRoutes(on: &v1)
            }
        }
    }

    func installReadiness(on v1: inout RouteBuilder) {
        v1.get("ready") { [database, files, self] _ in
            let db = await database.relational.isReachable()
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

/// The 32 bytes of a secret file an older version kept in the data directory, or nil
/// when there is none.
func readSecretFile(_ path: String) throws -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var buf = [UInt8](repeating: 0, count: 32)
    let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, 32) }
    if n == 32 { return buf }
    throw PersistenceError("\(path) is damaged (expected 32 bytes); delete it (existing list cursors stop working)")
}

/// 32 bytes from the system's generator.
func randomSecret() -> [UInt8] {
    var rng = SystemRandomNumberGenerator()
    return (0..<32).map { _ in rng.next() }
}

/// The scheduler as the job service's pending hook reaches it (set once it is made).
/// Weak: the scheduler holds the job service, which holds the hook.
final class SchedulerWaker: Sendable {
    private struct Weak: @unchecked Sendable { weak var scheduler: Scheduler? }
    private let held = Mutex(Weak())
    func set(_ s: Scheduler) { held.withLock { $0.scheduler = s } }
    func wake() { held.withLock { $0.scheduler }?.wake() }
}
