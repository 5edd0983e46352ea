// Web.Body: request bodies streamed to handlers and response bodies streamed to clients.
//
// A request body is pulled: each `read` takes what is already buffered or receives once
// from the socket, decodes the framing (Content-Length or chunked) in place, and hands
// the payload bytes to the caller without copying them. Nothing is received until the
// handler asks, so a slow consumer pushes back on the client through TCP (backpressure),
// and memory stays bounded by the connection's receive cap in the buffer pool.
//
// A response body is bytes, a chunked stream written by a producer (which may send
// Server-Sent Events), or a file range read through the ring.
//
// Unsafe code in Web (justified; otherwise Web is safe Swift): `UnsafeRawBufferPointer`
// appears only as a borrowed, read-only view of bytes already received, passed to a
// closure (`read`, `withPending`, the client's `onBody`) or to HTTP1's parsers and the
// JSON sink protocol, which take bytes that way. Views are sliced with `rebasing`, never
// stored, written through or kept past the closure. The HTTP client's waiters park in
// `UnsafeContinuation`s resumed exactly once, on the loop. Pool buffers are owned through
// `PooledBufferList`, never taken apart here.
import BufferPool
import HTTP1
import JSON
import Ring
import Threads

/// The bytes received on a connection but not consumed yet (the next head, or body bytes
/// that arrived with it). Loop-confined.
final class ConnectionInput {
    let conn: TCPConnection
    /// Unconsumed bytes are `storage[start...]`. Consuming advances `start`; the storage is
    /// compacted only when it empties or the consumed prefix is large, so many pipelined
    /// requests in one receive cost linear, not quadratic, copying.
    private var storage: [UInt8] = []
    private var start = 0

    var isEmpty: Bool { start == storage.count }

    /// The unconsumed bytes (offset 0 is the first unconsumed byte).
    func withPending<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try storage.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[start...])) }
    }

    func consume(_ n: Int) {
        start += n
        if start == storage.count {
            storage.removeAll(keepingCapacity: true)
            start = 0
        } else if start >= 32 * 1024 {
            storage.removeFirst(start)
            start = 0
        }
    }

    func append(_ bytes: UnsafeRawBufferPointer) { storage.append(contentsOf: bytes) }

    /// Between requests with nothing buffered (graceful stop closes these at once).
    var idle = true
    /// The streaming response being written, told when a graceful stop begins.
    var writer: ResponseWriter?
    /// A graceful stop has begun: a streaming response started now is told at once.
    var stopping = false
    init(conn: TCPConnection) { self.conn = conn }
}

/// A request body, read chunk by chunk by the handler (or buffered by the server for
/// routes that do not stream).
///
/// - warning: Loop-confined (not `Sendable`; `Request` carries it in a `LoopBound`): use
///   it only from the handler's own task, and only until the handler returns.
public final class RequestBody {
    enum Framing {
        case length(remaining: UInt64)
        case chunked(ChunkedDecoder)
    }

    private let input: ConnectionInput?
    private var framing: Framing
    private var continueOwed: Bool
    /// Time limits for receiving (see BodyTimeLimits), from `started` (the end of the head).
    let time: BodyTimeLimits
    let started: MonotonicInstant
    var meter = BodyRateMeter()
    /// The body limit of the route; exceeding it is a 413.
    public let limit: UInt64
    /// The declared length (Content-Length), if any.
    public let declaredLength: UInt64?
    public private(set) var bytesRead: UInt64 = 0
    public private(set) var isComplete: Bool
    /// A read failed part-way (bad framing, or the handler's consumer threw): where the
    /// body ends is no longer known, so the connection must close after the response.
    private(set) var isPoisoned = false

    init(input: ConnectionInput, framing: BodyFraming, expectsContinue: Bool, limit: UInt64, time: BodyTimeLimits) {
        self.input = input
        self.limit = limit
        self.time = time
        started = input.conn.loop.now
        switch framing {
        case .none:
            self.framing = .length(remaining: 0)
            declaredLength = 0
            isComplete = true
        case .contentLength(let n):
            self.framing = .length(remaining: n)
            declaredLength = n
            isComplete = n == 0
        case .chunked:
            self.framing = .chunked(ChunkedDecoder(bodyBytesMax: limit))
            declaredLength = nil
            isComplete = false
        }
        continueOwed = expectsContinue && !isComplete
    }

    /// An already complete, empty body (requests without one, tests, internal requests).
    init() {
        input = nil
        framing = .length(remaining: 0)
        continueOwed = false
        time = BodyTimeLimits()
        started = MonotonicInstant(nanoseconds: 0)
        limit = 0
        declaredLength = 0
        isComplete = true
    }

