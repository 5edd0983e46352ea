// Jobs.ShardRouter: which of K databases holds a job. A job's shard is a hash of its id
// (FNV-1a over the id's text, finalized) modulo the shard count of the layout its id falls under.
// Layouts are how shards are added without moving a row: each says "jobs whose id was made
// from this millisecond on are spread over the first N shards". An id carries its creation
// millisecond, so every dispatcher routes every id the same way from the id alone, old jobs
// stay where they were placed, and new ones spread over the grown set (docs/adr/0012).
// Idempotency keys have a home shard too (a hash of tenant and key under the layout of
// the moment), where a submission under that key is stored with its job, so a replayed
// key is found in one place.
//
// ShardPositions is a cross-shard list's cursor: for each shard, the last id that shard
// contributed (none yet: the shard's start). Each shard resumes after its own position, so
// a job inserted on one shard while a client pages is neither repeated nor skipped because
// another shard moved ahead.
import SpoolModel

public struct ShardRouter: Sendable, Equatable {
    /// From `sinceMilliseconds` on (id time), jobs go to the first `count` shards.
    public struct Layout: Sendable, Equatable {
        public var sinceMilliseconds: UInt64
        public var count: Int
        public init(sinceMilliseconds: UInt64, count: Int) {
            self.sinceMilliseconds = sinceMilliseconds
            self.count = count
        }
    }

    public let shardCount: Int
    /// Ascending by time; the first starts at 0.
    public let layouts: [Layout]

    /// One layout over all `shardCount` shards.
    public init(shardCount: Int) {
        precondition(shardCount >= 1)
        self.shardCount = shardCount
        layouts = [Layout(sinceMilliseconds: 0, count: shardCount)]
    }

    private init(checked shardCount: Int, _ layouts: [Layout]) {
        self.shardCount = shardCount
        self.layouts = layouts
    }

    /// `layouts` as configured (`database.job_shard_layouts`): ascending times, counts from 1
    /// to `shardCount` that never shrink. The first layout always starts at time 0.
    public init(shardCount: Int, layouts: [Layout]) throws(ShardLayoutError) {
        guard shardCount >= 1 else { throw ShardLayoutError("there must be at least one shard") }
        guard !layouts.isEmpty else { self.init(shardCount: shardCount); return }
        var previous: Layout?
        for l in layouts {
            guard (1...shardCount).contains(l.count) else {
                throw ShardLayoutError("a layout spreads jobs over \(l.count) shards; there are \(shardCount)")
            }
            if let p = previous {
                guard l.sinceMilliseconds > p.sinceMilliseconds else { throw ShardLayoutError("layout times must ascend") }
                // Shrinking would strand the jobs of the shards dropped; a shard is retired by
                // moving its rows, not by a layout.
                guard l.count >= p.count else { throw ShardLayoutError("a later layout cannot spread over fewer shards") }
            }
            previous = l
        }
        var all = layouts
        all[0].sinceMilliseconds = 0
        self.init(checked: shardCount, all)
    }

    /// Parses "COUNT@MILLISECONDS,..." (e.g. "2@0,3@1767225600000").
    public static func parseLayouts(_ text: String) throws(ShardLayoutError) -> [Layout] {
        var out: [Layout] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let pieces = part.split(separator: "@", omittingEmptySubsequences: false)
            guard pieces.count == 2, let n = Int(pieces[0]), let ms = UInt64(pieces[1]) else {
                throw ShardLayoutError("\"\(part)\" is not COUNT@MILLISECONDS")
            }
            out.append(Layout(sinceMilliseconds: ms, count: n))
        }
        return out
    }

    /// How many shards take new jobs at `milliseconds`.
    public func count(at milliseconds: UInt64) -> Int {
        var count = layouts[0].count
        for l in layouts where l.sinceMilliseconds <= milliseconds { count = l.count }
        return count
    }

    /// The shard holding job `id`.
    public func shard(of id: JobID) -> Int {
        Int(Self.hash(id.text.utf8) % UInt64(count(at: id.milliseconds)))
    }

    /// Where a submission under (tenant, key) made at `milliseconds` is stored.
    public func shard(tenant: String, key: String, at milliseconds: UInt64) -> Int {
        var bytes = Array(tenant.utf8)
        bytes.append(0)
        bytes += key.utf8
        return Int(Self.hash(bytes) % UInt64(count(at: milliseconds)))
    }

    /// FNV-1a, then a 64-bit finalizer (MurmurHash3's fmix64): FNV's low bits alone are a
    /// poor spread (its lowest bit is the parity of the bytes' lowest bits), and a modulo
    /// by a small shard count reads mostly low bits.
    static func hash<S: Sequence>(_ bytes: S) -> UInt64 where S.Element == UInt8 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes {
            h ^= UInt64(b)
            h = h &* 0x100_0000_01b3
        }
        h ^= h >> 33
        h = h &* 0xff51_afd7_ed55_8ccd
        h ^= h >> 33
        h = h &* 0xc4ce_b9fe_1a85_ec53
        h ^= h >> 33
        return h
    }
}

public struct ShardLayoutError: Error, Sendable, CustomStringConvertible {
    public let message: String
    init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A cross-shard list's place: per shard, the last id it gave (nil: not started).
public struct ShardPositions: Sendable, Equatable {
    public var ids: [JobID?]
    public init(ids: [JobID?]) { self.ids = ids }

    /// "ID~ID~-": one entry per shard, "-" for a shard not started.
    public var text: String { ids.map { $0?.text ?? "-" }.joined(separator: "~") }

    /// Parses `text` (nil unless every entry is a job id or "-", and there are at least two).
    public init?(text: String) {
        let parts = text.split(separator: "~", omittingEmptySubsequences: false)
        guard parts.count >= 2, parts.count <= 64 else { return nil }
        var ids: [JobID?] = []
        for p in parts {
            if p == "-" { ids.append(nil); continue }
            guard let id = JobID(String(p)) else { return nil }
            ids.append(id)
        }
        self.ids = ids
    }
}
