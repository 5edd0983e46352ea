// CompletionQueue: completions a backend has produced and the loop has not reaped yet, in
// order, with storage reused between batches. The epoll backend and the simulator fill one
// and hand it over in `submitAndReap`.
// Non-goals: thread safety (a backend belongs to its loop's thread).

package struct CompletionQueue {
    private var items: [Completion] = []
    private var head = 0

    package init() {}

    package var isEmpty: Bool { head == items.count }
    package var count: Int { items.count - head }

    package mutating func append(_ c: Completion) { items.append(c) }

    /// Moves up to `max` completions to `out`, oldest first; returns how many.
    package mutating func drain(into out: UnsafeMutablePointer<Completion>, max: Int) -> Int {
        var n = 0
        while n < max && head < items.count {
            unsafe out[n] = items[head]
            n += 1
            head += 1
        }
        if head == items.count {
            items.removeAll(keepingCapacity: true)
            head = 0
        }
        return n
    }

    /// The completions not yet reaped, to reorder (the simulator's reordering fault).
    package mutating func withUnreaped(_ body: (inout [Completion]) -> Void) {
        var rest = Array(items[head...])
        body(&rest)
        items.replaceSubrange(head..., with: rest)
    }
}
