// EngineRuntime.FIFOSource: a streamed input read from a FIFO (M29's stream route). The
// engine writes the HTTP body into the FIFO as it arrives; the transcode reads it here,
// front to back. Opening a FIFO for reading blocks until a writer comes, so it is opened
// on the first read, on the transcode's own thread (never on a loop). `stopReading`
// (cancellation) sets a flag and, if the open is still waiting, opens the FIFO for
// writing itself (non-blocking) and closes it at once: the reader's open returns, and its
// first read finds the end of the stream.
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
