// Web.HTTPServer, sending: responses (bytes, chunked streams, file ranges) with the
// server's framing, the 500 for an invalid handler header, and the lingering close after a
// refusal (bounded in bytes and time: a refused body is never read just to be dropped).
import BufferPool
import HTTP1
import Ring
import Threads

extension HTTPServer {
    /// Bytes and time a lingering close drains at most before closing anyway.
    static let lingerBytesMax = 256 * 1024
    static let lingerTimeMax: Duration = .seconds(2)

    /// Unread body bytes the server drops itself to keep a connection alive.
    static let drainMax: UInt64 = 64 * 1024

    /// A header the serializer must not write (a handler echoing a decoded CR/LF or NUL
    /// from a path, say): reported so the request gets a 500 instead of a crash.
    static func invalidHeader(_ headers: [(name: String, value: String)]) -> String? {
        for (n, v) in headers where !ResponseHead.isValidField(name: n, value: v) {
            return "invalid header field \(n.debugDescription)"
        }
        return nil
    }

    /// `response`'s fields must have passed `invalidHeader` (serve checks every handler's;
    /// the server's own are fixed): the head is written without checking them again.
    nonisolated(nonsending) func send(_ response: Response, to request: Request, http10: Bool, on conn: TCPConnection,
                                      input: ConnectionInput? = nil) async throws {
        let isHead = request.method == "HEAD"
        // Framing is the server's: whatever a handler set (a proxied response's headers,
        // say) would contradict what is actually sent.
        var headers = response.headers
        headers.removeAll { $0.name.equalsIgnoringCase("Content-Length") || $0.name.equalsIgnoringCase("Transfer-Encoding") }
        // 1xx, 204 and 304 carry no content and no Content-Length (RFC 9110 §8.6).
        let contentless = response.status < 200 || response.status == 204 || response.status == 304
        switch response.stream {
        case nil:
            if !contentless { headers.append(("Content-Length", String(response.body.count))) }
            var out: [UInt8] = []
            out.reserveCapacity(256 + response.body.count)
            ResponseHead(status: response.status, headers: headers).serialize(checkedFields: (), into: &out)
            if !isHead && !contentless { out.append(contentsOf: response.body) }
            try await sendSmall(out, on: conn)

        case .chunked(let producer):
            // HTTP/1.0 has no chunked coding: the body runs to the end of the connection.
            if contentless {
                // 1xx/204/304 carry no content: neither a transfer coding nor a producer.
            } else if http10 {
                headers.removeAll(named: "Connection")
                headers.append(("Connection", "close"))
            } else {
                headers.append(("Transfer-Encoding", "chunked"))
            }
            var out: [UInt8] = []
            ResponseHead(status: response.status, headers: headers).serialize(checkedFields: (), into: &out)
            try await conn.send(out, timeout: configuration.sendTimeout)
            guard !isHead && !contentless else { return }
            let writer = ResponseWriter(conn: conn, timeout: configuration.sendTimeout, chunked: !http10)
            // A graceful stop tells the producer (through the registry's drain).
            input?.writer = writer
            defer { input?.writer = nil }
            if input?.stopping == true { writer.stop() }
            do {
                try await producer(writer)
            } catch {
                // The status is already sent: the only honest signal left is to end the
                // connection without the last chunk, so the client sees a truncated body.
                logger.warning("streaming response failed", metadata: ["path": "\(request.path)", "error": "\(error)"])
                throw error
            }
            if http10 { throw RingError(.closed, operation: "end of HTTP/1.0 stream") }
            try await conn.send(ChunkedEncoding.lastChunk, timeout: configuration.sendTimeout)

        case .file(let path, let range):
            let file = try await File.open(path, .read)
            do {
                let size = UInt64(max(0, file.size))
                let r = range ?? 0..<size
                if !contentless { headers.append(("Content-Length", String(r.count))) }
                var out: [UInt8] = []
                ResponseHead(status: response.status, headers: headers).serialize(checkedFields: (), into: &out)
                try await conn.send(out, timeout: configuration.sendTimeout)
                if !isHead && !contentless {
                    // By splice on io_uring (the bytes stay in the kernel), else copied
                    // through pool buffers (TCPConnection+SendFile.swift).
                    try await conn.send(file: file, range: r, timeout: configuration.sendTimeout)
                }
            } catch {
                try? await file.close()
                throw error
            }
            try? await file.close()
        }
    }

    /// Most responses one connection may have queued for the socket before the server
    /// waits for them (a pipelining client that does not read is pushed back on here).
    static let queuedResponsesMax = 4

    /// A response that fits one pool buffer is queued for the socket and the connection
    /// goes on to the next request without waiting (`TCPConnection.sendQueued`); a larger
    /// one, or one with too many queued before it, is sent and waited for.
    nonisolated(nonsending) func sendSmall(_ bytes: [UInt8], on conn: TCPConnection) async throws {
        let pool = conn.loop.pool!
        if bytes.count <= pool.bufferSizeBytes, conn.queuedSendCount < Self.queuedResponsesMax, let b = pool.tryAcquire() {
            try queue(bytes, in: b, on: conn)
        } else {
            try await conn.send(bytes, timeout: configuration.sendTimeout)
        }
    }

    /// Copies `bytes` (at most a pool buffer's size) into `buffer` and queues it for the
    /// socket: `sendSmall`'s way, and the receive shortcut's (LaneShortcut.swift).
    func queue(_ bytes: [UInt8], in buffer: consuming PooledBuffer, on conn: TCPConnection) throws(RingError) {
        var b = buffer
        unsafe b.withUnsafeMutableBytes { dst in
            unsafe bytes.withUnsafeBytes { unsafe dst.copyMemory(from: $0) }
        }
        b.count = bytes.count
        try conn.sendQueued(b, timeoutNanoseconds: sendTimeoutNanoseconds)
    }

    /// Answers a request the server refuses before any route sees it (a parse error, a
    /// body over its limit, a head that came too slowly), with the Date every answer
    /// carries (RFC 9110 §6.6.1), then closes.
    nonisolated(nonsending) func respondAndClose(_ conn: TCPConnection, date: String, _ error: APIError,
                                                 method: String? = nil, route: String? = nil) async {
        configuration.refused?(method, route, error.status)
        var r = error.response
        r.headers.append(("Connection", "close"))
        r.headers.append(("Date", date))
        try? await send(r, to: Request(method: "GET", target: "/"), http10: false, on: conn)
        await lingerAndClose(conn)
    }

    /// Lingering close: closing with unread input would send RST, and the peer could
    /// lose our response. Drain (bounded in time and bytes) until it closes too.
    nonisolated(nonsending) func lingerAndClose(_ conn: TCPConnection) async {
        try? await conn.shutdown(.write)
        var drained = 0
        let deadline = conn.loop.now + Self.lingerTimeMax
        while drained < Self.lingerBytesMax, conn.loop.now < deadline,
              let b = try? await conn.receive(timeout: min(.milliseconds(500), deadline - conn.loop.now)) {
            drained += b.count
        }
        await conn.close()
    }
}
