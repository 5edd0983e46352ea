// Events.InProcessEventBus: the embedded default. Ids are the calendar time in milliseconds
// shifted left 20 bits, plus a sequence within the millisecond (the shape of the Redis bus's
// stream ids): they increase within the process and across its restarts, so a client's
// Last-Event-ID from before a restart still orders before everything after it (while the
// calendar does not step back by more than the restart took). The last N
// events of each subject are kept for replay (N read at each publish from the closure, so a
// reloaded `events.replay_window` applies at once); subscribers are AsyncStream
// continuations registered under one lock, so the replay and the first live event can never
// interleave or be lost between them. Subjects are forgotten oldest first beyond
// `maxSubjects` (a finished job's events are kept until then, for late SSE clients).
import Synchronization
import Threads

public final class InProcessEventBus: EventBus {
    private struct Subscriber {
        let id: UInt64
        let continuation: AsyncStream<Event>.Continuation
    }

    private struct State {
        var lastEventID: UInt64 = 0
        var nextSubscriberID: UInt64 = 1
        /// Retained events per subject, oldest first.
        var retained: [String: [Event]] = [:]
        /// Subjects in the order they first published (for forgetting the oldest).
        var subjectOrder: [String] = []
        var subjectOrderStart = 0
        var subscribers: [String: [Subscriber]] = [:]
        var global: [Subscriber] = []
    }

    private let state = Mutex(State())
    private let replayWindow: @Sendable () -> Int
    private let maxSubjects: Int
    private let clock: any WallClock

    /// `replayWindow`: events kept per subject (at least 1). `maxSubjects`: subjects whose
    /// events are kept at all. `clock`: the calendar ids are made from (the dispatcher's, so
    /// that an event's id is never below its job's update time in the same units).
    public init(replayWindow: @escaping @Sendable () -> Int = { 1_000 }, maxSubjects: Int = 10_000,
                clock: any WallClock = SystemClock.shared) {
        self.replayWindow = replayWindow
        self.maxSubjects = max(1, maxSubjects)
        self.clock = clock
    }

    @discardableResult
    public func publish(subject: String, type: EventType, payload: String, notBelow: UInt64) async -> Event {
        publishNow(subject: subject, type: type, payload: payload, notBelow: notBelow)
    }

    /// The synchronous form of `publish`.
    @discardableResult
    public func publishNow(subject: String, type: EventType, payload: String, notBelow: UInt64 = 0) -> Event {
        let window = max(1, replayWindow())
        let floor = max(notBelow, Event.firstID(atUnixMilliseconds: clock.unixMilliseconds))
        return state.withLock { s in
            s.lastEventID = max(s.lastEventID + 1, floor)
            let event = Event(id: s.lastEventID, subject: subject, type: type, payload: payload)
            if s.retained[subject] == nil {
                s.subjectOrder.append(subject)
                forgetOldSubjects(&s)
            }
            s.retained[subject, default: []].append(event)
            if let n = s.retained[subject]?.count, n > window { s.retained[subject]!.removeFirst(n - window) }
            // Yielding under the lock keeps every subscriber's stream in id order.
            for sub in s.subscribers[subject] ?? [] { sub.continuation.yield(event) }
            for sub in s.global { sub.continuation.yield(event) }
            return event
        }
    }

    private func forgetOldSubjects(_ s: inout State) {
        while s.subjectOrder.count - s.subjectOrderStart > maxSubjects {
            let old = s.subjectOrder[s.subjectOrderStart]
            s.subjectOrderStart += 1
            s.retained[old] = nil
        }
        if s.subjectOrderStart > 1024 && s.subjectOrderStart * 2 > s.subjectOrder.count {
            s.subjectOrder.removeFirst(s.subjectOrderStart)
            s.subjectOrderStart = 0
        }
    }

    public func subscribe(subject: String, after: UInt64?) async -> EventSubscription {
        let window = max(1, replayWindow())
        // A consumer further behind than the window loses the oldest (see the module header).
        let (stream, continuation) = AsyncStream<Event>.makeStream(bufferingPolicy: .bufferingNewest(max(window, 64)))
        let (subscriberID, through) = state.withLock { s -> (UInt64, UInt64) in
            let id = s.nextSubscriberID
            s.nextSubscriberID += 1
            let retained = s.retained[subject] ?? []
            for e in retained where after.map({ e.id > $0 }) ?? true { continuation.yield(e) }
            s.subscribers[subject, default: []].append(Subscriber(id: id, continuation: continuation))
            return (id, retained.last?.id ?? 0)
        }
        continuation.onTermination = { [weak self] _ in self?.unsubscribe(subject: subject, id: subscriberID) }
        return EventSubscription(events: stream, replayedThrough: through)
    }

    public func subscribeAll() async -> AsyncStream<Event> {
        let (stream, continuation) = AsyncStream<Event>.makeStream(bufferingPolicy: .bufferingNewest(10_000))
        let id = state.withLock { s -> UInt64 in
            let id = s.nextSubscriberID
            s.nextSubscriberID += 1
            s.global.append(Subscriber(id: id, continuation: continuation))
            return id
        }
        continuation.onTermination = { [weak self] _ in self?.unsubscribe(subject: nil, id: id) }
        return stream
    }

    private func unsubscribe(subject: String?, id: UInt64) {
        state.withLock { s in
            guard let subject else { s.global.removeAll { $0.id == id }; return }
            s.subscribers[subject]?.removeAll { $0.id == id }
            if s.subscribers[subject]?.isEmpty == true { s.subscribers[subject] = nil }
        }
    }

    /// Live subscribers of `subject` (tests wait for a consumer to be in place).
    public func subscriberCount(subject: String) -> Int {
        state.withLock { $0.subscribers[subject]?.count ?? 0 }
    }

    /// The retained events of `subject`, oldest first.
    public func retained(subject: String) -> [Event] {
        state.withLock { $0.retained[subject] ?? [] }
    }
}
