// FIFOQueue: the one first-in-first-out queue of the loop's hot paths (ready jobs,
// receivers waiting for a buffer, accepted descriptors, received buffers). An array
// and a head index: popping is O(1) and the storage is reused once the queue drains,
// so a steady flow allocates nothing. Popped slots are cleared, so the queue holds no
// reference to what it handed out.
struct FIFOQueue<Element> {
    private var items: [Element?] = []
    private var head = 0

    var count: Int { items.count - head }
    var isEmpty: Bool { head == items.count }
    var first: Element? { head < items.count ? items[head] : nil }

    mutating func append(_ e: Element) { items.append(e) }

    /// Changes the first element in place (nothing when empty).
    mutating func updateFirst(_ body: (inout Element) -> Void) {
        guard head < items.count else { return }
        body(&items[head]!)
    }

    mutating func popFirst() -> Element? {
        guard head < items.count else { return nil }
        let e = items[head]
        items[head] = nil
        head += 1
        if head == items.count {
            items.removeAll(keepingCapacity: true)
            head = 0
        }
        return e
    }
}
