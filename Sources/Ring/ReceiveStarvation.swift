// Receives that found no pool buffer wait here in FIFO order; returned buffers go to
// the kernel's ring first and wake as many waiting receivers as they can serve.
import BufferPool
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

extension EventLoop {
    // MARK: Buffers


    /// A receive found no buffer to receive into: queue it, move free pool buffers into
    /// the kernel's ring (up to its target), and wake as many queued receivers as there
    /// are buffers they could use now. The ENOBUFS may be stale (buffers came back while
    /// its completion waited in the batch), so this never waits for another release.
    func receiveStarved(_ who: any RecvStarved) {
        receiveStarvations += 1
        recvStarved.append(who)
        while pool.freeBuffers > pool.bufferCount / 2, let index = pool.lendToKernel() {
            if !backend.offerBuffer(index) {
                pool.reclaimFromKernel(index: index)
                break
            }
        }
        wakeStarvedReceivers()
    }

    /// Wakes as many receivers that found no buffer as there are buffers they could take
    /// now. Also run before the loop blocks, so a wake-up lost to a receiver that was busy
    /// elsewhere (or closed) can never leave buffers idle while receivers wait.
    func wakeStarvedReceivers() {
        var usable = backend.receiveBuffersAvailable
        while usable > 0, let next = recvStarved.popFirst() {
            if next.bufferAvailable(loop: self) { usable -= 1 }
        }
    }

    /// The pool hands back a buffer nobody waits for: lend it to the kernel's ring (io_uring)
    /// and wake one receiver that found the pool empty.
    func bufferReturned(_ index: UInt32) -> Bool {
        let kept = backend.offerBuffer(index)
        while let starved = recvStarved.popFirst(), !starved.bufferAvailable(loop: self) {}
        return kept
    }
}

/// Something waiting for a pool buffer to receive into.
protocol RecvStarved: AnyObject {
    /// Returns false when the receiver no longer wants a buffer (closed): the wake-up
    /// goes to the next one.
    func bufferAvailable(loop: EventLoop) -> Bool
}
