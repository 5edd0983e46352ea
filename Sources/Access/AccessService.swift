// Access.AccessService: API keys. A key is `spk_` + 40 base32 characters (200 bits from
// SystemRandomNumberGenerator); only its SHA-256 is stored (table access_keys), with the
// last four characters for display. The secret is shown once, when the key is made.
// Authentication looks the hash up (successes are cached in memory; revoking a key drops
// it from this process's cache at once, and with a database several dispatchers share,
// each entry lives `cacheLifetime` at most, so a key revoked on one dispatcher stops
// working on the others within that time). Admin keys come from SPOOL_ADMIN_KEY or, when
// there is none and no admin key exists yet, one is generated into DATA_DIR/admin.key
// (mode 0600).
import Crypto
import Relational
import SpoolModel
import Synchronization
import Threads

public enum AccessKeyKind: EntityKind { public static let prefix = "key_" }
public typealias AccessKeyID = EntityID<AccessKeyKind>

/// A key as it is listed: never the secret, never its hash.
public struct AccessKeyRecord: Sendable, Equatable {
    public var id: AccessKeyID
    public var tenant: String
    public var isAdmin: Bool
    /// Unix milliseconds.
    public var created: Int64
    public var revokedAt: Int64?
    /// The secret's last four characters, to tell keys apart.
    public var last4: String
    /// "api" (made over the API), "environment" (SPOOL_ADMIN_KEY), "generated" (admin.key).
    public var origin: String
}

/// Who a key belongs to.
public struct KeyOwner: Sendable, Equatable {
    public var keyID: AccessKeyID
    public var tenant: String
    public var isAdmin: Bool
    public init(keyID: AccessKeyID, tenant: String, isAdmin: Bool) { self.keyID = keyID; self.tenant = tenant; self.isAdmin = isAdmin }
}

/// What vouches for a cached authentication (`AccessService.cachedOwnerStamped`).
public struct CacheStamp: Sendable, Equatable {
    public let epoch: UInt64
    /// Unix milliseconds the entry's lifetime ends at (`Int64.max`: no lifetime).
    public let until: Int64
    public init(epoch: UInt64, until: Int64) { self.epoch = epoch; self.until = until }
}

public final class AccessService: Sendable {
    /// The tenant admin keys from SPOOL_ADMIN_KEY or admin.key belong to.
    public static let adminTenant = "default"
    public static let secretPrefix = "spk_"

    let database: any RelationalDatabase
    let clock: any WallClock
    /// How long a cached authentication is trusted (nil: until this process revokes it).
    let cacheLifetimeMilliseconds: Int64?
    /// SHA-256 hex of a secret → its owner and when it was cached, for keys that
    /// authenticated since start.
    private let cache = Mutex<[String: (owner: KeyOwner, at: Int64)]>([:])
    /// In front of `cache`, for `cachedOwner`: a secret's fingerprint → its `cache` key, so
    /// the fast lane finds a key it has seen without a SHA-256 and without allocating. An
    /// entry only points into `cache`; a revoked or expired key is gone from there, so a
    /// stale pointer finds nothing. Bounded; secrets themselves are never kept.
    private let fingerprints = Mutex<[SecretFingerprint: String]>([:])
    static let fingerprintsMax = 4096
    /// Counts removals from `cache` (revocations, expiries, invalidation), bumped after
    /// each: a `CacheStamp` holds while it has not moved.
    /// A `SharedWord` so the HTTP server's replay in the reap can check it too.
    public let removals = SharedWord()

    public static let migrations: [SQLMigration] = [
        SQLMigration("access.1", sqlite: """
            CREATE TABLE access_keys (
                id TEXT PRIMARY KEY NOT NULL,
                tenant TEXT NOT NULL,
                is_admin INTEGER NOT NULL,
                hash TEXT NOT NULL UNIQUE,
                created INTEGER NOT NULL,
                revoked_at INTEGER,
                last4 TEXT NOT NULL,
                origin TEXT NOT NULL
            )
            """, postgresql: """
            CREATE TABLE access_keys (
                id TEXT PRIMARY KEY NOT NULL,
                tenant TEXT NOT NULL,
                is_admin INTEGER NOT NULL,
                hash TEXT NOT NULL UNIQUE,
                created BIGINT NOT NULL,
                revoked_at BIGINT,
                last4 TEXT NOT NULL,
                origin TEXT NOT NULL
            )
            """),
    ]

    /// Migrates the access tables and returns the service. `cacheLifetime` bounds how long
    /// a successful authentication is reused without asking the database: give one when
    /// other processes can revoke keys in the same database.
    public static func open(database: any RelationalDatabase, clock: any WallClock,
                            cacheLifetime: Duration? = nil) async throws -> AccessService {
        try await database.migrate(migrations)
        return AccessService(database: database, clock: clock, cacheLifetime: cacheLifetime)
    }

    init(database: any RelationalDatabase, clock: any WallClock, cacheLifetime: Duration?) {
        self.database = database
        self.clock = clock
        self.cacheLifetimeMilliseconds = cacheLifetime.map { $0.components.seconds * 1000 + $0.components.attoseconds / 1_000_000_000_000_000 }
    }

