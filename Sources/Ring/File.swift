// Files on the event loop: open/read/write at offsets (fixed buffers when registered),
// fsync/fdatasync, rename, unlink, statx through the ring; mmap helpers for large files.
// On the epoll backend the same calls run synchronously (regular files never block on
// readiness), so callers need not care which backend runs.
import BufferPool
#if canImport(Glibc)
import Glibc
#endif
internal import CEpoll

public final class File {
    public let fd: Int32
    public let path: String
    public let loop: EventLoop
    private var closed = false
    private var pool: BufferPool { loop.pool }

    public struct Mode: Sendable {
        let flags: Int32
        public static let read = Mode(flags: O_RDONLY)
        public static let readWrite = Mode(flags: O_RDWR)
        /// Create or truncate for writing.
        public static let createTruncate = Mode(flags: O_WRONLY | O_CREAT | O_TRUNC)
        /// Create, failing if it exists (for temp files of atomic writes).
        public static let createExclusive = Mode(flags: O_WRONLY | O_CREAT | O_EXCL)
        public static let append = Mode(flags: O_WRONLY | O_CREAT | O_APPEND)
        /// The same mode with O_DIRECT: writes go from the caller's buffers to the device,
        /// past the page cache. Every address, length and offset must then be aligned to
        /// the file system's direct-I/O block (4096 covers the common ones), or the write
        /// fails with EINVAL; `setDirect(false)` lifts it for an unaligned tail.
        public var direct: Mode { Mode(flags: flags | cepoll_o_direct()) }
    }

    private init(fd: Int32, path: String, loop: EventLoop) {
        self.fd = fd
        self.path = path
        self.loop = loop
    }

    deinit {
        if !closed { _ = loop.backend.closeNow(fd: fd) }
    }

    /// Opens `path` close-on-exec (on both backends: a child process never inherits it).
    nonisolated(nonsending) public static func open(_ path: String, _ mode: Mode, permissions: UInt32 = 0o644) async throws(RingError) -> File {
        let loop = try currentLoop("open \(path)")
        let r = unsafe await strdup(path)!.asOwnedPath { p in
            await loop.perform(cancellable: false) { ud, _ in unsafe loop.backend.openat(path: p, flags: mode.flags | O_CLOEXEC, mode: permissions, ud) }
        }
        guard r.res >= 0 else { throw RingError(errno: -r.res, operation: "open \(path)") }
        return File(fd: r.res, path: path, loop: loop)
    }

    /// Reads up to the buffer's capacity at `offset`; the buffer's count becomes the bytes read.
    nonisolated(nonsending) public func read(into buffer: consuming PooledBuffer, at offset: UInt64) async -> IOCompletion {
        if closed { return IOCompletion(result: .failure(RingError(.closed, operation: "read \(path)")), buffer: buffer) }
        let parts = pool.disassemble(buffer)
        let dst = unsafe pool.address(of: parts.index)
        let cap = pool.bufferSizeBytes
        let r = await loop.perform(cancellable: false) { ud, _ in
            unsafe loop.backend.read(fd: fd, into: dst, count: cap, offset: offset, bufferIndex: Int32(parts.index), ud)
        }
        var back = pool.reassemble(parts)
        if r.res >= 0 {
            back.count = Int(r.res)
            return IOCompletion(result: .success(Int(r.res)), buffer: back)
        }
        return IOCompletion(result: .failure(RingError(errno: -r.res, operation: "read \(path)")), buffer: back)
    }

    /// Writes all valid bytes of `buffer` at `offset` (short writes are continued).
    nonisolated(nonsending) public func write(_ buffer: consuming PooledBuffer, at offset: UInt64) async -> IOCompletion {
        if closed { return IOCompletion(result: .failure(RingError(.closed, operation: "write \(path)")), buffer: buffer) }
        let parts = pool.disassemble(buffer)
        let src = unsafe pool.address(of: parts.index)
        var done = 0
        var failure: RingError?
        while done < parts.count {
            let r = await loop.perform(cancellable: false) { ud, _ in
                unsafe loop.backend.write(fd: fd, from: src + done, count: parts.count - done, offset: offset + UInt64(done),
                                   bufferIndex: done == 0 ? Int32(parts.index) : -1, ud)
            }
            if r.res <= 0 {
                failure = r.res == 0 ? RingError(.noSpace, operation: "write \(path)") : RingError(errno: -r.res, operation: "write \(path)")
                break
            }
            done += Int(r.res)
        }
        let back = pool.reassemble(parts)
        if let failure { return IOCompletion(result: .failure(failure), buffer: back) }
        return IOCompletion(result: .success(done), buffer: back)
    }

