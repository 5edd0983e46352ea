// URingBackend: IOBackend over one io_uring instance (through CShims/CURing).
//
// Goals: one SQE per operation, linked timeouts for deadlines, multishot accept/recv with
// a provided-buffer ring fed from the BufferPool, pool buffers registered as fixed buffers
// (a sparse table filled a chunk at a time on first use, so idle pools pin nothing).
// Non-goals: SQPOLL (it burns a core, and we have two).
internal import CURing
import BufferPool
#if canImport(Glibc)
import Glibc
#endif

@safe final class URingBackend: IOBackend, SystemDescriptors {
    let kind = IOBackendKind.uring
    private let ring: OpaquePointer
    private let pool: BufferPool
    let setupFlags: UInt32
    private(set) var supportsMultishotRecv: Bool
    private(set) var usesFixedBuffers: Bool
    /// Fixed-buffer registration per chunk of `fixedChunkBuffers` pool buffers.
    private var fixedChunks: [FixedChunk] = []
    private enum FixedChunk { case unregistered, registered, failed }
    static let fixedChunkBuffers = 64
    private var bufRingEntries = 0
    private var bufRingTarget = 0
    private var lentToRing = 0
    let summary: String

    struct SetupFailure: Error {
        let errno: Int32
        let step: String
    }

    /// Kept answers the reap replays itself (ReplayTable.swift); nil if its tables could
    /// not be allocated (the HTTP server's own replay then answers alone).
    let replayTable: ReplayTable?

    /// Creates the ring on the calling thread (SINGLE_ISSUER binds it to this thread).
    init(entries: UInt32, pool: BufferPool, kernel: KernelVersion, recvBuffersMax: Int, slots: Int) throws(SetupFailure) {
        var got: UInt32 = 0
        var err: Int32 = 0
        guard let r = unsafe curing_ring_create(entries, URingProbe.wantedSetupFlags, &got, &err) else {
            throw SetupFailure(errno: err, step: "io_uring_setup")
        }
        precondition(MemoryLayout<Completion>.size == MemoryLayout<curing_cqe>.size
                     && MemoryLayout<Completion>.offset(of: \.flags) == MemoryLayout<curing_cqe>.offset(of: \.flags))
        unsafe ring = unsafe r
        self.pool = pool
        setupFlags = got

        // Required opcodes: without them the epoll backend serves better than a half ring.
        let probe = unsafe URingProbe(ring: r)
        if let missing = probe.missingRequired {
            unsafe curing_ring_destroy(r)
            throw SetupFailure(errno: EOPNOTSUPP, step: "opcode \(missing.name) (needs Linux \(missing.minimumKernel))")
        }

        // Fixed buffers: a sparse table for the whole pool, filled a chunk at a time when a
        // buffer in the chunk is first used for file I/O. Registering pins pages, so pinning
        // the whole pool up front would make an idle server hold all of it resident.
        supportsSplice = probe.supports(CURING_OP_SPLICE)
        usesFixedBuffers = false
        if pool.bufferCount <= 16_384, probe.supports(CURING_OP_READ_FIXED) {
            usesFixedBuffers = unsafe curing_register_buffers_sparse(r, UInt32(pool.bufferCount)) == 0
        }
        let chunks = (pool.bufferCount + Self.fixedChunkBuffers - 1) / Self.fixedChunkBuffers
        fixedChunks = [FixedChunk](repeating: .unregistered, count: chunks)

        // Provided-buffer ring (5.19+). Without it there is no way to receive into pool
        // buffers chosen at arrival time, so we refuse and let the epoll backend run.
        // At most half the pool goes to the ring, so sends and file I/O can always acquire.
        let wantedEntries = max(1, min(recvBuffersMax, pool.bufferCount / 2, 32_768))
        var entriesPow2 = 1
        while entriesPow2 < wantedEntries { entriesPow2 <<= 1 }
        let brc = unsafe URingProbe.providedBufferRing(r, entries: UInt32(entriesPow2))
        guard brc == 0 else {
            unsafe curing_ring_destroy(r)
            throw SetupFailure(errno: -brc, step: "IORING_REGISTER_PBUF_RING (needs Linux 5.19)")
        }
        bufRingEntries = entriesPow2
        bufRingTarget = wantedEntries
        supportsMultishotRecv = kernel >= KernelVersion(6, 0)

        let flags = URingProbe.setupFlagNames.filter { got & $0.bit != 0 }.map(\.name)
        summary = "io_uring \(entries) entries, flags [\(flags.joined(separator: ","))], "
            + "fixed buffers \(usesFixedBuffers ? "\(pool.bufferCount) (registered on first use)" : "off"), "
            + "provided-buffer ring \(entriesPow2) (\(supportsMultishotRecv ? "multishot" : "single-shot") recv)"
            + ", file sends \(supportsSplice ? "by splice" : "copied (no SPLICE)")"

        // One replay entry per slot at most: every connection that keeps one has a receive.
        replayTable = unsafe ReplayTable(ring: r, capacity: slots, slots: slots, poolBase: pool.address(of: 0), bufferSize: pool.bufferSizeBytes)

        // Fill the provided-buffer ring from the pool.
        while lentToRing < bufRingTarget, let index = pool.lendToKernel() {
            addToRing(index)
        }
        unsafe curing_buf_ring_publish(ring)
    }

