// Web.BodyTimeLimits: how long a client may take to send a request body (slow-body
// attacks such as `slowhttptest -B`, which keep a connection by sending a byte now and then).
//
// Three limits, each answered with 408 and a close:
// - a whole-body deadline, in wall time from the end of the head;
// - a longest wait for the next piece;
// - a minimum transfer rate: bytes per second over each window of time spent waiting for the
//   client (not time the handler spends consuming, so a slow disk never counts against the
//   client), enforced once a grace period of waiting has passed.
// The server configuration sets defaults; a route can override them (an upload route that
// accepts large, slow-but-steady bodies turns the deadline off and keeps a rate floor).
// Non-goals: limits on responses (the send timeout covers a client that stops reading).
import BufferPool
import Ring
import Threads

public struct BodyTimeLimits: Sendable, Equatable {
    /// The whole body must arrive within this from the end of the head; nil: no deadline.
    public var deadline: Duration?
    /// Longest wait for the next piece of the body.
    public var pieceTimeout: Duration
    /// Slowest acceptable client, in payload bytes per second of waiting; 0 turns it off.
    public var rateBytesPerSecondMin: Int
    /// The rate is measured over windows of this much waiting.
    public var rateWindow: Duration
    /// The rate is not enforced before this much waiting (a client's slow start).
    public var rateGrace: Duration

    public init(deadline: Duration? = .seconds(60), pieceTimeout: Duration = .seconds(30),
                rateBytesPerSecondMin: Int = 1024, rateWindow: Duration = .seconds(5), rateGrace: Duration = .seconds(5)) {
        self.deadline = deadline
        self.pieceTimeout = pieceTimeout
        self.rateBytesPerSecondMin = rateBytesPerSecondMin
        self.rateWindow = rateWindow
        self.rateGrace = rateGrace
    }
}

/// Rate accounting of one body: waiting time and payload bytes per window.
struct BodyRateMeter {
    var waitedTotal: Duration = .zero
    var windowWaited: Duration = .zero
    var windowStartBytes: UInt64 = 0

    /// Closes the current window if it is full; throws when it was too slow.
    mutating func check(_ limits: BodyTimeLimits, bytesRead: UInt64) throws(APIError) {
        guard limits.rateBytesPerSecondMin > 0, windowWaited >= limits.rateWindow else { return }
        let bytes = bytesRead - windowStartBytes
        let c = windowWaited.components
        let waitedSeconds = max(1e-9, Double(c.seconds) + Double(c.attoseconds) * 1e-18)
        let rate = Double(bytes) / waitedSeconds
        if waitedTotal >= limits.rateGrace && rate < Double(limits.rateBytesPerSecondMin) {
            throw APIError(status: 408, code: "request_timeout",
                           message: "the request body arrives too slowly (\(Int(rate)) bytes/s; the minimum is \(limits.rateBytesPerSecondMin))")
        }
        windowWaited = .zero
        windowStartBytes = bytesRead
    }

    mutating func waited(_ d: Duration) {
        waitedTotal += d
        windowWaited += d
    }
}

extension RequestBody {
    /// Receives the next piece from the socket within the body's time limits: throws a 408
    /// when the whole-body deadline passes, the piece does not come, or the client is slower
    /// than the minimum rate; a 400 when the connection fails. nil at end of stream.
    nonisolated(nonsending) func receivePiece(_ conn: TCPConnection) async throws(APIError) -> PooledBuffer? {
        var pieceWaited: Duration = .zero
        while true {
            try meter.check(time, bytesRead: bytesRead)
            let now = conn.loop.now
            var wait = time.pieceTimeout - pieceWaited
            if let d = time.deadline {
                let left = (started + d) - now
                guard left > .zero else {
                    throw APIError(status: 408, code: "request_timeout", message: "the request body did not arrive within \(d)")
                }
                wait = min(wait, left)
            }
            if time.rateBytesPerSecondMin > 0 { wait = min(wait, time.rateWindow - meter.windowWaited) }
            do {
                let chunk = try await conn.receive(timeout: wait)
                meter.waited(conn.loop.now - now)
                return chunk
            } catch let e where e.code == .timedOut {
                let waited = conn.loop.now - now
                meter.waited(waited)
                pieceWaited += waited
                if pieceWaited >= time.pieceTimeout {
                    throw APIError(status: 408, code: "request_timeout", message: "the request body stopped arriving")
                }
            } catch {
                throw APIError(status: 400, code: "bad_request", message: "the connection failed while reading the body")
            }
        }
    }
}
