// EngineRuntime.FIFOStreams: a streamed job's input and output as FIFOs (M29's stream
// route). The engine writes the input's HTTP body into one FIFO as it arrives and the
// transcode reads it (FIFOSource), front to back; the transcode writes its output into
// another (FIFOSink) and the engine sends what it reads there as the upload's body.
// Opening a FIFO blocks until the other side comes, so both open on first use, on the
// transcode's own thread (never on a loop). FIFOSource's `stopReading` (cancellation) sets
// a flag and, if the open is still waiting, opens the FIFO for writing itself
// (non-blocking) and closes it at once: the reader's open returns, and its first read
// finds the end of the stream.
import Glibc
import Synchronization
import TranscodeAPI

public struct StreamedInputError: Error, Sendable, CustomStringConvertible {
    public var description: String
}

public final class FIFOSource: ByteSource {
    public let path: String
    private struct State {
        var fd: Int32 = -1
        var stopped = false
        var opening = false
    }
    private let state = Mutex(State())

    public init(path: String) { self.path = path }

    deinit {
        let fd = state.withLock { $0.fd }
        if fd >= 0 { close(fd) }
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let fd = try descriptor()
        while true {
            let n = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if n >= 0 {
                if n == 0 && state.withLock({ $0.stopped }) { throw StreamedInputError(description: "the streamed input was stopped") }
                return n
            }
            if errno == EINTR { continue }
            throw StreamedInputError(description: "reading the streamed input: \(String(cString: strerror(errno)))")
        }
    }

    private func descriptor() throws -> Int32 {
        let (fd, stopped) = state.withLock { s -> (Int32, Bool) in
            if s.fd < 0 && !s.stopped { s.opening = true }
            return (s.fd, s.stopped)
        }
        if fd >= 0 { return fd }
        if stopped { throw StreamedInputError(description: "the streamed input was stopped") }
        var opened: Int32 = -1
        repeat { opened = open(path, O_RDONLY | O_CLOEXEC) } while opened < 0 && errno == EINTR
        let e = errno
        state.withLock { s in
            s.opening = false
            if opened >= 0 { s.fd = opened }
        }
        guard opened >= 0 else { throw StreamedInputError(description: "opening the streamed input: \(String(cString: strerror(e)))") }
        return opened
    }

    public func stopReading() {
        let waiting = state.withLock { s -> Bool in
            s.stopped = true
            return s.opening
        }
        if waiting {
            let w = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
            if w >= 0 { close(w) }
        }
    }
}

/// The output of a streamed job: the transcode writes here, the engine reads the other end
/// and uploads what comes. Opened on the first write (blocking until the engine's reader
/// is there); `close` (or the end of the object) is the end of the output.
public final class FIFOSink: ByteSink {
    public let path: String
    private let fd = Mutex<Int32>(-1)

    public init(path: String) { self.path = path }
    deinit { close() }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        var d = fd.withLock { $0 }
        if d < 0 {
            repeat { d = open(path, O_WRONLY | O_CLOEXEC) } while d < 0 && errno == EINTR
            guard d >= 0 else { throw StreamedInputError(description: "opening the output stream: \(String(cString: strerror(errno)))") }
            fd.withLock { $0 = d }
        }
        var off = 0
        while off < bytes.count {
            let n = Glibc.write(d, bytes.baseAddress! + off, bytes.count - off)
            if n < 0 {
                if errno == EINTR { continue }
                throw StreamedInputError(description: errno == EPIPE ? "the engine stopped reading the output stream"
                                                                     : "writing the output stream: \(String(cString: strerror(errno)))")
            }
            off += n
        }
    }

    /// Ends the output (the reader sees the end of the stream).
    public func close() {
        fd.withLock { d in
            if d >= 0 { Glibc.close(d); d = -1 }
        }
    }
}