    private func addToRing(_ index: UInt32) {
        unsafe curing_buf_ring_add(ring, pool.address(of: index), UInt32(pool.bufferSizeBytes), UInt16(truncatingIfNeeded: index))
        lentToRing += 1
    }

    func offerBuffer(_ index: UInt32) -> Bool {
        guard lentToRing < bufRingTarget else { return false }
        addToRing(index)
        return true
    }

    /// The kernel picked buffer `index` for a completion: it is no longer in the ring.
    func bufferLeftRing() { lentToRing -= 1 }

    func forget(fd: Int32) {}

    var receiveBuffersAvailable: Int { lentToRing }

    func shutdownBackend() {
        replayTable?.ringDestroyed()
        unsafe curing_ring_destroy(ring)
        // Buffers that were in the provided-buffer ring belong to the pool again.
        for index in pool.kernelOwnedIndexes() { pool.reclaimFromKernel(index: index) }
        lentToRing = 0
    }

    // MARK: Preparation

    func nop(_ ud: UInt64) -> Int32 { unsafe curing_prep_nop(ring, ud) }

    func accept(fd: Int32, multishot: Bool, _ ud: UInt64) -> Int32 {
        unsafe curing_prep_accept(ring, fd, multishot ? 1 : 0, ud)
    }

    func recvSelect(fd: Int32, multishot: Bool, _ ud: UInt64) -> Int32 {
        unsafe curing_prep_recv_select(ring, fd, (multishot && supportsMultishotRecv) ? 1 : 0, ud)
    }

    /// Makes room for an op plus its linked timeout, so the pair is never split.
    /// Returns the SQE flags for the op, or nil when the pair cannot be queued whole (the
    /// caller then fails the op before preparing anything).
    private func reserveLinked(_ timeout: UnsafeMutableRawPointer?) -> UInt32? {
        guard unsafe timeout != nil else { return 0 }
        if unsafe curing_sq_space_left(ring) < 2 { _ = unsafe curing_submit_and_wait(ring, 0, 0) }
        guard unsafe curing_sq_space_left(ring) >= 2 else { return nil }
        return UInt32(CURING_SQE_IO_LINK)
    }

    private func linkTimeout(_ timeout: UnsafeMutableRawPointer?, _ ns: Int64, _ rc: Int32) -> Int32 {
        guard rc == 0, let timeout = unsafe timeout else { return rc }
        return unsafe curing_prep_link_timeout(ring, timeout, ns, ReservedUserData.ignored)
    }

    func recv(fd: Int32, into: UnsafeMutableRawPointer, count: Int, _ ud: UInt64, timeout: UnsafeMutableRawPointer?, timeoutNs: Int64) -> Int32 {
        guard let f = unsafe reserveLinked(timeout) else { return -EBUSY }
        return unsafe linkTimeout(timeout, timeoutNs, curing_prep_recv(ring, fd, into, count, 0, ud, f))
    }

    func send(fd: Int32, from: UnsafeRawPointer, count: Int, _ ud: UInt64, timeout: UnsafeMutableRawPointer?, timeoutNs: Int64) -> Int32 {
        guard let f = unsafe reserveLinked(timeout) else { return -EBUSY }
        return unsafe linkTimeout(timeout, timeoutNs, curing_prep_send(ring, fd, from, count, 0, ud, f))
    }

