// Storage.LocalStorage: objects as files under one root directory, the embedded default.
//
//   root/tmp/.upload-<random>   an upload in progress (O_EXCL, mode 0600, private)
//   root/objects/<key>          complete objects, each renamed in whole
//
// A write streams the source through the ring (io_uring, or the epoll fallback's blocking
// pool) in pool buffers into a fresh temp file (O_DIRECT where the file system takes it,
// several writes in flight), hashing with SHA-256 on the way; then
// fsync of the file, rename into objects/, fsync of objects/. So an object under objects/
// is always complete and durable, and nothing is ever memory-mapped (another process
// truncating a file cannot fault this one). A failed or abandoned write removes its temp
// file; temp files left by a crash are removed when the store is opened.
//
// Ring calls need an event loop: `write` runs on the caller's loop (the HTTP handler's).
// Directory scans (open, list) are plain system calls on the blocking pool.
import BufferPool
import Crypto
import Glibc
import ProcFS
import Ring
import SpoolModel
import Threads

public final class LocalStorage: StorageProvider {
    public let root: String
    public var objectsDirectory: String { root + "/objects" }
    public var temporaryDirectory: String { root + "/tmp" }
    /// Prefix of temp file names (hidden, never a valid key).
    static let temporaryPrefix = ".upload-"

    /// Opens the store at `root` (created, mode 0700, if missing) and removes the temp files
    /// of uploads a crash interrupted, unless `removeLeftovers` is false: several dispatchers
    /// sharing the directory (each a temp file of its own) must not take another's upload
    /// for a leftover. Needs no event loop.
    /// Uploads are written O_DIRECT (past the page cache) when `directWrites` allows and a
    /// probe write in tmp/ shows the file system takes them.
    /// `reserveBytes`: the free space uploads leave on the file system (nil: the default,
    /// `defaultReserve`).
    public static func open(root: String, removeLeftovers: Bool = true, directWrites: Bool = true,
                            reserveBytes: Int64? = nil) async throws -> LocalStorage {
        let tmp = root + "/tmp", objects = root + "/objects"
        let (direct, reserve) = try await BlockingPool.shared.run { () throws(StorageError) -> (Bool, Int64) in
            try makeDirectories(root)
            try makeDirectories(objects)
            try makeDirectories(tmp)
            for name in try directoryEntries(tmp) where removeLeftovers && name.hasPrefix(temporaryPrefix) {
                _ = unlink(tmp + "/" + name)
            }
            var rng = SystemRandomNumberGenerator()
            let probe = temporaryPrefix + "direct-probe-" + String(rng.next(), radix: 16)
            let direct = directWrites && File.directWritesWork(in: tmp, name: probe, alignment: directAlignment)
            let total = FileSystemSpace.of(path: root)?.totalBytes ?? 0
            return (direct, reserveBytes ?? defaultReserve(fileSystemBytes: total))
        }
        return LocalStorage(root: root, writesDirect: direct, reserveBytes: reserve)
    }

    private init(root: String, writesDirect: Bool, reserveBytes: Int64) {
        self.root = root
        self.writesDirect = writesDirect
        self.reserveBytes = reserveBytes
    }

    /// Free space an upload leaves on the file system: the database lives beside the files,
    /// and SQLite needs room to commit anything, a delete included. An upload that would
    /// go below it is refused (507) before it fills the disk, so deleting files through the
    /// API always works (an outside probe filled a small disk with uploads, and every
    /// DELETE then failed as the database could not commit). Checked before each 512 KiB
    /// batch, with up to four batches in flight.
    public let reserveBytes: Int64

    /// 64 MiB, or a sixteenth of a smaller file system, but at least 4 MiB.
    static func defaultReserve(fileSystemBytes: Int64) -> Int64 {
        max(4 << 20, min(64 << 20, fileSystemBytes / 16))
    }

    private func checkReserve(_ file: File) throws(StorageError) {
        guard reserveBytes > 0, let free = FileSystemSpace.of(fd: file.fd)?.availableBytes, free < reserveBytes else { return }
        throw StorageError("the file system keeps \(reserveBytes >> 20) MiB free for the database (\(free >> 20) MiB left)", kind: .full)
    }

    /// Whether uploads go to their temp files O_DIRECT: the network's bytes reach the
    /// device from the pool buffers they arrived in, with no copy into the page cache
    /// (measured on this kind of VM, that copy is the upload's largest cost, and it
    /// evicts cached objects the downloads want) and no io_uring worker thread.
    public let writesDirect: Bool
    /// The alignment direct writes keep (addresses, lengths, offsets): 4096 bytes, the
    /// largest logical block size in common use.
    static let directAlignment = 4096

    public func path(of key: String) -> String { objectsDirectory + "/" + key }

    public func url(key: String) -> String { "file://" + path(of: key) }

    public func download(key: String) async throws -> StoredObjectLocation {
        guard isValidStorageKey(key) else { throw StorageError("invalid object key") }
        return .localFile(path: path(of: key))
    }

