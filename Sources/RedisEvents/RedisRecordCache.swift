// RedisEvents.RedisRecordCache: cache-aside in Redis for records every dispatcher reads by
// id (a job's representation, an engine's details), shared by all dispatchers on one Redis
// (docs/adr/0014-redis-record-cache.md).
//
//   PREFIX:cache:SUBJECT   "e:" + the cached bytes (expires after `ttl`), or
//                          "g:" + a generation: the marker RedisEventBus's publish leaves
//                          when the subject changes (expires after 120 s)
//
// A read looks the key up: an entry is a hit; a miss remembers what it saw (nothing, or a
// marker), reads the record from the database, and fills the key only if it still holds
// exactly that (one Lua script). A change committed between the look and the fill has
// replaced the marker, so a reader can never store a record older than the newest change:
// after a change's publish returns, every read sees the change or something newer. Any
// Redis error is a miss without a fill (the database answers); while the event bus owes
// invalidations (Redis was down at a publish), this process does not read the cache.
import Redis
import Synchronization

public final class RedisRecordCache: Sendable {
    public let client: RedisClient
    let bus: RedisEventBus
    let ttlMilliseconds: Int64

    /// What a lookup found.
    public enum Lookup: Sendable, Equatable {
        case hit([UInt8])
        /// Not cached: fill with this generation ("" when the key was empty), or nil when
        /// the cache cannot be used now (no fill).
        case miss(generation: String?)
    }

    public struct Counts: Sendable, Equatable {
        public var hits: UInt64 = 0
        public var misses: UInt64 = 0
        public var fills: UInt64 = 0
        /// Fills refused because the record changed since the lookup.
        public var refusedFills: UInt64 = 0
        /// Lookups that did not reach Redis (an error, or invalidations owed).
        public var bypassed: UInt64 = 0
    }
    private let counts = Mutex(Counts())

    public init(bus: RedisEventBus, ttl: Duration) {
        client = bus.client
        self.bus = bus
        ttlMilliseconds = max(1, ttl.nanosecondsClamped / 1_000_000)
    }

    public var figures: Counts { counts.withLock { $0 } }

    static let fillScript = RedisScript("""
        local v = redis.call('GET', KEYS[1])
        if (v == false and ARGV[1] == '') or v == ARGV[1] then
          redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
          return 1
        end
        return 0
        """)

    public func lookup(_ subject: String) async -> Lookup {
        guard !bus.owesInvalidations else {
            counts.withLock { $0.bypassed += 1 }
            return .miss(generation: nil)
        }
        do {
            let reply = try await client.send(["GET", bus.cacheKey(subject)])
            guard let text = reply.text else {
                counts.withLock { $0.misses += 1 }
                return .miss(generation: "")
            }
            if text.hasPrefix("e:") {
                counts.withLock { $0.hits += 1 }
                return .hit(Array(text.utf8.dropFirst(2)))
            }
            counts.withLock { $0.misses += 1 }
            return .miss(generation: text)
        } catch {
            counts.withLock { $0.bypassed += 1 }
            return .miss(generation: nil)
        }
    }

    /// Stores `value` for `subject` if the key still holds what the lookup saw.
    public func fill(_ subject: String, _ value: [UInt8], generation: String?) async {
        guard let generation else { return }
        let stored = "e:" + String(decoding: value, as: UTF8.self)
        let reply = try? await client.eval(Self.fillScript, keys: [bus.cacheKey(subject)],
                                           args: [generation, stored, String(ttlMilliseconds)])
        counts.withLock { c in
            if reply?.integer == 1 { c.fills += 1 } else { c.refusedFills += 1 }
        }
    }
}
