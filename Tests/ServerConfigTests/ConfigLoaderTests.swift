// ServerConfig: precedence (file < SPOOL_* environment < flags) key by key, messages that
// name the key, the source and the fix, unknown and duplicate keys in the file, and a
// malformed file reported with its line and column; secrets never printed.
import Foundation
@testable import ServerConfig
import XCTest

final class ConfigLoaderTests: XCTestCase {
    func writeTemp(_ text: String, name: String = "spool.json") throws -> String {
        let dir = NSTemporaryDirectory() + "spool-config-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/" + name
        try text.write(toFile: path, atomically: false, encoding: .utf8)
        return path
    }

    func problems(_ loader: ConfigLoader) -> [String] {
        do { _ = try loader.load(); return [] } catch { return error.problems }
    }

    func testDefaultsWithNoSource() throws {
        XCTAssertEqual(try ConfigLoader(environment: [:]).load(), ServerSettings())
    }

    func testFileThenEnvironmentThenFlagsForSeveralKeys() throws {
        let path = try writeTemp("""
        {"listen": "127.0.0.1:9001", "loops": 2, "log_level": "debug",
         "jobs": {"max_attempts": 5, "default_ttl_seconds": 600},
         "webhooks": {"allow_private_networks": true}, "events": {"replay_window": 50}}
        """)
        let env = ["SPOOL_LOOPS": "3", "SPOOL_JOBS_MAX_ATTEMPTS": "7", "SPOOL_LOG_LEVEL": "warning",
                   "SPOOL_WEBHOOKS_ALLOW_PRIVATE_NETWORKS": "false", "HOME": "/root"]
        let flags = ["loops": "4", "listen": "127.0.0.1:0", "insecure_no_auth": "true"]

        let fileOnly = try ConfigLoader(filePath: path, environment: [:]).load()
        XCTAssertEqual(fileOnly.listen, "127.0.0.1:9001")
        XCTAssertEqual(fileOnly.loops, 2)
        XCTAssertEqual(fileOnly.jobs.maxAttempts, 5)
        XCTAssertEqual(fileOnly.jobs.defaultTTLSeconds, 600)
        XCTAssertTrue(fileOnly.webhooks.allowPrivateNetworks)
        XCTAssertEqual(fileOnly.logLevel, "debug")

        let withEnv = try ConfigLoader(filePath: path, environment: env).load()
        XCTAssertEqual(withEnv.loops, 3)
        XCTAssertEqual(withEnv.jobs.maxAttempts, 7)
        XCTAssertEqual(withEnv.logLevel, "warning")
        XCTAssertFalse(withEnv.webhooks.allowPrivateNetworks)
        XCTAssertEqual(withEnv.listen, "127.0.0.1:9001", "a key the environment does not set keeps the file's value")
        XCTAssertEqual(withEnv.events.replayWindow, 50)

        let all = try ConfigLoader(filePath: path, environment: env, flags: flags).load()
        XCTAssertEqual(all.loops, 4)
        XCTAssertEqual(all.listen, "127.0.0.1:0")
        XCTAssertTrue(all.insecureNoAuth)
        XCTAssertEqual(all.jobs.maxAttempts, 7, "no flag: the environment's value")
        XCTAssertEqual(all.jobs.defaultTTLSeconds, 600, "only the file sets it")
        XCTAssertEqual(all.files.maxFileBytes, ServerSettings().files.maxFileBytes, "nobody sets it: the default")
    }

    func testEnvironmentOutOfRangeNamesKeySourceAndFix() {
        let p = problems(ConfigLoader(environment: ["SPOOL_JOBS_MAX_ATTEMPTS": "0"]))
        XCTAssertEqual(p, ["jobs.max_attempts = 0 (from SPOOL_JOBS_MAX_ATTEMPTS): must be an integer in 1...100"])
    }

