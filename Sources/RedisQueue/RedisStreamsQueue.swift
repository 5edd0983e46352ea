// RedisQueue.RedisStreamsQueue: the MessageQueue protocol over Redis Streams, for several
// dispatchers sharing one queue. A topic is a stream (`PREFIX:q:TOPIC`) with one consumer
// group; its dead letters are a second stream (`PREFIX:dlq:TOPIC`, capped).
//
//   publish      XADD (fields: b = body, d = deliveries before a requeue)
//   receive      first XAUTOCLAIM what sat unacked longer than the visibility (a Lua script
//                that also moves what was delivered maxDeliveries times to the dead
//                letters), then XREADGROUP ... > for new entries (BLOCK when waiting)
//   ack          XACK + XDEL, in a script that first checks the receipt
//   nack         requeue: XADD a copy (its delivery count carried) + XACK + XDEL;
//                dead: XADD to the dead letters + XACK + XDEL
//   extend       XCLAIM ... JUSTID: resets the entry's idle time, not its delivery count
//
// A receipt is the entry's delivery count in the group's pending list: every redelivery
// raises it, so a consumer whose message was reclaimed by another is refused on ack,
// nack and extend, as in the in-process queue. Visibility is measured by Redis as the
// entry's idle time: a message becomes reclaimable once it has been idle (not delivered,
// not extended) for the visibility the reclaiming receive names; every consumer of a
// topic uses the same visibility.
//
// Losing Redis's data (FLUSHALL, a restart without AOF) loses the stream and its group:
// commands that meet NOGROUP recreate the group, and the dispatcher's reconciler
// publishes again every pending job the stream no longer holds. Acked entries are
// deleted, so the stream holds exactly what is waiting or in flight.
import MessageQueue
import RESP
import Redis
import Threads

public final class RedisStreamsQueue: MessageQueue {
    public let client: RedisClient
    let prefix: String
    let group = "spool"
    let maxDeliveries: Int
    let deadLetterLimit: Int
    let clock: any ServiceClock

    public init(client: RedisClient, keyPrefix: String = "spool", maxDeliveries: Int = 10, deadLetterLimit: Int = 10_000,
                clock: any ServiceClock = SystemClock.shared) {
        self.client = client
        self.clock = clock
        self.prefix = keyPrefix
        self.maxDeliveries = max(1, maxDeliveries)
        self.deadLetterLimit = max(1, deadLetterLimit)
    }

    func stream(_ topic: String) -> String { "\(prefix):q:\(topic)" }
    func dead(_ topic: String) -> String { "\(prefix):dlq:\(topic)" }

    /// Creates the topic's group (and stream) unless it exists.
    func ensureGroup(_ topic: String) async throws(RedisError) {
        do {
            try await client.send(["XGROUP", "CREATE", stream(topic), group, "0", "MKSTREAM"])
        } catch where error.code == "BUSYGROUP" {}
    }

    /// Runs `body`; on NOGROUP (the stream or group is gone: FLUSHALL, a restart without
    /// persistence) creates the group and runs it once more.
    func withGroup<T>(_ topic: String, _ body: () async throws(RedisError) -> T) async throws(QueueError) -> T {
        do {
            do { return try await body() } catch where error.code == "NOGROUP" {
                try await ensureGroup(topic)
                return try await body()
            }
        } catch {
            throw QueueError("the Redis queue failed: \(error)")
        }
    }

    // MARK: Publishing

    public func publish(topic: String, body: String) async throws -> String {
        try await publish(topic: topic, body: body, priorDeliveries: 0)
    }

    func publish(topic: String, body: String, priorDeliveries: Int) async throws(QueueError) -> String {
        let reply = try await withGroup(topic) { () throws(RedisError) in
            try await client.send(["XADD", stream(topic), "*", "b", body, "d", String(priorDeliveries)])
        }
        guard let id = reply.text else { throw QueueError("XADD answered \(reply)") }
        return id
    }

    // MARK: Receiving

