// Media.ByteChannel: the bridge from async code (a socket reader, an HTTP request body)
// to a transcode's blocking input. The producer awaits `send` and is suspended while the
// channel holds `capacity` bytes (backpressure, bounded memory); the transcode thread
// blocks in `read` until bytes, the end, or a failure arrive. Nothing here blocks a
// cooperative thread: only the transcode's own thread ever waits on the condition.
import Threads
import TranscodeAPI

public final class ByteChannel: ByteSource, Sendable {
    public enum ChannelError: Error, Sendable { case closed }

    private struct State {
        var chunks: [[UInt8]] = []
        var headOffset = 0
        var buffered = 0
        var finished = false
        var failure: MediaError?
        var stopped = false
        var waitingProducer: CheckedContinuation<Void, Never>?
    }
    /// The reader (the transcode thread) waits on its condition; producers never block on
    /// it, they suspend in `send`.
    private let state: ConditionLock<State>
    public let capacity: Int

    public init(capacity: Int = 1 << 20) {
        self.capacity = max(1, capacity)
        state = ConditionLock(State())
    }

    /// Appends bytes; suspends while the channel is full. Throws once the reader is gone.
    public func send(_ bytes: [UInt8]) async throws {
        guard !bytes.isEmpty else { return }
        let capacity = self.capacity
        while true {
            let outcome: (accepted: Bool, closed: Bool) = state.change(wakeAll: false) { s in
                if s.stopped || s.finished { return (false, true) }
                if s.buffered < capacity {
                    s.chunks.append(bytes)
                    s.buffered += bytes.count
                    return (true, false)
                }
                return (false, false)
            }
            if outcome.closed { throw ChannelError.closed }
            if outcome.accepted { return }
            await withCheckedContinuation { (k: CheckedContinuation<Void, Never>) in
                let resumeNow: Bool = state.withLock { s in
                    if s.stopped || s.buffered < capacity { return true }
                    s.waitingProducer = k
                    return false
                }
                if resumeNow { k.resume() }
            }
        }
    }

    /// No more bytes: the reader sees the end after what is buffered.
    public func finish() {
        state.change { $0.finished = true }
    }

    /// The producer failed (e.g. the connection reset): the reader gets this error.
    public func fail(_ error: MediaError) {
        state.change { $0.failure = error; $0.finished = true }
    }

    public func stopReading() {
        let k: CheckedContinuation<Void, Never>? = state.change { s in
            s.stopped = true
            defer { s.waitingProducer = nil }
            return s.waitingProducer
        }
        k?.resume()
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let capacity = self.capacity
        let outcome: Result<(Int, CheckedContinuation<Void, Never>?), MediaError> =
            state.wait(until: { $0.buffered > 0 || $0.finished || $0.stopped }) { s, _ in
                if s.stopped { return .failure(.cancelled) }
                if s.buffered == 0 {
                    if let f = s.failure { return .failure(f) }
                    return .success((0, nil))
                }
                var n = 0
                while n < buffer.count, let first = s.chunks.first {
                    let take = min(buffer.count - n, first.count - s.headOffset)
                    let offset = s.headOffset
                    unsafe first.withUnsafeBytes { src in
                        unsafe (buffer.baseAddress! + n).copyMemory(from: src.baseAddress! + offset, byteCount: take)
                    }
                    n += take
                    s.headOffset += take
                    if s.headOffset == first.count { s.chunks.removeFirst(); s.headOffset = 0 }
                }
                s.buffered -= n
                var k: CheckedContinuation<Void, Never>? = nil
                if s.buffered < capacity { k = s.waitingProducer; s.waitingProducer = nil }
                return .success((n, k))
            }
        let (n, k) = try outcome.get()
        k?.resume()
        return n
    }
}
