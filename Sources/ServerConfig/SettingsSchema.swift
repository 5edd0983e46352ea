// ServerConfig.SettingsSchema: the table of every setting: its key (the file's dotted
// path), environment variable, flag, type, allowed values, whether a running server may
// reload it, and how it reads and writes ServerSettings. The loader, the validator and
// the reloader all walk this one table, so a key cannot be known to one and not another.

import Scheduling
#if canImport(Glibc)
import Glibc
#endif

/// A setting's value while it is being resolved (before it lands in ServerSettings).
public enum SettingValue: Sendable, Equatable, CustomStringConvertible {
    case int(Int64)
    case bool(Bool)
    case string(String)

    public var description: String {
        switch self {
        case .int(let v): return String(v)
        case .bool(let v): return v ? "true" : "false"
        case .string(let v): return "\"\(v)\""
        }
    }
}

public struct SettingSpec: Sendable {
    public enum Kind: Sendable {
        case int(ClosedRange<Int64>)
        case bool
        /// A string with its check: nil when valid, else what a valid value looks like.
        case string(@Sendable (String) -> String?)
    }

    /// Dotted key as in the file: "jobs.max_attempts".
    public let key: String
    /// SPOOL_JOBS_MAX_ATTEMPTS.
    public let environment: String
    /// --max-attempts style flag name, if `spool serve` has one.
    public let flag: String?
    public let kind: Kind
    /// May a running server change it (SIGHUP, changed file)?
    public let reloadable: Bool
    let get: @Sendable (ServerSettings) -> SettingValue
    let set: @Sendable (inout ServerSettings, SettingValue) -> Void
    /// For a value that holds a secret (a token, a URL with a password): what messages and
    /// logs show instead of it.
    var redact: (@Sendable (String) -> String)? = nil

    /// The value as messages and logs may show it (secrets hidden).
    public func shown(_ value: SettingValue) -> String {
        guard let redact, case .string(let text) = value, !text.isEmpty else { return value.description }
        return "\"\(redact(text))\""
    }

    /// What a valid value looks like, for messages ("must be 1...100").
    public var expectation: String {
        switch kind {
        case .int(let r): return "must be an integer in \(r.lowerBound)...\(r.upperBound)"
        case .bool: return "must be true or false"
        case .string(let check): return check("\u{0}") ?? "must be a string"
        }
    }

    /// nil when `value` is acceptable for this key, else the fix.
    func problem(with value: SettingValue) -> String? {
        switch (kind, value) {
        case (.int(let r), .int(let v)): return r.contains(v) ? nil : expectation
        case (.bool, .bool): return nil
        case (.string(let check), .string(let s)): return check(s)
        default: return expectation
        }
    }
}

extension SettingSpec {
    static func int(_ key: String, flag: String? = nil, reloadable: Bool, _ range: ClosedRange<Int64>,
                    _ path: WritableKeyPath<ServerSettings, Int64> & Sendable) -> SettingSpec {
        SettingSpec(key: key, environment: environmentName(key), flag: flag, kind: .int(range), reloadable: reloadable,
                    get: { .int($0[keyPath: path]) },
                    set: { s, v in if case .int(let i) = v { s[keyPath: path] = i } })
    }

    static func int(_ key: String, flag: String? = nil, reloadable: Bool, _ range: ClosedRange<Int64>,
                    _ path: WritableKeyPath<ServerSettings, Int> & Sendable) -> SettingSpec {
        SettingSpec(key: key, environment: environmentName(key), flag: flag, kind: .int(range), reloadable: reloadable,
                    get: { .int(Int64($0[keyPath: path])) },
                    set: { s, v in if case .int(let i) = v { s[keyPath: path] = Int(i) } })
    }

    static func bool(_ key: String, flag: String? = nil, reloadable: Bool,
                     _ path: WritableKeyPath<ServerSettings, Bool> & Sendable) -> SettingSpec {
        SettingSpec(key: key, environment: environmentName(key), flag: flag, kind: .bool, reloadable: reloadable,
                    get: { .bool($0[keyPath: path]) },
                    set: { s, v in if case .bool(let b) = v { s[keyPath: path] = b } })
    }