    /// A fresh secret: `spk_` + 40 characters of lowercase base32 (200 bits).
    public static func generateSecret() -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz234567".utf8)
        var rng = SystemRandomNumberGenerator()
        var out = Array(secretPrefix.utf8)
        for _ in 0..<40 {
            let r: UInt8 = rng.next()
            out.append(alphabet[Int(r & 31)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// SHA-256 of the secret, as lowercase hex.
    public static func hash(_ secret: String) -> String {
        SHA256.hash(data: Array(secret.utf8)).withUnsafeBytes { Hex.encode(contiguous: $0) }
    }

    /// Tenant names: 1 to 64 of a-z, 0-9, '_' and '-'.
    public static func isValidTenant(_ t: String) -> Bool {
        (1...64).contains(t.utf8.count) && t.utf8.allSatisfy { b in
            (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) || b == 0x5F || b == 0x2D
        }
    }

    /// The owner of `secret`, or nil (unknown, revoked, or not shaped like a key). Throws
    /// when the database cannot answer: the caller must not take that for a bad key.
    public func authenticate(_ secret: String) async throws -> KeyOwner? {
        guard (16...256).contains(secret.utf8.count) else { return nil }
        let h = Self.hash(secret)
        let now = clock.unixMilliseconds
        if let hit = cache.withLock({ $0[h] }) {
            if let lifetime = cacheLifetimeMilliseconds, now - hit.at >= lifetime {
                cache.withLock { _ = $0.removeValue(forKey: h) }
                removals.wrappingAdd(1)
            } else {
                remember(secret, as: h)
                return hit.owner
            }
        }
        let found = try await database.reading { db -> KeyOwner? in
            guard let row = try db.one("SELECT id, tenant, is_admin FROM access_keys WHERE hash = ? AND revoked_at IS NULL", [h]),
                  let id = AccessKeyID(try row.string("id")) else { return nil }
            return KeyOwner(keyID: id, tenant: try row.string("tenant"), isAdmin: try row.bool("is_admin"))
        }
        guard let owner = found else { return nil }
        cache.withLock { $0[h] = (owner, now) }
        remember(secret, as: h)
        return owner
    }

    /// Points `secret`'s fingerprint at its `cache` key `h`.
    private func remember(_ secret: String, as h: String) {
        let fp = SecretFingerprint(secret.utf8)
        fingerprints.withLock { m in
            if m[fp] == nil, m.count >= Self.fingerprintsMax { m.removeAll(keepingCapacity: true) }
            m[fp] = h
        }
    }

    /// The owner of `secret` when this process's cache knows it and its entry is still
    /// fresh; nil means "not known here", not "bad key": the caller asks `authenticate`.
    public func cachedOwner(secret: ArraySlice<UInt8>) -> KeyOwner? { cachedOwnerStamped(secret: secret)?.owner }

    /// `cachedOwner`, with what keeps the answer true: `stillCurrent(stamp)` holds until
    /// this process revokes or forgets a cached key, or the entry's lifetime ends. The
    /// HTTP server's answer replay (ADR 0019) checks it instead of looking the key up again.
    public func cachedOwnerStamped(secret: ArraySlice<UInt8>) -> (owner: KeyOwner, stamp: CacheStamp)? {
        guard (16...256).contains(secret.count) else { return nil }
        // Read before the entry: a revocation that lands after this load bumps the epoch
        // after its removal, so a stamp never outlives the entry it vouches for.
        let epoch = removals.load()
        let fp = SecretFingerprint(secret)
        guard let h = fingerprints.withLock({ $0[fp] }), let hit = cache.withLock({ $0[h] }) else { return nil }
        var until = Int64.max
        if let lifetime = cacheLifetimeMilliseconds {
            guard clock.unixMilliseconds - hit.at < lifetime else { return nil }
            until = hit.at + lifetime
        }
        return (hit.owner, CacheStamp(epoch: epoch, until: until))
    }

    /// Whether an owner `cachedOwnerStamped` gave with `stamp` is still what it would give.
    public func stillCurrent(_ stamp: CacheStamp) -> Bool {
        removals.load() == stamp.epoch && (stamp.until == .max || clock.unixMilliseconds < stamp.until)
    }

    /// Makes a key for `tenant`; the secret is returned here and never again.
    public func createKey(tenant: String, admin: Bool) async throws -> (record: AccessKeyRecord, secret: String) {
        guard Self.isValidTenant(tenant) else {
            throw ModelError.invalidField("/tenant", "must be 1 to 64 characters of a-z, 0-9, '_' and '-'")
        }
        let secret = Self.generateSecret()
        let record = try await insert(secret: secret, tenant: tenant, admin: admin, origin: "api")
        return (record, secret)
    }

    func insert(secret: String, tenant: String, admin: Bool, origin: String) async throws -> AccessKeyRecord {
        let now = clock.unixMilliseconds
        var rng = SystemRandomNumberGenerator()
        let record = AccessKeyRecord(id: AccessKeyID.generate(milliseconds: UInt64(max(0, now)), using: &rng), tenant: tenant,
                                     isAdmin: admin, created: now, revokedAt: nil, last4: String(secret.suffix(4)), origin: origin)
        let h = Self.hash(secret)
        // A key registered from SPOOL_ADMIN_KEY by two dispatchers starting at once is one row.
        let onConflict = origin == "environment" ? " ON CONFLICT (hash) DO NOTHING" : ""
        _ = try await database.writing { db in
            try db.execute("""
                INSERT INTO access_keys (id, tenant, is_admin, hash, created, revoked_at, last4, origin)
                VALUES (?, ?, ?, ?, ?, NULL, ?, ?)
                """ + onConflict, [record.id.text, record.tenant, record.isAdmin, h, record.created, record.last4, origin])
        }
        return record
    }

    /// Revokes a key: from now on it gets 401. Revoking a revoked key is a no-op; an
    /// unknown id is `not_found`.
    public func revoke(_ id: AccessKeyID) async throws {
        let now = clock.unixMilliseconds
        let (exists, lastAdmin) = try await database.writing { db -> (Bool, Bool) in
            // The last admin key in force is kept: revoking it would leave no one able to
            // manage keys until a restart made a new one.
            let live = try db.one("SELECT is_admin FROM access_keys WHERE id = ? AND revoked_at IS NULL", [id.text])
            if let live, try live.bool("is_admin"),
               (try db.integer("SELECT COUNT(*) FROM access_keys WHERE is_admin <> 0 AND revoked_at IS NULL AND id <> ?", [id.text]) ?? 0) == 0 {
                return (true, true)
            }
            try db.execute("UPDATE access_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", [now, id.text])
            return (try db.exists("SELECT 1 FROM access_keys WHERE id = ?", [id.text]), false)
        }
        if lastAdmin {
            throw ModelError(.conflict, "key \(id.text) is the last admin key: create another admin key before revoking it")
        }
        // After the commit: no cached success outlives the revocation.
        cache.withLock { c in c = c.filter { $0.value.owner.keyID != id } }
        removals.wrappingAdd(1)
        guard exists else { throw ModelError(.notFound, "no key \(id.text)") }
    }

    /// Forgets every cached authentication (after keys were revoked in bulk).
    func invalidateCache() {
        cache.withLock { $0 = [:] }
        removals.wrappingAdd(1)
    }

    public func get(_ id: AccessKeyID) async throws -> AccessKeyRecord? {
        try await database.reading { db in
            try db.one("SELECT * FROM access_keys WHERE id = ?", [id.text]).flatMap(Self.record)
        }
    }

    /// Keys in id (creation) order: after `after` (a cursor's id), else from `offset`.
    public func list(after: String?, offset: Int, limit: Int) async throws -> (records: [AccessKeyRecord], totalCount: Int) {
        try await database.reading { db in
            let total = Int(try db.integer("SELECT COUNT(*) FROM access_keys") ?? 0)
            let rows: [SQLRow]
            if let after {
                rows = try db.query("SELECT * FROM access_keys WHERE id > ? ORDER BY id LIMIT ?", [after, limit])
            } else {
                rows = try db.query("SELECT * FROM access_keys ORDER BY id LIMIT ? OFFSET ?", [limit, offset])
            }
            return (try rows.compactMap(Self.record), total)
        }
    }

    static func record(_ row: SQLRow) throws -> AccessKeyRecord? {
        guard let id = AccessKeyID(try row.string("id")) else { return nil }
        return AccessKeyRecord(id: id, tenant: try row.string("tenant"), isAdmin: try row.bool("is_admin"),
                               created: try row.int64("created"), revokedAt: try row.optionalInt64("revoked_at"),
                               last4: try row.string("last4"), origin: try row.string("origin"))
    }
}

/// 128 bits of a secret under a key drawn once per process (two SipHash states, each
/// seeded with its own random words before the secret): equal secrets give equal
/// fingerprints; without the key nobody can make two secrets collide, or find a secret
/// for a fingerprint, any faster than by guessing 128 bits. `Hasher`'s own per-process
/// seed is not relied on (SWIFT_DETERMINISTIC_HASHING turns it off).
struct SecretFingerprint: Hashable, Sendable {
    let a: Int
    let b: Int

    private static let key: (UInt64, UInt64, UInt64, UInt64) = {
        var g = SystemRandomNumberGenerator()
        return (g.next(), g.next(), g.next(), g.next())
    }()

    init(_ bytes: some Sequence<UInt8>) {
        var h1 = Hasher(), h2 = Hasher()
        let k = Self.key
        h1.combine(k.0); h1.combine(k.1)
        h2.combine(k.2); h2.combine(k.3)
        var word: UInt64 = 0, filled: UInt64 = 0, count = 0
        for byte in bytes {
            word |= UInt64(byte) << (8 * filled)
            filled += 1
            count += 1
            if filled == 8 {
                h1.combine(word); h2.combine(word)
                word = 0; filled = 0
            }
        }
        h1.combine(word); h1.combine(count)
        h2.combine(word); h2.combine(count)
        a = h1.finalize()
        b = h2.finalize()
    }
}
