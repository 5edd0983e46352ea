// Simulation.SimBackend: the seeded, in-memory IOBackend the real event loop runs on.
//
// Goals: io_uring's completion semantics (what URingBackend and EpollBackend give the loop)
// over fake sockets, files and timers, with simulated time and injected faults, so the
// real loop, HTTP server and HTTP client run unchanged and a run is a pure function of its
// seed. Everything happens on the loop thread: operations are prepared by the loop, their
// effects are events on a timeline (arrivals, timers, file completions), and when the loop
// would block the clock jumps to the next event instead of sleeping. Faults (FaultWeights)
// are drawn from the same generator: long delays, resets, short reads and writes, ENOSPC,
// and completions of one batch handed over in shuffled order.
// This file: the clock, the timeline, completions, timers, cancellation and the reaping
// the loop calls; sockets are in SimBackend+Sockets.swift, files in SimBackend+Files.swift.
// Non-goals: modelling TCP (windows, retransmission), IPv6 specifics, more than one loop.
import BufferPool
import Ring
#if canImport(Glibc)
import Glibc
#endif

@safe package final class SimBackend: IOBackend {
    package let kind = IOBackendKind.simulated
    package let keepsOwnTime = true
    package let supportsMultishotRecv = true
    package let usesFixedBuffers = false
    package func isFixedRegistered(bufferIndex: UInt32) -> Bool { false }
    package var summary: String { "simulated (seed \(seed); \(faults))" }

    package let seed: UInt64
    package let faults: FaultWeights
    var rng: SimRandom
    let pool: BufferPool

    // MARK: Clock and timeline

    /// Simulated time starts at 1 s so that no deadline computed from it is ever 0.
    package static let epochNanos: Int64 = 1_000_000_000
    package private(set) var nowNanos: Int64 = SimBackend.epochNanos
    /// Past this much simulated time the run is reported as hung (`onStall`).
    package var timeLimitNanos: Int64 = 600 * 1_000_000_000
    /// Called once when the run cannot go on: nothing is scheduled and nothing can wake the
    /// loop but another thread, or the time limit passed. The argument says which.
    package var onStall: ((String) -> Void)?
    /// Whether the harness expects the loop to idle now (the scenario finished): an idle
    /// loop is then waiting for another thread, not stalled.
    package var idleIsExpected = true
    private var stallReported = false

    private var timeline = DeadlineHeap<() -> Void>()
    var ready = CompletionQueue()

    /// Operations the backend still owes a completion, by `user_data`.
    var pending: [UInt64: Pending] = [:]
    enum Pending { case socket(Int32), timer, file }

    // Descriptors and the network (SimBackend+Sockets.swift), files (SimBackend+Files.swift).
    var sockets: [Int32: SimSocket] = [:]
    var openFiles: [Int32: SimOpenFile] = [:]
    var listeners: [String: SimSocket] = [:]
    var nextEphemeralPort: UInt16 = 40_000
    var connectionSerial = 0
    var fileSystem: [String: SimFileData] = [:]
    var fileBytesMax: Int
    /// Bytes one direction of a connection holds in flight plus unread (send + receive buffers).
    let socketBufferBytes: Int
    /// One-way latency of this run's network before jitter and delay faults.
    let latencyNanos: Int64

    private var wakeFD: Int32 = -1
    private var wakeStorage: UnsafeMutableRawPointer?

    // MARK: What happened (for reports and the determinism check)

    /// FNV-1a over every completion handed to the loop (time, user_data, res, flags).
    package private(set) var traceHash: UInt64 = 0xCBF2_9CE4_8422_2325
    package private(set) var completionCount = 0
    /// SPOOL_SIM_TRACE=1: one line per completion on standard output (diff two runs of a seed).
    let traceToStandardError = unsafe getenv("SPOOL_SIM_TRACE").map { unsafe String(cString: $0) == "1" } ?? false
    package var injected = InjectedFaults()
    package struct InjectedFaults: Sendable, CustomStringConvertible {
        package var delays = 0, resets = 0, shortReads = 0, shortWrites = 0, noSpace = 0, reorders = 0
        package var description: String {
            "delays \(delays), resets \(resets), short reads \(shortReads), short writes \(shortWrites), ENOSPC \(noSpace), reordered batches \(reorders)"
        }
    }

    package init(seed: UInt64, pool: BufferPool) {
        self.seed = seed
        var rng = SimRandom(seed: seed)
        faults = FaultWeights(drawingFrom: &rng)
        socketBufferBytes = [4 << 10, 16 << 10, 64 << 10, 256 << 10][rng.below(4)]
        latencyNanos = rng.int64(in: 10_000...2_000_000)
        fileBytesMax = rng.int(in: 1...4) << 20
        self.rng = rng
        self.pool = pool
    }

    /// Descriptors open now (sockets and files); 0 after a clean run.
    package var openDescriptorCount: Int { sockets.count + openFiles.count }

    // MARK: Scheduling

    /// Runs `action` at `at` (not before now); events at the same time run in order.
    func schedule(at: Int64, _ action: @escaping () -> Void) {
        timeline.push(at: Swift.max(at, nowNanos), action)   // equal times: in order
    }

    /// A latency draw: the run's base plus jitter, now and then a long delay (a fault).
    func latency() -> Int64 {
        var d = latencyNanos + rng.int64(in: 0...latencyNanos)
        if rng.chance(faults.delay) {
            injected.delays += 1
            d += rng.int64(in: 10_000_000...400_000_000)
        }
        return d
    }

    // MARK: Completions

    /// Queues a completion for the loop.
    func complete(_ ud: UInt64, _ res: Int32, _ flags: UInt32 = 0) {
        ready.append(Completion(user_data: ud, res: res, flags: flags))
        // A wake-up comes from another thread (the harness), at no fixed point of the run.
        if ud == ReservedUserData.wakeup { return }
        completionCount += 1
        if traceToStandardError { print("sim \(describeTime()) ud=\(ud >> 32):\(ud & 0xFFFF_FFFF) res=\(res) flags=\(flags)") }
        for v in [UInt64(bitPattern: nowNanos), ud, UInt64(UInt32(bitPattern: res)), UInt64(flags)] {
            traceHash = (traceHash ^ v) &* 0x100_0000_01B3
        }
    }

    /// Completes operation `ud` for good (if the backend still owes it).
    func finish(_ ud: UInt64, _ res: Int32, _ flags: UInt32 = 0) {
        guard pending.removeValue(forKey: ud) != nil else { return }
        complete(ud, res, flags)
    }

    // MARK: IOBackend: timers, cancellation, odds and ends

    package func nop(_ ud: UInt64) -> Int32 { complete(ud, 0); return 0 }

    package func timeout(nanoseconds: Int64, storage: UnsafeMutableRawPointer, _ ud: UInt64) -> Int32 {
        pending[ud] = .timer
        schedule(at: nowNanos &+ Swift.max(0, nanoseconds)) { [unowned self] in finish(ud, -ETIME) }
        return 0
    }

    /// A linked timeout: cancels `ud` (-ECANCELED) if it is still pending at its time.
    func linkTimeout(_ ud: UInt64, _ timeout: UnsafeMutableRawPointer?, _ ns: Int64) {
        guard unsafe timeout != nil, ns >= 0 else { return }
        schedule(at: nowNanos &+ ns) { [unowned self] in _ = cancel(ud) }
    }

    package func cancel(_ target: UInt64) -> Int32 {
        guard let p = pending[target] else { return 0 }   // done already: -ENOENT, ignored
        if case .socket(let fd) = p, let s = sockets[fd] {
            s.drop(ud: target)
        }
        finish(target, -ECANCELED)
        return 0
    }

    package func armWakeup(fd: Int32, storage: UnsafeMutableRawPointer) -> Int32 {
        wakeFD = fd
        unsafe wakeStorage = unsafe storage
        return 0
    }

    package func offerBuffer(_ index: UInt32) -> Bool { false }
    package var receiveBuffersAvailable: Int { Swift.max(0, pool.freeBuffers - pool.bufferCount / 2) }
    package func forget(fd: Int32) {}
    package func shutdownBackend() {}

    // MARK: Reaping

    package func submitAndReap(wait: Bool, timeoutNs: Int64, into out: UnsafeMutablePointer<Completion>, max: Int) -> Int {
        runDue()
        if wait && ready.isEmpty {
            let limit: Int64? = timeoutNs >= 0 ? nowNanos &+ timeoutNs : nil
            if let next = timeline.first?.at, limit.map({ next <= $0 }) ?? true {
                nowNanos = Swift.max(nowNanos, next)
                runDue()
            } else if let limit {
                nowNanos = limit
                runDue()
            } else {
                if !idleIsExpected { stall("nothing is scheduled and every task waits (a lost wake-up or a hang) at \(describeTime())") }
                blockForWakeup()
            }
            if nowNanos - Self.epochNanos > timeLimitNanos {
                stall("the run passed its simulated-time bound (\(timeLimitNanos / 1_000_000_000) s)")
            }
        }
        if ready.count > 1 && rng.chance(faults.reorder) {
            injected.reorders += 1
            ready.withUnreaped { shuffle(&$0) }
        }
        return unsafe ready.drain(into: out, max: max)
    }

    package func describeTime() -> String {
        let ms = Double(nowNanos - Self.epochNanos) / 1e6
        return "t=\(ms) ms"
    }

    private func stall(_ why: String) {
        guard !stallReported else { return }
        stallReported = true
        onStall?(why)
    }

    private func runDue() {
        while let e = timeline.first, e.at <= nowNanos {
            timeline.popFirst()
            e.payload()
        }
    }

    /// Blocks on the loop's real eventfd: only another thread (the harness stopping the
    /// loop) can wake a simulated world in which nothing is scheduled.
    private func blockForWakeup() {
        guard wakeFD >= 0, let storage = unsafe wakeStorage else { return }
        var p = pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)
        while unsafe poll(&p, 1, -1) < 0 && errno == EINTR {}
        _ = unsafe Glibc.read(wakeFD, storage, 8)
        complete(ReservedUserData.wakeup, 8)
    }

    /// Shuffles the unreaped completions; each operation's own completions keep their order
    /// (a multishot's data before its final completion), as io_uring keeps them.
    private func shuffle(_ batch: inout [Completion]) {
        var order = Array(batch.indices)
        order.shuffle(using: &rng)
        var positions: [UInt64: [Int]] = [:]
        for (slot, i) in order.enumerated() { positions[batch[i].user_data, default: []].append(slot) }
        var shuffled = batch
        var seen: [UInt64: Int] = [:]
        for c in batch {
            let k = seen[c.user_data, default: 0]
            seen[c.user_data] = k + 1
            shuffled[positions[c.user_data]!.sorted()[k]] = c
        }
        batch = shuffled
    }
}