    public func receive(topic: String, consumer: String, max: Int, visibility: Duration, wait: Duration) async throws -> [QueueDelivery] {
        let count = Swift.max(1, max)
        let deadline = ContinuousClock.now + wait
        while true {
            var out = try await reclaim(topic: topic, consumer: consumer, count: count, visibility: visibility)
            if out.count < count {
                let left = deadline - ContinuousClock.now
                // Block for new entries only when nothing came and there is time left (at
                // most a second at a time, so due redeliveries are picked up too).
                let block: Duration? = out.isEmpty && left > .milliseconds(1) ? Swift.min(left, .seconds(1)) : nil
                out += try await readNew(topic: topic, consumer: consumer, count: count - out.count, block: block)
            }
            if !out.isEmpty || ContinuousClock.now >= deadline || Task.isCancelled { return out }
        }
    }

    /// Entries idle past the visibility, claimed for `consumer`; the ones delivered
    /// maxDeliveries times already go to the dead letters instead.
    func reclaim(topic: String, consumer: String, count: Int, visibility: Duration) async throws(QueueError) -> [QueueDelivery] {
        let idle = Swift.max(1, visibility.nanosecondsClamped / 1_000_000)
        let reply = try await withGroup(topic) { () throws(RedisError) in
            try await client.eval(Self.reclaimScript, keys: [stream(topic), dead(topic)],
                                  args: [group, consumer, String(idle), String(count), String(maxDeliveries), String(deadLetterLimit)])
        }
        guard let rows = reply.array else { throw QueueError("the reclaim script answered \(reply)") }
        return try rows.map { row throws(QueueError) in
            guard let f = row.array, f.count == 4, let id = f[0].text, let body = f[1].text,
                  let prior = f[2].integer, let pending = f[3].integer else {
                throw QueueError("the reclaim script answered a malformed row: \(row)")
            }
            return delivery(topic: topic, id: id, body: body, prior: Int(prior), pending: pending)
        }
    }

    /// New entries (never delivered to the group), each delivered for the first time in the group.
    func readNew(topic: String, consumer: String, count: Int, block: Duration?) async throws(QueueError) -> [QueueDelivery] {
        var args = ["XREADGROUP", "GROUP", group, consumer, "COUNT", String(count)]
        if let block { args += ["BLOCK", String(Swift.max(1, block.nanosecondsClamped / 1_000_000))] }
        args += ["STREAMS", stream(topic), ">"]
        let reply = try await withGroup(topic) { () throws(RedisError) in
            if let block { return try await client.blocking(args, block: block) }
            return try await client.send(args)
        }
        if reply.isNull { return [] }
        guard let streams = reply.array else { throw QueueError("XREADGROUP answered \(reply)") }
        var out: [QueueDelivery] = []
        for s in streams {
            guard let pair = s.array, pair.count == 2 else { throw QueueError("XREADGROUP answered \(reply)") }
            for (id, map) in pair[1].streamEntries {
                out.append(delivery(topic: topic, id: id, body: map["b"] ?? "", prior: Int(map["d"] ?? "0") ?? 0, pending: 1))
            }
        }
        return out
    }

    func delivery(topic: String, id: String, body: String, prior: Int, pending: Int64) -> QueueDelivery {
        let published = Int64(id.split(separator: "-").first ?? "") ?? 0
        return QueueDelivery(message: QueueMessage(id: id, topic: topic, body: body, deliveryCount: prior + Int(pending), publishedAt: published),
                             receipt: UInt64(pending))
    }

    // MARK: Settling

    public func ack(_ delivery: QueueDelivery) async throws {
        try await settle(delivery, mode: "ack", reason: "")
    }

    public func nack(_ delivery: QueueDelivery, requeue: Bool, reason: String) async throws {
        try await settle(delivery, mode: requeue ? "requeue" : "dead", reason: reason)
    }

    public func extend(_ delivery: QueueDelivery, visibility: Duration) async throws {
        try await settle(delivery, mode: "extend", reason: "")
    }

