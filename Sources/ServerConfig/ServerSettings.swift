// ServerConfig.ServerSettings: every setting of the dispatch server, typed, with its
// default. The one place a limit, TTL or policy is defined: services take the part they
// use (Dispatch maps these into JobSettings, FileSettings, ...), so no constant is
// scattered. `reloadable` marks what SIGHUP and a changed file may change in a running
// server; the rest needs a restart.
//
// Keys (file JSON → environment → flag):
//   listen                           SPOOL_LISTEN                 --listen
//   data_dir                         SPOOL_DATA_DIR               --data-dir
//   loops                            SPOOL_LOOPS                  --loops
//   insecure_no_auth                 SPOOL_INSECURE_NO_AUTH       --insecure-no-auth
//   log_level                  (r)   SPOOL_LOG_LEVEL
//   jobs.default_ttl_seconds   (r)   SPOOL_JOBS_DEFAULT_TTL_SECONDS
//   jobs.max_attempts          (r)   SPOOL_JOBS_MAX_ATTEMPTS
//   jobs.retry_backoff_seconds (r)   SPOOL_JOBS_RETRY_BACKOFF_SECONDS
//   jobs.retry_backoff_max_seconds (r) SPOOL_JOBS_RETRY_BACKOFF_MAX_SECONDS
//   jobs.idempotency_retention_seconds (r) SPOOL_JOBS_IDEMPOTENCY_RETENTION_SECONDS
//   jobs.expiry_interval_ms    (r)   SPOOL_JOBS_EXPIRY_INTERVAL_MS
//   jobs.retry_jitter_percent  (r)   SPOOL_JOBS_RETRY_JITTER_PERCENT
//   files.max_file_bytes       (r)   SPOOL_FILES_MAX_FILE_BYTES
//   files.total_quota_bytes    (r)   SPOOL_FILES_TOTAL_QUOTA_BYTES
//   http.json_body_max_bytes   (r)   SPOOL_HTTP_JSON_BODY_MAX_BYTES
//   webhooks.timeout_seconds   (r)   SPOOL_WEBHOOKS_TIMEOUT_SECONDS
//   webhooks.allow_private_networks (r) SPOOL_WEBHOOKS_ALLOW_PRIVATE_NETWORKS
//   webhooks.allowed_networks  (r)   SPOOL_WEBHOOKS_ALLOWED_NETWORKS
//   webhooks.max_attempts      (r)   SPOOL_WEBHOOKS_MAX_ATTEMPTS
//   webhooks.retry_base_ms     (r)   SPOOL_WEBHOOKS_RETRY_BASE_MS
//   webhooks.ca_file                 SPOOL_WEBHOOKS_CA_FILE
//   events.replay_window       (r)   SPOOL_EVENTS_REPLAY_WINDOW
//   events.keepalive_seconds   (r)   SPOOL_EVENTS_KEEPALIVE_SECONDS
//   engines.join_token         (r)   SPOOL_ENGINES_JOIN_TOKEN (also SPOOL_JOIN_TOKEN)
//   engines.heartbeat_timeout_seconds (r) SPOOL_ENGINES_HEARTBEAT_TIMEOUT_SECONDS
//   engines.offline_retention_seconds (r) SPOOL_ENGINES_OFFLINE_RETENTION_SECONDS
//   engines.max_registered     (r)   SPOOL_ENGINES_MAX_REGISTERED
//   scheduler.tenant_weights   (r)   SPOOL_SCHEDULER_TENANT_WEIGHTS
//   queue.url                        SPOOL_QUEUE_URL              --queue-url
//   queue.key_prefix                 SPOOL_QUEUE_KEY_PREFIX
//   queue.visibility_seconds         SPOOL_QUEUE_VISIBILITY_SECONDS
//   queue.reconcile_interval_seconds (r) SPOOL_QUEUE_RECONCILE_INTERVAL_SECONDS
//   cache.ttl_seconds                SPOOL_CACHE_TTL_SECONDS
//   database.url                     SPOOL_DATABASE_URL           --database-url
//   database.max_connections         SPOOL_DATABASE_MAX_CONNECTIONS
//   database.job_shards              SPOOL_DATABASE_JOB_SHARDS
//   database.job_shard_layouts       SPOOL_DATABASE_JOB_SHARD_LAYOUTS
//   database.replicas                SPOOL_DATABASE_REPLICAS
//   database.replica_max_lag_ms      SPOOL_DATABASE_REPLICA_MAX_LAG_MS
//   storage.backend                  SPOOL_STORAGE_BACKEND        --storage
//   storage.s3_endpoint              SPOOL_STORAGE_S3_ENDPOINT
//   storage.s3_bucket                SPOOL_STORAGE_S3_BUCKET
//   storage.s3_region                SPOOL_STORAGE_S3_REGION
//   storage.s3_access_key_id         SPOOL_STORAGE_S3_ACCESS_KEY_ID
//   storage.s3_secret_access_key     SPOOL_STORAGE_S3_SECRET_ACCESS_KEY
//   storage.s3_prefix                SPOOL_STORAGE_S3_PREFIX
//   storage.s3_part_mib              SPOOL_STORAGE_S3_PART_MIB
//   storage.s3_parts_in_flight       SPOOL_STORAGE_S3_PARTS_IN_FLIGHT
//   storage.presign_seconds          SPOOL_STORAGE_PRESIGN_SECONDS
//   storage.cdn_base_url       (r)   SPOOL_STORAGE_CDN_BASE_URL
//   storage.cdn_secret         (r)   SPOOL_STORAGE_CDN_SECRET
//   storage.cdn_url_seconds    (r)   SPOOL_STORAGE_CDN_URL_SECONDS
#if canImport(Glibc)
import Glibc
#endif

