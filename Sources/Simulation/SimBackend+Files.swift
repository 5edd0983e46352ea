// Simulation.SimBackend, files: an in-memory file system behind the loop's file operations
// (open, read, write, fsync, rename, unlink, statx, close, fstat).
//
// Every operation completes after a latency drawn from the seed (a long one now and then);
// reads and writes copy at completion time, as the kernel does while the caller's buffer is
// held by the operation. Faults: short reads and writes, ENOSPC (drawn, and whenever the
// run's disk quota `fileBytesMax` would be exceeded).
// Non-goals: permissions, links, directories as real objects (a path with O_DIRECTORY opens
// a handle that only fsyncs and closes), durability (fsync succeeds; nothing is lost).
import Ring
#if canImport(Glibc)
import Glibc
#endif

/// The bytes of one simulated file (shared by the handles that opened it).
final class SimFileData {
    var bytes: [UInt8] = []
    let inode: UInt64
    var modifiedNanos: Int64
    init(inode: UInt64, at: Int64) {
        self.inode = inode
        modifiedNanos = at
    }
}

final class SimOpenFile {
    let data: SimFileData?   // nil: a directory handle
    let append: Bool
    init(data: SimFileData?, append: Bool) {
        self.data = data
        self.append = append
    }
}

extension SimBackend {
    /// Every file's path and contents, for checkers (sorted by path).
    package var files: [(path: String, bytes: [UInt8])] {
        fileSystem.keys.sorted().map { ($0, fileSystem[$0]!.bytes) }
    }

    private var usedBytes: Int { fileSystem.values.reduce(0) { $0 + $1.bytes.count } }

    /// Completes `ud` after a file latency with what `work` returns then.
    private func later(_ ud: UInt64, _ work: @escaping () -> Int32) -> Int32 {
        pending[ud] = .file
        schedule(at: nowNanos + latency()) { [unowned self] in
            guard pending[ud] != nil else { return }
            finish(ud, work())
        }
        return 0
    }

    package func openat(path: UnsafePointer<CChar>, flags: Int32, mode: UInt32, _ ud: UInt64) -> Int32 {
        let name = unsafe String(cString: path)
        return later(ud) { [unowned self] in
            let fd = allocateFD()
            if flags & O_DIRECTORY != 0 {
                openFiles[fd] = SimOpenFile(data: nil, append: false)
                return fd
            }
            var data = fileSystem[name]
            if data != nil && flags & O_CREAT != 0 && flags & O_EXCL != 0 { return -EEXIST }
            if data == nil {
                guard flags & O_CREAT != 0 else { return -ENOENT }
                let d = SimFileData(inode: UInt64(fileSystem.count + openFiles.count + 1000), at: nowNanos)
                fileSystem[name] = d
                data = d
            } else if flags & O_TRUNC != 0 {
                data!.bytes = []
            }
            openFiles[fd] = SimOpenFile(data: data, append: flags & O_APPEND != 0)
            return fd
        }
    }

    package func read(fd: Int32, into: UnsafeMutableRawPointer, count: Int, offset: UInt64, bufferIndex: Int32, _ ud: UInt64) -> Int32 {
        later(ud) { [unowned self] in
            guard let f = openFiles[fd] else { return -EBADF }
            guard let d = f.data else { return -EISDIR }
            let start = min(Int(offset), d.bytes.count)
            var n = min(count, d.bytes.count - start)
            if n > 1 && rng.chance(faults.shortRead) {
                injected.shortReads += 1
                n = rng.int(in: 1...(n - 1))
            }
            unsafe d.bytes.withUnsafeBytes { unsafe into.copyMemory(from: $0.baseAddress! + start, byteCount: n) }
            return Int32(n)
        }
    }

    /// Scatters like preadv when the read happens (short reads drawn as for `read`).
    package func readv(fd: Int32, vectors: UnsafeRawPointer, count: Int, offset: UInt64, _ ud: UInt64) -> Int32 {
        later(ud) { [unowned self] in
            guard let f = openFiles[fd] else { return -EBADF }
            guard let d = f.data else { return -EISDIR }
            let iov = unsafe vectors.assumingMemoryBound(to: iovec.self)
            var want = 0
            for i in 0..<count { want += unsafe iov[i].iov_len }
            let start = min(Int(offset), d.bytes.count)
            var n = min(want, d.bytes.count - start)
            if n > 1 && rng.chance(faults.shortRead) {
                injected.shortReads += 1
                n = rng.int(in: 1...(n - 1))
            }
            var copied = 0, i = 0
            while copied < n {
                let v = unsafe iov[i]
                let take = unsafe min(v.iov_len, n - copied)
                unsafe d.bytes.withUnsafeBytes { unsafe v.iov_base!.copyMemory(from: $0.baseAddress! + start + copied, byteCount: take) }
                copied += take
                i += 1
            }
            return Int32(n)
        }
    }

