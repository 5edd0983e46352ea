// Ring.BufferListVectors: a position in a PooledBufferList's valid bytes, and the iovecs
// from there on. One place for what vectored sends (TCPConnection.send) and gathered file
// writes (File.write) both do: describe up to `max` buffers to the kernel, then move past
// however many bytes it took.
#if canImport(Glibc)
import Glibc
#endif
import BufferPool

struct BufferListCursor {
    /// The buffer, and the bytes of it already done.
    private(set) var part = 0
    private(set) var within = 0

    /// True once every valid byte of `list` is done.
    mutating func isDone(_ list: borrowing PooledBufferList) -> Bool {
        while part < list.count && list.parts[part].count - within == 0 { part += 1; within = 0 }
        return part >= list.count
    }

    /// Fills `iov` with the not yet done bytes of up to `max` buffers; returns how many.
    func vectors(_ list: borrowing PooledBufferList, into iov: UnsafeMutablePointer<iovec>, max: Int) -> Int {
        var n = 0
        var i = part
        while i < list.count && n < max {
            let skip = i == part ? within : 0
            let len = list.parts[i].count - skip
            if len > 0 {
                unsafe iov[n] = iovec(iov_base: list.address(of: i) + skip, iov_len: len)
                n += 1
            }
            i += 1
        }
        return n
    }

    /// Moves past `count` bytes the kernel took.
    mutating func advance(by count: Int, in list: borrowing PooledBufferList) {
        var left = count
        while left > 0 {
            let rest = list.parts[part].count - within
            if left >= rest { left -= rest; part += 1; within = 0 } else { within += left; left = 0 }
        }
    }
}
