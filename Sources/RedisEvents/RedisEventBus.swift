// RedisEvents.RedisEventBus: the EventBus shared by several dispatchers over Redis Streams,
// so `GET /jobs/{id}/events` on any dispatcher follows a job another one schedules.
//
//   PREFIX:ev            every event of every dispatcher (capped, MAXLEN ~ `globalMax`)
//   PREFIX:ev:SUBJECT    one subject's last `replay_window` events (exact MAXLEN), the
//                        replay for Last-Event-ID; the key expires `subjectTTL` after the
//                        subject's last event
//
// A publish is one Lua script: XADD to the global stream (Redis picks the id), then XADD
// of the same entry with the same id to the subject's stream, so an event has one id
// everywhere. Ids are Redis stream ids `ms-seq` as one number, `ms << 20 | seq`: they
// increase in publication order across every dispatcher (one Redis orders them) and stay
// below 2^63.
//
// Live delivery: each bus runs one reader (`run`) that follows the global stream with
// XREAD BLOCK on a connection of its own, from the newest entry when it begins (or from
// where a subscription made before that replayed up to), and hands each
// event to this process's subscribers of its subject: one Redis connection per
// dispatcher, however many SSE clients it has. A subscriber is registered before its
// replay is read (XRANGE of the subject's stream after its Last-Event-ID), and events the
// reader brings meanwhile wait until the replay is out; any with an id the replay already
// covered is dropped, so the replay and the live events never interleave or repeat.
//
// `subscribeAll` yields the events this process publishes (the scheduler's wake-ups, the
// webhook notifier): a finished job's webhook is enqueued once, by the dispatcher that
// finished it, not once per dispatcher.
//
// Redis down: a publish is delivered to this process's subscribers only (with an id from
// its own clock, above every id it has seen) and logged; the reader retries every second
// and resumes from the last id it read.
//
// The record cache (RedisRecordCache) is invalidated here, on the path that publishes the
// change: the publish script also sets `PREFIX:cache:SUBJECT` to a generation marker (the
// event's id), so a cached record of the subject is gone in the same Redis step that
// announces its change, and a reader that looked before the change cannot store what it
// read (its fill names the generation it saw). A publish that cannot reach Redis keeps
// its subject as an invalidation owed; the reader loop sets those markers as soon as
// Redis answers, and until then this process's cache reads bypass Redis.
import Events
import Logging
import RESP
import Redis
import Synchronization
import Threads

public final class RedisEventBus: EventBus {
    public let client: RedisClient
    let prefix: String
    let replayWindow: @Sendable () -> Int
    let globalMax: Int
    let subjectTTLMilliseconds: Int64
    let logger: Logger

    private struct Subscriber {
        let id: UInt64
        let continuation: AsyncStream<Event>.Continuation
        /// While the replay is being read: live events wait here.
        var waiting: [Event]? = []
        /// The newest id this subscriber was given (live events at or below are dropped).
        var through: UInt64 = 0
    }

    private struct State {
        var nextSubscriberID: UInt64 = 1
        var subscribers: [String: [Subscriber]] = [:]
        var local: [(id: UInt64, continuation: AsyncStream<Event>.Continuation)] = []
        /// The newest event id seen (published or read): where the reader resumes, and the
        /// floor of ids made up while Redis is down.
        var newest: UInt64 = 0
        var readerPosition: String?
        /// Before the reader has a position: the oldest point a subscription's replay
        /// reached, so the reader starts no later than that and misses nothing for it.
        var replayedBeforeReader: UInt64?
        /// Subjects whose cache marker could not be set (Redis down at their publish).
        var owedInvalidations: Set<String> = []
    }

    private let state = Mutex(State())

    /// `replayWindow`: events kept per subject. `globalMax`: entries the global stream keeps
    /// (about; a reader further behind loses the oldest). `subjectTTL`: how long a subject's
    /// events stay after its last one.
    public init(client: RedisClient, keyPrefix: String = "spool", replayWindow: @escaping @Sendable () -> Int = { 1_000 },
                globalMax: Int = 100_000, subjectTTL: Duration = .seconds(7 * 86_400), logger: Logger = Logger(label: "spool.events")) {
        self.client = client
        self.prefix = keyPrefix
        self.replayWindow = replayWindow
        self.globalMax = max(1_000, globalMax)
        self.subjectTTLMilliseconds = max(1_000, subjectTTL.nanosecondsClamped / 1_000_000)
        self.logger = logger
    }

    var globalKey: String { "\(prefix):ev" }
    func subjectKey(_ subject: String) -> String { "\(prefix):ev:\(subject)" }
    /// The record cache's key of a subject (RedisRecordCache reads and fills it).
    public func cacheKey(_ subject: String) -> String { "\(prefix):cache:\(subject)" }
    /// How long an invalidation marker stays: longer than any read between a cache miss
    /// and its fill (the database's statement and acquire timeouts), so a slow reader's
    /// fill always meets the marker that refuses it.
    public static let markerTTLMilliseconds: Int64 = 120_000

