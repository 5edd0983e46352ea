// Ring.File+WriteBehind: gathered writes of one file kept in flight while the caller
// produces the next batch, so a stream into a file overlaps the device's (or the io_uring
// worker's) work with the network's instead of taking turns. Each batch is a
// PooledBufferList the writer owns until the kernel is done with it; short writes are
// continued from where they stopped; the first failure is kept and thrown to the caller
// at its next call. Loop-confined, like the File.
import BufferPool
#if canImport(Glibc)
import Glibc
#endif
internal import CEpoll

extension File {
    public final class WriteBehind {
        public let file: File
        /// Most batches in flight at once.
        public let depth: Int
        private var inFlight = 0
        private var failure: RingError?
        private var waiter: UnsafeContinuation<Void, Never>?
        /// Bytes the kernel has acknowledged so far.
        public private(set) var written = 0

        public init(_ file: File, depth: Int = 4) {
            self.file = file
            self.depth = max(1, depth)
        }

        /// Queues the valid bytes of `list` for writing at `offset`, after waiting while
        /// `depth` batches are in flight. Throws the failure of an earlier batch.
        public func write(_ list: consuming PooledBufferList, at offset: UInt64) async throws(RingError) {
            try await waitUntilFewer(than: depth)
            let batch = Batch(list, at: offset)
            if batch.cursor.isDone(batch.list) { return }
            inFlight += 1
            submit(batch)
        }

        /// Waits for every queued batch; throws the first failure. Call it before syncing
        /// or closing the file, and on an error path (so no buffer outlives its write).
        public func finish() async throws(RingError) {
            try await waitUntilFewer(than: 1)
        }

        private func waitUntilFewer(than n: Int) async throws(RingError) {
            while inFlight >= n {
                unsafe await withUnsafeContinuation { (k: UnsafeContinuation<Void, Never>) in unsafe waiter = k }
            }
            if let failure { throw failure }
        }

        /// One gathered write and its iovecs (one per buffer: a batch larger than the
        /// operation scratch's `vectorMax` still goes to the kernel as one pwritev).
        private final class Batch {
            var list: PooledBufferList
            var cursor = BufferListCursor()
            var offset: UInt64
            let vectors: UnsafeMutablePointer<iovec>
            let vectorCapacity: Int
            init(_ list: consuming PooledBufferList, at offset: UInt64) {
                self.list = list
                self.offset = offset
                vectorCapacity = max(1, self.list.count)
                unsafe vectors = UnsafeMutablePointer<iovec>.allocate(capacity: vectorCapacity)
            }
            deinit { unsafe vectors.deallocate() }
        }

        private func submit(_ batch: Batch) {
            let file = self.file, at = batch.offset
            let queued = file.loop.submit({ [self] r in completed(batch, r) }) { ud, _ in
                let n = unsafe batch.cursor.vectors(batch.list, into: batch.vectors, max: batch.vectorCapacity)
                return unsafe file.loop.backend.writev(fd: file.fd, vectors: UnsafeRawPointer(batch.vectors), count: n, offset: at, ud)
            }
            if queued == nil { done(failing: RingError(.slotsExhausted, operation: "write \(file.path)")) }
        }

        private func completed(_ batch: Batch, _ r: OpResult) {
            guard r.res > 0 else {
                done(failing: file.writeError(r.res))
                return
            }
            written += Int(r.res)
            batch.offset += UInt64(r.res)
            batch.cursor.advance(by: Int(r.res), in: batch.list)
            if batch.cursor.isDone(batch.list) { done(failing: nil) } else { submit(batch) }
        }

        /// One batch is over (its buffers go back to the pool with it).
        private func done(failing error: RingError?) {
            if let error, failure == nil { failure = error }
            inFlight -= 1
            if let k = unsafe waiter {
                unsafe waiter = nil
                unsafe k.resume()
            }
        }
    }
}

extension File {
    /// Whether O_DIRECT writes work in `directory`: one block-aligned write of `alignment`
    /// bytes to a new file named `name` there (removed after). Plain system calls, for a
    /// store deciding how to write before any loop runs; false on any failure.
    public static func directWritesWork(in directory: String, name: String, alignment: Int = 4096) -> Bool {
        let path = directory + "/" + name
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | cepoll_o_direct(), 0o600)
        guard fd >= 0 else { return false }
        defer { _ = Glibc.close(fd); unlink(path) }
        var block: UnsafeMutableRawPointer?
        guard unsafe posix_memalign(&block, alignment, alignment) == 0, let block = unsafe block else { return false }
        defer { unsafe free(block) }
        unsafe memset(block, 0, alignment)
        return unsafe pwrite(fd, block, alignment, 0) == alignment
    }
}