    /// Fills `list` (its buffers' capacities, in order) from `offset` with one preadv per
    /// up to `vectorMax` buffers, continuing after short reads, up to `limit` bytes; each
    /// buffer's count becomes what it holds. Returns the bytes read: fewer than asked only
    /// at the end of the file.
    nonisolated(nonsending) public func read(into list: inout PooledBufferList, at offset: UInt64, limit: Int) async throws(RingError) -> Int {
        if closed { throw RingError(.closed, operation: "read \(path)") }
        let capacity = pool.bufferSizeBytes
        var want: [Int] = []
        var left = limit
        for _ in 0..<list.count {
            want.append(min(capacity, max(0, left)))
            left -= capacity
        }
        var got = [Int](repeating: 0, count: list.count)
        var part = 0, total = 0
        while part < list.count && want[part] > got[part] {
            let first = part, at = offset + UInt64(total), have = got, need = want
            let r = await loop.perform(cancellable: false) { ud, slot in
                let iov = unsafe loop.scratch(slot).bindMemory(to: iovec.self, capacity: Self.vectorMax)
                var n = 0
                var i = first
                while i < list.count && n < Self.vectorMax && need[i] > have[i] {
                    unsafe iov[n] = iovec(iov_base: list.address(of: i) + have[i], iov_len: need[i] - have[i])
                    n += 1
                    i += 1
                }
                return unsafe loop.backend.readv(fd: fd, vectors: UnsafeRawPointer(iov), count: n, offset: at, ud)
            }
            if r.res < 0 { throw RingError(errno: -r.res, operation: "read \(path)") }
            if r.res == 0 { break }
            var took = Int(r.res)
            total += took
            while took > 0 {
                let room = want[part] - got[part]
                if took >= room { got[part] += room; took -= room; part += 1 } else { got[part] += took; took = 0 }
            }
        }
        list.setCounts(got)
        return total
    }

    /// Most buffers one gathered write carries (the iovecs live in the operation's scratch).
    public static let vectorMax = 8

    /// Writes the valid bytes of every buffer of `list`, in order, from `offset`: one
    /// pwritev per up to `vectorMax` buffers, short writes continued. Returns the bytes
    /// written (all of them, or it throws). The list stays the caller's.
    nonisolated(nonsending) public func write(_ list: borrowing PooledBufferList, at offset: UInt64) async throws(RingError) -> Int {
        if closed { throw RingError(.closed, operation: "write \(path)") }
        var cursor = BufferListCursor()
        var written = 0
        while !cursor.isDone(list) {
            let from = cursor, at = offset + UInt64(written)
            let r = await loop.perform(cancellable: false) { ud, slot in prepareWrite(list, from: from, at: at, ud, slot) }
            if r.res <= 0 { throw writeError(r.res) }
            written += Int(r.res)
            cursor.advance(by: Int(r.res), in: list)
        }
        return written
    }

    /// Queues one pwritev of the bytes of `list` not yet written (from `cursor`, up to
    /// `vectorMax` buffers; the iovecs live in the operation's scratch).
    func prepareWrite(_ list: borrowing PooledBufferList, from cursor: BufferListCursor, at offset: UInt64, _ ud: UInt64, _ slot: Int) -> Int32 {
        let iov = unsafe loop.scratch(slot).bindMemory(to: iovec.self, capacity: Self.vectorMax)
        let n = unsafe cursor.vectors(list, into: iov, max: Self.vectorMax)
        return unsafe loop.backend.writev(fd: fd, vectors: UnsafeRawPointer(iov), count: n, offset: offset, ud)
    }

    /// The error of a write that wrote nothing (0: the device is full).
    func writeError(_ res: Int32) -> RingError {
        res == 0 ? RingError(.noSpace, operation: "write \(path)") : RingError(errno: -res, operation: "write \(path)")
    }

