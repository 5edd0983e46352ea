// DeadlineHeap: a binary min-heap keyed by a monotonic deadline (nanoseconds), shared by
// the epoll backend's timers and the loop's parked-wait deadlines. Removal is left to the
// owners (both delete lazily: a popped entry that no longer matters is skipped).
struct DeadlineHeap<Payload> {
    struct Entry {
        var at: Int64
        var payload: Payload
    }

    private var heap: [Entry] = []

    var first: Entry? { heap.first }
    var isEmpty: Bool { heap.isEmpty }

    mutating func push(at: Int64, _ payload: Payload) {
        heap.append(Entry(at: at, payload: payload))
        var i = heap.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            if heap[p].at <= heap[i].at { break }
            heap.swapAt(p, i)
            i = p
        }
    }

    @discardableResult
    mutating func popFirst() -> Entry? {
        guard !heap.isEmpty else { return nil }
        let top = heap[0]
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < heap.count && heap[l].at < heap[m].at { m = l }
                if r < heap.count && heap[r].at < heap[m].at { m = r }
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
        kept.sort { $0.at < $1.at }
        heap = kept
    }
}
