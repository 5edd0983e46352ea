// Events: what happened to jobs and engines, published after the transaction that caused it
// committed, and streamed to whoever listens (SSE clients of one job, metrics, webhooks).
//
// The contract every bus keeps (InProcessEventBus; RedisEventBus for several dispatchers):
//  - every event has an id, increasing in publication order (per process in-process; across
//    every dispatcher with Redis), made from the calendar time (milliseconds << 20, plus a
//    sequence), so ids keep increasing across restarts;
//  - a subscriber of one subject (a job id) first gets the retained events after the id it
//    names (its Last-Event-ID), then live ones, in id order, never interleaved;
//  - delivery is at least once: a consumer that reconnects with the last id it saw may see
//    nothing twice from this bus, but must tolerate duplicates from another implementation;
//  - only the last `replay_window` events of a subject are retained: a consumer further
//    behind than that loses the oldest, as it would across a reconnect past the window.
import JSON

/// The kinds of event. Raw values are the SSE `event:` names.
public enum EventType: String, Sendable, CaseIterable {
    case jobCreated = "JobCreated"
    case jobAssigned = "JobAssigned"
    case transcodingStarted = "TranscodingStarted"
    case progressUpdated = "ProgressUpdated"
    /// The job reached completed, failed (no attempt left) or cancelled.
    case jobFinished = "JobFinished"
    /// Any other move (retrying, back to pending, completing).
    case jobStateChanged = "JobStateChanged"
    case engineHeartbeat = "EngineHeartbeat"
}

/// One event: `subject` is the job id (or engine id) it is about; `payload` a JSON object
/// (state, progress, reason, ...), already serialized.
public struct Event: Sendable, Equatable {
    public var id: UInt64
    public var subject: String
    public var type: EventType
    public var payload: String

    public init(id: UInt64, subject: String, type: EventType, payload: String) {
        self.id = id; self.subject = subject; self.type = type; self.payload = payload
    }

    /// The least id an event published at `ms` (milliseconds since the epoch) can have:
    /// the first of that millisecond (ids are `ms << 20 | sequence` on every bus).
    public static func firstID(atUnixMilliseconds ms: Int64) -> UInt64 { UInt64(max(0, ms)) << 20 }
}

/// A subscription to one subject: the stream yields the replayed events (those with ids up
/// to `replayedThrough`) and then live ones. `replayedThrough` is the subject's newest
/// event id when the subscription began (0 when it had none), so a consumer can tell the
/// backlog from what happens next.
public struct EventSubscription: Sendable {
    public let events: AsyncStream<Event>
    public let replayedThrough: UInt64
    public init(events: AsyncStream<Event>, replayedThrough: UInt64) {
        self.events = events; self.replayedThrough = replayedThrough
    }
}

public protocol EventBus: Sendable {
    /// Publishes an event (call it only after the change it reports committed) and returns
    /// it with its id: at least `notBelow` where the bus chooses its ids (the in-process
    /// bus). A job's event is never below the id its update time stands for
    /// (`Event.firstID(atUnixMilliseconds: updated_at)`), which a stream that says a finished
    /// job's end from the record alone relies on. A bus whose ids come from elsewhere
    /// (Redis) may ignore it; its consumers tolerate a repeated end.
    @discardableResult
    func publish(subject: String, type: EventType, payload: String, notBelow: UInt64) async -> Event

    /// The retained events of `subject` with ids greater than `after` (all retained when
    /// nil), then live ones. The subscription ends when the consumer stops iterating (the
    /// task is cancelled or the stream is dropped).
    func subscribe(subject: String, after: UInt64?) async -> EventSubscription

    /// Every event this process publishes, from now on (the scheduler's wake-ups, the
    /// webhook notifier): with a bus shared by several dispatchers, each event is handled
    /// once, by the one that caused it.
    func subscribeAll() async -> AsyncStream<Event>

    /// The work the bus does while the server runs (a shared bus's reader); returns when
    /// the task is cancelled. The in-process bus has none.
    func run() async
}

extension EventBus {
    public func run() async {}

    /// `publish` with no floor on the id.
    @discardableResult
    public func publish(subject: String, type: EventType, payload: String) async -> Event {
        await publish(subject: subject, type: type, payload: payload, notBelow: 0)
    }
}

extension EventBus {
    /// Publishes an event whose payload `build` writes (a JSON object).
    @discardableResult
    public func publish(subject: String, type: EventType, notBelow: UInt64 = 0, _ build: (inout JSONWriter<[UInt8]>) -> Void) async -> Event {
        var w = JSONWriter()
        build(&w)
        return await publish(subject: subject, type: type, payload: w.text, notBelow: notBelow)
    }
}
