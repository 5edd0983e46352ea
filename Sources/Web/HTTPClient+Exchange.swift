// Web.HTTPClient+Exchange: one request and its response on one connection. The head is
// serialized (and validated) by HTTP1 before any connection is taken; the body follows as
// bytes or chunks from the caller's producer; the response head is parsed strictly
// (1xx skipped, 101 refused) and the body read by its framing (Content-Length, chunked,
// or until close) into the caller's consumer, each receive bounded by the read timeout
// and the request's deadline.
import BufferPool
import HTTP1
import Ring
import Threads

/// Where a response body goes: a consumer called on the loop with each piece in place,
/// or one awaited with a copy of each piece before the next receive.
enum BodySink {
    case immediate((UnsafeRawBufferPointer) throws -> Void)
    case awaited((ClientResponseHead, [UInt8]) async throws -> Void)

    static var discard: BodySink { .immediate { _ in } }
}

/// How one exchange failed.
enum ExchangeFailure: Error {
    /// The connection was closed or reset before any response byte: a reused connection
    /// the server had closed while it sat idle. The caller may retry on a fresh one.
    case stale
    case failed(HTTPClientError)
}

extension HTTPClient {
    struct Exchange {
        var head: ClientResponseHead
        var location: String?
        var keepAlive: Bool
    }

    /// Bodies up to this size go out in the same send as the head.
    static let inlineBodyMax = 64 * 1024

    /// The request head as bytes (with an inline body when small), or an `invalidRequest`
    /// error naming the part that is not valid HTTP; then nothing is sent at all.
    func requestHead(_ req: ClientRequest, url: ParsedURL) throws(HTTPClientError) -> [UInt8] {
        var fields: [(name: String, value: String)] = [("Host", url.hostHeader)]
        if !req.headers.contains(where: { $0.name.lowercased() == "user-agent" }) { fields.append(("User-Agent", configuration.userAgent)) }
        fields += req.headers.filter { !["host", "content-length", "transfer-encoding", "connection"].contains($0.name.lowercased()) }
        switch req.body {
        case .none: if ["POST", "PUT", "PATCH"].contains(req.method) { fields.append(("Content-Length", "0")) }
        case .bytes(let b): fields.append(("Content-Length", String(b.count)))
        case .stream: fields.append(("Transfer-Encoding", "chunked"))
        }
        var out: [UInt8] = []
        do {
            try OutgoingRequestHead(method: req.method, target: url.target, headers: fields).serialize(into: &out)
        } catch {
            throw HTTPClientError(.invalidRequest, error.reason, cause: error)
        }
        if case .bytes(let b) = req.body, b.count <= Self.inlineBodyMax { out += b }
        return out
    }

    func exchange(_ req: ClientRequest, head: [UInt8], on conn: any ClientTransport, deadline: MonotonicInstant,
                  sink: BodySink) async throws(ExchangeFailure) -> Exchange {
        var headSent = false
        do {
            try await sendRequest(req, head: head, on: conn, deadline: deadline, headSent: &headSent)
        } catch {
            // A server may answer before it has read the whole body and then close the
            // connection (RFC 9112 §9.6: a 413, or an S3 server's 404 NoSuchUpload for a
            // part of an upload it no longer knows); the rest of the body then meets a
            // closed socket. The answer is what the caller needs, so it is read when it
            // is there. receiveResponse throws `.stale` only when nothing at all arrived,
            // which is the send's failure standing; an answer that began and then broke
            // throws its own failure, so its bytes are never delivered twice by a retry.
            guard headSent, case .stale = error else { throw error }
            var early = try await receiveResponse(req, on: conn, deadline: deadline, sink: sink)
            early.keepAlive = false
            return early
        }
        return try await receiveResponse(req, on: conn, deadline: deadline, sink: sink)
    }

    /// A socket failure during the exchange, for the caller.
    func transportFailure(_ e: RingError) -> ExchangeFailure {
        if e.code == .timedOut { return .failed(HTTPClientError(.timedOut, "no response data within \(configuration.readTimeout)", cause: e)) }
        return .failed(HTTPClientError(.connectionClosed, "\(e)", cause: e))
    }

    /// The deadline's remainder capped at the read timeout (for a receive or a send).
    private func receiveTimeout(_ deadline: MonotonicInstant) throws(ExchangeFailure) -> Duration {
        do { return try HTTPClient.remaining(deadline, configuration.readTimeout, now: loop.now) } catch { throw .failed(error) }
    }

