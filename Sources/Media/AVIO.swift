// Media.AVIO: libav reading from and writing to Swift byte streams through a custom
// AVIOContext, so a transcode can take its input from a pipe or socket and write its
// output to one without touching disk. ByteSource and ByteSink are TranscodeAPI's.
//
// The C shim owns the callback trampolines (CLibAV.h); here a Swift object is passed as
// the opaque pointer (unretained: the owner below outlives the AVIOContext) and the
// @convention(c) callbacks forward to it. The owner frees the context with
// clibav_avio_free, which frees the buffer libav currently holds (probing can replace it).
// The streams are blocking: they are called on the transcode thread, never on a loop.
internal import CLibAV
import Synchronization
import TranscodeAPI
#if canImport(Glibc)
import Glibc
#endif

/// Reads a file descriptor (stdin, a pipe, a socket).
public final class FileDescriptorSource: ByteSource {
    public let fd: Int32
    public init(fd: Int32) { self.fd = fd }
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        while true {
            let n = unsafe Glibc.read(fd, buffer.baseAddress, buffer.count)
            if n >= 0 { return n }
            if errno == EINTR { continue }
            throw MediaError.inputUnreadable(path: "fd \(fd)", reason: unsafe String(cString: strerror(errno)))
        }
    }
}

/// Writes a file descriptor (stdout, a pipe, a socket). On a socket it sends with
/// MSG_NOSIGNAL, so a peer that goes away is an error, not a SIGPIPE for the process.
public final class FileDescriptorSink: ByteSink {
    public let fd: Int32
    private let isSocket: Bool
    public init(fd: Int32) {
        self.fd = fd
        var st = stat()
        isSocket = unsafe fstat(fd, &st) == 0 && (st.st_mode & S_IFMT) == S_IFSOCK
    }
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        var off = 0
        while off < bytes.count {
            let n = unsafe isSocket ? send(fd, bytes.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL))
                : Glibc.write(fd, bytes.baseAddress! + off, bytes.count - off)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                // With SIGPIPE ignored (or MSG_NOSIGNAL) a reader that went away is EPIPE.
                let reason = n < 0 && errno == EPIPE ? "the reader closed the pipe (broken pipe)"
                    : n == 0 ? "the write made no progress" : errnoText()
                throw MediaError.outputUnwritable(path: "fd \(fd)", reason: reason)
            }
            off += n
        }
    }
}

/// Bytes in memory, handed out at most `chunk` at a time (a trickling peer, in tests).
public final class MemorySource: ByteSource, Sendable {
    private let bytes: [UInt8]
    private let chunk: Int
    private let offset = Mutex(0)
    public init(_ bytes: [UInt8], chunk: Int = 64 * 1024) { self.bytes = bytes; self.chunk = max(1, chunk) }
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        offset.withLock { offset in
            let n = min(buffer.count, chunk, bytes.count - offset)
            guard n > 0 else { return 0 }
            unsafe bytes.withUnsafeBytes { src in
                unsafe buffer.baseAddress!.copyMemory(from: src.baseAddress! + offset, byteCount: n)
            }
            offset += n
            return n
        }
    }
}

/// Collects written bytes (tests, small outputs).
public final class MemorySink: ByteSink, Sendable {
    private let storage = Mutex<[UInt8]>([])
    public init() {}
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        storage.withLock { unsafe $0.append(contentsOf: bytes) }
    }
    public var bytes: [UInt8] { storage.withLock { $0 } }
}

/// Owns an AVIOContext bridged to a ByteSource or ByteSink.
@safe final class CustomIO {
    private(set) var ctx: UnsafeMutablePointer<AVIOContext>?
    let source: (any ByteSource)?
    let sink: (any ByteSink)?
    /// A local file read (and seeked) with pread in place of a stream.
    let file: FileInput?
    private var position: Int64 = 0
    let interrupt: InterruptState?
    /// The first error the stream threw (reported instead of libav's generic code).
    var failure: MediaError?
    private(set) var bytesWritten: Int64 = 0
    private(set) var bytesRead: Int64 = 0

    static let bufferSize: Int32 = 64 * 1024

    init(source: any ByteSource, interrupt: InterruptState?) throws(MediaError) {
        self.source = source; self.sink = nil; self.file = nil; self.interrupt = interrupt
        unsafe ctx = clibav_avio_alloc(CustomIO.bufferSize, 0, Unmanaged.passUnretained(self).toOpaque(), { opaque, buf, size in
            let io = unsafe Unmanaged<CustomIO>.fromOpaque(opaque!).takeUnretainedValue()
            return unsafe io.readCallback(buf, size)
        }, nil, nil)
        guard unsafe ctx != nil else { throw outOfMemory("allocating a custom input") }
        LibAVObjects.retain()
    }

