// MessageQueue: the queue jobs travel through, as a protocol honest about at-least-once
// delivery, with the in-process implementation (`spool serve`/`spool up`, and the tests'
// double). Redis Streams comes behind the same protocol (XADD, XREADGROUP, XACK, XCLAIM to
// extend, XAUTOCLAIM for redelivery, a dead-letter stream).
//
// A message is delivered to one consumer at a time and stays in flight until that
// consumer acks it. One not acked within its visibility timeout is delivered again, to
// whoever receives next, with its delivery count raised: so a message can be delivered
// more than once and consumers must tolerate it. After `maxDeliveries` deliveries without
// an ack it goes to the topic's dead letters; a consumer may also nack it there (or back
// to the queue). Dead letters are kept for inspection (the API shows them).
import Synchronization
import Threads

public struct QueueMessage: Sendable, Equatable {
    public let id: String
    public let topic: String
    public let body: String
    /// How many times it has been delivered, this delivery included.
    public let deliveryCount: Int
    /// Unix milliseconds.
    public let publishedAt: Int64

    public init(id: String, topic: String, body: String, deliveryCount: Int, publishedAt: Int64) {
        self.id = id; self.topic = topic; self.body = body; self.deliveryCount = deliveryCount; self.publishedAt = publishedAt
    }
}

/// One delivery of a message; ack, nack and extend name it by its receipt.
public struct QueueDelivery: Sendable, Equatable {
    public let message: QueueMessage
    public let receipt: UInt64

    public init(message: QueueMessage, receipt: UInt64) { self.message = message; self.receipt = receipt }
}

public struct DeadLetter: Sendable, Equatable {
    public let message: QueueMessage
    public let reason: String
    /// Unix milliseconds.
    public let at: Int64

    public init(message: QueueMessage, reason: String, at: Int64) { self.message = message; self.reason = reason; self.at = at }
}

public struct QueueError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}

public protocol MessageQueue: Sendable {
    /// Appends a message; returns its id.
    @discardableResult
    func publish(topic: String, body: String) async throws -> String
    /// Up to `max` messages not in flight (oldest first, redeliveries included), each in
    /// flight for `visibility`; waits up to `wait` for the first.
    func receive(topic: String, consumer: String, max: Int, visibility: Duration, wait: Duration) async throws -> [QueueDelivery]
    /// Done with it: gone from the queue. A stale receipt (it was redelivered) is refused.
    func ack(_ delivery: QueueDelivery) async throws
    /// Not done: back to the queue now (`requeue`), or to the dead letters with `reason`.
    func nack(_ delivery: QueueDelivery, requeue: Bool, reason: String) async throws
    /// Keeps a message in flight `visibility` longer (a consumer still working on it).
    func extend(_ delivery: QueueDelivery, visibility: Duration) async throws
    /// Puts a message straight into the topic's dead letters (what failed for good).
    func deadLetter(topic: String, body: String, reason: String) async throws
    /// The topic's dead letters, newest last.
    func deadLetters(topic: String, limit: Int) async throws -> [DeadLetter]
    /// Messages waiting and in flight (for metrics).
    func depth(topic: String) async -> (waiting: Int, inFlight: Int)
    /// The bodies of up to `limit` messages waiting or in flight, oldest first (the
    /// reconciler publishes again what the database says is ready and the queue lacks).
    func queuedBodies(topic: String, limit: Int) async throws -> [String]
}

/// The in-process queue: FIFO per topic, in-flight table with deadlines on the injected clock.
public final class InProcessMessageQueue: MessageQueue {
    struct Entry: Sendable {
        var id: String
        var body: String
        var publishedAt: Int64
        var deliveries: Int
    }
    struct InFlight: Sendable {
        var entry: Entry
        var receipt: UInt64
        var deadline: MonotonicInstant
    }
    struct Topic: Sendable {
        var waiting: [Entry] = []
        var head = 0
        var inFlight: [String: InFlight] = [:]
        var dead: [DeadLetter] = []
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    struct State: Sendable {
        var topics: [String: Topic] = [:]
        var nextID: UInt64 = 0
        var nextReceipt: UInt64 = 0
    }

    let clock: any ServiceClock
    let maxDeliveries: Int
    let deadLetterLimit: Int
    let state = Mutex(State())

    public init(clock: any ServiceClock, maxDeliveries: Int = 10, deadLetterLimit: Int = 10_000) {
        self.clock = clock
        self.maxDeliveries = max(1, maxDeliveries)
        self.deadLetterLimit = max(1, deadLetterLimit)
    }

    public func publish(topic: String, body: String) async throws -> String {
        let now = clock.unixMilliseconds
        let (id, waiters) = state.withLock { s -> (String, [CheckedContinuation<Void, Never>]) in
            s.nextID += 1
            let id = "\(now)-\(s.nextID)"
            s.topics[topic, default: Topic()].waiting.append(Entry(id: id, body: body, publishedAt: now, deliveries: 0))
            let w = s.topics[topic]!.waiters
            s.topics[topic]!.waiters = []
            return (id, w)
        }
        for w in waiters { w.resume() }
        return id
    }

    public func receive(topic: String, consumer: String, max: Int, visibility: Duration, wait: Duration) async throws -> [QueueDelivery] {
        let deadline = clock.now + wait
        while true {
            let got = take(topic: topic, max: max, visibility: visibility)
            if !got.isEmpty || clock.now >= deadline || Task.isCancelled { return got }
            // Wait for a publish, or the deadline (or an in-flight message's visibility running out).
            let nextExpiry = state.withLock { s in s.topics[topic]?.inFlight.values.map(\.deadline).min() }
            let until = min(deadline, nextExpiry ?? deadline)
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                state.withLock { $0.topics[topic, default: Topic()].waiters.append(c) }
                Task { [clock] in
                    try? await clock.sleep(until: until)
                    self.wakeAll(topic)
                }
            }
        }
    }

