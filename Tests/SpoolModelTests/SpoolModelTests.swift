// SpoolModel without Media: every pair of the transition table, ids, error codes.
import SpoolModel
import SpoolTestSupport
import XCTest

final class JobStateTests: XCTestCase {
    /// The whole table written out once more, independently: every (from, to) pair of the
    /// 8 × 8 is checked, so a transition added or dropped by mistake fails here.
    func testEveryPairOfTheTransitionTable() {
        let legal: Set<String> = [
            "pending>assigned", "pending>cancelled", "pending>failed",
            "assigned>transcoding", "assigned>pending", "assigned>failed", "assigned>cancelled",
            "transcoding>completing", "transcoding>pending", "transcoding>failed", "transcoding>cancelled",
            "completing>completed", "completing>failed", "completing>cancelled",
            "failed>retrying",
            "retrying>pending", "retrying>cancelled",
        ]
        var checked = 0
        for from in JobState.allCases {
            for to in JobState.allCases {
                let key = "\(from.rawValue)>\(to.rawValue)"
                XCTAssertEqual(from.canMove(to: to), legal.contains(key), key)
                do {
                    let next = try from.move(to: to)
                    XCTAssertTrue(legal.contains(key), key)
                    XCTAssertEqual(next, to)
                } catch {
                    XCTAssertFalse(legal.contains(key), key)
                    XCTAssertEqual(error.code, .invalidTransition)
                    XCTAssertEqual(error.code.status, 409)
                    XCTAssertEqual(error.details.first?.1, from.rawValue)
                }
                checked += 1
            }
        }
        XCTAssertEqual(checked, 64)
        XCTAssertEqual(JobState.allCases.count, 8)
    }

    func testTerminalAndLeasedStates() {
        XCTAssertEqual(Set(JobState.allCases.filter(\.isTerminal)), [.completed, .failed, .cancelled])
        XCTAssertEqual(Set(JobState.allCases.filter(\.isLeased)), [.assigned, .transcoding, .completing])
        // Only failed leaves a terminal state, and only to retrying.
        for s in JobState.allCases where s.isTerminal && s != .failed { XCTAssertTrue(s.successors.isEmpty, s.rawValue) }
        // Every non-terminal state can be cancelled or failed on the way to an end.
        for s in JobState.allCases where !s.isTerminal {
            XCTAssertTrue(s.canMove(to: .cancelled) || s.canMove(to: .failed), s.rawValue)
        }
    }
}

final class IdentifierTests: XCTestCase {
    func testGeneratedIdsParseSortByTimeAndKeepTheirMilliseconds() {
        var rng = SplitMix(seed: 42)
        var previous: JobID?
        for ms in stride(from: UInt64(1_700_000_000_000), to: 1_700_000_000_000 + 5_000, by: 7) {
            let id = JobID.generate(milliseconds: ms, using: &rng)
            XCTAssertEqual(id.text.count, 4 + 26)
            XCTAssertTrue(id.text.hasPrefix("job_"))
            XCTAssertEqual(JobID(id.text), id)
            XCTAssertEqual(id.milliseconds, ms)
            if let previous { XCTAssertLessThan(previous, id) }
            previous = id
        }
        // The largest time that fits 48 bits round-trips too.
        let max = FileID.generate(milliseconds: 0xFFFF_FFFF_FFFF, using: &rng)
        XCTAssertEqual(max.milliseconds, 0xFFFF_FFFF_FFFF)
        XCTAssertNotNil(FileID(max.text))
    }

    func testParsingIsStrict() {
        var rng = SplitMix(seed: 7)
        let good = EngineID.generate(milliseconds: 1_800_000_000_000, using: &rng).text
        XCTAssertNotNil(EngineID(good))
        XCTAssertNil(JobID(good), "another kind's prefix")
        XCTAssertNil(EngineID(String(good.dropLast())), "too short")
        XCTAssertNil(EngineID(good + "0"), "too long")
        XCTAssertNil(EngineID(good.lowercased()), "lower case is another spelling")
        XCTAssertNil(EngineID("eng_" + "8" + String(repeating: "0", count: 25)), "more than 128 bits")
        for bad in ["I", "L", "O", "U", "-", "/", ".", "%", "\u{0}", "é"] {
            let s = String(good.dropLast()) + bad
            XCTAssertNil(EngineID(s), "character \(bad)")
        }
        XCTAssertNil(EngineID("eng_../../etc/passwd0000000000"))
        XCTAssertNil(EngineID(""))
    }

    func testRandomPartDiffersBetweenIdsOfTheSameMillisecond() {
        var rng = SplitMix(seed: 1)
        var seen = Set<String>()
        for _ in 0..<10_000 { seen.insert(JobID.generate(milliseconds: 5, using: &rng).text) }
        XCTAssertEqual(seen.count, 10_000)
    }
}

final class ModelErrorTests: XCTestCase {
    func testCodesAreUniqueAndCarryTheirStatus() {
        XCTAssertEqual(Set(ModelError.Code.all.map(\.rawValue)).count, ModelError.Code.all.count)
        XCTAssertEqual(ModelError.Code.invalidJSON.status, 400)
        XCTAssertEqual(ModelError.Code.validationFailed.status, 422)
        XCTAssertEqual(ModelError.Code.staleLease.status, 409)
        let e = ModelError.invalidField("/outputs/0/crf", "must be in 0...51")
        XCTAssertEqual(e.code, .validationFailed)
        XCTAssertEqual(e.details.first?.0, "/outputs/0/crf")
        XCTAssertEqual(e.description, "validation_failed: /outputs/0/crf: must be in 0...51")
    }
}
