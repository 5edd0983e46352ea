// Slot exhaustion: with every operation slot of a loop in use, a new operation fails at
// once with its own RingError code (`.slotsExhausted`), on the async path, the raw NOP
// result and the multishot path alike; never as a bare EAGAIN, which a caller could
// mistake for a socket that would block.
import Foundation
@testable import Ring
import XCTest

final class SlotExhaustionTests: XCTestCase {
    func testExhaustedSlotsAreTheirOwnError() async throws {
        let slots = 8
        let loop = try EventLoop.start(configuration: loopConfiguration(slots: slots))
        defer { loop.shutdown() }
        let sleepers = (0..<slots).map { _ in
            loop.spawn { () -> String in
                do { try await loop.sleep(for: .seconds(60)); return "slept" } catch { return "\(error)" }
            }
        }
        let full = try await eventually(on: loop) { loop.operationsInFlight == slots }
        XCTAssertTrue(full, "the sleepers did not take every slot")

        let outcomes = try await loop.run { () -> [String] in
            var out: [String] = []
            do throws(RingError) { try await loop.sleep(for: .milliseconds(1)); out.append("slept") } catch {
                out.append("\(error.code)")
                out.append(error.description)
            }
            let nop = await loop.nop()
            out.append(nop.isSlotsExhausted ? "nop: slotsExhausted" : "nop: \(nop.res)")
            do throws(RingError) { _ = try await File.open("/dev/null", .read); out.append("opened") } catch { out.append("\(error.code)") }
            let listener = try TCPListener(address: SocketAddress("127.0.0.1:0"))
            do throws(RingError) { _ = try await listener.accept(); out.append("accepted") } catch {
                out.append("\(error.code)")
                out.append(error.description)
            }
            return out
        }
        XCTAssertEqual(outcomes, [
            "slotsExhausted",
            "sleep: no free operation slot (every one of the loop's slotsMax slots is in use)",
            "nop: slotsExhausted",
            "slotsExhausted",
            "slotsExhausted",
            "accept: no free operation slot (every one of the loop's slotsMax slots is in use)",
        ])
        XCTAssertEqual(RingError(errno: -OpResult.slotsExhausted, operation: "x").code, .slotsExhausted)
        XCTAssertNotEqual(RingError(errno: EAGAIN, operation: "x").code, .slotsExhausted)
        XCTAssertEqual(RingError(errno: EAGAIN, operation: "x").code, .system(errno: EAGAIN))
        XCTAssertEqual(RingError(errno: EAGAIN, operation: "x").errnoValue, EAGAIN)

        // Freed slots serve again.
        for s in sleepers { s.cancel() }
        for s in sleepers { _ = try await s.value }
        let after = try await loop.run { () -> Int32 in await loop.nop().res }
        XCTAssertEqual(after, 0)
        try await assertQuiescent(loop)
    }
}
