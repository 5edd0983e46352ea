// FIFOQueue: order, count and emptiness through every way its inline first element and
// its array change hands, against a plain array as the model.
@testable import Ring
import XCTest

final class FIFOQueueTests: XCTestCase {
    func testOrderAndCountMatchAnArrayUnderRandomAppendsAndPops() {
        var rng = SystemRandomNumberGenerator()
        var queue = FIFOQueue<Int>()
        var model: [Int] = []
        var next = 0
        for step in 0..<20_000 {
            // Runs of appends and pops of random length, so the queue goes through empty,
            // one element (inline only), and many (inline plus the array) again and again.
            if Bool.random(using: &rng) || model.isEmpty {
                for _ in 0..<Int.random(in: 1...5, using: &rng) {
                    queue.append(next)
                    model.append(next)
                    next += 1
                }
            } else {
                for _ in 0..<Int.random(in: 1...5, using: &rng) {
                    let got = queue.popFirst()
                    let want = model.isEmpty ? nil : model.removeFirst()
                    XCTAssertEqual(got, want, "step \(step)")
                }
            }
            XCTAssertEqual(queue.count, model.count, "step \(step)")
            XCTAssertEqual(queue.isEmpty, model.isEmpty, "step \(step)")
            XCTAssertEqual(queue.first, model.first, "step \(step)")
        }
        while let want = model.first {
            XCTAssertEqual(queue.popFirst(), want)
            model.removeFirst()
        }
        XCTAssertNil(queue.popFirst())
        XCTAssertTrue(queue.isEmpty)
    }

    func testUpdateFirstChangesOnlyTheOldest() {
        var queue = FIFOQueue<Int>()
        queue.updateFirst { $0 = 99 }   // empty: nothing
        XCTAssertNil(queue.first)
        queue.append(1)
        queue.append(2)
        queue.append(3)
        queue.updateFirst { $0 += 10 }
        XCTAssertEqual(queue.popFirst(), 11)
        queue.updateFirst { $0 += 10 }
        XCTAssertEqual(queue.popFirst(), 12)
        XCTAssertEqual(queue.popFirst(), 3)
        XCTAssertNil(queue.popFirst())
    }

    func testPoppedElementsAreNotHeld() {
        final class Token {}
        weak var first: Token?
        weak var second: Token?
        var queue = FIFOQueue<Token>()
        do {
            let a = Token(), b = Token()
            first = a
            second = b
            queue.append(a)
            queue.append(b)
        }
        XCTAssertNotNil(first)
        _ = queue.popFirst()
        XCTAssertNil(first, "the inline slot still held the popped element")
        _ = queue.popFirst()
        XCTAssertNil(second, "the array still held the popped element")
        XCTAssertTrue(queue.isEmpty)
    }
}