    init(sink: any ByteSink, interrupt: InterruptState?) throws(MediaError) {
        self.source = nil; self.sink = sink; self.file = nil; self.interrupt = interrupt
        unsafe ctx = clibav_avio_alloc(CustomIO.bufferSize, 1, Unmanaged.passUnretained(self).toOpaque(), nil, { opaque, buf, size in
            let io = unsafe Unmanaged<CustomIO>.fromOpaque(opaque!).takeUnretainedValue()
            return unsafe io.writeCallback(buf, size)
        }, nil)
        guard unsafe ctx != nil else { throw outOfMemory("allocating a custom output") }
        LibAVObjects.retain()
    }

    /// Reads a local file, with seeking (and AVSEEK_SIZE).
    init(file: FileInput, interrupt: InterruptState?) throws(MediaError) {
        self.source = nil; self.sink = nil; self.file = file; self.interrupt = interrupt
        unsafe ctx = clibav_avio_alloc(CustomIO.bufferSize, 0, Unmanaged.passUnretained(self).toOpaque(), { opaque, buf, size in
            let io = unsafe Unmanaged<CustomIO>.fromOpaque(opaque!).takeUnretainedValue()
            return unsafe io.fileRead(buf, size)
        }, nil, { opaque, offset, whence in
            let io = unsafe Unmanaged<CustomIO>.fromOpaque(opaque!).takeUnretainedValue()
            return io.fileSeek(offset, whence)
        })
        guard unsafe ctx != nil else { throw outOfMemory("allocating a file input") }
        LibAVObjects.retain()
    }

    deinit {
        unsafe clibav_avio_free(&ctx)
        LibAVObjects.release()
    }

    private func readCallback(_ buf: UnsafeMutablePointer<UInt8>?, _ size: Int32) -> Int32 {
        if interrupt?.shouldInterrupt == true { return AVCode.exit }
        guard let buf = unsafe buf, size > 0, let source else { return clibav_averror(EINVAL) }
        do {
            let n = unsafe try source.read(into: UnsafeMutableRawBufferPointer(start: buf, count: Int(size)))
            if n == 0 { return AVCode.eof }
            bytesRead += Int64(n)
            return Int32(n)
        } catch {
            failure = (error as? MediaError) ?? .inputUnreadable(path: "stream", reason: "\(error)")
            return clibav_averror(EIO)
        }
    }

    /// A positional read at `position`; libav sees EOF at the size the file had when it
    /// was opened, and an error (the typed one kept in `failure`) if it became shorter.
    private func fileRead(_ buf: UnsafeMutablePointer<UInt8>?, _ size: Int32) -> Int32 {
        if interrupt?.shouldInterrupt == true { return AVCode.exit }
        guard let buf = unsafe buf, size > 0, let file else { return clibav_averror(EINVAL) }
        if failure != nil { return clibav_averror(EIO) }
        do {
            let n = unsafe try file.read(into: UnsafeMutableRawBufferPointer(start: buf, count: Int(size)), at: position)
            if n == 0 { return AVCode.eof }
            position += Int64(n)
            bytesRead += Int64(n)
            return Int32(n)
        } catch {
            failure = error
            return clibav_averror(EIO)
        }
    }

    private func fileSeek(_ offset: Int64, _ whence: Int32) -> Int64 {
        guard let file else { return Int64(clibav_averror(ESPIPE)) }
        let how = whence & ~AVSEEK_FORCE
        if how == clibav_avseek_size() { return file.size }
        let from: Int64
        switch how {
        case SEEK_SET: from = 0
        case SEEK_CUR: from = position
        case SEEK_END: from = file.size
        default: return Int64(clibav_averror(EINVAL))
        }
        let (target, overflow) = from.addingReportingOverflow(offset)
        // Past the end is allowed (reads there are EOF), before the start is not.
        guard !overflow, target >= 0 else { return Int64(clibav_averror(EINVAL)) }
        position = min(target, file.size)
        return target
    }

    private func writeCallback(_ buf: UnsafePointer<UInt8>?, _ size: Int32) -> Int32 {
        if interrupt?.shouldInterrupt == true { return AVCode.exit }
        guard let buf = unsafe buf, size >= 0, let sink else { return clibav_averror(EINVAL) }
        do {
            unsafe try sink.write(UnsafeRawBufferPointer(start: buf, count: Int(size)))
            bytesWritten += Int64(size)
            return size
        } catch {
            failure = (error as? MediaError) ?? .outputUnwritable(path: "stream", reason: "\(error)")
            return clibav_averror(EIO)
        }
    }
}
