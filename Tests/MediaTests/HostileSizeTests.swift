// Output sizes computed from hostile stream parameters: never a trap, always inside the
// encoder's range.
@testable import Media
import XCTest
import SpoolModel

final class HostileSizeTests: XCTestCase {
    func testAbsurdSampleAspectRatiosDoNotTrap() throws {
        let byHeight = try TranscodePreset.custom(height: 720)
        for sar: (Int32, Int32) in [(65535, 1), (1, 65535), (0, 0), (-1, 5), (Int32.max, 1)] {
            let (w, h) = byHeight.outputSize(sourceWidth: 8192, sourceHeight: 16, sampleAspect: sar)
            XCTAssertTrue((2...16384).contains(w) && (2...16384).contains(h), "\(sar): \(w)×\(h)")
            XCTAssertEqual(w % 2, 0)
            XCTAssertEqual(h % 2, 0)
        }
        // A sane anamorphic source is still honoured (4:3 storage shown as 16:9).
        let (w, h) = byHeight.outputSize(sourceWidth: 720, sourceHeight: 480, sampleAspect: (32, 27))
        XCTAssertEqual(h, 720)
        XCTAssertEqual(w, 1280)
    }
}
