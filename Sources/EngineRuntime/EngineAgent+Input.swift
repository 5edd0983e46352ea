// EngineRuntime.EngineAgent+Input: how a job's input reaches its transcode (M29, decided
// by InputDecision and logged): downloaded into the job's work directory first, or
// streamed. Streaming: the engine makes the work directory's `input` a FIFO, the runner
// reads it as a stream (FIFOSource, in this process or in the sandboxed worker, which
// sees the FIFO bound in like a file), and a writer task on the loop opens the FIFO's
// write end once the transcode has opened its read end, then copies the HTTP body into
// it: each piece is awaited (written on the engine's stream pool, a blocking write the
// pipe's capacity holds back), so a transcode slower than the network slows the download
// instead of filling memory. The writer's outcome decides whether the transcode counts:
// a body cut short, or an error answer, fails the job even when the transcode "finished".
import Glibc
import Jobs
import ProcFS
import Ring
import Synchronization
import Threads
import Web

extension EngineAgent {
    /// A job's input as prepared for its runner.
    struct PreparedInput: Sendable {
        var route: InputRoute
        /// The stream route's writer: the bytes it passed, or why it stopped.
        var writer: Task<Int64, any Error>?

        /// Why the streamed input did not arrive whole, if it did not. After a failed
        /// transcode the writer is stopped first (it may still wait for a reader); after a
        /// successful one, a reader that stopped reading early is fine.
        func streamFailure(afterSuccess: Bool) async -> (any Error)? {
            guard let writer else { return nil }
            if !afterSuccess { writer.cancel() }
            switch await writer.result {
            case .success: return nil
            case .failure(let e):
                if e is ReaderGone || e is CancellationError { return nil }
                if let r = e as? RingError, r.code == .cancelled { return nil }
                if let h = e as? HTTPClientError, h.ringError?.code == .cancelled { return nil }
                return e
            }
        }
    }

    /// The transcode closed its end of the FIFO.
    struct ReaderGone: Error {}

    func prepareInput(_ client: LoopBound<HTTPClient>, _ lease: Lease, at path: String) async throws -> PreparedInput {
        switch try await chooseInputRoute(client.value, lease) {
        case .download:
            try await download(client.value, lease, to: path)
            return PreparedInput(route: .download)
        case .stream:
            guard mkfifo(path, 0o600) == 0 else { throw EngineError("cannot make the input FIFO \(path): \(String(cString: strerror(errno)))") }
            let writer = client.loop.spawn { [self] in try await streamInput(client, lease, into: path) }
            return PreparedInput(route: .stream, writer: writer)
        }
    }

    /// Download or stream: the runner's and the container's say, then size, free disk and
    /// measured throughput (InputDecision). Logged with its reasons.
    func chooseInputRoute(_ client: HTTPClient, _ lease: Lease) async throws -> InputRoute {
        let policy = configuration.inputPolicy
        guard policy.mode != .download else { return .download }
        if let why = runner.streamRefusal(lease.spec) {
            logger.info("job \(lease.jobID): input downloaded first: \(why)")
            return .download
        }
        let (size, prefix) = try await inputPrefix(client, lease)
        let throughput = state.withLock { $0.downloadBytesPerSecond }
        let (route, why) = InputDecision.route(size: size, freeDisk: freeBytes(workRoot), throughput: throughput,
                                               streamable: ContainerSniff.streamability(prefix), policy: policy)
        logger.info("job \(lease.jobID): input \(route == .stream ? "streamed" : "downloaded first"): \(why)")
        return route
    }

    /// The input's size and its first bytes (ContainerSniff.prefixBytes), with one ranged GET.
    func inputPrefix(_ client: HTTPClient, _ lease: Lease) async throws -> (Int64, [UInt8]) {
        struct Enough: Error {}
        var prefix: [UInt8] = []
        var status = 0, total: Int64 = 0
        do {
            _ = try await client.execute(ClientRequest(url: inputURL(lease), headers: try authorization()
                                                        + [("Range", "bytes=0-\(ContainerSniff.prefixBytes - 1)")]), awaiting: { head, bytes in
                status = head.status
                if head.status == 206, let range = head.header("Content-Range"), let slash = range.lastIndex(of: "/") {
                    total = Int64(range[range.index(after: slash)...]) ?? 0
                } else if head.status == 200 {
                    total = head.header("Content-Length").flatMap(Int64.init) ?? 0
                }
                guard head.status == 200 || head.status == 206 else { return }
                prefix += bytes.prefix(ContainerSniff.prefixBytes - prefix.count)
                // A server that ignored the range: stop at the prefix.
                if prefix.count >= ContainerSniff.prefixBytes { throw Enough() }
            })
        } catch let e as HTTPClientError where e.kind == .callbackFailed && e.cause is Enough {
            // The prefix is in; the rest of an unranged answer is not read.
        }
        if status == 409 { throw StaleLease(description: "lease lost before the input was read") }
        if status == 416 { return (0, []) }   // an empty input
        guard status == 200 || status == 206 else { throw EngineError("input probe answered \(status)") }
        return (total, prefix)
    }

