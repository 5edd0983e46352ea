// Ring.ParkedDeadlines: the deadlines of parked waits, kept in one heap per loop.
//
// An entry may outlive its wait (woken early, or a later wait with a later deadline):
// expiry checks the parker's current deadline, so stale entries cost one pop and never
// wake anything. Stale entries keep their parker alive until their time comes (up to an
// idle timeout), so after a burst `compactDeadlines` drops them at once.
// Non-goals: eager removal on every wake (it would cost a heap search per request).

extension EventLoop {
    /// Wakes `parker` with `.timedOut` at `at` (monotonic ns) if it is still waiting with
    /// that deadline then.
    func scheduleDeadline(_ at: Int64, _ parker: Parker) {
        deadlines.push(at: at, parker)
    }

    func expireDeadlines() {
        let now = nowNanos
        while let first = deadlines.first, first.at <= now {
            deadlines.popFirst()
            let e = first
            let p = e.payload
            if p.heapAt == e.at { p.heapAt = nil }
            guard let d = p.deadline else { continue }
            if d <= now {
                p.wake(.timedOut)
            } else if p.heapAt.map({ d < $0 }) ?? true {
                p.heapAt = d
                scheduleDeadline(d, p)
            }
        }
    }

    /// Drops every entry that no longer matters (its parker is not waiting, or it is not
    /// the parker's earliest entry) and rebuilds the heap at its present size, releasing
    /// the parkers of connections that are gone. O(n log n); for after a burst, not per request.
    func compactDeadlines() {
        deadlines.compact(keeping: { e in
            let p = e.payload
            guard p.deadline != nil, p.heapAt == e.at else {
                if p.deadline == nil { p.heapAt = nil }
                return false
            }
            return true
        })
    }
}