    static func string(_ key: String, flag: String? = nil, reloadable: Bool,
                       _ path: WritableKeyPath<ServerSettings, String> & Sendable,
                       check: @escaping @Sendable (String) -> String?) -> SettingSpec {
        SettingSpec(key: key, environment: environmentName(key), flag: flag, kind: .string(check), reloadable: reloadable,
                    get: { .string($0[keyPath: path]) },
                    set: { s, v in if case .string(let t) = v { s[keyPath: path] = t } })
    }

    /// The same spec with its value hidden in messages and logs.
    func secret(_ redact: @escaping @Sendable (String) -> String) -> SettingSpec {
        var s = self
        s.redact = redact
        return s
    }

    /// A URL's password replaced by "***" (scheme://user:***@host...).
    public static func withoutPassword(_ url: String) -> String {
        guard let scheme = url.range(of: "://"), let at = url[scheme.upperBound...].firstIndex(of: "@") else { return url }
        let userInfo = url[scheme.upperBound..<at]
        guard let colon = userInfo.firstIndex(of: ":") else { return url }
        return String(url[..<url.index(after: colon)]) + "***" + String(url[at...])
    }

    /// "jobs.max_attempts" → "SPOOL_JOBS_MAX_ATTEMPTS" (what swift-configuration's
    /// environment provider looks up for the key ["spool", "jobs", "max_attempts"]).
    static func environmentName(_ key: String) -> String {
        "SPOOL_" + String(key.uppercased().map { $0.isLetter || $0.isNumber ? $0 : "_" })
    }
}