    public func write(key: String, from source: some AsyncByteSource) async throws -> StoredObject {
        guard isValidStorageKey(key) else { throw StorageError("invalid object key") }
        guard let loop = EventLoop.current else { throw StorageError("write \(key): not on an event loop") }
        let direct = writesDirect && loop.pool.bufferSizeBytes % LocalStorage.directAlignment == 0
        let (file, tmpPath) = try await createTemporary(direct: direct)
        do {
            try checkReserve(file)
            let written = try await stream(source, into: file, direct: direct, pool: loop.pool)
            try await file.sync()
            try await file.close()
            try await FileSystem.rename(tmpPath, to: path(of: key))
            // The rename is durable only once the directory is; until then a crash may
            // lose the object, but it was not acknowledged yet.
            try await FileSystem.syncDirectory(objectsDirectory)
            return StoredObject(key: key, size: written.size, sha256: written.sha256)
        } catch {
            try? await file.close()
            try? await FileSystem.remove(tmpPath)
            throw error
        }
    }

    /// A new private temp file (O_EXCL, 0600; O_CLOEXEC from File.open).
    private func createTemporary(direct: Bool) async throws -> (File, String) {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<8 {
            let name = LocalStorage.temporaryPrefix + String(rng.next(), radix: 16)
            let p = temporaryDirectory + "/" + name
            do {
                return (try await File.open(p, direct ? File.Mode.createExclusive.direct : .createExclusive, permissions: 0o600), p)
            } catch {
                if error.code == .exists { continue }
                throw Self.classified(error, "cannot create a temp file in \(temporaryDirectory)")
            }
        }
        throw StorageError("cannot create a temp file in \(temporaryDirectory)")
    }

    /// Bytes of one gathered write of an upload, and how many are in flight: 2 MiB of
    /// pool buffers per upload. On this machine's disk 512 KiB writes four deep ran at a
    /// median 1.12x `dd conv=fsync` (0.92–1.53x), where 128 KiB writes (the most an
    /// operation's scratch has iovecs for) ran at 0.91x (0.68–1.10x) in the same rounds
    /// (docs/adr/0020-file-transfers.md).
    static let writeBatchBytes = 512 * 1024
    static let writeDepth = 4

    /// Copies `source` into `file`, hashing on the way: full pool buffers gather into
    /// batches of `writeBatchBytes` (512 KiB), each one gathered write, and up to four
    /// batches are in flight while the next is received (File.WriteBehind). With `direct`
    /// the file is open O_DIRECT and every batch but the last is whole buffers (aligned
    /// addresses, lengths and offsets); a last batch that is not block-aligned is written
    /// through the page cache after the direct ones.
    private func stream(_ source: some AsyncByteSource, into file: File, direct: Bool, pool: BufferPool) async throws -> (size: Int64, sha256: String) {
        let staging = Staging(await pool.acquire())
        let batchBuffers = max(1, LocalStorage.writeBatchBytes / pool.bufferSizeBytes)
        let writer = File.WriteBehind(file, depth: LocalStorage.writeDepth)
        var batch = PooledBufferList()
        var offset: UInt64 = 0
        var more = true
        do {
            while more {
                more = try await source.read { raw in staging.accept(raw) }
                while staging.isFull || (!more && staging.hasBytes) {
                    batch.append(staging.takeBuffer())
                    let last = !more && !staging.hasBytes
                    if batch.count == batchBuffers || last {
                        let bytes = batch.byteCount
                        if last && direct && bytes % LocalStorage.directAlignment != 0 {
                            try await writer.finish()
                            try file.setDirect(false)
                        }
                        try checkReserve(file)
                        try await writer.write(batch, at: offset)
                        offset += UInt64(bytes)
                        batch = PooledBufferList()
                    }
                    if last { break }
                    staging.refill(await pool.acquire())
                }
            }
            // The stream ended right after a batch's last full buffer.
            if !batch.isEmpty {
                let bytes = batch.byteCount
                try checkReserve(file)
                try await writer.write(batch, at: offset)
                offset += UInt64(bytes)
            }
            try await writer.finish()
        } catch {
            try? await writer.finish()   // no buffer goes back to the pool under a write
            // No room, or a place that takes no writes: the store's. Anything else (the
            // client gone, say) comes out as it is.
            if let e = error as? RingError, case let c = Self.classified(e, "cannot write the upload"), c.kind != .failed { throw c }
            throw error
        }
        return (staging.size, staging.hasher.finalize().withUnsafeBytes { Hex.encode(contiguous: $0) })
    }

    /// A file system error as the store's: no room (ENOSPC, EDQUOT: `.noSpace`) is `.full`,
    /// a place that takes no writes (EACCES, EPERM, EROFS) `.unavailable`, the rest `.failed`.
    static func classified(_ error: RingError, _ what: String) -> StorageError {
        if error.code == .noSpace { return StorageError("\(what): \(error)", kind: .full) }
        if error.code == .permissionDenied || error.errnoValue == EROFS { return StorageError("\(what): \(error)", kind: .unavailable) }
        return StorageError("\(what): \(error)")
    }