    func inputURL(_ lease: Lease) throws -> String {
        guard let creds = state.withLock({ $0.credentials }) else { throw EngineError("not registered") }
        return api + "/engines/\(creds.engineID)/jobs/\(lease.jobID)/input?lease_epoch=\(lease.epoch)"
    }

    func authorization() throws -> [(name: String, value: String)] {
        guard let creds = state.withLock({ $0.credentials }) else { throw EngineError("not registered") }
        return authorization(creds.token)
    }

    func download(_ client: HTTPClient, _ lease: Lease, to path: String) async throws {
        let url = try inputURL(lease), headers = try authorization()
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw EngineError("cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var written: Int64 = 0
        let started = SystemClock.nanoseconds()
        let head = try await client.execute(ClientRequest(url: url, headers: headers)) { bytes in
            var off = 0
            while off < bytes.count {
                let n = write(fd, bytes.baseAddress! + off, bytes.count - off)
                if n < 0 { if errno == EINTR { continue }; throw EngineError("writing \(path): \(String(cString: strerror(errno)))") }
                off += n
            }
            written += Int64(bytes.count)
        }
        if head.status == 409 { throw StaleLease(description: "lease lost before the input was read") }
        guard head.status == 200 else { throw EngineError("input download answered \(head.status)") }
        if let len = head.header("Content-Length").flatMap(Int64.init), len != written {
            throw EngineError("input download ended after \(written) of \(len) bytes")
        }
        noteThroughput(bytes: written, nanoseconds: SystemClock.nanoseconds() - started)
    }

    /// Keeps a moving average of download throughput (downloads of 1 MiB or more; smaller
    /// ones measure latency, not bandwidth).
    func noteThroughput(bytes: Int64, nanoseconds: Int64) {
        guard bytes >= 1 << 20, nanoseconds > 0 else { return }
        let rate = Double(bytes) / (Double(nanoseconds) / 1e9)
        state.withLock { s in s.downloadBytesPerSecond = s.downloadBytesPerSecond.map { 0.7 * $0 + 0.3 * rate } ?? rate }
    }

    /// The writer of the stream route: waits for the transcode to open the FIFO, then
    /// copies the input's body into it. Returns the bytes passed.
    func streamInput(_ client: LoopBound<HTTPClient>, _ lease: Lease, into path: String) async throws -> Int64 {
        let loop = client.loop
        let url = try inputURL(lease), headers = try authorization()
        var fd: Int32 = -1
        while true {
            fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
            if fd >= 0 { break }
            guard errno == ENXIO else { throw EngineError("cannot open the input FIFO \(path): \(String(cString: strerror(errno)))") }
            try await loop.sleep(until: loop.now + .milliseconds(5))   // no reader yet
        }
        let pipe = PipeWriter(fd: fd)
        guard fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) == 0 else {
            throw EngineError("fcntl on the input FIFO: \(String(cString: strerror(errno)))")
        }
        var written: Int64 = 0
        let pool = streamPool
        let head = try await client.value.execute(ClientRequest(url: url, headers: headers), awaiting: { head, bytes in
            guard head.status == 200 else { return }
            try await pool.run { () throws -> Void in try pipe.write(bytes) }
            written += Int64(bytes.count)
        })
        pipe.close()
        if head.status == 409 { throw StaleLease(description: "lease lost while the input streamed") }
        guard head.status == 200 else { throw EngineError("input stream answered \(head.status)") }
        if let len = head.header("Content-Length").flatMap(Int64.init), len != written {
            throw EngineError("input stream ended after \(written) of \(len) bytes")
        }
        logger.debug("job \(lease.jobID): streamed \(written) input bytes")
        return written
    }

    func freeBytes(_ path: String) -> Int64 { FileSystemSpace.of(path: path)?.availableBytes ?? 0 }
}

/// The write end of the input FIFO: blocking writes (on the stream pool), closed once.
final class PipeWriter: @unchecked Sendable {
    // The descriptor is written from one pool thread at a time (each write is awaited
    // before the next) and closed after the last; the lock guards the close.
    private let lock = Mutex<Int32>(-1)
    init(fd: Int32) { lock.withLock { $0 = fd } }
    deinit { close() }

    func write(_ bytes: [UInt8]) throws {
        let fd = lock.withLock { $0 }
        guard fd >= 0 else { throw EngineRuntime.EngineAgent.ReaderGone() }
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + off, $0.count - off) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EPIPE { throw EngineRuntime.EngineAgent.ReaderGone() }
                throw EngineError("writing the input FIFO: \(String(cString: strerror(errno)))")
            }
            off += n
        }
    }

    func close() {
        lock.withLock { fd in
            if fd >= 0 { Glibc.close(fd); fd = -1 }
        }
    }
}