public enum SettingsSchema {
    public static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    /// Every setting, in the order of ServerSettings.swift's header.
    public static let all: [SettingSpec] = [
        .string("listen", flag: "--listen", reloadable: false, \.listen, check: checkListen),
        .string("data_dir", flag: "--data-dir", reloadable: false, \.dataDirectory) { s in
            s.isEmpty || s.utf8.contains(0) ? "must name a directory (a non-empty path)" : nil
        },
        .int("loops", flag: "--loops", reloadable: false, 1...256, \.loops),
        .bool("insecure_no_auth", flag: "--insecure-no-auth", reloadable: false, \.insecureNoAuth),
        .string("log_level", reloadable: true, \.logLevel) { s in
            logLevels.contains(s) ? nil : "must be one of " + logLevels.joined(separator: ", ")
        },
        .int("jobs.default_ttl_seconds", reloadable: true, 1...31_536_000, \.jobs.defaultTTLSeconds),
        .int("jobs.max_attempts", reloadable: true, 1...100, \.jobs.maxAttempts),
        .int("jobs.retry_backoff_seconds", reloadable: true, 0...86_400, \.jobs.retryBackoffSeconds),
        .int("jobs.retry_backoff_max_seconds", reloadable: true, 0...604_800, \.jobs.retryBackoffMaxSeconds),
        .int("jobs.idempotency_retention_seconds", reloadable: true, 1...2_592_000, \.jobs.idempotencyRetentionSeconds),
        .int("jobs.expiry_interval_ms", reloadable: true, 10...3_600_000, \.jobs.expiryIntervalMilliseconds),
        .int("jobs.retry_jitter_percent", reloadable: true, 0...100, \.jobs.retryJitterPercent),
        .int("files.max_file_bytes", reloadable: true, 1...(1 << 50), \.files.maxFileBytes),
        .int("files.total_quota_bytes", reloadable: true, 1...(1 << 56), \.files.totalQuotaBytes),
        .int("http.json_body_max_bytes", reloadable: true, 1_024...(64 << 20), \.http.jsonBodyMaxBytes),
        .int("webhooks.timeout_seconds", reloadable: true, 1...300, \.webhooks.timeoutSeconds),
        .bool("webhooks.allow_private_networks", reloadable: true, \.webhooks.allowPrivateNetworks),
        .string("webhooks.allowed_networks", reloadable: true, \.webhooks.allowedNetworks) { s in
            networkListProblem(s)
        },
        .int("webhooks.max_attempts", reloadable: true, 1...50, \.webhooks.maxAttempts),
        .int("webhooks.retry_base_ms", reloadable: true, 10...3_600_000, \.webhooks.retryBaseMilliseconds),
        .string("webhooks.ca_file", reloadable: false, \.webhooks.caFile) { s in
            s.isEmpty || access(s, R_OK) == 0 ? nil
                : "must be empty (the system's trust store) or a readable PEM file of the CAs https:// receivers are certified by"
        },
        .int("events.replay_window", reloadable: true, 1...1_000_000, \.events.replayWindow),
        .int("events.keepalive_seconds", reloadable: true, 1...3_600, \.events.keepAliveSeconds),
        .string("engines.join_token", reloadable: true, \.engines.joinToken) { s in
            s.isEmpty || (16...256).contains(s.utf8.count) && s.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F })
                ? nil : "must be empty or 16 to 256 printable characters without spaces"
        }.secret { t in "(hidden, \(t.utf8.count) characters)" },
        .int("engines.heartbeat_timeout_seconds", reloadable: true, 2...3_600, \.engines.heartbeatTimeoutSeconds),
        .int("engines.offline_retention_seconds", reloadable: true, 60...31_536_000, \.engines.offlineRetentionSeconds),
        .int("engines.max_registered", reloadable: true, 1...1_000_000, \.engines.maxRegistered),
        .string("scheduler.tenant_weights", reloadable: true, \.scheduler.tenantWeights) { s in
            if case .failure(let e) = FairShare.parseWeights(s) { return "must be TENANT=WEIGHT,... (\(e))" }
            return nil
        },
        .string("queue.url", flag: "--queue-url", reloadable: false, \.queue.url) { s in
            s.isEmpty || s.hasPrefix("redis://") && s.count > 8 && !s.contains(" ") ? nil
                : "must be empty (the in-process queue) or redis://[[user]:password@]host[:port][/db]"
        }.secret(SettingSpec.withoutPassword),
        .string("queue.key_prefix", reloadable: false, \.queue.keyPrefix) { s in
            (1...64).contains(s.utf8.count) && s.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F })
                ? nil : "must be 1 to 64 printable characters without spaces"
        },
        .int("queue.visibility_seconds", reloadable: false, 5...86_400, \.queue.visibilitySeconds),
        .int("queue.reconcile_interval_seconds", reloadable: true, 1...3_600, \.queue.reconcileIntervalSeconds),
        .int("cache.ttl_seconds", reloadable: false, 0...86_400, \.cache.ttlSeconds),
        .string("database.url", flag: "--database-url", reloadable: false, \.database.url) { s in
            s.isEmpty || (s.hasPrefix("postgres://") || s.hasPrefix("postgresql://")) && !s.contains(" ") ? nil
                : "must be empty (SQLite in the data directory) or postgres://user[:password]@host[:port]/database"
        }.secret(SettingSpec.withoutPassword),
        .int("database.max_connections", reloadable: false, 1...256, \.database.maxConnections),
        .string("database.job_shards", reloadable: false, \.database.jobShards) { s in
            let urls = s.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingSpaces }
            return s.isEmpty || (2...64).contains(urls.count)
                && urls.allSatisfy({ ($0.hasPrefix("postgres://") || $0.hasPrefix("postgresql://")) && !$0.contains(" ") }) ? nil
                : "must be empty (jobs in database.url) or 2 to 64 comma-separated postgres:// URLs, one per job shard"
        }.secret { s in s.split(separator: ",").map { SettingSpec.withoutPassword($0.trimmingSpaces) }.joined(separator: ",") },
        .string("database.replicas", reloadable: false, \.database.replicas) { s in
            s.isEmpty || s.split(separator: ",", omittingEmptySubsequences: false).allSatisfy({ entry in
                let e = entry.trimmingSpaces
                guard let colon = e.lastIndex(of: ":"), colon != e.startIndex, let port = UInt16(e[e.index(after: colon)...]), port > 0 else { return false }
                return !e[..<colon].contains(" ") && !e[..<colon].contains("/") && !e[..<colon].contains("@")
            }) ? nil : "must be empty (every read on the primary) or comma-separated HOST:PORT of streaming replicas of database.url's server"
        },
        .int("database.replica_max_lag_ms", reloadable: false, 1...3_600_000, \.database.replicaMaxLagMilliseconds),
        .string("database.job_shard_layouts", reloadable: false, \.database.jobShardLayouts) { s in
            s.isEmpty || s.split(separator: ",", omittingEmptySubsequences: false).allSatisfy({ part in
                let p = part.split(separator: "@", omittingEmptySubsequences: false)
                return p.count == 2 && Int(p[0]) != nil && UInt64(p[1]) != nil
            }) ? nil : "must be empty (all shards from the start) or COUNT@MILLISECONDS,... with ascending times"
        },
        .string("storage.backend", flag: "--storage", reloadable: false, \.storage.backend) { s in
            s == "local" || s == "s3" ? nil : "must be local (files in the data directory) or s3 (the storage.s3_* keys)"
        },
        .string("storage.s3_endpoint", reloadable: false, \.storage.s3Endpoint) { s in
            s.isEmpty || (s.hasPrefix("http://") || s.hasPrefix("https://")) && !s.contains(" ") ? nil
                : "must be http(s)://host[:port] of the S3-compatible store"
        },
        .string("storage.s3_bucket", reloadable: false, \.storage.s3Bucket) { s in
            s.isEmpty || (3...63).contains(s.utf8.count) && s.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2E || $0 == 0x2D })
                ? nil : "must be a bucket name: 3 to 63 lower-case letters, digits, '.' and '-'"
        },
        .string("storage.s3_region", reloadable: false, \.storage.s3Region) { s in
            (1...64).contains(s.utf8.count) && s.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D })
                ? nil : "must be a region name such as us-east-1"
        },
        .string("storage.s3_access_key_id", reloadable: false, \.storage.s3AccessKeyID) { s in
            s.utf8.count <= 128 && s.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F }) ? nil : "must be an access key id (printable, no spaces)"
        },
        .string("storage.s3_secret_access_key", reloadable: false, \.storage.s3SecretAccessKey) { s in
            s.utf8.count <= 256 && s.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F }) ? nil : "must be a secret access key (printable, no spaces)"
        }.secret { t in "(hidden, \(t.utf8.count) characters)" },
        .string("storage.s3_prefix", reloadable: false, \.storage.s3Prefix) { s in
            s.utf8.count < 512 && !s.hasPrefix("/") && s.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F })
                ? nil : "must be empty or a key prefix such as spool/ (printable, no spaces, not starting with '/')"
        },
        .int("storage.s3_part_mib", reloadable: false, 5...5_120, \.storage.s3PartMiB),
        .int("storage.s3_parts_in_flight", reloadable: false, 1...64, \.storage.s3PartsInFlight),
        .int("storage.presign_seconds", reloadable: false, 60...604_800, \.storage.presignSeconds),
        .string("storage.cdn_base_url", reloadable: true, \.storage.cdnBaseURL) { s in
            s.isEmpty || (s.hasPrefix("http://") && s.count > 7 || s.hasPrefix("https://") && s.count > 8)
                && !s.contains(where: { " ?#\"'".contains($0) }) ? nil
                : "must be empty (results name /api/v1/files/{id}) or an http(s) URL such as https://media.example.com/media"
        },
        .string("storage.cdn_secret", reloadable: true, \.storage.cdnSecret) { s in
            s.isEmpty || (16...128).contains(s.utf8.count) && s.utf8.allSatisfy({ b in
                (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2D || b == 0x5F
            }) ? nil : "must be empty (unsigned CDN URLs) or 16 to 128 letters, digits, '-' and '_'"
        }.secret { t in "(hidden, \(t.utf8.count) characters)" },
        .int("storage.cdn_url_seconds", reloadable: true, 60...31_536_000, \.storage.cdnURLSeconds),
    ]

    public static func spec(_ key: String) -> SettingSpec? { all.first { $0.key == key } }

    /// "ADDR[/PREFIX],...": each entry a numeric IPv4 or IPv6 address as inet_pton reads it
    /// ("300.1.1.1" and "1.2.3.4.5" are not), optionally with a prefix length its family
    /// allows (/0-32, /0-128). The webhook sender reads the list again itself.
    static func networkListProblem(_ s: String) -> String? {
        for part in s.split(separator: ",") {
            let t = part.filter { $0 != " " }
            let pieces = t.split(separator: "/", omittingEmptySubsequences: false)
            let addr = pieces.first.map(String.init) ?? ""
            var buffer = [UInt8](repeating: 0, count: 16)
            let family: Int32? = inet_pton(AF_INET, addr, &buffer) == 1 ? AF_INET : inet_pton(AF_INET6, addr, &buffer) == 1 ? AF_INET6 : nil
            let bits = family == AF_INET ? 32 : 128
            let okPrefix = pieces.count == 1
                || (pieces.count == 2 && pieces[1].allSatisfy(\.isASCII) && pieces[1].allSatisfy(\.isNumber) && Int(pieces[1]).map { (0...bits).contains($0) } == true)
            if family == nil || !okPrefix {
                return "must be a comma-separated list of addresses or CIDR networks (\(String(part).debugDescription) is not one)"
            }
        }
        return nil
    }

    /// HOST:PORT with a port in 0...65535 ("[::1]:8080" for IPv6).
    static func checkListen(_ s: String) -> String? {
        let fix = "must be HOST:PORT with a port from 0 to 65535 (e.g. 127.0.0.1:8080 or [::1]:8080)"
        guard let colon = s.lastIndex(of: ":"), colon != s.startIndex,
              let port = Int(s[s.index(after: colon)...]), (0...65_535).contains(port) else { return fix }
        let host = s[..<colon]
        if host.contains(":") && !(host.hasPrefix("[") && host.hasSuffix("]")) { return fix }
        return nil
    }

    /// Checks that involve two keys; each problem names the keys and the fix.
    static func crossKeyProblems(_ s: ServerSettings) -> [String] {
        var out: [String] = []
        if s.jobs.retryBackoffMaxSeconds < s.jobs.retryBackoffSeconds {
            out.append("jobs.retry_backoff_max_seconds = \(s.jobs.retryBackoffMaxSeconds) is below jobs.retry_backoff_seconds = "
                       + "\(s.jobs.retryBackoffSeconds): the maximum backoff must be at least the first one")
        }
        if s.files.totalQuotaBytes < s.files.maxFileBytes {
            out.append("files.total_quota_bytes = \(s.files.totalQuotaBytes) is below files.max_file_bytes = \(s.files.maxFileBytes): "
                       + "raise the quota or lower the per-file limit")
        }
        if !s.storage.cdnBaseURL.isEmpty && s.storage.backend != "s3" {
            out.append("storage.cdn_base_url is set but storage.backend is \"\(s.storage.backend)\": a CDN fronts the S3 bucket; set storage.backend = \"s3\" or clear storage.cdn_base_url")
        }
        if !s.database.jobShards.isEmpty && s.database.url.isEmpty {
            out.append("database.job_shards is set but database.url is empty: the shards hold jobs; set database.url to the PostgreSQL database that holds the rest")
        }
        if !s.database.replicas.isEmpty && s.database.url.isEmpty {
            out.append("database.replicas is set but database.url is empty: replicas are of the PostgreSQL server in database.url; set it or clear database.replicas")
        }
        if !s.database.jobShardLayouts.isEmpty && s.database.jobShards.isEmpty {
            out.append("database.job_shard_layouts is set but database.job_shards is empty: layouts spread jobs over the shards listed there")
        }
        if s.storage.backend == "s3" {
            for (key, value) in [("storage.s3_endpoint", s.storage.s3Endpoint), ("storage.s3_bucket", s.storage.s3Bucket),
                                 ("storage.s3_access_key_id", s.storage.s3AccessKeyID),
                                 ("storage.s3_secret_access_key", s.storage.s3SecretAccessKey)] where value.isEmpty {
                out.append("storage.backend = \"s3\" needs \(key) (\(SettingSpec.environmentName(key)))")
            }
        }
        return out
    }
}

extension Substring {
    /// Without leading and trailing spaces.
    var trimmingSpaces: String {
        String(drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
    }
}
