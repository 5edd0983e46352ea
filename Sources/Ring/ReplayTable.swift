// Ring.ReplayTable: the io_uring reap's replayed answers, Swift's side (ADR 0019,
// addendum 5; the C side is CShims/CURing/replay.c).
//
// A connection may keep one request and its framed answer in an entry of its loop's table
// (`TCPConnection.keepReplay`) and arm it while its task waits for the next request with
// nothing to send. The reap then answers a receive that carries exactly that request by
// itself, without copying the completion out to Swift: Date and request id renewed in place,
// the answer sent, the receive buffer handed back to the kernel, as long as every guard
// word the answer was made under still holds its value (a cached record not superseded, a
// key cache not changed). The metrics a replay would record are folded in per reap
// (`fold`), through closures registered per metric key.
// Only the io_uring backend has a table; elsewhere the HTTP server's own replay (Web's
// LaneShortcut) answers alone. Loop-confined.
internal import CURing
import Synchronization
import Threads

@safe package final class ReplayTable {
    private let ring: OpaquePointer
    private let stats: UnsafeMutablePointer<curing_replay_stat>
    private var folds: [(key: ObjectIdentifier, fold: (Int, Int64) -> Void)] = []
    /// Receives the reap answered by itself since the loop started (tests and benchmarks;
    /// read from any thread).
    private let replayedCount = Atomic<Int>(0)
    package var replayed: Int { replayedCount.load(ordering: .relaxed) }
    /// Entries open now (tests).
    package private(set) var open = 0

    init?(ring: OpaquePointer, capacity: Int, slots: Int, poolBase: UnsafeMutableRawPointer, bufferSize: Int) {
        guard unsafe curing_replays_setup(ring, UInt32(min(capacity, Int(CURING_REPLAY_INDEX_MASK) + 1)), UInt32(slots),
                                          poolBase, UInt32(bufferSize)) == 0 else { return nil }
        unsafe self.ring = ring
        unsafe stats = curing_replay_stats(ring)
    }

    /// The index of the counter replays with this key add to, registering `fold` on first
    /// use; nil when all CURING_REPLAY_METRICS are taken (the answer is then not armed).
    /// `fold(count, nanoseconds)` is called on the loop thread after a reap that replayed
    /// with this key (before its sends are submitted, so whoever reads an answer finds it
    /// counted); it holds what it captures for the loop's life.
    func metricIndex(for key: ObjectIdentifier, fold: @escaping (Int, Int64) -> Void) -> UInt32? {
        if let i = folds.firstIndex(where: { $0.key == key }) { return UInt32(i) }
        guard folds.count < Int(CURING_REPLAY_METRICS) else { return nil }
        folds.append((key, fold))
        return UInt32(folds.count - 1)
    }

    /// Folds the counters a reap added to (`replayed` receives answered).
    func fold(replayed n: Int) {
        replayedCount.add(n, ordering: .relaxed)
        for i in folds.indices {
            let count = unsafe stats[i].count
            guard count > 0 else { continue }
            let nanos = unsafe stats[i].nanos
            unsafe stats[i] = curing_replay_stat(count: 0, nanos: 0)
            folds[i].fold(Int(count), nanos)
        }
    }

    func openEntry(fd: Int32, owner: UnsafeMutableRawPointer) -> UnsafeMutablePointer<curing_replay>? {
        var index: UInt32 = 0
        guard let e = unsafe curing_replay_open(ring, fd, owner, &index) else { return nil }
        open += 1
        return unsafe e
    }

    /// Set when the ring (and the entries with it) is destroyed: a connection that outlives
    /// its loop has nothing left to release.
    private var destroyed = false

    func release(_ e: UnsafeMutablePointer<curing_replay>) {
        guard !destroyed else { return }
        unsafe curing_replay_release(ring, e)
        open -= 1
    }

    /// The backend is destroying the ring: entries are freed with it.
    func ringDestroyed() { destroyed = true }

    func arm(_ e: UnsafeMutablePointer<curing_replay>, receive ud: UInt64) { unsafe curing_replay_arm(ring, e, ud) }

    /// The connection a replay user_data names, if its entry is still open.
    func owner(of ud: UInt64) -> UnsafeMutableRawPointer? {
        guard let e = unsafe curing_replay_lookup(ring, ud) else { return nil }
        return unsafe e.pointee.owner
    }
}

/// A word a replayed answer depends on, and the value it must still hold.
public struct ReplayGuard {
    public let word: SharedWord
    public let value: UInt64
    public init(_ word: SharedWord, equals value: UInt64) {
        self.word = word
        self.value = value
    }
}

/// What a connection keeps for the reap to replay (`TCPConnection.keepReplay`).
public struct ReplayKeep {
    /// The framed answer; `dateAt` is where its Date's 29 bytes start, `requestIDAt` where
    /// the 16 counter digits of a request id the server made start (-1: none).
    public var answer: [UInt8]
    public var dateAt: Int
    public var requestIDAt: Int
    /// The counter request ids are numbered from (a replay takes the next, as the server
    /// would), when `requestIDAt` is set.
    public var requestIDs: SharedWord?
    public var guards: [ReplayGuard]
    /// Which counter the replays add to, and how they are recorded: `fold(count, nanoseconds)`.
    public var metricKey: ObjectIdentifier
    public var fold: (Int, Int64) -> Void

    public init(answer: [UInt8], dateAt: Int, requestIDAt: Int, requestIDs: SharedWord?, guards: [ReplayGuard],
                metricKey: ObjectIdentifier, fold: @escaping (Int, Int64) -> Void) {
        self.answer = answer
        self.dateAt = dateAt
        self.requestIDAt = requestIDAt
        self.requestIDs = requestIDs
        self.guards = guards
        self.metricKey = metricKey
        self.fold = fold
    }
}
