// Socket addresses (IPv4, IPv6) and the one socket-option helper the listener and
// connections share.
import BufferPool
import Threads
#if canImport(Glibc)
import Glibc
#endif
internal import CEpoll

// MARK: Addresses

public struct SocketAddress: @unchecked Sendable, CustomStringConvertible, Equatable {
    // @unchecked: sockaddr_storage is plain bytes.
    var storage = sockaddr_storage()
    var length: socklen_t = 0

    public var family: Int32 { Int32(storage.ss_family) }

    /// Parses "1.2.3.4:80", "[::1]:80" or "localhost:80" (numeric hosts only, plus localhost).
    public init(_ text: String) throws(RingError) {
        var host: Substring, portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw Self.bad(text) }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { throw Self.bad(text) }
            portText = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { throw Self.bad(text) }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard let port = UInt16(portText) else { throw Self.bad(text) }
        if host == "localhost" { host = "127.0.0.1" }
        try self.init(host: String(host), port: port)
    }

    public init(host: String, port: UInt16) throws(RingError) {
        var v4 = in_addr()
        var v6 = in6_addr()
        if unsafe inet_pton(AF_INET, host, &v4) == 1 {
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port.bigEndian
            sin.sin_addr = v4
            unsafe withUnsafeMutableBytes(of: &storage) { dst in unsafe withUnsafeBytes(of: sin) { unsafe dst.copyMemory(from: $0) } }
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
        } else if unsafe inet_pton(AF_INET6, host, &v6) == 1 {
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = port.bigEndian
            sin6.sin6_addr = v6
            unsafe withUnsafeMutableBytes(of: &storage) { dst in unsafe withUnsafeBytes(of: sin6) { unsafe dst.copyMemory(from: $0) } }
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        } else {
            throw RingError(.invalidArgument, operation: "parse address", reason: "\"\(host)\" is not a numeric IPv4 or IPv6 address")
        }
    }

    init(storage: sockaddr_storage, length: socklen_t) {
        self.storage = storage
        self.length = length
    }

    /// The IP address's bytes in network order: 4 for IPv4, 16 for IPv6 (empty otherwise).
    public var ipBytes: [UInt8] {
        switch family {
        case AF_INET:
            let sin = unsafe withUnsafeBytes(of: storage) { unsafe $0.load(as: sockaddr_in.self) }
            return unsafe withUnsafeBytes(of: sin.sin_addr) { Array($0) }
        case AF_INET6:
            let sin6 = unsafe withUnsafeBytes(of: storage) { unsafe $0.load(as: sockaddr_in6.self) }
            return unsafe withUnsafeBytes(of: sin6.sin6_addr) { Array($0) }
        default:
            return []
        }
    }

    /// Addresses for `host`: numeric hosts and "localhost" directly; names through
    /// getaddrinfo, which blocks, so it runs on the blocking pool and the caller awaits
    /// the result (resumed on its own executor).
    public static func resolve(_ host: String, port: UInt16) async throws(RingError) -> [SocketAddress] {
        if host == "localhost" { return [try SocketAddress(host: "127.0.0.1", port: port)] }
        if let numeric = try? SocketAddress(host: host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host, port: port) {
            return [numeric]
        }
        let result = (try? await BlockingPool.shared.run { () -> Result<[SocketAddress], RingError> in
            var hints = unsafe addrinfo()
            unsafe hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            unsafe hints.ai_family = AF_UNSPEC
            var list: UnsafeMutablePointer<addrinfo>?
            let rc = unsafe getaddrinfo(host, String(port), &hints, &list)
            guard rc == 0, let first = unsafe list else {
                return .failure(RingError(.invalidArgument, operation: "resolve", reason: unsafe "cannot resolve \"\(host)\": \(String(cString: gai_strerror(rc)))"))
            }
            defer { unsafe freeaddrinfo(list) }
            var out: [SocketAddress] = []
            var p: UnsafeMutablePointer<addrinfo>? = unsafe first
            while let ai = unsafe p {
                if let sa = unsafe ai.pointee.ai_addr, unsafe ai.pointee.ai_family == AF_INET || ai.pointee.ai_family == AF_INET6 {
                    var ss = sockaddr_storage()
                    unsafe withUnsafeMutableBytes(of: &ss) { unsafe $0.copyMemory(from: UnsafeRawBufferPointer(start: sa, count: Int(ai.pointee.ai_addrlen))) }
                    unsafe out.append(SocketAddress(storage: ss, length: ai.pointee.ai_addrlen))
                }
                unsafe p = unsafe ai.pointee.ai_next
            }
            return out.isEmpty ? .failure(RingError(.invalidArgument, operation: "resolve", reason: "no address for \"\(host)\"")) : .success(out)
        }) ?? .failure(RingError(.invalidArgument, operation: "resolve", reason: "cannot resolve \"\(host)\": the blocking pool is full"))
        return try result.get()
    }

    private static func bad(_ text: String) -> RingError {
        RingError(.invalidArgument, operation: "parse address", reason: "\"\(text)\" is not HOST:PORT (IPv6 as [::1]:PORT)")
    }

    public var port: UInt16 {
        unsafe withUnsafeBytes(of: storage) { raw in
            unsafe family == AF_INET ? UInt16(bigEndian: raw.load(fromByteOffset: 2, as: UInt16.self))
                              : UInt16(bigEndian: raw.load(fromByteOffset: 2, as: UInt16.self))
        }
    }

    public var host: String {
        var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        unsafe withUnsafeBytes(of: storage) { raw in
            let addr = unsafe raw.baseAddress! + (family == AF_INET ? 4 : 8)
            _ = unsafe inet_ntop(family, addr, &buf, socklen_t(buf.count))
        }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public var description: String { family == AF_INET6 ? "[\(host)]:\(port)" : "\(host):\(port)" }

    public static func == (a: SocketAddress, b: SocketAddress) -> Bool { a.description == b.description }

    func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        unsafe withUnsafeBytes(of: storage) { unsafe body($0.baseAddress!.assumingMemoryBound(to: sockaddr.self), length) }
    }

    /// The local (or, with `peer`, the remote) address of socket `fd`, asked of `backend`.
    static func of(_ fd: Int32, peer: Bool = false, on backend: any IOBackend) -> SocketAddress? {
        var ss = sockaddr_storage()
        var len = UInt32(MemoryLayout<sockaddr_storage>.size)
        let rc = unsafe withUnsafeMutableBytes(of: &ss) { unsafe backend.address(fd: fd, peer: peer, into: $0.baseAddress!, length: &len) }
        return rc == 0 ? SocketAddress(storage: ss, length: len) : nil
    }

    /// A socket address from raw sockaddr bytes (the simulator's accept and getsockname).
    package init(bytes: UnsafeRawBufferPointer) {
        var ss = sockaddr_storage()
        unsafe withUnsafeMutableBytes(of: &ss) { unsafe $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes.prefix($0.count))) }
        self.init(storage: ss, length: socklen_t(min(bytes.count, MemoryLayout<sockaddr_storage>.size)))
    }

    /// The raw sockaddr bytes (`length` of them).
    package var bytes: [UInt8] { unsafe withUnsafeBytes(of: storage) { unsafe Array($0.prefix(Int(length))) } }
}

/// This machine's host name ("localhost" when it cannot be read): engines register with
/// it, dispatchers name their queue consumers after it.
public func hostName() -> String {
    var buf = [CChar](repeating: 0, count: 256)
    guard unsafe gethostname(&buf, 255) == 0 else { return "localhost" }
    return String(decoding: buf.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