    public func delete(key: String) async throws {
        guard isValidStorageKey(key) else { throw StorageError("invalid object key") }
        let p = path(of: key)
        try await BlockingPool.shared.run { () throws(StorageError) -> Void in
            if unlink(p) != 0 && errno != ENOENT { throw StorageError("cannot remove \(p): errno \(errno)") }
        }
    }

    public func list() async throws -> [StoredObjectInfo] {
        let dir = objectsDirectory
        return try await BlockingPool.shared.run { () throws(StorageError) -> [StoredObjectInfo] in
            var out: [StoredObjectInfo] = []
            for name in try directoryEntries(dir) where isValidStorageKey(name) {
                var st = stat()
                guard stat(dir + "/" + name, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { continue }
                out.append(StoredObjectInfo(key: name, size: Int64(st.st_size)))
            }
            return out.sorted { $0.key < $1.key }
        }
    }

    /// Both directories exist and are writable, and the file system has room and inodes left.
    /// A directory is named by its last two path components ("files/tmp"): /ready, which
    /// says this, answers without a key and does not show the server's absolute paths.
    public func problem() async -> String? {
        let dirs = [temporaryDirectory, objectsDirectory], reserve = reserveBytes
        let name: @Sendable (String) -> String = { d in d.split(separator: "/").suffix(2).joined(separator: "/") }
        do {
            return try await BlockingPool.shared.run { () -> String? in
                for d in dirs {
                    var st = stat()
                    guard stat(d, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else { return "\(name(d)) is missing" }
                    guard access(d, W_OK) == 0 else { return "\(name(d)) is not writable" }
                }
                guard let fs = FileSystemSpace.of(path: dirs[1]) else { return "cannot read the file system's free space" }
                let free = fs.availableBytes
                if free == 0 { return "no free space left" }
                if free < reserve { return "less free space than the \(reserve >> 20) MiB kept for the database (\(free >> 20) MiB): uploads are refused" }
                if fs.inodesTotal > 0 && fs.inodesAvailable == 0 { return "no free inodes left" }
                return nil
            }
        } catch {
            return "cannot check: \(error)"
        }
    }

    /// Names of the temp files present (uploads in progress or left behind); for tests.
    public func temporaryFiles() throws -> [String] {
        try directoryEntries(temporaryDirectory).filter { $0.hasPrefix(LocalStorage.temporaryPrefix) }
    }
}

/// The bytes between the source and the file: one pool buffer, and the part of a piece
/// that did not fit it (`spill`, drained into the buffer before anything newer).
/// Loop-confined, like the buffer.
final class Staging {
    private var buffer: PooledBuffer?
    private var spill: [UInt8] = []
    private var spillStart = 0
    var hasher = SHA256()
    private(set) var size: Int64 = 0

    init(_ buffer: consuming PooledBuffer) { self.buffer = consume buffer }

    var isFull: Bool { (buffer?.count ?? 0) == (buffer?.capacity ?? 0) }
    var hasBytes: Bool { (buffer?.count ?? 0) > 0 || spillStart < spill.count }

    func accept(_ raw: UnsafeRawBufferPointer) {
        hasher.update(bufferPointer: raw)
        size += Int64(raw.count)
        let n = spillStart < spill.count ? 0 : (buffer?.append(contentsOf: raw) ?? 0)
        if n < raw.count { spill.append(contentsOf: UnsafeRawBufferPointer(rebasing: raw[n...])) }
    }

    /// The buffer to write (it comes back through `refill`).
    func takeBuffer() -> PooledBuffer { buffer.take()! }

    /// The written buffer back, emptied and filled from the spill.
    func refill(_ written: consuming PooledBuffer) {
        written.count = 0
        buffer = consume written
        if spillStart < spill.count {
            let from = spillStart
            spillStart += spill.withUnsafeBytes { all in buffer?.append(contentsOf: UnsafeRawBufferPointer(rebasing: all[from...])) ?? 0 }
            if spillStart == spill.count {
                spill.removeAll(keepingCapacity: true)
                spillStart = 0
            }
        }
    }
}

/// mkdir -p, mode 0700.
func makeDirectories(_ path: String) throws(StorageError) {
    var prefix = path.hasPrefix("/") ? "/" : ""
    for part in path.split(separator: "/") {
        prefix += part
        if mkdir(prefix, 0o700) != 0 && errno != EEXIST {
            throw StorageError("cannot create the directory \(prefix): errno \(errno)")
        }
        prefix += "/"
    }
}

/// The names in `dir` except "." and "..", sorted.
func directoryEntries(_ dir: String) throws(StorageError) -> [String] {
    guard let names = ProcFile.listDirectory(dir) else { throw StorageError("cannot list \(dir): errno \(errno)") }
    return names
}
