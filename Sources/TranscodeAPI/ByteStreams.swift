// TranscodeAPI.ByteStreams: where a streamed job reads its input and writes its output
// (a pipe, a socket, an HTTP body). Both are blocking: a plugin calls them on its own
// transcode thread, never on an event loop.

/// Where a streamed input comes from. `read` blocks until at least one byte is available
/// and returns how many it put in `buffer`; 0 means the end of the input.
public protocol ByteSource: AnyObject, Sendable {
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int
    /// Wakes a reader blocked in `read` so it throws (called on cancellation).
    func stopReading()
}

extension ByteSource {
    /// Sources that never block ignore it.
    public func stopReading() {}
}

/// Where a streamed output goes. `write` takes every byte or throws.
public protocol ByteSink: AnyObject, Sendable {
    func write(_ bytes: UnsafeRawBufferPointer) throws
}
