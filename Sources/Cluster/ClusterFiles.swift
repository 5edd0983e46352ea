// Cluster.ClusterFiles: the small files a cluster keeps in its directory: secrets made on
// the first `up` and reused after (mode 0600, written through a temp file and rename), and
// free loopback ports for the parts.
import Glibc
import ProcFS

enum ClusterFiles {
    /// The whole of a small file, or nil when it does not exist.
    static func read(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            out += buf[..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Writes `text` to `path` with `mode`: temp file, fsync, rename.
    static func write(_ path: String, _ text: String, mode: mode_t = 0o600) throws(ClusterError) {
        let tmp = path + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw ClusterError("cannot create \(tmp): \(String(cString: strerror(errno)))") }
        let bytes = Array(text.utf8)
        var done = 0
        while done < bytes.count {
            let n = bytes[done...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { close(fd); throw ClusterError("cannot write \(tmp): errno \(errno)") }
            done += n
        }
        fchmod(fd, mode)
        let synced = fsync(fd) == 0
        close(fd)
        guard synced, rename(tmp, path) == 0 else { throw ClusterError("cannot write \(path): errno \(errno)") }
    }

    /// The secret kept in `path`, made (48 hex characters) on first use.
    static func secret(_ path: String) throws(ClusterError) -> String {
        if let s = read(path)?.split(whereSeparator: { $0 == "\n" || $0 == " " }).first, s.count >= 32 { return String(s) }
        var rng = SystemRandomNumberGenerator()
        let digits = Array("0123456789abcdef")
        let s = String((0..<48).map { _ in digits[Int(rng.next() % 16)] })
        try write(path, s + "\n")
        return s
    }

    /// mkdir with `mode` (an existing directory is fine).
    static func directory(_ path: String, mode: mode_t = 0o700) throws(ClusterError) {
        if mkdir(path, mode) != 0 && errno != EEXIST {
            throw ClusterError("cannot create \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// A loopback port for one of the cluster's parts: free now and below the kernel's
    /// ephemeral range, so no outgoing connection can take it before the part binds it
    /// (ProcFS.ListenPorts).
    static func freePort() throws(ClusterError) -> UInt16 {
        guard let port = ListenPorts.unused() else { throw ClusterError("no free loopback port: errno \(errno)") }
        return port
    }

    /// True when something accepts TCP connections on 127.0.0.1:`port`.
    static func accepts(port: UInt16) -> Bool {
        let fd = connectLoopback(port: port)
        if fd >= 0 { close(fd) }
        return fd >= 0
    }

    /// A socket connected to 127.0.0.1:`port` (2 s receive timeout), or -1.
    static func connectLoopback(port: UInt16) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return -1 }
        var tv = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let connected = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { s in
                connect(fd, s, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
        if !connected { close(fd); return -1 }
        return fd
    }

    /// Sends `request` to 127.0.0.1:`port` and reads the answer until `enough` bytes came
    /// (or the peer closed, or 2 s passed); nil when nothing could be sent or read.
    static func exchange(port: UInt16, _ request: String, enough: Int = 512) -> String? {
        let fd = connectLoopback(port: port)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let bytes = Array(request.utf8)
        guard bytes.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == bytes.count else { return nil }
        var got: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 512)
        while got.count < enough {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { break }
            got += buf[..<n]
        }
        return got.isEmpty ? nil : String(decoding: got, as: UTF8.self)
    }

    /// The last `lines` lines of a log (for an error message).
    static func tail(_ path: String, lines: Int = 15) -> String {
        guard let text = read(path) else { return "(no log at \(path))" }
        return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }
}
