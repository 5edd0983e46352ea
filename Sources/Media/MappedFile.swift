// Media.MappedFile: a local input file mapped read-only (PROT_READ, MAP_PRIVATE), read by
// libav through a custom AVIOContext (CustomIO(mapped:)) instead of its file protocol, so
// the demuxer of a file input can open nothing at all (protocol_whitelist=none).
//
// The mapping is unmapped exactly once, when the owner is released (after the AVIOContext
// reading it: CustomIO holds the owner). Owners count in `LibAVObjects.live` (leak checks)
// and in `MappedFiles.live`.
//
// A file truncated by another process while mapped would fault on access past its new
// end (SIGBUS); inputs are files Spool was handed, not files being rewritten.
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

public enum MappedFiles {
    static let counter = Atomic<Int>(0)
    /// Input files currently mapped.
    public static var live: Int { counter.load(ordering: .acquiring) }
}

final class MappedFile {
    let base: UnsafeRawPointer
    let size: Int
    let path: String

    /// Opens and maps `path`. Refuses what cannot be opened, non-regular files and empty
    /// files with the same typed errors as before mapping existed.
    init(path: String) throws(MediaError) {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .inputUnreadable(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }   // the mapping stays valid after the descriptor is closed
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .inputUnreadable(path: path, reason: String(cString: strerror(errno))) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw .inputUnreadable(path: path, reason: "not a regular file") }
        guard st.st_size > 0 else { throw .emptyInput(path: path) }
        guard st.st_size <= Int64(Int.max) else { throw .inputUnreadable(path: path, reason: "file too large to map") }
        let n = Int(st.st_size)
        guard let p = mmap(nil, n, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw .inputUnreadable(path: path, reason: "mmap: " + String(cString: strerror(errno)))
        }
        _ = madvise(p, n, MADV_SEQUENTIAL)
        base = UnsafeRawPointer(p)
        size = n
        LibAVObjects.retain()
        MappedFiles.counter.add(1, ordering: .relaxed)
    }

    deinit {
        munmap(UnsafeMutableRawPointer(mutating: base), size)
        MappedFiles.counter.subtract(1, ordering: .releasing)
        LibAVObjects.release()
    }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: size) }
}
