// Media.ByteChannel: the bridge from async code (a socket reader, an HTTP request body)
// to a transcode's blocking input. The producer awaits `send` and is suspended while the
// channel holds `capacity` bytes (backpressure, bounded memory); the transcode thread
// blocks in `read` until bytes, the end, or a failure arrive. Nothing here blocks a
// cooperative thread: only the transcode's own thread ever waits on the condition.
import Synchronization
import TranscodeAPI
#if canImport(Glibc)
import Glibc
#endif

public final class ByteChannel: ByteSource, @unchecked Sendable {
    public enum ChannelError: Error, Sendable { case closed }

    private var mutex = pthread_mutex_t()
    private var cond = pthread_cond_t()
    private var chunks: [[UInt8]] = []
    private var headOffset = 0
    private var buffered = 0
    private var finished = false
    private var failure: MediaError?
    private var stopped = false
    private var waitingProducer: CheckedContinuation<Void, Never>?
    public let capacity: Int

    public init(capacity: Int = 1 << 20) {
        self.capacity = max(1, capacity)
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&cond, nil)
    }

    deinit {
        pthread_cond_destroy(&cond)
        pthread_mutex_destroy(&mutex)
    }

    /// Appends bytes; suspends while the channel is full. Throws once the reader is gone.
    public func send(_ bytes: [UInt8]) async throws {
        guard !bytes.isEmpty else { return }
        while true {
            let state: (accepted: Bool, closed: Bool) = locked {
                if stopped || finished { return (false, true) }
                if buffered < capacity {
                    chunks.append(bytes)
                    buffered += bytes.count
                    pthread_cond_signal(&cond)
                    return (true, false)
                }
                return (false, false)
            }
            if state.closed { throw ChannelError.closed }
            if state.accepted { return }
            await withCheckedContinuation { (k: CheckedContinuation<Void, Never>) in
                let resumeNow: Bool = locked {
                    if stopped || buffered < capacity { return true }
                    waitingProducer = k
                    return false
                }
                if resumeNow { k.resume() }
            }
        }
    }

    /// No more bytes: the reader sees the end after what is buffered.
    public func finish() {
        locked { finished = true; pthread_cond_broadcast(&cond) }
    }

    /// The producer failed (e.g. the connection reset): the reader gets this error.
    public func fail(_ error: MediaError) {
        locked { failure = error; finished = true; pthread_cond_broadcast(&cond) }
    }

    public func stopReading() {
        let k: CheckedContinuation<Void, Never>? = locked {
            stopped = true
            pthread_cond_broadcast(&cond)
            defer { waitingProducer = nil }
            return waitingProducer
        }
        k?.resume()
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        pthread_mutex_lock(&mutex)
        while buffered == 0 && !finished && !stopped { pthread_cond_wait(&cond, &mutex) }
        if stopped { pthread_mutex_unlock(&mutex); throw MediaError.cancelled }
        if buffered == 0 {
            let f = failure
            pthread_mutex_unlock(&mutex)
            if let f { throw f }
            return 0
        }
        var n = 0
        while n < buffer.count, let first = chunks.first {
            let take = min(buffer.count - n, first.count - headOffset)
            first.withUnsafeBytes { src in
                (buffer.baseAddress! + n).copyMemory(from: src.baseAddress! + headOffset, byteCount: take)
            }
            n += take
            headOffset += take
            if headOffset == first.count { chunks.removeFirst(); headOffset = 0 }
        }
        buffered -= n
        var k: CheckedContinuation<Void, Never>? = nil
        if buffered < capacity { k = waitingProducer; waitingProducer = nil }
        pthread_mutex_unlock(&mutex)
        k?.resume()
        return n
    }

    private func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return body()
    }
}
