// Persistence.DiskBallast: room held back on the database's file system for the one write
// that must succeed when the disk is full. Deleting a file is how an operator makes room,
// and the delete's row must commit first; SQLite cannot commit even a delete with no free
// page for its WAL. So a few MiB are held in a preallocated file beside the database and
// let go when a delete meets a full disk (an outside probe filled a disk, from the API and
// from outside, and then every DELETE failed, even after a restart). Once there is room
// again it is taken back.
// Non-goals: reserving room for anything but that delete (uploads keep their own reserve,
// LocalStorage.reserveBytes), or for PostgreSQL, whose disk is not ours.
import ProcFS
import Threads
#if canImport(Glibc)
import Glibc
#endif

public final class DiskBallast: Sendable {
    public let path: String
    public let bytes: Int64

    public init(path: String, bytes: Int64 = 4 << 20) {
        self.path = path
        self.bytes = bytes
    }

    /// Whether the ballast file is there, whole.
    public var isHeld: Bool { FileIdentity.of(path).map { $0.size >= bytes } ?? false }

    /// Creates the ballast when it is missing and the file system has room for it with
    /// `keepFree` bytes still free after it; true when it is held afterwards.
    @discardableResult
    public func ensure(keepFree: Int64) async -> Bool {
        let path = self.path, bytes = self.bytes
        return (try? await BlockingPool.shared.run { [self] () -> Bool in
            if isHeld { return true }
            let dir = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
            guard let space = FileSystemSpace.of(path: dir.isEmpty ? "/" : dir), space.availableBytes >= bytes + keepFree else { return false }
            let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
            guard fd >= 0 else { return false }
            // Real blocks, not a sparse file: the point is that they are taken now.
            let ok = posix_fallocate(fd, 0, off_t(bytes)) == 0 && fsync(fd) == 0
            close(fd)
            if !ok { unlink(path) }
            return ok
        }) ?? false
    }

    /// Lets the room go (removes the file); true when there was a ballast to let go.
    @discardableResult
    public func release() async -> Bool {
        let path = self.path
        return (try? await BlockingPool.shared.run { () -> Bool in unlink(path) == 0 }) ?? false
    }
}
