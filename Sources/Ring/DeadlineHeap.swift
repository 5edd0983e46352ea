// DeadlineHeap: a binary min-heap keyed by a monotonic deadline (nanoseconds), shared by
// the epoll backend's timers, the loop's parked-wait deadlines and the simulator's
// timeline. Entries with equal deadlines come out in the order they went in (the
// simulator relies on it: data, then the FIN sent after it). Removal is left to the owners
// (they delete lazily: a popped entry that no longer matters is skipped).
package struct DeadlineHeap<Payload> {
    package struct Entry {
        package var at: Int64
        var seq: UInt64
        package var payload: Payload
        func before(_ o: Entry) -> Bool { at < o.at || (at == o.at && seq < o.seq) }
    }

    private var heap: [Entry] = []
    private var pushed: UInt64 = 0

    package init() {}

    package var first: Entry? { heap.first }
    package var isEmpty: Bool { heap.isEmpty }

    package mutating func push(at: Int64, _ payload: Payload) {
        pushed &+= 1
        heap.append(Entry(at: at, seq: pushed, payload: payload))
        var i = heap.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            if !heap[i].before(heap[p]) { break }
            heap.swapAt(p, i)
            i = p
        }
    }

    @discardableResult
    package mutating func popFirst() -> Entry? {
        guard !heap.isEmpty else { return nil }
        let top = heap[0]
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < heap.count && heap[l].before(heap[m]) { m = l }
                if r < heap.count && heap[r].before(heap[m]) { m = r }
                if m == i { break }
                heap.swapAt(i, m)
                i = m
            }
        }
        return top
    }

    /// Keeps the entries `keep` accepts, in new storage sized to them (sorted, so a heap).
    mutating func compact(keeping keep: (Entry) -> Bool) {
        var kept: [Entry] = []
        kept.reserveCapacity(heap.count(where: keep))
        for e in heap where keep(e) { kept.append(e) }
        kept.sort { $0.before($1) }
        heap = kept
    }
}