    func sendNow(fd: Int32, from: UnsafeRawPointer, count: Int, _ ud: UInt64) -> Int32 {
        unsafe curing_prep_send_now(ring, fd, from, count, ud)
    }

    func sendmsg(fd: Int32, message: UnsafeRawPointer, _ ud: UInt64, timeout: UnsafeMutableRawPointer?, timeoutNs: Int64) -> Int32 {
        guard let f = unsafe reserveLinked(timeout) else { return -EBUSY }
        return unsafe linkTimeout(timeout, timeoutNs, curing_prep_sendmsg(ring, fd, message, ud, f))
    }

    func connect(fd: Int32, address: UnsafeRawPointer, length: UInt32, _ ud: UInt64, timeout: UnsafeMutableRawPointer?, timeoutNs: Int64) -> Int32 {
        guard let f = unsafe reserveLinked(timeout) else { return -EBUSY }
        return unsafe linkTimeout(timeout, timeoutNs, curing_prep_connect(ring, fd, address, length, ud, f))
    }

    /// SPLICE is optional (5.7): without it file ranges are copied through pool buffers.
    private(set) var supportsSplice = false

    func makePipe(capacity: Int) -> (read: Int32, write: Int32, capacity: Int) {
        var fds: (Int32, Int32) = (-1, -1)
        let got = unsafe withUnsafeMutablePointer(to: &fds) {
            unsafe $0.withMemoryRebound(to: Int32.self, capacity: 2) { unsafe curing_pipe($0, Int32(clamping: capacity)) }
        }
        return (fds.0, fds.1, Int(got))
    }

    func splice(from: Int32, offset: Int64, to: Int32, count: Int, _ ud: UInt64) -> Int32 {
        unsafe curing_prep_splice(ring, from, offset, to, UInt32(clamping: count), ud, 0)
    }

    func shutdown(fd: Int32, how: Int32, _ ud: UInt64) -> Int32 { unsafe curing_prep_shutdown(ring, fd, how, ud) }
    func close(fd: Int32, _ ud: UInt64) -> Int32 { unsafe curing_prep_close(ring, fd, ud) }

    // Path operations: the kernel copies the path when it consumes the SQE, so submit now,
    // while the caller's C string is still alive.
    private func submitNow(_ rc: Int32) -> Int32 {
        guard rc == 0 else { return rc }
        // Once prepared, the op will complete whatever this submit says: report success so
        // the caller keeps the slot (and the path) until the completion arrives. A failed
        // submit here is retried by the loop's next submit.
        _ = unsafe curing_submit_and_wait(ring, 0, 0)
        return 0
    }

    func openat(path: UnsafePointer<CChar>, flags: Int32, mode: UInt32, _ ud: UInt64) -> Int32 {
        unsafe submitNow(curing_prep_openat(ring, AT_FDCWD, path, flags, mode, ud))
    }

    func read(fd: Int32, into: UnsafeMutableRawPointer, count: Int, offset: UInt64, bufferIndex: Int32, _ ud: UInt64) -> Int32 {
        unsafe curing_prep_read(ring, fd, into, UInt32(count), offset, fixedIndex(bufferIndex), ud, 0)
    }

    func write(fd: Int32, from: UnsafeRawPointer, count: Int, offset: UInt64, bufferIndex: Int32, _ ud: UInt64) -> Int32 {
        unsafe curing_prep_write(ring, fd, from, UInt32(count), offset, fixedIndex(bufferIndex), ud, 0)
    }

    func readv(fd: Int32, vectors: UnsafeRawPointer, count: Int, offset: UInt64, _ ud: UInt64) -> Int32 {
        unsafe curing_prep_readv(ring, fd, vectors, UInt32(count), offset, ud, 0)
    }

    func writev(fd: Int32, vectors: UnsafeRawPointer, count: Int, offset: UInt64, _ ud: UInt64) -> Int32 {
        unsafe curing_prep_writev(ring, fd, vectors, UInt32(count), offset, ud, 0)
    }

