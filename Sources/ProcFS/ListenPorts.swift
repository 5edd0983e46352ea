// ProcFS.ListenPorts: ports for services this process starts on loopback (the cluster's
// parts, the tests' redis-server, PostgreSQL and nginx). Taken below the kernel's
// ephemeral range (/proc/sys/net/ipv4/ip_local_port_range): a port the kernel chose with
// bind(0) is free when chosen, but the kernel may give it to any outgoing connection
// before the service binds it (EADDRINUSE; a cluster start failed so). A port below the
// range is never handed out that way, so once found free it stays free until someone
// binds it on purpose. Non-goals: reserving a port against other processes.
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

public enum ListenPorts {
    /// The range in `ip_local_port_range`'s text ("32768\t60999"), or nil when malformed.
    public static func ephemeralRange(_ text: String) -> ClosedRange<UInt16>? {
        let parts = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" })
        guard parts.count == 2, let lo = UInt16(parts[0]), let hi = UInt16(parts[1]), lo <= hi else { return nil }
        return lo...hi
    }

    /// Where `unused()` looks: from 10000 up to just below the ephemeral range; nil when
    /// that leaves fewer than 1000 ports (a range that starts low), and then `unused()`
    /// falls back to a port the kernel picks.
    public static func candidates(ephemeral: ClosedRange<UInt16>) -> ClosedRange<UInt16>? {
        guard ephemeral.lowerBound > 11_000 else { return nil }
        return 10_000...(ephemeral.lowerBound - 1)
    }

    private static let handedOut = Mutex<Set<UInt16>>([])

    /// A loopback TCP port nothing is bound to now, outside the ephemeral range, and not
    /// handed out before by this process; nil when none was found.
    public static func unused() -> UInt16? {
        let range = ProcFile.read("/proc/sys/net/ipv4/ip_local_port_range").flatMap(ephemeralRange)
        if let pool = range.flatMap({ candidates(ephemeral: $0) }) {
            for _ in 0..<500 {
                let port = UInt16.random(in: pool)
                let fresh = handedOut.withLock { $0.insert(port).inserted }
                if fresh && bound(port) != nil { return port }
            }
        }
        // The kernel's choice: free now, though an outgoing connection may take it.
        for _ in 0..<20 {
            guard let port = bound(0) else { return nil }
            if handedOut.withLock({ $0.insert(port).inserted }) { return port }
        }
        return nil
    }

    /// Binds a TCP socket to 127.0.0.1:`port`, closes it, and returns the port it had.
    private static func bound(_ port: UInt16) -> UInt16? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = unsafe withUnsafeMutablePointer(to: &addr) { p in
            unsafe p.withMemoryRebound(to: sockaddr.self, capacity: 1) { s in
                unsafe bind(fd, s, len) == 0 && getsockname(fd, s, &len) == 0
            }
        }
        return ok ? UInt16(bigEndian: addr.sin_port) : nil
    }
}
