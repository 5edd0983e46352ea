// swift-tools-version:6.2
// Spool: a distributed video transcoding system. This manifest builds the runtime
// (CShims/CURing, BufferPool, Ring), HTTP/JSON, the domain model and transcoder contract
// (SpoolModel, TranscodeAPI), Media (libav), and the `spool` executable. Benchmarks live in
// their own package under Benchmarks/ so the product never depends on a harness.
import PackageDescription

/// A nonisolated async function runs on its caller's executor (SE-0461) instead of hopping
/// to the generic one at every call and return. Every request task runs on its event loop
/// (an executor preference), so the hop never moved work anywhere, but each one cost a
/// `swift_task_switch` that looks up the task's preferred executor under a lock: about 9 %
/// of the server's CPU on a small GET. On for the modules a request passes through.
let callerIsolatedAsync = SwiftSetting.enableUpcomingFeature("NonisolatedNonsendingByDefault")

/// Release builds of the modules every request runs through on the loop thread (BufferPool,
/// Ring, HTTP1, Web) leave out the run-time exclusivity checks: each access to a class's
/// stored property called swift_beginAccess and kept a thread-local access set, about 3 %
/// of the server's CPU on a job poll (docs/adr/0019, addendum 2). The static checks stay,
/// and debug builds, which every test runs, keep the run-time ones, so an overlapping
/// access is still caught there. Other modules keep them in release too.
let uncheckedExclusivity = SwiftSetting.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))