    /// Turns O_DIRECT on or off for later writes (fcntl F_SETFL; no I/O).
    public func setDirect(_ on: Bool) throws(RingError) {
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0 else { throw RingError(errno: errno, operation: "fcntl \(path)") }
        let wanted = on ? flags | cepoll_o_direct() : flags & ~cepoll_o_direct()
        if wanted != flags && fcntl(fd, F_SETFL, wanted) != 0 { throw RingError(errno: errno, operation: "fcntl \(path)") }
    }

    /// fsync (or fdatasync with `dataOnly`).
    nonisolated(nonsending) public func sync(dataOnly: Bool = false) async throws(RingError) {
        if closed { throw RingError(.closed, operation: "fsync \(path)") }
        let r = await loop.perform(cancellable: false) { ud, _ in loop.backend.fsync(fd: fd, dataOnly: dataOnly, ud) }
        if r.res < 0 { throw RingError(errno: -r.res, operation: "fsync \(path)") }
    }

    nonisolated(nonsending) public func close() async throws(RingError) {
        guard !closed else { return }
        closed = true
        let r = await loop.perform(cancellable: false) { ud, _ in loop.backend.close(fd: fd, ud) }
        if r.isSlotsExhausted || r.res == -EAGAIN || r.res == -EBUSY {
            // No slot or SQ space for the close: do it synchronously rather than leak the fd.
            let rc = loop.backend.closeNow(fd: fd)
            if rc < 0 { throw RingError(errno: -rc, operation: "close \(path)") }
            return
        }
        if r.res < 0 { throw RingError(errno: -r.res, operation: "close \(path)") }
    }

    public var size: Int { Int(max(0, loop.backend.fileSize(fd: fd))) }
}

public struct FileStatus: Sendable, Equatable {
    public var size: UInt64
    public var mode: UInt32
    public var modifiedSeconds: Int64
    /// Nanoseconds within `modifiedSeconds`.
    public var modifiedNanoseconds: UInt32 = 0
    public var inode: UInt64 = 0
    public var isDirectory: Bool { mode & UInt32(S_IFMT) == UInt32(S_IFDIR) }
    public var isRegularFile: Bool { mode & UInt32(S_IFMT) == UInt32(S_IFREG) }
}

/// Path operations through the ring.
public enum FileSystem {
    nonisolated(nonsending) public static func rename(_ from: String, to: String) async throws(RingError) {
        let loop = try currentLoop("rename \(from)")
        let r = unsafe await strdup(from)!.asOwnedPath { a in
            unsafe await strdup(to)!.asOwnedPath { b in
                await loop.perform(cancellable: false) { ud, _ in unsafe loop.backend.rename(from: a, to: b, ud) }
            }
        }
        if r.res < 0 { throw RingError(errno: -r.res, operation: "rename \(from) -> \(to)") }
    }

    nonisolated(nonsending) public static func remove(_ path: String, directory: Bool = false) async throws(RingError) {
        let loop = try currentLoop("unlink \(path)")
        let r = unsafe await strdup(path)!.asOwnedPath { p in
            await loop.perform(cancellable: false) { ud, _ in unsafe loop.backend.unlink(path: p, directory: directory, ud) }
        }
        if r.res < 0 { throw RingError(errno: -r.res, operation: "unlink \(path)") }
    }

    nonisolated(nonsending) public static func status(_ path: String) async throws(RingError) -> FileStatus {
        let loop = try currentLoop("statx \(path)")
        // The kernel writes the statx record until the completion: give it memory this
        // call owns (not slot scratch, which is reused as soon as the slot is freed).
        let sx = UnsafeMutableRawPointer.allocate(byteCount: Int(CEPOLL_STATX_SIZE), alignment: 16)
        defer { unsafe sx.deallocate() }
        let r = unsafe await strdup(path)!.asOwnedPath { p in
            await loop.perform(cancellable: false) { ud, _ in unsafe loop.backend.statx(path: p, into: sx, ud) }
        }
        if r.res < 0 { throw RingError(errno: -r.res, operation: "statx \(path)") }
        var status = FileStatus(size: 0, mode: 0, modifiedSeconds: 0)
        unsafe cepoll_statx_fields(sx, &status.size, &status.mode, &status.modifiedSeconds)
        unsafe cepoll_statx_identity(sx, &status.modifiedNanoseconds, &status.inode)
        return status
    }

