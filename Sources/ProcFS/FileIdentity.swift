// ProcFS.FileIdentity: which file a path names now (device, inode) and its size and
// modification time: the configuration reloader sees an edit by it, the SQLite store that
// its file was removed or replaced under it.
#if canImport(Glibc)
import Glibc
#endif

public struct FileIdentity: Sendable, Equatable {
    public var device: UInt64
    public var inode: UInt64
    public var size: Int64
    public var modifiedNanoseconds: Int64

    /// The file's identity now, or nil if it cannot be stat'ed (missing, no permission).
    public static func of(_ path: String) -> FileIdentity? {
        var st = stat()
        guard unsafe stat(path, &st) == 0 else { return nil }
        return FileIdentity(device: UInt64(st.st_dev), inode: UInt64(st.st_ino), size: Int64(st.st_size),
                            modifiedNanoseconds: Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec))
    }
}