let package = Package(
    name: "Spool",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "spool", targets: ["SpoolCLI"]),
        .library(name: "BufferPool", targets: ["BufferPool"]),
        .library(name: "Ring", targets: ["Ring"]),
        .library(name: "HTTP1", targets: ["HTTP1"]),
        .library(name: "Web", targets: ["Web"]),
        .library(name: "JSON", targets: ["JSON"]),
        .library(name: "Media", targets: ["Media"]),
        // For Benchmarks/ (SchedulerBench drives the dispatcher's services directly).
        .library(name: "Dispatcher", targets: ["Dispatcher"]),
        // For Benchmarks/ (PostgresBench measures the pool against a C libpq loop).
        .library(name: "Postgres", targets: ["Postgres"]),
        // For Benchmarks/ (S3Bench measures S3Storage against boto3 on the same server).
        .library(name: "S3", targets: ["S3"]),
        .library(name: "Storage", targets: ["Storage"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        // The dispatch server's services: SQLite through GRDB (WAL, one writer, a pool of
        // readers, migrations), SHA-256 and key hashing from swift-crypto, configuration from
        // file + environment + flags, and Prometheus text from swift-metrics.
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-configuration", from: "1.4.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // The only door to liburing. Its public header includes nothing but <stdint.h>,
        // <stddef.h> and <sys/types.h>, so it never clashes with Glibc/Foundation/swift-system.
        .target(
            name: "CURing",
            path: "CShims/CURing",
            cSettings: [.define("_GNU_SOURCE")],
            linkerSettings: [.linkedLibrary("uring")]
        ),
        // The process's first act (a constructor, before main and before any thread):
        // descriptors 0-2 open, SIGTERM/SIGINT/SIGHUP blocked for Lifecycle, SIGPIPE ignored.
        .target(name: "CProcessStart", path: "CShims/CProcessStart"),
        // The only door to confined children: fork/exec with rlimits, the seccomp filter
        // (a BPF program, also handed to bubblewrap) and Landlock rulesets.
        .target(name: "CSandbox", path: "CShims/CSandbox"),
        // The transcoder plugin ABI (include/spool_plugin.h, versioned): what plugin authors
        // build against. Only Plugins imports it.
        .target(name: "CPlugin", path: "CShims/CPlugin"),
        // The only door to OpenSSL's libssl (Debian's libssl-dev): TLS client sessions over
        // memory buffers, for the HTTP client. Only TLS imports it.
        .target(name: "CTLS", path: "CShims/CTLS", linkerSettings: [.linkedLibrary("ssl"), .linkedLibrary("crypto")]),
        // Client TLS as a state machine (no I/O): verified peers, TLS 1.2 at least.
        .target(name: "TLS", dependencies: ["CTLS"], path: "Sources/TLS", swiftSettings: [.strictMemorySafety()]),
        // Linux headers the epoll fallback needs that Glibc's Swift module leaves out.
        .target(name: "CEpoll", path: "CShims/CEpoll"),
        // The only door to FFmpeg 5.1 (libavformat, libavcodec, libavutil, libswscale,
        // libswresample): macro wrappers, AVIO and log trampolines. Only Media imports it.
        // pkg-config's include dir (/usr/include/x86_64-linux-gnu) is on clang's multiarch path.
        .target(
            name: "CLibAV",
            path: "CShims/CLibAV",
            linkerSettings: [
                .linkedLibrary("avformat"), .linkedLibrary("avcodec"), .linkedLibrary("avutil"),
                .linkedLibrary("swscale"), .linkedLibrary("swresample"),
            ]
        ),
        // How a process starts and stops: one thread takes the stop signals (graceful
        // first, immediate second) for every long-running command.
        .target(name: "Lifecycle", dependencies: ["CProcessStart", "Threads"], path: "Sources/Lifecycle", swiftSettings: [.strictMemorySafety()]),
        // OS threads: one spawn primitive, a condition lock, the bounded blocking pool
        // every blocking call goes through (DNS, epoll-backend file I/O, databases), and the
        // one monotonic clock services are given (MonotonicClock: system or manual).
        .target(name: "Threads", path: "Sources/Threads", swiftSettings: [.strictMemorySafety()]),
        // The one reader of /proc and /sys, with parsers for the files Spool reads.
        .target(name: "ProcFS", path: "Sources/ProcFS", swiftSettings: [.strictMemorySafety()]),
        .target(
            name: "BufferPool",
            path: "Sources/BufferPool",
            swiftSettings: [.strictMemorySafety(), uncheckedExclusivity]
        ),
        // Pure: bytes in, request heads and body framing out; serializer. Imports nothing
        // above the standard library, so it is easy to fuzz and benchmark.
        .target(name: "HTTP1", path: "Sources/HTTP1", swiftSettings: [uncheckedExclusivity]),
        // Stage 1 of the JSON parser as a C kernel (AVX2 + PCLMULQDQ, chosen at run time):
        // no library, no system call; only JSON imports it.
        .target(name: "CJSONScan", path: "CShims/CJSONScan"),
        // simdjson-style JSON (SIMD structural index, on-demand reading, strict RFC 8259),
        // a writer into any byte sink, and a typed layer. Standard library and CJSONScan only.
        .target(name: "JSON", dependencies: ["CJSONScan"], path: "Sources/JSON", swiftSettings: [.strictMemorySafety()]),
        .target(
            name: "Ring",
            dependencies: [
                "CURing", "CEpoll", "BufferPool", "Threads", "ProcFS",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Ring",
            swiftSettings: [.strictMemorySafety(), uncheckedExclusivity]
        ),
        // The seeded simulator: an IOBackend with in-memory sockets, files and timers,
        // simulated time and injected faults, on which the real loop, server and client run
        // (tests only; nothing in the product links it). Uses Ring's package-level backend API.
        .target(name: "Simulation", dependencies: ["Ring", "BufferPool", "Threads",
                                                   .product(name: "Logging", package: "swift-log")],
                path: "Sources/Simulation", swiftSettings: [.strictMemorySafety()]),
        // HTTP/1.1 server (router, standard errors) and client on Ring, parsing with HTTP1;
        // every timeout reads the loop's clock (Threads.MonotonicClock).
        .target(
            name: "Web",
            dependencies: [
                "Ring", "BufferPool", "HTTP1", "JSON", "Threads", "TLS",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Web",
            swiftSettings: [uncheckedExclusivity]
        ),
        // Safe Swift over libav: probe, synthesize test media, transcode (files and streams,
        // ladders); implements TranscodeAPI's plugin. The only importer of CLibAV.
        .target(
            name: "Media",
            dependencies: [
                "CLibAV", "JSON", "Threads", "SpoolModel", "TranscodeAPI",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Media",
            swiftSettings: [.strictMemorySafety()]
        ),
        .executableTarget(
            name: "SpoolCLI",
            dependencies: [
                "Ring", "BufferPool", "Web", "Media", "JSON", "Lifecycle", "SpoolModel", "TranscodeAPI", "Threads",
                "HostMetrics", "SpoolAPI", "Dispatcher", "ServerConfig", "EngineRuntime", "Jobs", "CProcessStart", "Sandbox", "Plugins", "Gateway", "Cluster", "TLS", "ProcFS", "Access",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/SpoolCLI",
            swiftSettings: [.strictMemorySafety()]
        ),
        // The domain model every service shares: ids, job states and their transition
        // table, error codes, transcode settings and presets, number formatting. Pure
        // Swift: no libav, no runtime.
        .target(name: "SpoolModel", path: "Sources/SpoolModel"),
        // The transcoder contract: the plugin protocols, job/progress/result/quality types,
        // byte streams, capabilities, resource samples, with their JSON. No libav.
        .target(name: "TranscodeAPI", dependencies: ["SpoolModel", "JSON"], path: "Sources/TranscodeAPI", swiftSettings: [.strictMemorySafety()]),
        // The engine's view of its machine from /proc (TranscodeAPI's ResourceMonitorPlugin).
        .target(name: "HostMetrics", dependencies: ["TranscodeAPI", "ProcFS"], path: "Sources/HostMetrics", swiftSettings: [.strictMemorySafety()]),
        // The HTTP API's routes (/api/v1), installed on a Web Router by `spool serve`.
        .target(name: "SpoolAPI", dependencies: ["Web", "JSON", "SpoolModel", "Threads"], path: "Sources/SpoolAPI"),
        // --- The dispatch server's services (issue 11). Each owns its tables and migrations;
        // none imports another. Stores are protocols with the SQLite implementation behind.
        // SQLite through GRDB: WAL, synchronous=FULL, foreign keys, one writer and a pool of
        // readers; every call runs on the blocking pool, never on a ring thread.
        .target(name: "Persistence", dependencies: ["Threads", "Lifecycle", "ProcFS", .product(name: "GRDB", package: "GRDB.swift")],
                path: "Sources/Persistence"),
        // The event bus (in-process now, Redis later): job and engine events, with a replay
        // window per stream so SSE clients resume from Last-Event-ID.
        .target(name: "Events", dependencies: ["SpoolModel", "JSON", "Threads"], path: "Sources/Events"),
        // Jobs: the job record, its state machine hooks, idempotency keys, pagination
        // cursors and TTL expiry, over a JobStore (SQLite now).
        .target(name: "Jobs", dependencies: ["SpoolModel", "JSON", "Threads", "Persistence", "Postgres", "Events",
                                             .product(name: "GRDB", package: "GRDB.swift"),
                                             .product(name: "Crypto", package: "swift-crypto")],
                path: "Sources/Jobs", swiftSettings: [callerIsolatedAsync]),
        // Engines: the registry of engine records (capabilities, load, heartbeats, state).
        .target(name: "Engines", dependencies: ["SpoolModel", "JSON", "Threads", "Relational", "Events",
                                                .product(name: "Crypto", package: "swift-crypto")],
                path: "Sources/Engines"),
        // StorageProvider and its local-disk implementation: streamed writes into a private
        // temp file, fsync, rename, directory fsync; SHA-256 while streaming.
        .target(name: "Storage", dependencies: ["Ring", "BufferPool", "SpoolModel", "Threads", "ProcFS",
                                                .product(name: "Crypto", package: "swift-crypto")],
                path: "Sources/Storage"),
        // S3: SigV4 signing, the S3 REST calls on Web.HTTPClient (retries, errors), and the
        // StorageProvider on an S3-compatible store (multipart writes, presigned reads).
        .target(name: "S3", dependencies: ["Storage", "Web", "Ring", "SpoolModel", "Threads",
                                           .product(name: "Crypto", package: "swift-crypto")],
                path: "Sources/S3", swiftSettings: [.strictMemorySafety()]),
        // Files: uploaded media by id (metadata, checksums, quotas) over a StorageProvider.
        .target(name: "Files", dependencies: ["SpoolModel", "JSON", "Threads", "Relational", "Storage", "HTTP1",
                                              .product(name: "Logging", package: "swift-log")],
                path: "Sources/Files"),
        // Access: API keys (stored hashed), tenants, admin keys.
        .target(name: "Access", dependencies: ["SpoolModel", "JSON", "Threads", "Relational",
                                               .product(name: "Crypto", package: "swift-crypto")],
                path: "Sources/Access", swiftSettings: [callerIsolatedAsync]),
        // The MessageQueue protocol (at-least-once: publish, receive with visibility, ack,
        // nack to requeue or dead-letter, delivery counts) and its in-process implementation.
        .target(name: "MessageQueue", dependencies: ["Threads"], path: "Sources/MessageQueue"),
        // RESP2, the Redis protocol, as a pure codec (fuzzed: Fuzz/FuzzRESP); the Redis
        // client on the ring (pipelined, blocking commands on their own connections); and
        // the MessageQueue over Redis Streams.
        .target(name: "RESP", path: "Sources/RESP", swiftSettings: [.strictMemorySafety()]),
        .target(name: "Redis", dependencies: ["RESP", "Ring", "BufferPool", "Threads",
                                              .product(name: "Crypto", package: "swift-crypto")],
                path: "Sources/Redis"),
        .target(name: "RedisQueue", dependencies: ["MessageQueue", "Redis", "RESP", "Threads"], path: "Sources/RedisQueue"),
        // The only door to libpq (Debian's libpq-dev; pkg-config gives its include dir).
        .systemLibrary(name: "CLibPQ", path: "CShims/CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        // PostgreSQL for the services a shared database serves: connections on the blocking
        // pool, a bounded pool with health checks, transactions, migrations.
        .target(name: "Postgres", dependencies: ["CLibPQ", "Threads"], path: "Sources/Postgres"),
        // `spool cluster up|status|down`: PostgreSQL, Redis, dispatchers, the gateway and
        // engines as detached processes on loopback, and DIR/cluster.json.
        .target(name: "Cluster", dependencies: ["Postgres", "JSON", "Ring", "Web", "ProcFS"], path: "Sources/Cluster"),
        // One SQL surface over both: services that are not the hot path (access, engines,
        // files, webhooks) write each query once and run on SQLite or PostgreSQL.
        .target(name: "Relational", dependencies: ["Persistence", "Postgres", .product(name: "GRDB", package: "GRDB.swift")],
                path: "Sources/Relational"),
        // Job and engine events shared by several dispatchers over Redis Streams (one reader
        // per process fanning out to its SSE subscribers).
        .target(name: "RedisEvents", dependencies: ["Events", "Redis", "RESP", "Threads",
                                                    .product(name: "Logging", package: "swift-log")],
                path: "Sources/RedisEvents"),
        // Pure scheduling policy: weighted fair shares of engine time across tenants, by the
        // work (pixels × frames) each job asks for; used by the dispatcher and the simulation.
        .target(name: "Scheduling", path: "Sources/Scheduling"),
        // The server's one typed configuration: file < SPOOL_* environment < flags, validated,
        // safe keys reloaded on SIGHUP and when the file changes.
        .target(name: "ServerConfig", dependencies: ["SpoolModel", "Threads", "JSON", "Scheduling", "ProcFS",
                                                     .product(name: "Logging", package: "swift-log"),
                                                     .product(name: "Configuration", package: "swift-configuration")],
                path: "Sources/ServerConfig"),
        // The dispatch server: REST routes under /api/v1, OpenAPI document, auth, metrics,
        // and the wiring of the services onto a Web router.
        .target(name: "Dispatcher", dependencies: [
                    "Web", "Ring", "JSON", "SpoolModel", "SpoolAPI", "Threads", "Persistence", "Postgres", "Relational", "Events",
                    "Jobs", "Engines", "Storage", "Files", "Access", "ServerConfig", "Scheduling", "Webhooks", "MessageQueue",
                    "Redis", "RedisQueue", "RedisEvents", "TLS", "S3",
                    .product(name: "Logging", package: "swift-log"),
                    .product(name: "Metrics", package: "swift-metrics"),
                    .product(name: "Prometheus", package: "swift-prometheus"),
                    .product(name: "Crypto", package: "swift-crypto"),
                ],
                path: "Sources/Dispatcher", swiftSettings: [callerIsolatedAsync]),
        // A transcoding engine: registration, heartbeats, leases (long-poll over HTTP), the
        // data path (input down, outputs up), backpressure, draining; transcodes behind the
        // TranscodeRunner interface: each transcode in a sandboxed child (`spool worker`), or
        // in-process (tests, --sandbox off).
        .target(name: "EngineRuntime", dependencies: ["Web", "Ring", "JSON", "Jobs", "SpoolModel", "TranscodeAPI", "Threads", "ProcFS", "Persistence", "Sandbox",
                                                       .product(name: "GRDB", package: "GRDB.swift"),
                                                       .product(name: "Crypto", package: "swift-crypto"),
                                                       .product(name: "Logging", package: "swift-log")],
                path: "Sources/EngineRuntime"),
        // Sandbox: confined child processes (bubblewrap namespaces or a direct child under
        // Landlock; rlimits and the seccomp filter in both), and the probe of what this
        // machine offers. The only importer of CSandbox.
        .target(name: "Sandbox", dependencies: ["CSandbox", "ProcFS", "Threads"], path: "Sources/Sandbox"),
        // The nginx gateway as values: settings, the rendered configuration, the openssl
        // steps for its CA and server certificate. Pure; `spool gateway` runs them.
        .target(name: "Gateway", path: "Sources/Gateway", swiftSettings: [.strictMemorySafety()]),
        // Plugins: transcoder plugins through the C ABI: loading .so files (dlopen, ABI and
        // table checks), driving a job through a table, the built-in transcoder as a table,
        // and the worker (`spool worker`, the sandboxed child) that runs every job that way.
        .target(name: "Plugins", dependencies: ["CPlugin", "EngineRuntime", "JSON", "Jobs", "ProcFS", "SpoolModel", "Threads", "TranscodeAPI"],
                path: "Sources/Plugins"),
        // Webhooks: deliveries of finished jobs to their webhook URLs, signed (Standard
        // Webhooks), retried with backoff, logged per job; the SSRF guard on every address dialed.
        .target(name: "Webhooks", dependencies: ["Web", "Ring", "JSON", "Jobs", "Events", "Relational", "SpoolModel", "Threads", "TLS",
                                                 .product(name: "Crypto", package: "swift-crypto"),
                                                 .product(name: "Logging", package: "swift-log")],
                path: "Sources/Webhooks"),
        // Helpers shared by the test targets (seeded randomness, subprocesses).
        .target(name: "SpoolTestSupport", dependencies: ["ProcFS"], path: "Tests/SpoolTestSupport"),
        // Also compiles Tests/CompileFail against the built module (ownership misuse must fail).
        .testTarget(name: "BufferPoolTests", dependencies: ["BufferPool", "SpoolTestSupport"]),
        // Imports the model and not Media: proves a dispatcher can do without libav.
        .testTarget(name: "SpoolModelTests", dependencies: ["SpoolModel", "SpoolTestSupport"]),
        .testTarget(name: "HTTP1Tests", dependencies: ["HTTP1", "SpoolTestSupport"]),
        .testTarget(name: "JSONTests", dependencies: ["JSON", "SpoolTestSupport"]),
        .testTarget(name: "WebTests", dependencies: ["Web", "Ring", "HTTP1", "ProcFS", "SpoolTestSupport", "TLS",
                                               .product(name: "Crypto", package: "swift-crypto")]),
        .testTarget(name: "MediaTests", dependencies: ["Media", "JSON", "SpoolModel", "TranscodeAPI", "SpoolTestSupport"]),
        // The contract without Media: a fake plugin, JSON round trips, /proc parsing, the API's bodies.
        .testTarget(name: "TranscodeAPITests", dependencies: ["TranscodeAPI", "SpoolModel", "JSON", "HostMetrics", "ProcFS", "SpoolAPI", "Threads", "Web"]),
        // The real `spool` binary driven from /bin/sh: signals, exit statuses, descriptors.
        .testTarget(name: "CLITests", dependencies: ["SpoolTestSupport"]),
        // Hundreds of seeded runs of server + client traffic on the simulator (one pass is
        // enough: the simulator replaces the backend). SPOOL_SIM_SEED / SPOOL_SIM_SEEDS.
        .testTarget(name: "SimulationTests", dependencies: ["Simulation", "Web", "Ring", "BufferPool", "Threads", "SpoolTestSupport"]),
        .testTarget(name: "RESPTests", dependencies: ["RESP", "SpoolTestSupport"]),
        // Against a real redis-server started by the tests (SpoolTestSupport.RedisServer).
        .testTarget(name: "RedisTests", dependencies: ["Redis", "RedisQueue", "RedisEvents", "Events", "RESP", "MessageQueue", "Threads", "SpoolTestSupport"]),
        .testTarget(name: "SchedulingTests", dependencies: ["Scheduling", "MessageQueue", "Threads"]),
        // The scheduler, leases, heartbeats and sweeps with 100 simulated engines over seeds
        // (SPOOL_FLEET_SEEDS / SPOOL_FLEET_SEED).
        .testTarget(name: "FleetSimulationTests", dependencies: ["Dispatcher", "Engines", "Jobs", "ServerConfig", "SpoolModel", "Threads", "SpoolTestSupport",
                                                                 .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "WebhooksTests", dependencies: ["Webhooks", "Jobs", "Events", "Persistence", "Web", "Ring", "JSON", "SpoolModel", "Threads",
                                                         "TLS", "SpoolTestSupport", "Relational",
                                                         .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "PersistenceTests", dependencies: ["Persistence", .product(name: "GRDB", package: "GRDB.swift")]),
        .testTarget(name: "JobsTests", dependencies: ["Jobs", "Persistence", "Postgres", "Events", "SpoolModel", "JSON", "Threads", "SpoolTestSupport"]),
        .testTarget(name: "EnginesTests", dependencies: ["Engines", "Persistence", "Postgres", "Relational", "Events", "JSON", "SpoolModel", "Threads", "SpoolTestSupport"]),
        .testTarget(name: "FilesTests", dependencies: ["Files", "Storage", "Persistence", "Ring", "BufferPool", "SpoolModel", "Threads", "SpoolTestSupport",
                                                      .product(name: "Crypto", package: "swift-crypto"),
                                                      .product(name: "Logging", package: "swift-log")]),
        // Against a real S3-compatible server (moto, SpoolTestSupport.S3TestServer).
        .testTarget(name: "S3Tests", dependencies: ["S3", "Storage", "Web", "Ring", "SpoolModel", "Threads", "SpoolTestSupport",
                                                   .product(name: "Crypto", package: "swift-crypto")]),
        .testTarget(name: "AccessTests", dependencies: ["Access", "Persistence", "Postgres", "Relational", "SpoolModel", "Threads", "SpoolTestSupport"]),
        .testTarget(name: "ServerConfigTests", dependencies: ["ServerConfig", "SpoolModel", "Threads", "SpoolTestSupport"]),
        // The dispatch server in-process on loopback: every endpoint through the real client.
        .testTarget(name: "DispatcherTests", dependencies: ["Dispatcher", "Web", "Ring", "JSON", "SpoolModel", "Threads", "Persistence",
                                                          "Jobs", "Engines", "Files", "Storage", "Access", "ServerConfig", "Events", "Redis", "RedisEvents", "SpoolTestSupport", "MessageQueue",
                                                          "EngineRuntime",
                                                          .product(name: "GRDB", package: "GRDB.swift"),
                                                          .product(name: "Crypto", package: "swift-crypto"),
                                                          .product(name: "Logging", package: "swift-log")]),
        // Against a real PostgreSQL started by the tests (SpoolTestSupport.PostgresServer).
        .testTarget(name: "PostgresTests", dependencies: ["Postgres", "Relational", "Persistence", "Threads", "SpoolTestSupport"]),
        // The rendered nginx configuration, checked by the real nginx -t and openssl verify.
        .testTarget(name: "GatewayTests", dependencies: ["Gateway", "Sandbox", "JSON", "SpoolTestSupport"], path: "Tests/GatewayTests"),
        // The sandboxed runner against hostile workers (C programs built at test time) and
        // the real `spool worker`: escapes refused, crashes and hangs survived.
        .testTarget(name: "SandboxTests", dependencies: ["EngineRuntime", "Sandbox", "Plugins", "Jobs", "SpoolModel", "TranscodeAPI", "SpoolTestSupport"],
                    exclude: ["hostile_worker.c", "test_plugin.c"]),
        .testTarget(name: "RingTests", dependencies: ["Ring", "BufferPool", "CURing", "Threads", "ProcFS", "SpoolTestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)

// SPOOL_ONLY_TESTS=A,B keeps those test targets and only what they depend on (the ASan leak
// check builds MediaTests' closure, not the whole package: minutes less of CI).
if let only = Context.environment["SPOOL_ONLY_TESTS"] {
    let byName = Dictionary(uniqueKeysWithValues: package.targets.map { ($0.name, $0) })
    var keep = Set<String>()
    var todo = only.split(separator: ",").map(String.init)
    while let name = todo.popLast() {
        guard let target = byName[name], keep.insert(name).inserted else { continue }
        for dependency in target.dependencies {
            switch dependency {
            case .targetItem(let name, _), .byNameItem(let name, _): todo.append(name)
            default: break
            }
        }
    }
    package.targets = package.targets.filter { keep.contains($0.name) }
    // Library products are named after their one target; the `spool` executable goes.
    package.products = package.products.filter { keep.contains($0.name) }
}
