// FIFOQueue: the one first-in-first-out queue of the loop's hot paths (ready jobs,
// receivers waiting for a buffer, accepted descriptors, received buffers, queued sends).
// The first element is kept inline and the rest in an array with a head index: popping is
// O(1), the storage is reused once the queue drains, so a steady flow allocates nothing,
// and a queue that holds one element at a time (a connection's one send in flight, its
// one received piece) never touches the array's heap storage at all. Popped slots are
// cleared, so the queue holds no reference to what it handed out.
struct FIFOQueue<Element> {
    /// The oldest element; nil only when the queue is empty (the array then holds nothing).
    private var front: Element?
    private var rest: [Element?] = []
    private var head = 0

    var count: Int { front == nil ? 0 : 1 + rest.count - head }
    var isEmpty: Bool { front == nil }
    var first: Element? { front }

    mutating func append(_ e: Element) {
        if front == nil { front = e } else { rest.append(e) }
    }

    /// Changes the first element in place (nothing when empty).
    mutating func updateFirst(_ body: (inout Element) -> Void) {
        guard front != nil else { return }
        body(&front!)
    }

    mutating func popFirst() -> Element? {
        guard let e = front else { return nil }
        if head < rest.count {
            front = rest[head]
            rest[head] = nil
            head += 1
            if head == rest.count {
                rest.removeAll(keepingCapacity: true)
                head = 0
            }
        } else {
            front = nil
        }
        return e
    }
}