    /// Reads the next piece of the body and passes its bytes to `consume` (which must not
    /// keep the pointer). Returns false once the body has ended. A piece may be empty
    /// (only framing arrived). Throws an APIError: 400 for a malformed or truncated body,
    /// 413 over the limit, 408 when the client is too slow (see BodyTimeLimits). A
    /// consumer that refuses the bytes throws the APIError the client should get (415,
    /// 422, a 500 for its own failure): the only thing a refusal can become is an answer.
    nonisolated(nonsending) public func read(_ consume: (UnsafeRawBufferPointer) throws(APIError) -> Void) async throws(APIError) -> Bool {
        guard !isPoisoned else {
            throw APIError(status: 400, code: "bad_request", message: "the request body can no longer be read")
        }
        guard !isComplete, let input else { return false }
        if continueOwed {
            continueOwed = false
            try? await input.conn.send(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8))
        }
        if !input.isEmpty {
            let used: Int
            do {
                used = try input.withPending { raw in Result { () throws(APIError) in try decode(raw, consume) } }.get()
            } catch {
                isPoisoned = true
                throw error
            }
            input.consume(used)
            return true
        }
        let chunk = try await receivePiece(input.conn)
        guard let chunk else {
            throw APIError(status: 400, code: "bad_request", message: "the request body ended early (\(bytesRead) bytes read)")
        }
        do {
            try chunk.withUnsafeBytes { raw throws(APIError) in
                let used = try decode(raw, consume)
                if used < raw.count { input.append(UnsafeRawBufferPointer(rebasing: raw[used...])) }
            }
        } catch {
            isPoisoned = true
            throw error
        }
        return true
    }

    /// Decodes framing in `raw`, passing payload bytes on; returns the bytes consumed.
    private func decode(_ raw: UnsafeRawBufferPointer, _ consume: (UnsafeRawBufferPointer) throws(APIError) -> Void) throws(APIError) -> Int {
        switch framing {
        case .length(let remaining):
            // State first, then the consumer: what was taken from the wire is accounted
            // for even if the consumer throws.
            let n = Int(min(UInt64(raw.count), remaining))
            bytesRead += UInt64(n)
            framing = .length(remaining: remaining - UInt64(n))
            if remaining == UInt64(n) { isComplete = true }
            if n > 0 { try consume(UnsafeRawBufferPointer(rebasing: raw[..<n])) }
            return n
        case .chunked(var decoder):
            var events: [ChunkedDecoder.Event] = []
            let used: Int
            do {
                used = try decoder.decode(raw, into: &events)
            } catch {
                throw APIError(error)
            }
            framing = .chunked(decoder)
            if decoder.isComplete { isComplete = true }
            for case .data(let r) in events { bytesRead += UInt64(r.count) }
            for case .data(let r) in events { try consume(UnsafeRawBufferPointer(rebasing: raw[r])) }
            return used
        }
    }

    /// Reads the whole body into memory (at most `limit` bytes, or the route limit).
    nonisolated(nonsending) public func collect(upTo max: Int? = nil) async throws(APIError) -> [UInt8] {
        let cap = UInt64(max ?? Int(clamping: limit))
        var out: [UInt8] = []
        if let n = declaredLength {
            guard n <= cap else { throw APIError.payloadTooLarge(n, cap) }
            out.reserveCapacity(Int(n))
        }
        while try await read({ bytes throws(APIError) in
            guard UInt64(out.count + bytes.count) <= cap else { throw APIError.payloadTooLarge(UInt64(out.count + bytes.count), cap) }
            out.append(contentsOf: bytes)
        }) {}
        return out
    }

    /// Reads and drops the rest of the body (bounded by the route limit).
    nonisolated(nonsending) public func discard() async throws(APIError) {
        while try await read({ _ in }) {}
    }
}

extension APIError {
    static func payloadTooLarge(_ n: UInt64, _ max: UInt64) -> APIError {
        APIError(status: 413, code: "payload_too_large", message: "request body of \(n) bytes exceeds the limit of \(max) bytes")
    }
}

// MARK: Responses

/// How a response's content is produced when it is not a plain byte array.
public enum ResponseStream: Sendable {
    /// Written by `producer` with chunked transfer coding (unknown length), e.g. SSE. The
    /// producer is the handler's code and may throw anything (the response is cut short
    /// and the connection closed, whatever it was), so its throws stay untyped.
    case chunked(ResponseProducer)
    /// Bytes `range` of the file at `path` (the whole file when nil), with a known length.
    case file(path: String, range: Range<UInt64>?)
}

/// Writes a chunked response body; runs on the connection's loop, in its task.
public typealias ResponseProducer = nonisolated(nonsending) @Sendable (ResponseWriter) async throws -> Void

