// CodecStrings' parsers on hand-built parameter sets: avcC and Annex B SPS, hvcC and an
// escaped HEVC SPS, av1C and AV1 sequence header OBUs (with and without timing info),
// the fallbacks from libav's profile and level, and the VP9/AV1 level tables.
@testable import Media
import XCTest

final class CodecStringParserTests: XCTestCase {
    func testH264() {
        XCTAssertEqual(CodecStrings.h264ProfileBytes([0, 0, 0, 1, 0x67, 0x64, 0x00, 0x1F, 0xAC, 0xD9]), "64001f")
        XCTAssertEqual(CodecStrings.h264ProfileBytes([1, 0x4D, 0x40, 0x1E, 0xFF, 0xE1]), "4d401e")
        XCTAssertNil(CodecStrings.h264ProfileBytes([0, 0, 1, 0x68, 0xEE]))   // a PPS only
        XCTAssertEqual(CodecStrings.h264ProfileBytes(profile: 66 | 0x200, level: 30), "42401e")   // constrained baseline 3.0
        XCTAssertEqual(CodecStrings.h264ProfileBytes(profile: -99, level: -99), "64001f")
    }

    func testHEVC() throws {
        let hvcC: [UInt8] = [1, 0x01, 0x60, 0, 0, 0, 0xB0, 0, 0, 0, 0, 0, 93, 0xF0]
        XCTAssertEqual(CodecStrings.hevcProfileTierLevel(hvcC).map(CodecStrings.hevc), "1.6.L93.B0")
        // VPS, then an SPS whose zero runs carry emulation prevention bytes, then a PPS.
        let annexB: [UInt8] = [0, 0, 0, 1, 0x40, 0x01, 0x0C, 0x01,
                               0, 0, 0, 1, 0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90,
                               0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x5D, 0xA0,
                               0, 0, 1, 0x44, 0x01, 0xC1]
        let ptl = try XCTUnwrap(CodecStrings.hevcProfileTierLevel(annexB))
        XCTAssertEqual(CodecStrings.hevc(ptl), "1.6.L93.90")
        // Main 10, high tier level 5.1, profile space 0.
        XCTAssertEqual(CodecStrings.hevc([0x22, 0x20, 0, 0, 0, 0xB0, 0, 0, 0, 0, 0, 153]), "2.4.H153.B0")
    }

    func testVP9AndAV1Levels() {
        XCTAssertEqual(CodecStrings.vp9Level(width: 1280, height: 720, frameRate: 30), 31)
        XCTAssertEqual(CodecStrings.vp9Level(width: 1920, height: 1080, frameRate: 60), 41)
        XCTAssertEqual(CodecStrings.vp9Level(width: 160, height: 120, frameRate: 25), 10)
        XCTAssertEqual(CodecStrings.av1Level(width: 1280, height: 720, frameRate: 30), 5)   // 3.1
        XCTAssertEqual(CodecStrings.av1Level(width: 3840, height: 2160, frameRate: 60), 13)   // 5.1
    }

    func testAV1() {
        XCTAssertEqual(CodecStrings.av1([0x81, 0x08, 0x0C, 0x00], depth: 8), "av01.0.08M.08")
        XCTAssertEqual(CodecStrings.av1([0x81, 0x2D, 0xCC, 0x00], depth: 8), "av01.1.13H.10")
        // A temporal delimiter, then a sequence header: profile 0, no timing info, level 8.
        XCTAssertEqual(CodecStrings.av1([0x12, 0x00, 0x0A, 0x04, 0x00, 0x00, 0x00, 0x40], depth: 8), "av01.0.08M.08")
        // With timing info (equal picture interval, uvlc 0): level 13, high tier.
        let timed: [UInt8] = [0x0A, 13, 0x04, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x0D, 0x80]
        XCTAssertEqual(CodecStrings.av1(timed, depth: 10), "av01.0.13H.10")
        XCTAssertNil(CodecStrings.av1([0x0A, 0x09, 0x00], depth: 8), "a size past the end")
    }
}