    func testEveryProblemIsReportedAtOnceWithItsSource() throws {
        let path = try writeTemp(#"{"jobs": {"max_attempts": "three"}, "log_level": "loud"}"#)
        let p = problems(ConfigLoader(filePath: path, environment: ["SPOOL_LOOPS": "many", "SPOOL_WEBHOOKS_TIMEOUT_SECONDS": "0"],
                                      flags: ["listen": "nowhere"]))
        XCTAssertTrue(p.contains("listen = \"nowhere\" (from --listen): must be HOST:PORT with a port from 0 to 65535 (e.g. 127.0.0.1:8080 or [::1]:8080)"), "\(p)")
        XCTAssertTrue(p.contains("loops = \"many\" (from SPOOL_LOOPS): must be an integer in 1...256"), "\(p)")
        XCTAssertTrue(p.contains("webhooks.timeout_seconds = 0 (from SPOOL_WEBHOOKS_TIMEOUT_SECONDS): must be an integer in 1...300"), "\(p)")
        XCTAssertTrue(p.contains("jobs.max_attempts = \"three\" (from file \(path)): must be an integer in 1...100"), "\(p)")
        XCTAssertTrue(p.contains { $0.hasPrefix("log_level = \"loud\" (from file \(path)): must be one of trace, debug, info") }, "\(p)")
        XCTAssertEqual(p.count, 5, "\(p)")
    }

    func testAWebhookTrustFileThatCannotBeReadIsRefused() throws {
        let p = problems(ConfigLoader(environment: ["SPOOL_WEBHOOKS_CA_FILE": "/nonexistent/ca.pem"]))
        XCTAssertEqual(p, ["webhooks.ca_file = \"/nonexistent/ca.pem\" (from SPOOL_WEBHOOKS_CA_FILE): must be empty (the system's trust store) "
                           + "or a readable PEM file of the CAs https:// receivers are certified by"])
        let readable = try writeTemp("not a certificate")
        XCTAssertEqual(problems(ConfigLoader(environment: ["SPOOL_WEBHOOKS_CA_FILE": readable])), [])
    }

    /// webhooks.allowed_networks takes addresses and networks as the sender will read them:
    /// no octet over 255, four of them, a prefix its family allows; a bad entry is named
    /// printably.
    func testAllowedNetworksAreCheckedAsAddresses() {
        for good in ["", "10.0.0.0/8", "192.168.1.1, 10.0.0.0/8", "::1", "fd00::/8", "::ffff:10.0.0.0/104", "0.0.0.0/0"] {
            XCTAssertEqual(problems(ConfigLoader(environment: ["SPOOL_WEBHOOKS_ALLOWED_NETWORKS": good])), [], good)
        }
        for bad in ["10.0.0.0/33", "300.1.1.1", "1.2.3.4.5", "garbage", "::1/200", "10.0.0.0/", "10.0.0.0/+8", "1.2.3/24", "10.0.0.0/8/8"] {
            let p = problems(ConfigLoader(environment: ["SPOOL_WEBHOOKS_ALLOWED_NETWORKS": bad]))
            XCTAssertEqual(p.count, 1, bad)
            XCTAssertTrue(p.first?.contains("must be a comma-separated list of addresses or CIDR networks") == true, "\(bad): \(p)")
        }
        let p = problems(ConfigLoader(environment: ["SPOOL_WEBHOOKS_ALLOWED_NETWORKS": "10.0.0.1,\u{0}x"]))
        XCTAssertTrue(p.first?.contains(#"("\0x" is not one)"#) == true, "\(p)")
    }

    func testBadFlagValueAndUnknownFlag() {
        let p = problems(ConfigLoader(environment: [:], flags: ["loops": "0", "insecure_no_auth": "maybe", "lopps": "2"]))
        XCTAssertTrue(p.contains("loops = 0 (from --loops): must be an integer in 1...256"), "\(p)")
        XCTAssertTrue(p.contains("insecure_no_auth = \"maybe\" (from --insecure-no-auth): must be true or false"), "\(p)")
        XCTAssertTrue(p.contains("unknown setting \"lopps\" given as a flag (did you mean loops?)"), "\(p)")
    }

    func testUnknownKeyInTheFileIsAnErrorNamingIt() throws {
        let path = try writeTemp(#"{"jobs": {"max_atempts": 2}, "colour": "blue"}"#)
        let p = problems(ConfigLoader(filePath: path, environment: [:]))
        XCTAssertTrue(p.contains("unknown key \"jobs.max_atempts\" in \(path) (did you mean jobs.max_attempts?)"), "\(p)")
        XCTAssertTrue(p.contains { $0.hasPrefix("unknown key \"colour\" in \(path); known keys: listen, data_dir") }, "\(p)")
    }

    func testMalformedFileNamesTheFileLineAndColumn() throws {
        let path = try writeTemp("{\n  \"loops\": 2,\n  \"listen\": ]\n}")
        let p = problems(ConfigLoader(filePath: path, environment: [:]))
        XCTAssertEqual(p.count, 1)
        XCTAssertTrue(p[0].hasPrefix("\(path):3:13: malformed JSON"), "\(p)")
    }

    func testDuplicateKeyInTheFileIsRefused() throws {
        let path = try writeTemp(#"{"loops": 2, "loops": 3}"#)
        let p = problems(ConfigLoader(filePath: path, environment: [:]))
        XCTAssertEqual(p.count, 1)
        XCTAssertTrue(p[0].hasPrefix("\(path):1:") && p[0].contains("a key appears twice"), "\(p)")
        // The same key nested and as a dotted name, in either order: not "the last one wins".
        for text in [#"{"files":{"max_file_bytes":1000},"files.max_file_bytes":2000}"#, #"{"files.max_file_bytes":2000,"files":{"max_file_bytes":1000}}"#] {
            let both = try writeTemp(text)
            XCTAssertEqual(problems(ConfigLoader(filePath: both, environment: [:])),
                           ["files.max_file_bytes is given twice in \(both) (nested and as a dotted name): give it once"], text)
        }
    }

    /// Only a regular file is read: a directory is refused, and a FIFO too, at once (opening
    /// one for reading would wait for a writer, and the server with it).
    func testAConfigurationThatIsNotARegularFileIsRefusedAtOnce() throws {
        let fifo = NSTemporaryDirectory() + "spool-config-fifo-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        defer { unlink(fifo) }
        XCTAssertEqual(problems(ConfigLoader(filePath: fifo, environment: [:])), ["cannot read the configuration file \(fifo): not a regular file"])
        let dir = NSTemporaryDirectory()
        XCTAssertEqual(problems(ConfigLoader(filePath: dir, environment: [:])), ["cannot read the configuration file \(dir): not a regular file"])
    }

    func testMissingFileAndCrossKeyCheck() throws {
        let p = problems(ConfigLoader(filePath: "/nonexistent/spool.json", environment: [:]))
        XCTAssertEqual(p, ["cannot read the configuration file /nonexistent/spool.json: No such file or directory"])
        let q = problems(ConfigLoader(environment: ["SPOOL_FILES_MAX_FILE_BYTES": "2000", "SPOOL_FILES_TOTAL_QUOTA_BYTES": "1000"]))
        XCTAssertEqual(q.count, 1)
        XCTAssertTrue(q[0].contains("files.total_quota_bytes = 1000 is below files.max_file_bytes = 2000"), "\(q)")
    }

    func testEnvironmentNamesMatchTheHeaderOfServerSettings() {
        XCTAssertEqual(SettingsSchema.spec("jobs.idempotency_retention_seconds")?.environment, "SPOOL_JOBS_IDEMPOTENCY_RETENTION_SECONDS")
        XCTAssertEqual(SettingsSchema.spec("data_dir")?.environment, "SPOOL_DATA_DIR")
        XCTAssertEqual(SettingsSchema.all.count, 52)
        XCTAssertEqual(SettingsSchema.all.filter { !$0.reloadable }.map(\.key),
                       ["listen", "data_dir", "loops", "insecure_no_auth", "webhooks.ca_file", "queue.url", "queue.key_prefix", "queue.visibility_seconds",
                        "cache.ttl_seconds", "database.url", "database.max_connections", "database.job_shards", "database.replicas",
                        "database.replica_max_lag_ms", "database.job_shard_layouts", "storage.backend", "storage.s3_endpoint", "storage.s3_bucket",
                        "storage.s3_region", "storage.s3_access_key_id", "storage.s3_secret_access_key", "storage.s3_prefix",
                        "storage.s3_part_mib", "storage.s3_parts_in_flight", "storage.presign_seconds"])
    }

    func testQueueSettings() throws {
        let ok = try ConfigLoader(environment: ["SPOOL_QUEUE_URL": "redis://:pw@127.0.0.1:6380/2"], flags: [:]).load()
        XCTAssertEqual(ok.queue.url, "redis://:pw@127.0.0.1:6380/2")
        let flag = try ConfigLoader(environment: [:], flags: ["queue.url": "redis://h"]).load()
        XCTAssertEqual(flag.queue.url, "redis://h")
        let p = problems(ConfigLoader(environment: ["SPOOL_QUEUE_URL": "http://h", "SPOOL_QUEUE_KEY_PREFIX": "a b",
                                                    "SPOOL_QUEUE_VISIBILITY_SECONDS": "1"]))
        XCTAssertEqual(p.count, 3, "\(p)")
        XCTAssertTrue(p.contains { $0.contains("queue.url") && $0.contains("redis://") }, "\(p)")
    }

    /// database.url: empty (SQLite) or postgres(ql)://; a refused one is shown without its password.
    func testDatabaseSettings() throws {
        let ok = try ConfigLoader(environment: ["SPOOL_DATABASE_URL": "postgres://spool:pw@127.0.0.1:5433/spool",
                                                "SPOOL_DATABASE_MAX_CONNECTIONS": "16"], flags: [:]).load()
        XCTAssertEqual(ok.database.url, "postgres://spool:pw@127.0.0.1:5433/spool")
        XCTAssertEqual(ok.database.maxConnections, 16)
        XCTAssertEqual(try ConfigLoader(environment: [:], flags: ["database.url": "postgresql://h/db"]).load().database.url, "postgresql://h/db")
        let p = problems(ConfigLoader(environment: ["SPOOL_DATABASE_URL": "mysql://u:t0psecret@h/db", "SPOOL_DATABASE_MAX_CONNECTIONS": "0"]))
        XCTAssertEqual(p.count, 2, "\(p)")
        XCTAssertTrue(p.contains { $0.hasPrefix(#"database.url = "mysql://u:***@h/db" (from SPOOL_DATABASE_URL)"#) && $0.contains("postgres://") }, "\(p)")
        XCTAssertFalse(p.joined().contains("t0psecret"), "\(p)")
    }

    /// A refused secret is named but never printed: a Redis URL's password, a join token,
    /// from the environment and from the file.
    func testSecretsAreHiddenInProblems() throws {
        let p = problems(ConfigLoader(environment: ["SPOOL_QUEUE_URL": "redis://spool:s3cret-pw@h ost:6379",
                                                    "SPOOL_ENGINES_JOIN_TOKEN": "short-s3cret"]))
        XCTAssertEqual(p.count, 2, "\(p)")
        XCTAssertFalse(p.joined().contains("s3cret"), "\(p)")
        XCTAssertTrue(p.contains { $0.hasPrefix(#"queue.url = "redis://spool:***@h ost:6379" (from SPOOL_QUEUE_URL)"#) }, "\(p)")
        XCTAssertTrue(p.contains { $0.hasPrefix(#"engines.join_token = "(hidden, 12 characters)""#) }, "\(p)")
        let path = try writeTemp(#"{"engines": {"join_token": 12345678901234567}}"#)
        let fromFile = problems(ConfigLoader(filePath: path, environment: [:]))
        XCTAssertEqual(fromFile.count, 1, "\(fromFile)")
        XCTAssertFalse(fromFile[0].contains("12345678901234567"), fromFile[0])
        XCTAssertEqual(SettingSpec.withoutPassword("redis://h:6379"), "redis://h:6379")
        XCTAssertEqual(SettingSpec.withoutPassword("redis://:pw@h"), "redis://:***@h")
        XCTAssertEqual(SettingSpec.withoutPassword("redis://user@h"), "redis://user@h")
    }

    /// storage.backend = s3 needs its endpoint, bucket and keys; each value is checked, and
    /// the secret key is never printed.
    func testStorageSettings() throws {
        let env = ["SPOOL_STORAGE_BACKEND": "s3", "SPOOL_STORAGE_S3_ENDPOINT": "http://127.0.0.1:9000", "SPOOL_STORAGE_S3_BUCKET": "media",
                   "SPOOL_STORAGE_S3_ACCESS_KEY_ID": "AKID", "SPOOL_STORAGE_S3_SECRET_ACCESS_KEY": "s3cret-key", "SPOOL_STORAGE_S3_PART_MIB": "8"]
        let ok = try ConfigLoader(environment: env, flags: [:]).load()
        XCTAssertEqual(ok.storage.backend, "s3")
        XCTAssertEqual(ok.storage.s3Bucket, "media")
        XCTAssertEqual(ok.storage.s3PartMiB, 8)
        XCTAssertEqual(ok.storage.s3Region, "us-east-1")
        XCTAssertEqual(try ConfigLoader(environment: [:], flags: ["storage.backend": "local"]).load().storage.backend, "local")
        let missing = problems(ConfigLoader(environment: ["SPOOL_STORAGE_BACKEND": "s3", "SPOOL_STORAGE_S3_BUCKET": "media"]))
        XCTAssertEqual(missing.count, 3, "\(missing)")
        XCTAssertTrue(missing.contains { $0.contains("storage.s3_endpoint") && $0.contains("SPOOL_STORAGE_S3_ENDPOINT") }, "\(missing)")
        XCTAssertTrue(missing.contains { $0.contains("storage.s3_secret_access_key") }, "\(missing)")
        let bad = problems(ConfigLoader(environment: ["SPOOL_STORAGE_BACKEND": "gcs", "SPOOL_STORAGE_S3_BUCKET": "Media_Bucket",
                                                      "SPOOL_STORAGE_S3_ENDPOINT": "ftp://h", "SPOOL_STORAGE_S3_PART_MIB": "1",
                                                      "SPOOL_STORAGE_S3_SECRET_ACCESS_KEY": "has a s3cret space"]))
        XCTAssertEqual(bad.count, 5, "\(bad)")
        XCTAssertTrue(bad.contains { $0.hasPrefix("storage.backend") && $0.contains("local") && $0.contains("s3") }, "\(bad)")
        XCTAssertFalse(bad.joined().contains("s3cret"), "\(bad)")
        // A CDN fronts S3 only; its secret is checked and hidden.
        let cdn = problems(ConfigLoader(environment: ["SPOOL_STORAGE_CDN_BASE_URL": "https://cdn.example.com/media",
                                                      "SPOOL_STORAGE_CDN_SECRET": "tiny-s3cret"]))
        XCTAssertEqual(cdn.count, 2, "\(cdn)")
        XCTAssertTrue(cdn.contains { $0.contains("storage.cdn_base_url is set but storage.backend") }, "\(cdn)")
        XCTAssertFalse(cdn.joined().contains("tiny-s3cret"), "\(cdn)")
        let withCDN = try ConfigLoader(environment: env.merging(["SPOOL_STORAGE_CDN_BASE_URL": "https://cdn.example.com/media"]) { $1 }, flags: [:]).load()
        XCTAssertEqual(withCDN.storage.cdnBaseURL, "https://cdn.example.com/media")
    }

    /// Job shards: two or more postgres:// URLs beside a database.url; their passwords
    /// never appear in a message; layouts only with shards, in their own syntax.
    func testJobShardSettings() throws {
        let shards = "postgres://spool:pw-one@127.0.0.1/a, postgres://spool:pw-two@127.0.0.1/b"
        let ok = try ConfigLoader(environment: ["SPOOL_DATABASE_URL": "postgres://spool@127.0.0.1/main", "SPOOL_DATABASE_JOB_SHARDS": shards],
                                  flags: [:]).load()
        XCTAssertEqual(ok.database.jobShardURLs, ["postgres://spool:pw-one@127.0.0.1/a", "postgres://spool:pw-two@127.0.0.1/b"])
        let noMain = problems(ConfigLoader(environment: ["SPOOL_DATABASE_JOB_SHARDS": shards]))
        XCTAssertEqual(noMain.count, 1, "\(noMain)")
        XCTAssertTrue(noMain[0].contains("database.job_shards is set but database.url is empty"), "\(noMain)")
        let bad = problems(ConfigLoader(environment: ["SPOOL_DATABASE_URL": "postgres://spool@127.0.0.1/main",
                                                      "SPOOL_DATABASE_JOB_SHARDS": "postgres://spool:pw-one@127.0.0.1/a,mysql://x",
                                                      "SPOOL_DATABASE_JOB_SHARD_LAYOUTS": "2@0,3@soon"]))
        XCTAssertEqual(bad.count, 2, "\(bad)")
        XCTAssertTrue(bad.contains { $0.hasPrefix("database.job_shards") && $0.contains("comma-separated postgres://") }, "\(bad)")
        XCTAssertTrue(bad.contains { $0.hasPrefix("database.job_shard_layouts") && $0.contains("COUNT@MILLISECONDS") }, "\(bad)")
        XCTAssertFalse(bad.joined().contains("pw-one"), "\(bad)")
        let one = problems(ConfigLoader(environment: ["SPOOL_DATABASE_URL": "postgres://spool@127.0.0.1/main",
                                                      "SPOOL_DATABASE_JOB_SHARDS": "postgres://spool@127.0.0.1/a"]))
        XCTAssertEqual(one.count, 1, "one shard is no sharding: \(one)")
        let layoutsAlone = problems(ConfigLoader(environment: ["SPOOL_DATABASE_URL": "postgres://spool@127.0.0.1/main",
                                                               "SPOOL_DATABASE_JOB_SHARD_LAYOUTS": "2@0"]))
        XCTAssertTrue(layoutsAlone.contains { $0.contains("database.job_shard_layouts is set but database.job_shards is empty") }, "\(layoutsAlone)")
    }

    /// Replicas: HOST:PORT entries of database.url's server, with a lag bound.
    func testReplicaSettings() throws {
        let ok = try ConfigLoader(environment: ["SPOOL_DATABASE_URL": "postgres://spool@127.0.0.1:5432/main",
                                                "SPOOL_DATABASE_REPLICAS": "127.0.0.1:5433, replica.internal:5432",
                                                "SPOOL_DATABASE_REPLICA_MAX_LAG_MS": "250"], flags: [:]).load()
        XCTAssertEqual(ok.database.replicaAddresses, ["127.0.0.1:5433", "replica.internal:5432"])
        XCTAssertEqual(ok.database.replicaMaxLagMilliseconds, 250)
        let bad = problems(ConfigLoader(environment: ["SPOOL_DATABASE_URL": "postgres://spool@127.0.0.1:5432/main",
                                                      "SPOOL_DATABASE_REPLICAS": "postgres://127.0.0.1:5433/main",
                                                      "SPOOL_DATABASE_REPLICA_MAX_LAG_MS": "0"]))
        XCTAssertEqual(bad.count, 2, "\(bad)")
        XCTAssertTrue(bad.contains { $0.hasPrefix("database.replicas") && $0.contains("HOST:PORT") }, "\(bad)")
        let noMain = problems(ConfigLoader(environment: ["SPOOL_DATABASE_REPLICAS": "127.0.0.1:5433"]))
        XCTAssertTrue(noMain.contains { $0.contains("database.replicas is set but database.url is empty") }, "\(noMain)")
    }
}
