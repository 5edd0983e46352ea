// ProcFS.FileSystemSpace: how large a file system is and how much of it an unprivileged
// writer may still use (statvfs): the upload reserve, readiness and the database's ballast
// all read it.
#if canImport(Glibc)
import Glibc
#endif

public struct FileSystemSpace: Sendable, Equatable {
    public var totalBytes: Int64
    public var availableBytes: Int64
    public var inodesTotal: UInt64
    public var inodesAvailable: UInt64

    /// The file system holding `path`, or nil when it cannot be read.
    public static func of(path: String) -> FileSystemSpace? {
        var fs = statvfs()
        guard unsafe statvfs(path, &fs) == 0 else { return nil }
        return FileSystemSpace(fs)
    }

    /// The file system holding the open file `fd`.
    public static func of(fd: Int32) -> FileSystemSpace? {
        var fs = statvfs()
        guard unsafe fstatvfs(fd, &fs) == 0 else { return nil }
        return FileSystemSpace(fs)
    }

    private init(_ fs: statvfs) {
        totalBytes = Int64(fs.f_blocks) * Int64(fs.f_frsize)
        availableBytes = Int64(fs.f_bavail) * Int64(fs.f_frsize)
        inodesTotal = UInt64(fs.f_files)
        inodesAvailable = UInt64(fs.f_favail)
    }
}