    /// The fixed-buffer index to use for pool buffer `index`, registering its chunk on first
    /// use; -1 (a plain read or write) when fixed buffers are off or the chunk could not be
    /// registered (RLIMIT_MEMLOCK, say).
    private func fixedIndex(_ index: Int32) -> Int32 {
        guard usesFixedBuffers, index >= 0 else { return -1 }
        let chunk = Int(index) / Self.fixedChunkBuffers
        switch fixedChunks[chunk] {
        case .registered: return index
        case .failed: return -1
        case .unregistered:
            let first = chunk * Self.fixedChunkBuffers
            let n = min(Self.fixedChunkBuffers, pool.bufferCount - first)
            let rc = unsafe curing_register_buffers_update(ring, UInt32(first), pool.address(of: UInt32(first)), pool.bufferSizeBytes, UInt32(n))
            fixedChunks[chunk] = rc == n ? .registered : .failed
            return rc == n ? index : -1
        }
    }

    func isFixedRegistered(bufferIndex index: UInt32) -> Bool {
        usesFixedBuffers && fixedChunks[Int(index) / Self.fixedChunkBuffers] == .registered
    }

    func fsync(fd: Int32, dataOnly: Bool, _ ud: UInt64) -> Int32 { unsafe curing_prep_fsync(ring, fd, dataOnly ? 1 : 0, ud) }

    func rename(from: UnsafePointer<CChar>, to: UnsafePointer<CChar>, _ ud: UInt64) -> Int32 {
        unsafe submitNow(curing_prep_renameat(ring, AT_FDCWD, from, AT_FDCWD, to, ud))
    }

    func unlink(path: UnsafePointer<CChar>, directory: Bool, _ ud: UInt64) -> Int32 {
        unsafe submitNow(curing_prep_unlinkat(ring, AT_FDCWD, path, directory ? AT_REMOVEDIR : 0, ud))
    }

    func statx(path: UnsafePointer<CChar>, into: UnsafeMutableRawPointer, _ ud: UInt64) -> Int32 {
        unsafe submitNow(curing_prep_statx(ring, AT_FDCWD, path, 0, 0x7ff /* STATX_BASIC_STATS */, into, ud))
    }

    func timeout(nanoseconds: Int64, storage: UnsafeMutableRawPointer, _ ud: UInt64) -> Int32 {
        unsafe curing_prep_timeout(ring, storage, nanoseconds, ud)
    }

    func cancel(_ target: UInt64) -> Int32 { unsafe curing_prep_cancel(ring, target, ReservedUserData.ignored) }

    func armWakeup(fd: Int32, storage: UnsafeMutableRawPointer) -> Int32 {
        unsafe curing_prep_read(ring, fd, storage, 8, 0, -1, ReservedUserData.wakeup, 0)
    }

    // MARK: Completion

    func submitAndReap(wait: Bool, timeoutNs: Int64, into out: UnsafeMutablePointer<Completion>, max: Int) -> Int {
        unsafe curing_buf_ring_publish(ring)
        // Reap what is already there before sleeping: never block with completions pending.
        // The replays a reap answered are counted before their sends are submitted (the
        // second reap's go with the next pass's submit).
        var n = unsafe Int(reap(out, max))
        if n > 0 {
            _ = unsafe curing_submit_and_wait(ring, 0, 0)
        } else {
            let rc = unsafe curing_submit_and_wait(ring, wait ? 1 : 0, wait ? timeoutNs : 0)
            if rc < 0 { checkFatalEnter(rc) }
            n = unsafe Int(reap(out, max))
        }
        for i in 0..<n where unsafe out[i].flags & CQEFlag.buffer != 0 {
            bufferLeftRing()
        }
        return n
    }

    /// Copies up to `max` CQEs out (`Completion` has `curing_cqe`'s layout), the replay
    /// table answering what it can (and folding its counters) on the way.
    private func reap(_ out: UnsafeMutablePointer<Completion>, _ max: Int) -> UInt32 {
        guard let table = replayTable else {
            return unsafe out.withMemoryRebound(to: curing_cqe.self, capacity: max) { unsafe curing_reap(ring, $0, UInt32(max)) }
        }
        var replayed: UInt32 = 0
        let n = unsafe out.withMemoryRebound(to: curing_cqe.self, capacity: max) { unsafe curing_reap_replaying(ring, $0, UInt32(max), &replayed) }
        if replayed > 0 { table.fold(replayed: Int(replayed)) }
        return n
    }

    private func checkFatalEnter(_ rc: Int32) {
        // EEXIST: the ring was created on another thread (SINGLE_ISSUER); that is our bug.
        if rc == -EEXIST || rc == -EBADF || rc == -EFAULT {
            preconditionFailure("io_uring_enter failed with errno \(-rc): ring used from the wrong thread or corrupted")
        }
    }
}
