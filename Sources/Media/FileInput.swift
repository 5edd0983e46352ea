// Media.FileInput: a local input file read with positional reads (pread) by libav through
// a custom AVIOContext (CustomIO(file:)) instead of its file protocol, so the demuxer of a
// file input opens nothing at all (protocol_whitelist=none).
//
// Why pread and not mmap (docs/adr/0003-media-input-reads.md): a mapped file truncated by
// another process faults on the first page past its new end and the process dies with
// SIGBUS; a pread past the end returns 0 bytes, which is reported as `.inputTruncated`.
// Reads block; they run on the transcode's own thread, never on a loop thread.
//
// Opening never blocks either: the file is opened O_NONBLOCK (a FIFO would otherwise
// block in open until a writer comes), checked to be a regular file, then switched back
// to blocking reads. Streams ('-', pipes, sockets) come through ByteSource instead.
//
// Owners count in `LibAVObjects.live` (leak checks) and in `OpenInputFiles.live`; the
// descriptor is closed exactly once, when the owner is released (after the AVIOContext
// reading it: CustomIO holds the owner).
import Synchronization
import TranscodeAPI
#if canImport(Glibc)
import Glibc
#endif

public enum OpenInputFiles {
    static let counter = Atomic<Int>(0)
    /// Input files currently open (one descriptor each).
    public static var live: Int { counter.load(ordering: .acquiring) }
}

final class FileInput {
    let fd: Int32
    /// The size when opened: reading ends here, and a file found shorter was truncated.
    let size: Int64
    let path: MediaPath
    /// The path as text, for messages.
    var label: String { path.description }

    /// Opens `path` for reading. Refuses what cannot be opened, non-regular files (FIFOs,
    /// devices, directories) and empty files, each with a typed error and without blocking.
    init(path: MediaPath) throws(MediaError) {
        self.path = path
        let label = path.description
        let fd = unsafe try path.withCPath { unsafe open($0, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY) }
        guard fd >= 0 else { throw .inputUnreadable(path: label, reason: errnoText()) }
        var st = stat()
        guard unsafe fstat(fd, &st) == 0 else {
            let e = errno
            close(fd)
            throw .inputUnreadable(path: label, reason: errnoText(e))
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw .inputUnreadable(path: label, reason: "not a regular file (\(FileInput.kind(st.st_mode))); use '-' to stream from stdin")
        }
        guard st.st_size > 0 else { close(fd); throw .emptyInput(path: label) }
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0, fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == 0 else {
            let e = errno
            close(fd)
            throw .inputUnreadable(path: label, reason: "fcntl: " + errnoText(e))
        }
        _ = posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
        self.fd = fd
        size = Int64(st.st_size)
        LibAVObjects.retain()
        OpenInputFiles.counter.add(1, ordering: .relaxed)
    }

    deinit {
        close(fd)
        OpenInputFiles.counter.subtract(1, ordering: .releasing)
        LibAVObjects.release()
    }

    /// Reads up to `buffer.count` bytes at `offset`; 0 at (or past) the size the file had
    /// when opened. A file found shorter than that was truncated while Spool read it.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws(MediaError) -> Int {
        guard offset < size, buffer.count > 0 else { return 0 }
        let want = Int(min(Int64(buffer.count), size - offset))
        while true {
            let n = unsafe pread(fd, buffer.baseAddress, want, off_t(offset))
            if n > 0 { return n }
            if n == 0 { throw truncated(at: offset) }
            if errno == EINTR { continue }
            throw .inputUnreadable(path: label, reason: errnoText())
        }
    }

    private func truncated(at offset: Int64) -> MediaError {
        var st = stat()
        let now: Int64? = unsafe fstat(fd, &st) == 0 ? Int64(st.st_size) : nil
        return .inputTruncated(path: label, openedBytes: size, nowBytes: now ?? offset)
    }

    private static func kind(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFIFO: return "a named pipe"
        case S_IFDIR: return "a directory"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFSOCK: return "a socket"
        default: return "not a file"
        }
    }
}