public struct ServerSettings: Sendable, Equatable {
    public var listen = "127.0.0.1:8080"
    public var dataDirectory = "./spool-data"
    /// One event loop per core unless set.
    public var loops = max(1, min(256, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))))
    public var insecureNoAuth = false
    public var logLevel = "info"

    public var jobs = Jobs()
    public var files = Files()
    public var http = HTTP()
    public var webhooks = Webhooks()
    public var events = Events()
    public var engines = Engines()
    public var scheduler = Scheduler()
    public var queue = Queue()
    public var cache = Cache()
    public var database = Database()
    public var storage = Storage()

    public struct Jobs: Sendable, Equatable {
        /// A pending job not picked up in this time fails with reason `expired`.
        public var defaultTTLSeconds: Int64 = 86_400
        /// Attempts before a failure is final (1 = no automatic retry).
        public var maxAttempts = 3
        /// First retry waits this long; each further one twice as long, up to the max.
        public var retryBackoffSeconds: Int64 = 5
        public var retryBackoffMaxSeconds: Int64 = 300
        /// How long an Idempotency-Key's first answer is kept.
        public var idempotencyRetentionSeconds: Int64 = 86_400
        /// How often pending jobs are checked for expiry (and retries come due).
        public var expiryIntervalMilliseconds: Int64 = 1_000
        /// Each retry waits the backoff ± this percentage, at random.
        public var retryJitterPercent: Int64 = 20
        public init() {}
    }

    public struct Files: Sendable, Equatable {
        /// One upload at most (413 above it).
        public var maxFileBytes: Int64 = 10 << 30
        /// All stored files together at most (507 above it).
        public var totalQuotaBytes: Int64 = 100 << 30
        public init() {}
    }

    public struct HTTP: Sendable, Equatable {
        /// A JSON request body at most (413 above it).
        public var jsonBodyMaxBytes: Int64 = 1 << 20
        public init() {}
    }

    public struct Webhooks: Sendable, Equatable {
        public var timeoutSeconds: Int64 = 10
        /// Webhook URLs resolving to private, loopback or link-local addresses are refused
        /// unless this is set (tests and single-host set-ups).
        public var allowPrivateNetworks = false
        /// Addresses and CIDR networks webhooks may go to even though they are not public
        /// ("127.0.0.1/32,10.1.0.0/16"): an allow-list for in-house receivers.
        public var allowedNetworks = ""
        /// Attempts per delivery (5xx, timeouts and connection failures are retried).
        public var maxAttempts = 8
        /// The first retry waits about this long, each later one twice as long (±50 %).
        public var retryBaseMilliseconds: Int64 = 1_000
        /// The CAs (PEM) https:// receivers must be certified by; empty is the system's
        /// trust store.
        public var caFile = ""
        public init() {}
    }

    public struct Cache: Sendable, Equatable {
        /// With queue.url (Redis): how long a job's or engine's record stays cached in
        /// Redis for GET by id (every change removes it at once); 0 turns the cache off.
        public var ttlSeconds: Int64 = 30
        public init() {}
    }

    public struct Events: Sendable, Equatable {
        /// Events kept per job for SSE clients resuming with Last-Event-ID.
        public var replayWindow = 1_000
        /// Every this many seconds an open SSE stream sends a comment line, so proxies and
        /// clients do not take a quiet job for a dead connection.
        public var keepAliveSeconds = 15
        public init() {}
    }

    public struct Engines: Sendable, Equatable {
        /// A shared secret engines present to register (empty: only an admin key registers
        /// engines). At least 16 characters.
        public var joinToken = ""
        /// An engine silent this long is offline and the jobs it held are taken back.
        public var heartbeatTimeoutSeconds: Int64 = 15
        /// An offline engine silent this long is forgotten (it registers anew if it returns).
        public var offlineRetentionSeconds: Int64 = 604_800
        /// Engine records kept at most (a registration past it forgets the engine offline
        /// the longest, or is refused with 503 when none is offline).
        public var maxRegistered = 10_000
        public init() {}
    }

    public struct Queue: Sendable, Equatable {
        /// Empty: the in-process queue. `redis://[[user]:password@]host[:port][/db]`: Redis
        /// Streams, shared by every dispatcher given the same URL and key prefix.
        public var url = ""
        /// Keys are PREFIX:q:TOPIC and PREFIX:dlq:TOPIC (several clusters on one Redis).
        public var keyPrefix = "spool"
        /// How long a job the scheduler took stays its own without being extended: after a
        /// dispatcher dies, its held jobs go to another dispatcher after this long.
        public var visibilitySeconds: Int64 = 60
        /// How often the pending jobs in the database are compared with what the queue
        /// holds, and the missing ones published again (after Redis lost data).
        public var reconcileIntervalSeconds: Int64 = 10
        public init() {}
    }

    public struct Database: Sendable, Equatable {
        /// Empty: SQLite in the data directory (one dispatcher). `postgres://user[:password]@
        /// host[:port]/db`: PostgreSQL, shared by every dispatcher given the same URL.
        public var url = ""
        /// The PostgreSQL connection pool's size at most (per dispatcher, per database).
        public var maxConnections = 8
        /// Empty: jobs live in `url`. Otherwise 2 or more comma-separated postgres:// URLs:
        /// each job lives on the one its id hashes to (files, engines, keys and the rest stay
        /// in `url`, which may also be listed here).
        public var jobShards = ""
        /// Empty: every job shard from the start. "COUNT@MILLISECONDS,...": jobs whose id was
        /// made from that time on spread over the first COUNT shards (how a shard is added).
        public var jobShardLayouts = ""
        /// Empty: every read on the primary. Otherwise comma-separated HOST:PORT of streaming
        /// replicas of the server in `url` (same databases, users and passwords): GETs of
        /// jobs, files and engines read there, each caller's own writes excepted until
        /// replayed. Databases on another server (a shard elsewhere) read on their primary.
        public var replicas = ""
        /// A replica lagging more than this (or not answering) takes no reads.
        public var replicaMaxLagMilliseconds: Int64 = 5_000
        /// The replica addresses, in order.
        public var replicaAddresses: [String] {
            replicas.isEmpty ? [] : replicas.split(separator: ",").map { $0.trimmingSpaces }
        }
        /// The job shard URLs, in order.
        public var jobShardURLs: [String] {
            jobShards.isEmpty ? [] : jobShards.split(separator: ",").map { $0.trimmingSpaces }
        }
        public init() {}
    }

    public struct Storage: Sendable, Equatable {
        /// "local": files under the data directory. "s3": an S3-compatible object store
        /// (the s3_* keys), shared by every dispatcher given the same bucket and prefix.
        public var backend = "local"
        /// http(s)://host[:port] of the store (path-style requests).
        public var s3Endpoint = ""
        public var s3Bucket = ""
        public var s3Region = "us-east-1"
        public var s3AccessKeyID = ""
        public var s3SecretAccessKey = ""
        /// Put before every object key ("spool/"): several deployments may share a bucket.
        public var s3Prefix = ""
        /// Multipart part size (S3 takes 5 MiB at least).
        public var s3PartMiB = 16
        /// Parts of one upload travelling at once.
        public var s3PartsInFlight = 2
        /// How long a presigned URL handed to a client or engine stays valid.
        public var presignSeconds: Int64 = 900
        /// With S3: the URL outputs are published under in job results (a CDN, or the
        /// gateway's media edge: https://HOST:PORT/media), the object key appended. Empty:
        /// results name /api/v1/files/{id}.
        public var cdnBaseURL = ""
        /// The edge's secure_link secret: results' CDN URLs are signed and expire. Empty:
        /// unsigned URLs.
        public var cdnSecret = ""
        /// How long a signed CDN URL stays valid after the job completed.
        public var cdnURLSeconds: Int64 = 604_800
        public init() {}
    }

    public struct Scheduler: Sendable, Equatable {
        /// "tenant=weight,..." (positive numbers; a tenant not listed weighs 1): the shares
        /// of engine time tenants get while they all have work waiting.
        public var tenantWeights = ""
        public init() {}
    }

    public init() {}
}
