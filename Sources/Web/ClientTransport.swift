// Web.ClientTransport: what HTTPClient exchanges bytes over: a plain TCP connection, or
// TLS on one (TLSClientConnection). The TLS session (module TLS) is a state machine with no
// I/O; this file moves its records over the connection with the loop's receives and
// sends, under the same deadlines as plain HTTP, and decrypts into pool buffers.
import BufferPool
import Ring
import Threads
import TLS

/// A connection HTTPClient can send a request on and read a response from.
protocol ClientTransport: AnyObject {
    func send(_ bytes: [UInt8], timeout: Duration?) async throws(RingError)
    /// The next bytes from the peer, nil at the end of the stream.
    func receive(timeout: Duration?) async throws(RingError) -> PooledBuffer?
    func close() async
}

extension TCPConnection: ClientTransport {}

/// HTTPS: TLS over a TCP connection. Failures after the handshake are `RingError`s with
/// code `connectionReset` and the TLS reason, so the exchange treats them as a broken
/// connection.
final class TLSClientConnection: ClientTransport {
    private let tcp: TCPConnection
    private let session: TLSSession
    /// The session may hold decrypted bytes that did not fit the last buffer.
    private var mayHoldPlaintext = false
    private var ended = false

    private init(tcp: TCPConnection, session: TLSSession) {
        self.tcp = tcp
        self.session = session
    }

    /// Runs the handshake on `tcp` for `host`; the peer's certificate must verify.
    static func handshake(_ tcp: TCPConnection, context: TLSContext, host: String, timeout: Duration) async throws(HTTPClientError) -> TLSClientConnection {
        let name = host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host
        let deadline = tcp.loop.now + timeout
        do {
            let session = try context.session(host: name)
            while true {
                let step = try session.handshake()
                if session.hasOutput { try await tcp.send(session.output(), timeout: max(.milliseconds(1), deadline - tcp.loop.now)) }
                if step == .done { return TLSClientConnection(tcp: tcp, session: session) }
                let left = deadline - tcp.loop.now
                guard left > .zero else { throw RingError(.timedOut, operation: "TLS handshake") }
                guard let piece = try await tcp.receive(timeout: left) else {
                    throw HTTPClientError(.tlsFailed, "\(host) closed the connection during the TLS handshake")
                }
                try piece.withUnsafeBytes { raw throws(TLSError) in try session.feed(raw) }
            }
        } catch let e as TLSError {
            await tcp.close()
            throw HTTPClientError(.tlsFailed, "TLS with \(host): \(e.message)", cause: e)
        } catch let e as RingError {
            await tcp.close()
            if e.code == .timedOut { throw HTTPClientError(.timedOut, "the TLS handshake with \(host) took longer than \(timeout)", cause: e) }
            throw HTTPClientError(.connectFailed, "TLS handshake with \(host): \(e)", cause: e)
        } catch let e as HTTPClientError {
            await tcp.close()
            throw e
        } catch {
            await tcp.close()
            throw HTTPClientError(.tlsFailed, "TLS with \(host): \(error)", cause: error)
        }
    }

    /// The negotiated protocol version ("TLSv1.3").
    var version: String { session.version }

    private static func broken(_ e: TLSError, _ operation: String) -> RingError {
        RingError(.connectionReset, operation: operation, reason: "TLS: \(e.message)")
    }

    func send(_ bytes: [UInt8], timeout: Duration?) async throws(RingError) {
        do {
            try bytes.withTypedBytes { raw throws(TLSError) in try session.write(raw) }
        } catch {
            throw Self.broken(error, "TLS send")
        }
        try await tcp.send(session.output(), timeout: timeout)
    }

    func receive(timeout: Duration?) async throws(RingError) -> PooledBuffer? {
        if ended { return nil }
        var out: PooledBuffer
        if mayHoldPlaintext {
            out = await tcp.loop.pool.acquire()
            if try decrypt(into: &out) { return out }
        } else {
            guard let first = try await tcp.receive(timeout: timeout) else { return endOfStream() }
            out = first
        }
        // `out` holds ciphertext: feed it, then reuse the buffer for what it decrypts to.
        while true {
            do { try out.withUnsafeBytes { raw throws(TLSError) in try session.feed(raw) } } catch { throw Self.broken(error, "TLS receive") }
            out.count = 0
            if try decrypt(into: &out) { return out }
            if ended { return nil }
            guard let more = try await tcp.receive(timeout: timeout) else { return endOfStream() }
            out = more
        }
    }

    /// Decrypts what the session holds into `out`; true when it got bytes.
    private func decrypt(into out: inout PooledBuffer) throws(RingError) -> Bool {
        mayHoldPlaintext = false
        while out.count < out.capacity {
            let start = out.count
            let r: TLSSession.Read
            do {
                r = try out.withUnsafeMutableBytes { raw throws(TLSError) in try session.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[start...])) }
            } catch {
                throw Self.broken(error, "TLS receive")
            }
            switch r {
            case .bytes(let n): out.count += n
            case .needsInput: return out.count > 0
            case .closed:
                ended = true
                return out.count > 0
            }
        }
        mayHoldPlaintext = true
        return true
    }

    /// The TCP stream ended without close_notify. HTTP's own framing (Content-Length,
    /// chunked) tells a truncated body from a whole one, so this reads as the end.
    private func endOfStream() -> PooledBuffer? {
        ended = true
        return nil
    }

    func close() async {
        if !ended {
            session.shutdown()
            if session.hasOutput { try? await tcp.send(session.output(), timeout: .milliseconds(100)) }
        }
        await tcp.close()
    }
}