    /// True while some invalidation could not be set in Redis: the cache must not be read.
    public var owesInvalidations: Bool { state.withLock { !$0.owedInvalidations.isEmpty } }

    static let publishScript = RedisScript("""
        local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[5], '*', 's', ARGV[1], 't', ARGV[2], 'p', ARGV[3])
        local ok = pcall(redis.call, 'XADD', KEYS[2], 'MAXLEN', ARGV[4], id, 't', ARGV[2], 'p', ARGV[3])
        if not ok then
          -- The subject's stream is ahead of the global one (the global key was deleted on
          -- its own): start the subject again rather than lose the event.
          redis.call('DEL', KEYS[2])
          redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[4], id, 't', ARGV[2], 'p', ARGV[3])
        end
        redis.call('PEXPIRE', KEYS[2], ARGV[6])
        redis.call('SET', KEYS[3], 'g:' .. id, 'PX', ARGV[7])
        return id
        """)

    // MARK: Ids

    /// `ms-seq` as `ms << 20 | seq`, or nil when it is not a stream id we can map.
    static func eventID(_ streamID: String) -> UInt64? {
        let parts = streamID.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, let ms = UInt64(parts[0]), let seq = UInt64(parts[1]),
              ms < (1 << 43), seq < (1 << 20) else { return nil }
        return ms << 20 | seq
    }

    /// The stream id of an event id (for XRANGE bounds).
    static func streamID(_ eventID: UInt64) -> String { "\(eventID >> 20)-\(eventID & 0xFFFFF)" }

    // MARK: Publishing

    /// `notBelow` is not honoured: the ids are Redis's (XADD *), from its clock.
    @discardableResult
    public func publish(subject: String, type: EventType, payload: String, notBelow _: UInt64) async -> Event {
        let window = max(1, replayWindow())
        var event: Event
        do {
            let reply = try await client.eval(Self.publishScript, keys: [globalKey, subjectKey(subject), cacheKey(subject)],
                                              args: [subject, type.rawValue, payload, String(window), String(globalMax),
                                                     String(subjectTTLMilliseconds), String(Self.markerTTLMilliseconds)])
            guard let text = reply.text, let id = Self.eventID(text) else {
                throw RedisError(.protocolError, "the publish script answered \(reply)")
            }
            event = Event(id: id, subject: subject, type: type, payload: payload)
            state.withLock { $0.newest = max($0.newest, id) }
        } catch {
            // Only this process hears of it; its id is above every one seen so far.
            let now = UInt64(max(0, clockMilliseconds())) << 20
            let id = state.withLock { s -> UInt64 in
                s.newest = max(s.newest + 1, now)
                return s.newest
            }
            event = Event(id: id, subject: subject, type: type, payload: payload)
            state.withLock { _ = $0.owedInvalidations.insert(subject) }
            logger.warning("event \(type.rawValue) of \(subject) not published to Redis (only this dispatcher's subscribers get it): \(error)")
            deliver([event])
        }
        let local = state.withLock { $0.local.map(\.continuation) }
        for c in local { c.yield(event) }
        return event
    }

    func clockMilliseconds() -> Int64 { SystemClock.shared.unixMilliseconds }

    // MARK: Subscribing

    public func subscribe(subject: String, after: UInt64?) async -> EventSubscription {
        let window = max(1, replayWindow())
        let (stream, continuation) = AsyncStream<Event>.makeStream(bufferingPolicy: .bufferingNewest(max(window, 64)))
        let subscriberID = state.withLock { s -> UInt64 in
            let id = s.nextSubscriberID
            s.nextSubscriberID += 1
            s.subscribers[subject, default: []].append(Subscriber(id: id, continuation: continuation))
            return id
        }
        continuation.onTermination = { [weak self] _ in self?.unsubscribe(subject: subject, id: subscriberID) }
        var replay: [Event] = []
        var through: UInt64 = 0
        do {
            let start = after.map { "(" + Self.streamID($0) } ?? "-"
            let reply = try await client.send(["XRANGE", subjectKey(subject), start, "+", "COUNT", String(window)])
            replay = Self.events(reply, subject: subject)
            if let last = replay.last?.id {
                through = last
            } else {
                let newest = try await client.send(["XREVRANGE", subjectKey(subject), "+", "-", "COUNT", "1"])
                through = Self.events(newest, subject: subject).last?.id ?? 0
            }
        } catch {
            logger.warning("events of \(subject) not replayed (Redis): \(error)")
        }
        // The replay first, then what waited, past what the replay covered.
        state.withLock { s in
            guard let i = s.subscribers[subject]?.firstIndex(where: { $0.id == subscriberID }) else { return }
            for e in replay { continuation.yield(e) }
            var last = max(through, replay.last?.id ?? 0)
            for e in s.subscribers[subject]![i].waiting ?? [] where e.id > last {
                continuation.yield(e)
                last = e.id
            }
            s.subscribers[subject]![i].waiting = nil
            s.subscribers[subject]![i].through = last
            if s.readerPosition == nil {
                // Events after this subscription have ids from about now (Redis's clock):
                // a minute back covers clock skew without reading an old backlog.
                let floor = max(last, UInt64(max(0, clockMilliseconds() - 60_000)) << 20)
                s.replayedBeforeReader = min(s.replayedBeforeReader ?? floor, floor)
            }
        }
        return EventSubscription(events: stream, replayedThrough: through)
    }