    /// Sends the head and the body; `headSent` is set once the head (and an inline body)
    /// went out, when what fails after it is the body.
    private func sendRequest(_ req: ClientRequest, head: [UInt8], on conn: any ClientTransport, deadline: MonotonicInstant,
                             headSent: inout Bool) async throws(ExchangeFailure) {
        // A send refused by a closed socket: the server dropped an idle connection.
        func sendFailure(_ e: RingError) -> ExchangeFailure {
            e.code == .brokenPipe || e.code == .connectionReset ? .stale : transportFailure(e)
        }
        func transmit(_ bytes: [UInt8]) async throws(ExchangeFailure) {
            let timeout = try receiveTimeout(deadline)
            do { try await conn.send(bytes, timeout: timeout) } catch { throw sendFailure(error) }
        }
        try await transmit(head)
        headSent = true
        switch req.body {
        case .bytes(let b) where b.count > Self.inlineBodyMax:
            try await transmit(b)
        case .stream(let producer):
            let readTimeout = configuration.readTimeout
            let writer = ClientBodyWriter(conn: conn) { [loop] in
                max(.milliseconds(1), min(deadline - loop.now, readTimeout))
            }
            do {
                try await producer(writer)
            } catch let e as RingError {
                throw sendFailure(e)
            } catch let e as HTTPClientError {
                throw .failed(e)
            } catch {
                throw .failed(HTTPClientError(.callbackFailed, "the request body producer threw: \(error)", cause: error))
            }
            try await transmit(ChunkedEncoding.lastChunk)
        default: break
        }
    }

    /// Passes response body bytes to an immediate consumer; for an awaited one, returns
    /// them copied, for `settle` once the pointer is out of scope. What a consumer throws
    /// ends the request.
    private func deliver(_ bytes: UnsafeRawBufferPointer, to sink: BodySink) throws(ExchangeFailure) -> [UInt8]? {
        guard case .immediate(let onBody) = sink else { return bytes.isEmpty ? nil : Array(bytes) }
        do {
            try onBody(bytes)
        } catch {
            throw Self.consumerFailure(error)
        }
        return nil
    }

    /// Hands bytes `deliver` copied to the awaited consumer.
    private func settle(_ copied: [UInt8]?, to sink: BodySink, _ head: ClientResponseHead) async throws(ExchangeFailure) {
        guard let copied, case .awaited(let onBody) = sink else { return }
        do {
            try await onBody(head, copied)
        } catch {
            throw Self.consumerFailure(error)
        }
    }

    private static func consumerFailure(_ error: any Error) -> ExchangeFailure {
        if let e = error as? HTTPClientError { return .failed(e) }
        return .failed(HTTPClientError(.callbackFailed, "the response body consumer threw: \(error)", cause: error))
    }

    /// The next piece of the response, nil at the end of the stream.
    private func receive(_ conn: any ClientTransport, deadline: MonotonicInstant, staleIfClosed: Bool) async throws(ExchangeFailure) -> PooledBuffer? {
        let timeout = try receiveTimeout(deadline)
        do {
            return try await conn.receive(timeout: timeout)
        } catch {
            if staleIfClosed && (error.code == .connectionReset || error.code == .closed) { throw .stale }
            throw transportFailure(error)
        }
    }

    private func receiveResponse(_ req: ClientRequest, on conn: any ClientTransport, deadline: MonotonicInstant,
                                 sink: BodySink) async throws(ExchangeFailure) -> Exchange {
        // Response head (skipping 1xx interim responses).
        var buffer: [UInt8] = []
        var parser = ResponseHeadParser()
        var sawBytes = false
        while true {
            var parsed: ParsedResponseHead? = nil
            if !buffer.isEmpty {
                let result = buffer.withUnsafeBytes { raw in
                    Result { () throws(HTTPParseError) in try parser.parse(raw, requestMethod: req.method) }
                }
                switch result {
                case .success(let p): parsed = p
                case .failure(let e): throw .failed(HTTPClientError(.malformedResponse, e.reason, cause: e))
                }
            }
            if let p = parsed {
                parser.reset()
                let fields = buffer.withUnsafeBytes { raw in
                    p.fields.map { (String(decoding: UnsafeRawBufferPointer(rebasing: raw[$0.name]), as: UTF8.self),
                                    String(decoding: UnsafeRawBufferPointer(rebasing: raw[$0.value]), as: UTF8.self)) }
                }
                buffer.removeFirst(p.headLength)
                if p.status == 101 { throw .failed(HTTPClientError(.malformedResponse, "protocol switches (101) are not supported")) }
                if p.status < 200 { continue }   // 100 Continue and friends
                let responseHead = ClientResponseHead(status: p.status, headers: fields)
                let location = responseHead.header("Location")
                // A redirect that will be followed: its body is not the caller's.
                let keep: Bool
                if configuration.followRedirects && location != nil && HTTPClient.redirectStatuses.contains(p.status) {
                    keep = try await readBody(p.framing, responseHead, conn: conn, buffer: &buffer, deadline: deadline, sink: .discard)
                } else {
                    keep = try await readBody(p.framing, responseHead, conn: conn, buffer: &buffer, deadline: deadline, sink: sink)
                }
                return Exchange(head: responseHead, location: location, keepAlive: keep && p.keepAlive && buffer.isEmpty)
            }
            guard let chunk = try await receive(conn, deadline: deadline, staleIfClosed: !sawBytes) else {
                if !sawBytes { throw .stale }
                throw .failed(HTTPClientError(.malformedResponse, "the connection closed inside the response head"))
            }
            sawBytes = true
            chunk.withUnsafeBytes { buffer.append(contentsOf: $0) }
        }
    }