    /// Makes a rename or create in `directory` durable (fsync of the directory).
    nonisolated(nonsending) public static func syncDirectory(_ directory: String) async throws(RingError) {
        let d = try await File.open(directory, File.Mode(flags: O_RDONLY | O_DIRECTORY))
        try await d.sync()
        try await d.close()
    }

}

func currentLoop(_ op: String) throws(RingError) -> EventLoop {
    guard let loop = EventLoop.current else {
        throw RingError(.invalidArgument, operation: op, reason: "no event loop: call from a task on a loop")
    }
    return loop
}

extension UnsafeMutablePointer where Pointee == CChar {
    /// Runs `body` with this strdup'd path and frees it afterwards (it must outlive the await).
    func asOwnedPath<R>(_ body: (UnsafePointer<CChar>) async -> R) async -> R {
        defer { unsafe free(self) }
        return unsafe await body(UnsafePointer(self))
    }
}

/// A read-only or read-write memory mapping of a whole file.
@safe public final class MappedFile {
    public let count: Int
    private let base: UnsafeMutableRawPointer?
    private let writable: Bool

    /// Maps `path` read-only (sequential read-ahead advised).
    public init(readingFrom path: String) throws(RingError) {
        let fd = unsafe Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw RingError(errno: errno, operation: "open \(path)") }
        defer { Glibc.close(fd) }
        var st = stat()
        guard unsafe fstat(fd, &st) == 0 else { throw RingError(errno: errno, operation: "fstat \(path)") }
        count = Int(st.st_size)
        writable = false
        if count == 0 {
            unsafe base = nil
            return
        }
        let p = unsafe mmap(nil, count, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p = unsafe p, unsafe p != MAP_FAILED else { throw RingError(errno: errno, operation: "mmap \(path)") }
        unsafe madvise(p, count, MADV_SEQUENTIAL)
        unsafe base = unsafe p
    }

    /// Creates (or truncates) `path` with `size` bytes and maps it read-write; `sync()`
    /// flushes it to disk.
    public init(creating path: String, size: Int, permissions: UInt32 = 0o644) throws(RingError) {
        let fd = unsafe Glibc.open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, mode_t(permissions))
        guard fd >= 0 else { throw RingError(errno: errno, operation: "open \(path)") }
        defer { Glibc.close(fd) }
        guard ftruncate(fd, off_t(size)) == 0 else { throw RingError(errno: errno, operation: "ftruncate \(path)") }
        count = size
        writable = true
        if size == 0 {
            unsafe base = nil
            return
        }
        let p = unsafe mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let p = unsafe p, unsafe p != MAP_FAILED else { throw RingError(errno: errno, operation: "mmap \(path)") }
        unsafe base = unsafe p
    }

    deinit {
        if let base = unsafe base { unsafe munmap(base, count) }
    }

    /// - warning: Do not let the pointer escape the closure.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        unsafe try body(UnsafeRawBufferPointer(start: base, count: base == nil ? 0 : count))
    }

    /// - warning: Do not let the pointer escape the closure.
    public func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        precondition(writable, "mapping is read-only")
        return unsafe try body(UnsafeMutableRawBufferPointer(start: base, count: base == nil ? 0 : count))
    }

    public func sync() throws(RingError) {
        guard let base = unsafe base, writable else { return }
        if unsafe msync(base, count, MS_SYNC) != 0 { throw RingError(errno: errno, operation: "msync") }
    }
}

/// Wall-clock time in whole seconds since the Unix epoch, for protocol dates (HTTP `Date`,
/// whether a file is old enough for a strong validator); never for measuring intervals.
/// CLOCK_REALTIME_COARSE: the last scheduler tick's time (at most 4 ms behind at HZ=250,
/// never ahead), read without the time-stamp counter: every answer's `Date` reads it.
public func wallClockSeconds() -> Int64 {
    var ts = timespec()
    unsafe clock_gettime(CLOCK_REALTIME_COARSE, &ts)
    return Int64(ts.tv_sec)
}