/// What a streaming response producer writes to. Each write is one chunk on the wire and
/// waits until the socket accepted it (backpressure from a slow client).
///
/// - warning: Loop-confined (not `Sendable`): use it only inside the producer.
public final class ResponseWriter {
    let conn: TCPConnection
    let timeout: Duration
    /// False for HTTP/1.0 clients: raw bytes, the end of the connection ends the body.
    let chunked: Bool
    public private(set) var bytesWritten: Int = 0
    /// Set when the server begins a graceful stop: a producer that would run on (an event
    /// stream) should end its body now, so the client gets a whole response and
    /// reconnects, rather than being cut when the grace period ends.
    public private(set) var isStopping = false
    private var stopHandlers: [() -> Void] = []

    /// Runs `body` (on the loop thread) when the server begins a graceful stop, at once if
    /// it has begun. For a producer waiting on something else: wake it to end its body.
    public func onStop(_ body: @escaping () -> Void) {
        if isStopping { body() } else { stopHandlers.append(body) }
    }

    /// The server is stopping (HTTPServer's drain).
    func stop() {
        guard !isStopping else { return }
        isStopping = true
        let handlers = stopHandlers
        stopHandlers = []
        for h in handlers { h() }
    }

    init(conn: TCPConnection, timeout: Duration, chunked: Bool = true) {
        self.conn = conn
        self.timeout = timeout
        self.chunked = chunked
    }

    nonisolated(nonsending) public func write(_ bytes: [UInt8]) async throws(RingError) {
        guard !bytes.isEmpty else { return }   // an empty chunk would end the body
        if chunked {
            var out: [UInt8] = []
            out.reserveCapacity(bytes.count + 16)
            ChunkedEncoding.chunk(bytes, into: &out)
            try await conn.send(out, timeout: timeout)
        } else {
            try await conn.send(bytes, timeout: timeout)
        }
        bytesWritten += bytes.count
    }

    nonisolated(nonsending) public func write(_ text: String) async throws(RingError) { try await write(Array(text.utf8)) }

    nonisolated(nonsending) public func send(_ event: ServerSentEvent) async throws(RingError) {
        var out: [UInt8] = []
        event.serialize(into: &out)
        try await write(out)
    }

    /// Writes one JSON value produced by `build`, serialized straight into pool buffers
    /// and sent as one chunk with a vectored send.
    nonisolated(nonsending) public func writeJSON(_ build: (inout JSONWriter<PooledByteSink>) -> Void) async throws(RingError) {
        var w = JSONWriter(into: PooledByteSink(pool: conn.loop.pool))
        build(&w)
        let sink = w.sink
        let count = sink.byteCount
        guard count > 0 else { return }
        if chunked {
            var prefix: [UInt8] = []
            ChunkedEncoding.chunkPrefix(count, into: &prefix)
            try await conn.send(prefix, timeout: timeout)
        }
        try await sink.send(on: conn, timeout: timeout)
        if chunked { try await conn.send(ChunkedEncoding.chunkSuffix, timeout: timeout) }
        bytesWritten += count
    }
}

/// A JSON sink that fills pool buffers (the loop's, not the heap) and sends them with
/// sendmsg. Falls back to a heap array only when the pool has no free buffer.
///
/// - warning: Loop-confined.
public final class PooledByteSink: JSONSink {
    private let pool: BufferPool
    /// The pool buffers written so far; owned (dropping the sink returns them).
    private var chain = PooledBufferList()
    private var overflow: [UInt8] = []
    public private(set) var byteCount = 0

    /// Pool buffers one sink may hold (the rest spills to the heap), so one large document
    /// to a slow reader cannot take the whole pool.
    static let buffersMax = 64

    init(pool: BufferPool) { self.pool = pool }

    public func write(_ bytes: UnsafeRawBufferPointer) {
        var rest = bytes
        byteCount += bytes.count
        while !rest.isEmpty {
            if !overflow.isEmpty { overflow.append(contentsOf: rest); return }
            let n = chain.withLast { $0.append(contentsOf: rest) } ?? 0
            if n > 0 {
                rest = UnsafeRawBufferPointer(rebasing: rest[n...])
            } else if chain.count < Self.buffersMax, let b = pool.tryAcquire() {
                chain.append(b)
            } else {
                overflow.append(contentsOf: rest)
                return
            }
        }
    }

    public func write(byte: UInt8) {
        withUnsafeBytes(of: byte) { write($0) }
    }

    /// Sends every byte (in order) and returns the buffers to the pool.
    nonisolated(nonsending) func send(on conn: TCPConnection, timeout: Duration) async throws(RingError) {
        while !chain.isEmpty {
            let list = chain.removeFirst(min(TCPConnection.vectorMax, chain.count))
            try await conn.send(list, timeout: timeout)
        }
        if !overflow.isEmpty {
            try await conn.send(overflow, timeout: timeout)
            overflow = []
        }
    }

    /// A copy of everything written (tests).
    var bytes: [UInt8] { chain.bytes + overflow }
}