    /// Reads the body per `framing`, starting with what is already in `buffer`. Returns
    /// whether the connection can be reused.
    private func readBody(_ framing: ResponseFraming, _ head: ClientResponseHead, conn: any ClientTransport, buffer: inout [UInt8], deadline: MonotonicInstant,
                          sink: BodySink) async throws(ExchangeFailure) -> Bool {
        switch framing {
        case .none:
            return true
        case .contentLength(let n):
            var left = n
            let first = Int(min(UInt64(buffer.count), left))
            if first > 0 {
                let copied = try buffer.withTypedBytes { raw throws(ExchangeFailure) in try deliver(UnsafeRawBufferPointer(rebasing: raw[..<first]), to: sink) }
                try await settle(copied, to: sink, head)
            }
            buffer.removeFirst(first)
            left -= UInt64(first)
            while left > 0 {
                guard let chunk = try await receive(conn, deadline: deadline, staleIfClosed: false) else {
                    throw .failed(HTTPClientError(.connectionClosed, "the response body ended \(left) bytes early"))
                }
                let copied = try chunk.withUnsafeBytes { raw throws(ExchangeFailure) in
                    let take = Int(min(UInt64(raw.count), left))
                    let copied = try deliver(UnsafeRawBufferPointer(rebasing: raw[..<take]), to: sink)
                    left -= UInt64(take)
                    if take < raw.count { buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: raw[take...])) }
                    return copied
                }
                try await settle(copied, to: sink, head)
            }
            return true
        case .chunked:
            var decoder = ChunkedDecoder()
            var events: [ChunkedDecoder.Event] = []
            func feed(_ raw: UnsafeRawBufferPointer) throws(ExchangeFailure) -> (used: Int, copied: [UInt8]?) {
                events.removeAll(keepingCapacity: true)
                let used: Int
                do { used = try decoder.decode(raw, into: &events) } catch {
                    throw .failed(HTTPClientError(.malformedResponse, "chunked body: \(error.reason)", cause: error))
                }
                var copied: [UInt8]? = nil
                for case .data(let r) in events {
                    if let more = try deliver(UnsafeRawBufferPointer(rebasing: raw[r]), to: sink) { copied = (copied ?? []) + more }
                }
                return (used, copied)
            }
            if !buffer.isEmpty {
                let (used, copied) = try buffer.withTypedBytes { raw throws(ExchangeFailure) in try feed(raw) }
                buffer.removeFirst(used)
                try await settle(copied, to: sink, head)
            }
            while !decoder.isComplete {
                guard let chunk = try await receive(conn, deadline: deadline, staleIfClosed: false) else {
                    throw .failed(HTTPClientError(.connectionClosed, "the chunked response body ended early"))
                }
                let copied = try chunk.withUnsafeBytes { raw throws(ExchangeFailure) in
                    let (used, copied) = try feed(raw)
                    if used < raw.count { buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: raw[used...])) }
                    return copied
                }
                try await settle(copied, to: sink, head)
            }
            return true
        case .untilClose:
            if !buffer.isEmpty {
                let copied = try buffer.withTypedBytes { raw throws(ExchangeFailure) in try deliver(raw, to: sink) }
                try await settle(copied, to: sink, head)
            }
            buffer.removeAll()
            while let chunk = try await receive(conn, deadline: deadline, staleIfClosed: false) {
                let copied = try chunk.withUnsafeBytes { raw throws(ExchangeFailure) in try deliver(raw, to: sink) }
                try await settle(copied, to: sink, head)
            }
            return false
        }
    }
}

extension Array where Element == UInt8 {
    /// `withUnsafeBytes` keeping the body's error type (the standard library's rethrows
    /// erases it to `any Error`).
    func withTypedBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try withUnsafeBytes { raw in Result { () throws(E) -> R in try body(raw) } }.get()
    }
}
