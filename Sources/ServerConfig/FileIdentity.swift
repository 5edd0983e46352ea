// ServerConfig.FileIdentity: reading the configuration file whole. What tells the reloader
// it changed is ProcFS.FileIdentity (inode, size, modification time: an editor that writes
// a new file and renames it changes the inode; one that writes in place changes size or
// mtime).
#if canImport(Glibc)
import Glibc
#endif

struct FileReadError: Error { var message: String }

/// The whole file (a configuration file: at most 1 MiB).
func readWholeFile(_ path: String) throws(FileReadError) -> [UInt8] {
    // Non-blocking: opening a FIFO for reading would otherwise wait for a writer, and
    // the server would hang at start. Only a regular file is read.
    let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
    guard fd >= 0 else { throw FileReadError(message: String(cString: strerror(errno))) }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0 else { throw FileReadError(message: String(cString: strerror(errno))) }
    guard (st.st_mode & S_IFMT) == S_IFREG else { throw FileReadError(message: "not a regular file") }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 64 << 10)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            throw FileReadError(message: String(cString: strerror(errno)))
        }
        if n == 0 { return out }
        out += chunk[0..<n]
        if out.count > 1 << 20 { throw FileReadError(message: "larger than 1 MiB; is this the right file?") }
    }
}