    func settle(_ d: QueueDelivery, mode: String, reason: String) async throws(QueueError) {
        let topic = d.message.topic
        let reply: RESPValue
        do {
            reply = try await client.eval(Self.settleScript, keys: [stream(topic), dead(topic)],
                                          args: [group, d.message.id, String(d.receipt), mode, reason, String(deadLetterLimit)])
        } catch where error.code == "NOGROUP" {
            throw QueueError("message \(d.message.id) is no longer in flight: the queue's stream is gone (Redis lost its data)")
        } catch {
            throw QueueError("the Redis queue failed: \(error)")
        }
        guard reply.integer == 1 else {
            throw QueueError("message \(d.message.id) is no longer in flight under this delivery (its visibility ran out and it was delivered again)")
        }
    }

    // MARK: Dead letters and depth

    public func deadLetter(topic: String, body: String, reason: String) async throws {
        let now = String(clock.unixMilliseconds)
        do {
            try await client.send(["XADD", dead(topic), "MAXLEN", "~", String(deadLetterLimit), "*",
                                   "b", body, "r", reason, "id", "", "d", "0", "p", now])
        } catch {
            throw QueueError("the Redis queue failed: \(error)")
        }
    }

    public func deadLetters(topic: String, limit: Int) async throws -> [DeadLetter] {
        guard limit > 0 else { return [] }
        let reply: RESPValue
        do { reply = try await client.send(["XREVRANGE", dead(topic), "+", "-", "COUNT", String(limit)]) } catch {
            throw QueueError("the Redis queue failed: \(error)")
        }
        var out: [DeadLetter] = []
        for (id, m) in reply.streamEntries {
            let at = Int64(id.split(separator: "-").first ?? "") ?? 0
            let original = m["id"].flatMap { $0.isEmpty ? nil : $0 } ?? id
            let published = Int64(m["p"] ?? "") ?? Int64(original.split(separator: "-").first ?? "") ?? at
            let message = QueueMessage(id: original, topic: topic, body: m["b"] ?? "", deliveryCount: Int(m["d"] ?? "0") ?? 0, publishedAt: published)
            out.append(DeadLetter(message: message, reason: m["r"] ?? "", at: at))
        }
        return out.reversed()
    }

    public func depth(topic: String) async -> (waiting: Int, inFlight: Int) {
        guard let r = try? await client.pipeline([["XLEN", stream(topic)], ["XPENDING", stream(topic), group]]) else { return (0, 0) }
        let length = Int(r[0].integer ?? 0)
        let pending = Int(r[1].array?.first?.integer ?? 0)
        return (Swift.max(0, length - pending), pending)
    }

    /// Removes the topic's consumers that hold no message and were idle for `idle` (each
    /// dispatcher start names a new consumer; the stopped ones would pile up in the group).
    /// Returns their names.
    @discardableResult
    public func pruneConsumers(topic: String, idle: Duration) async throws -> [String] {
        let ms = Swift.max(0, idle.nanosecondsClamped / 1_000_000)
        let reply: RESPValue
        do { reply = try await client.eval(Self.pruneScript, keys: [stream(topic)], args: [group, String(ms)]) } catch {
            throw QueueError("the Redis queue failed: \(error)")
        }
        return (reply.array ?? []).compactMap(\.text)
    }

    public func queuedBodies(topic: String, limit: Int) async throws -> [String] {
        var out: [String] = []
        var start = "-"
        while out.count < limit {
            let reply: RESPValue
            do { reply = try await client.send(["XRANGE", stream(topic), start, "+", "COUNT", String(Swift.min(1_000, limit - out.count))]) } catch {
                throw QueueError("the Redis queue failed: \(error)")
            }
            let entries = reply.streamEntries
            guard let last = entries.last?.id else { break }
            out += entries.map { $0.fields["b"] ?? "" }
            start = "(" + last
        }
        return out
    }
}