    func wakeAll(_ topic: String) {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            let w = s.topics[topic]?.waiters ?? []
            s.topics[topic]?.waiters = []
            return w
        }
        for w in waiters { w.resume() }
    }

    /// Expired in-flight messages first (redelivered, or dead after too many deliveries), then new ones.
    func take(topic: String, max: Int, visibility: Duration) -> [QueueDelivery] {
        let now = clock.now
        let wall = clock.unixMilliseconds
        return state.withLock { s -> [QueueDelivery] in
            guard var t = s.topics[topic] else { return [] }
            var out: [QueueDelivery] = []
            let expired = t.inFlight.values.filter { $0.deadline <= now }.sorted { $0.entry.id < $1.entry.id }
            for var f in expired {
                t.inFlight[f.entry.id] = nil
                if f.entry.deliveries >= maxDeliveries {
                    t.dead.append(DeadLetter(message: Self.message(f.entry, topic), reason: "delivered \(f.entry.deliveries) times without an ack", at: wall))
                    continue
                }
                guard out.count < max else { t.waiting.append(f.entry); continue }
                s.nextReceipt += 1
                f.entry.deliveries += 1
                f.receipt = s.nextReceipt
                f.deadline = now + visibility
                t.inFlight[f.entry.id] = f
                out.append(QueueDelivery(message: Self.message(f.entry, topic), receipt: f.receipt))
            }
            while out.count < max && t.head < t.waiting.count {
                var e = t.waiting[t.head]
                t.head += 1
                e.deliveries += 1
                s.nextReceipt += 1
                t.inFlight[e.id] = InFlight(entry: e, receipt: s.nextReceipt, deadline: now + visibility)
                out.append(QueueDelivery(message: Self.message(e, topic), receipt: s.nextReceipt))
            }
            if t.head > 1_024 && t.head * 2 > t.waiting.count {
                t.waiting.removeFirst(t.head)
                t.head = 0
            }
            if t.dead.count > deadLetterLimit { t.dead.removeFirst(t.dead.count - deadLetterLimit) }
            s.topics[topic] = t
            return out
        }
    }

    static func message(_ e: Entry, _ topic: String) -> QueueMessage {
        QueueMessage(id: e.id, topic: topic, body: e.body, deliveryCount: e.deliveries, publishedAt: e.publishedAt)
    }

    /// The in-flight entry of a delivery, taken out; throws for a stale receipt.
    func settle(_ d: QueueDelivery) throws -> Entry {
        let topic = d.message.topic
        let entry = state.withLock { s -> Entry? in
            guard let f = s.topics[topic]?.inFlight[d.message.id], f.receipt == d.receipt else { return nil }
            s.topics[topic]!.inFlight[d.message.id] = nil
            return f.entry
        }
        guard let entry else {
            throw QueueError("message \(d.message.id) is no longer in flight under this delivery (its visibility ran out and it was delivered again)")
        }
        return entry
    }

    public func ack(_ delivery: QueueDelivery) async throws {
        _ = try settle(delivery)
    }

    public func nack(_ delivery: QueueDelivery, requeue: Bool, reason: String) async throws {
        let entry = try settle(delivery)
        let topic = delivery.message.topic
        let wall = clock.unixMilliseconds
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            if requeue {
                s.topics[topic]!.waiting.append(entry)
            } else {
                s.topics[topic]!.dead.append(DeadLetter(message: Self.message(entry, topic), reason: reason, at: wall))
            }
            let w = s.topics[topic]!.waiters
            s.topics[topic]!.waiters = []
            return w
        }
        for w in waiters { w.resume() }
    }

    public func extend(_ delivery: QueueDelivery, visibility: Duration) async throws {
        let now = clock.now
        let ok = state.withLock { s -> Bool in
            guard var f = s.topics[delivery.message.topic]?.inFlight[delivery.message.id], f.receipt == delivery.receipt else { return false }
            f.deadline = now + visibility
            s.topics[delivery.message.topic]!.inFlight[delivery.message.id] = f
            return true
        }
        if !ok { throw QueueError("message \(delivery.message.id) is no longer in flight under this delivery") }
    }

    public func deadLetter(topic: String, body: String, reason: String) async throws {
        let wall = clock.unixMilliseconds
        state.withLock { s in
            s.nextID += 1
            let e = Entry(id: "\(wall)-\(s.nextID)", body: body, publishedAt: wall, deliveries: 0)
            s.topics[topic, default: Topic()].dead.append(DeadLetter(message: Self.message(e, topic), reason: reason, at: wall))
            if s.topics[topic]!.dead.count > deadLetterLimit { s.topics[topic]!.dead.removeFirst() }
        }
    }

    public func deadLetters(topic: String, limit: Int) async throws -> [DeadLetter] {
        state.withLock { s in Array((s.topics[topic]?.dead ?? []).suffix(max(0, limit))) }
    }

    public func queuedBodies(topic: String, limit: Int) async throws -> [String] {
        state.withLock { s in
            guard let t = s.topics[topic] else { return [] }
            let flying = t.inFlight.values.sorted { $0.entry.id < $1.entry.id }.map(\.entry.body)
            return Array((flying + t.waiting[t.head...].map(\.body)).prefix(max(0, limit)))
        }
    }

    public func depth(topic: String) async -> (waiting: Int, inFlight: Int) {
        state.withLock { s in
            guard let t = s.topics[topic] else { return (0, 0) }
            return (t.waiting.count - t.head, t.inFlight.count)
        }
    }
}