    /// The events this process publishes, from now on (see the header).
    public func subscribeAll() async -> AsyncStream<Event> {
        let (stream, continuation) = AsyncStream<Event>.makeStream(bufferingPolicy: .bufferingNewest(10_000))
        let id = state.withLock { s -> UInt64 in
            let id = s.nextSubscriberID
            s.nextSubscriberID += 1
            s.local.append((id, continuation))
            return id
        }
        continuation.onTermination = { [weak self] _ in self?.unsubscribe(subject: nil, id: id) }
        return stream
    }

    private func unsubscribe(subject: String?, id: UInt64) {
        state.withLock { s in
            guard let subject else { s.local.removeAll { $0.id == id }; return }
            s.subscribers[subject]?.removeAll { $0.id == id }
            if s.subscribers[subject]?.isEmpty == true { s.subscribers[subject] = nil }
        }
    }

    /// Hands events (in id order) to this process's subscribers of their subjects.
    private func deliver(_ events: [Event]) {
        state.withLock { s in
            for e in events {
                s.newest = max(s.newest, e.id)
                guard var subs = s.subscribers[e.subject] else { continue }
                for i in subs.indices {
                    if subs[i].waiting != nil {
                        subs[i].waiting!.append(e)
                    } else if e.id > subs[i].through {
                        subs[i].continuation.yield(e)
                        subs[i].through = e.id
                    }
                }
                s.subscribers[e.subject] = subs
            }
        }
    }

    /// Live subscribers of `subject` (tests wait for a consumer to be in place).
    public func subscriberCount(subject: String) -> Int {
        state.withLock { $0.subscribers[subject]?.count ?? 0 }
    }

    static func events(_ reply: RESPValue, subject: String?) -> [Event] {
        reply.streamEntries.compactMap { entry in
            guard let id = eventID(entry.id), let t = entry.fields["t"], let type = EventType(rawValue: t),
                  let s = subject ?? entry.fields["s"] else { return nil }
            return Event(id: id, subject: s, type: type, payload: entry.fields["p"] ?? "{}")
        }
    }

    /// Sets the cache markers owed since Redis went away (each a generation of its own,
    /// made from this process's newest id), then forgets them.
    func payInvalidations() async throws(RedisError) {
        let owed = state.withLock { $0.owedInvalidations }
        guard !owed.isEmpty else { return }
        let generation = state.withLock { s -> UInt64 in
            s.newest += 1
            return s.newest
        }
        _ = try await client.pipeline(owed.sorted().map { subject in
            ["SET", cacheKey(subject), "g:local-\(generation)", "PX", String(Self.markerTTLMilliseconds)]
        })
        state.withLock { s in s.owedInvalidations.subtract(owed) }
    }

    // MARK: The reader

    /// Follows the global stream and delivers every dispatcher's events to this process's
    /// subscribers, until cancelled. Starts after the newest entry the stream holds now.
    public func run() async {
        var position = state.withLock { $0.readerPosition }
        while !Task.isCancelled {
            do {
                try await payInvalidations()
                if position == nil {
                    // The newest entry now, or earlier when a subscription replayed only up
                    // to an older point before the reader began.
                    let newest = try await client.send(["XREVRANGE", globalKey, "+", "-", "COUNT", "1"])
                    let start = newest.streamEntries.first?.id ?? "0-0"
                    position = state.withLock { s -> String in
                        let p = s.replayedBeforeReader.map { floor in
                            Self.eventID(start).map { floor < $0 ? Self.streamID(floor) : start } ?? start
                        } ?? start
                        s.readerPosition = p
                        return p
                    }
                }
                let reply = try await client.blocking(["XREAD", "COUNT", "512", "BLOCK", "2000", "STREAMS", globalKey, position!],
                                                      block: .seconds(2))
                if reply.isNull { continue }
                for s in reply.array ?? [] {
                    guard let pair = s.array, pair.count == 2 else { continue }
                    let entries = pair[1].streamEntries
                    if let last = entries.last?.id { position = last }
                    deliver(Self.events(pair[1], subject: nil))
                }
                let p = position
                state.withLock { $0.readerPosition = p }
            } catch {
                logger.warning("event reader: \(error); again in 1 s")
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }
}
