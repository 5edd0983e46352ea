// Ring.MemoryTrim: giving memory back after a burst (a connection flood, say).
//
// A loop's pool is mapped but touched lazily, so an idle loop holds few pages; a burst
// touches buffers and grows the heap (connection objects, tasks, tables), and neither
// shrinks by itself. `trimMemory` drops stale parked-wait deadlines (which would keep the
// parkers of closed connections alive, scattered over the heap, until their time came),
// returns free pool buffers' pages (never those of buffers registered with io_uring, which
// are pinned) and asks malloc to return free heap pages of every arena (malloc_trim).
// Callers decide when a burst is over.
// Non-goals: shrinking the slot table or the provided-buffer ring.
internal import CEpoll

extension EventLoop {
    /// Drops stale deadlines, returns free pool pages and free heap pages to the kernel; the pool bytes given
    /// back. Costs a pass over the pool's buffer table and a malloc_trim (milliseconds):
    /// call it when a burst has passed, not per request. Loop thread only.
    @discardableResult
    public func trimMemory() -> Int {
        compactDeadlines()
        let backend = self.backend
        let given = pool.releaseFreePages { backend.isFixedRegistered(bufferIndex: $0) }
        _ = cepoll_malloc_trim()
        return given
    }
}