    package func write(fd: Int32, from: UnsafeRawPointer, count: Int, offset: UInt64, bufferIndex: Int32, _ ud: UInt64) -> Int32 {
        later(ud) { [unowned self] in unsafe store(fd: fd, from: from, count: count, offset: offset) }
    }

    /// Gathers the iovecs when the write happens (as the kernel would), then writes like `write`.
    package func writev(fd: Int32, vectors: UnsafeRawPointer, count: Int, offset: UInt64, _ ud: UInt64) -> Int32 {
        later(ud) { [unowned self] in
            var gathered: [UInt8] = []
            let iov = unsafe vectors.assumingMemoryBound(to: iovec.self)
            for i in 0..<count {
                let v = unsafe iov[i]
                unsafe gathered.append(contentsOf: UnsafeRawBufferPointer(start: v.iov_base, count: v.iov_len))
            }
            return unsafe gathered.withUnsafeBytes { unsafe store(fd: fd, from: $0.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, count: $0.count, offset: offset) }
        }
    }

    private func store(fd: Int32, from: UnsafeRawPointer, count: Int, offset: UInt64) -> Int32 {
        guard let f = openFiles[fd] else { return -EBADF }
        guard let d = f.data else { return -EISDIR }
        let at = f.append ? d.bytes.count : Int(offset)
        var n = count
        let growth = max(0, at + n - d.bytes.count)
        if rng.chance(faults.noSpace) || usedBytes + growth > fileBytesMax {
            injected.noSpace += 1
            return -ENOSPC
        }
        if n > 1 && rng.chance(faults.shortWrite) {
            injected.shortWrites += 1
            n = rng.int(in: 1...(n - 1))
        }
        if d.bytes.count < at + n { d.bytes += [UInt8](repeating: 0, count: at + n - d.bytes.count) }
        unsafe d.bytes.withUnsafeMutableBytes { unsafe ($0.baseAddress! + at).copyMemory(from: from, byteCount: n) }
        d.modifiedNanos = nowNanos
        return Int32(n)
    }

    package func fsync(fd: Int32, dataOnly: Bool, _ ud: UInt64) -> Int32 {
        later(ud) { [unowned self] in openFiles[fd] == nil ? -EBADF : 0 }
    }

    package func rename(from: UnsafePointer<CChar>, to: UnsafePointer<CChar>, _ ud: UInt64) -> Int32 {
        let a = unsafe String(cString: from), b = unsafe String(cString: to)
        return later(ud) { [unowned self] in
            guard let d = fileSystem.removeValue(forKey: a) else { return -ENOENT }
            fileSystem[b] = d
            return 0
        }
    }

    package func unlink(path: UnsafePointer<CChar>, directory: Bool, _ ud: UInt64) -> Int32 {
        let name = unsafe String(cString: path)
        return later(ud) { [unowned self] in fileSystem.removeValue(forKey: name) == nil ? -ENOENT : 0 }
    }

    /// Writes a `struct statx` (Linux UAPI layout: mode at 28, inode at 32, size at 40,
    /// mtime at 112) for a regular file.
    package func statx(path: UnsafePointer<CChar>, into: UnsafeMutableRawPointer, _ ud: UInt64) -> Int32 {
        let name = unsafe String(cString: path)
        return later(ud) { [unowned self] in
            guard let d = fileSystem[name] else { return -ENOENT }
            unsafe into.initializeMemory(as: UInt8.self, repeating: 0, count: 256)
            unsafe into.storeBytes(of: UInt32(0x7FF), toByteOffset: 0, as: UInt32.self)
            unsafe into.storeBytes(of: UInt16(S_IFREG | 0o644), toByteOffset: 28, as: UInt16.self)
            unsafe into.storeBytes(of: d.inode, toByteOffset: 32, as: UInt64.self)
            unsafe into.storeBytes(of: UInt64(d.bytes.count), toByteOffset: 40, as: UInt64.self)
            unsafe into.storeBytes(of: 1_700_000_000 + d.modifiedNanos / 1_000_000_000, toByteOffset: 112, as: Int64.self)
            unsafe into.storeBytes(of: UInt32(d.modifiedNanos % 1_000_000_000), toByteOffset: 120, as: UInt32.self)
            return 0
        }
    }

    package func fileSize(fd: Int32) -> Int64 {
        guard let f = openFiles[fd] else { return -Int64(EBADF) }
        return Int64(f.data?.bytes.count ?? 0)
    }
}
