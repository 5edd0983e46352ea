// Test support: start loops, run bodies on them, and check that nothing leaked (fds,
// in-flight operations, pool buffers) once the work is done.
import BufferPool
import Foundation
import ProcFS
@testable import Ring
import SpoolTestSupport
import Threads
import XCTest

/// Moves loop-confined values into tasks on the same loop. Tests only.
struct Unchecked<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}

func openFDCount() -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
}

func residentBytes() -> Int { Int(ProcFile.residentBytes) }

/// Raises RLIMIT_NOFILE to its hard limit and returns the new soft limit.
@discardableResult
func raiseFileLimit() -> Int {
    var rl = rlimit()
    getrlimit(RLIMIT_NOFILE_CONST, &rl)
    rl.rlim_cur = rl.rlim_max
    setrlimit(RLIMIT_NOFILE_CONST, &rl)
    getrlimit(RLIMIT_NOFILE_CONST, &rl)
    return Int(rl.rlim_cur)
}

#if canImport(Glibc)
let RLIMIT_NOFILE_CONST = __rlimit_resource_t(7)   // RLIMIT_NOFILE on Linux
#endif

/// Which backend the suite is meant to run on (make test runs it with both).
var requestedBackend: String { ProcessInfo.processInfo.environment["SPOOL_IO_BACKEND"] ?? "auto" }

func loopConfiguration(bufferSize: Int = 16 * 1024, cap: Int = 64 * 1024 * 1024, recvBuffers: Int = 1024, slots: Int = 8192) -> EventLoop.Configuration {
    var c = EventLoop.Configuration()
    c.pool = BufferPoolConfiguration(bufferSizeBytes: bufferSize, memoryCapBytes: cap)
    c.recvBuffersMax = recvBuffers
    c.slotsMax = slots
    return c
}

/// Waits (bounded, on the loop's own clock) until `condition` holds on the loop thread.
func eventually(on loop: EventLoop, timeout: Duration = .seconds(10), _ condition: @escaping @Sendable () -> Bool) async throws -> Bool {
    try await loop.run {
        let deadline = loop.now + timeout
        while loop.now < deadline {
            if condition() { return true }
            try await loop.sleep(for: .milliseconds(5))
        }
        return condition()
    }
}

/// Asserts that `loop` has no operation in flight and its pool is back to baseline.
func assertQuiescent(_ loop: EventLoop, file: StaticString = #filePath, line: UInt = #line) async throws {
    let ok = try await eventually(on: loop) { loop.operationsInFlight == 0 && loop.pool.isQuiescent }
    let state = try await loop.run { "ops=\(loop.operationsInFlight) free=\(loop.pool.freeBuffers) user=\(loop.pool.userHeldBuffers) kernel=\(loop.pool.kernelHeldBuffers) of \(loop.pool.bufferCount)" }
    XCTAssertTrue(ok, "loop \(loop.id) not quiescent: \(state)", file: file, line: line)
}

/// An echo server on `loop`: every connection gets its bytes back, buffer for buffer.
final class EchoServer: @unchecked Sendable {
    let loop: EventLoop
    private(set) var address: SocketAddress!
    private var acceptTask: Task<Void, any Error>?
    private var listener: Unchecked<TCPListener>?
    let served = Counter()

    init(loop: EventLoop) { self.loop = loop }

    func start() async throws {
        let (l, addr) = try await listen(on: loop)
        listener = l
        address = addr
        let served = self.served
        let loop = self.loop
        acceptTask = loop.spawn {
            let listener = l.value
            while true {
                let conn: TCPConnection
                do { conn = try await listener.accept() } catch { return }
                let c = Unchecked(conn)
                loop.spawn {
                    let conn = c.value
                    do {
                        while let buf = try await conn.receive() {
                            try await conn.send(buf)
                        }
                    } catch {}
                    await conn.close()
                    served.add()
                }
            }
        }
    }

    func stop() async throws {
        guard let l = listener else { return }
        try await loop.run { await l.value.close() }
        _ = try? await acceptTask?.value
        listener = nil
    }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func add(_ k: Int = 1) { lock.lock(); n += k; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return n }
}

/// A listener on 127.0.0.1 (a free port) owned by `loop`, and its address.
func listen(on loop: EventLoop) async throws -> (Unchecked<TCPListener>, SocketAddress) {
    try await loop.run { () -> (Unchecked<TCPListener>, SocketAddress) in
        let l = try TCPListener(address: SocketAddress("127.0.0.1:0"))
        return (Unchecked(l), l.localAddress)
    }
}

/// Connects to `addr` from `loop` and reads until the end of stream, pausing 200 µs after
/// each piece (a slow reader, so the sender meets a full socket).
func readSlowly(from addr: SocketAddress, on loop: EventLoop) async throws -> [UInt8] {
    try await loop.run { () -> [UInt8] in
        let conn = try await TCPConnection.connect(to: addr)
        var got: [UInt8] = []
        while let b = try await conn.receive(timeout: .seconds(20)) {
            got += b.bytes
            try await loop.sleep(for: .microseconds(200))
        }
        await conn.close()
        return got
    }
}

/// A test case with a server loop and a client loop, started for each test.
class TwoLoopTestCase: XCTestCase {
    var server: EventLoop!
    var client: EventLoop!

    override func setUp() async throws {
        raiseFileLimit()
        // libdispatch opens its timer/epoll descriptors on first use; do that before tests
        // count descriptors.
        try await Task.sleep(for: .milliseconds(1))
        server = try EventLoop.start(id: 1, configuration: loopConfiguration())
        client = try EventLoop.start(id: 2, configuration: loopConfiguration())
    }

    override func tearDown() async throws {
        server?.shutdown()
        client?.shutdown()
    }
}
