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

    /// `bits(of:)` (the HTTP fast lane's parse of an id's bytes) accepts exactly what
    /// `init?` accepts, and two ids have the same bits exactly when they are equal.
    func testBitsOfBytesAgreeWithParsing() {
        var rng = SplitMix(seed: 11)
        var seen: [UInt128: String] = [:]
        for _ in 0..<2_000 {
            let id = JobID.generate(milliseconds: rng.next() & 0xFFFF_FFFF_FFFF, using: &rng)
            XCTAssertEqual(JobID.bits(of: ArraySlice(id.text.utf8)), id.bits)
            if let other = seen.updateValue(id.text, forKey: id.bits) { XCTAssertEqual(other, id.text) }
            // Every single-byte change: accepted by one exactly when by the other.
            var bytes = Array(id.text.utf8)
            let k = Int(rng.next() % UInt64(bytes.count))
            bytes[k] = UInt8(truncatingIfNeeded: rng.next())
            let text = String(decoding: bytes, as: UTF8.self)
            let parsed = JobID(text)
            XCTAssertEqual(JobID.bits(of: ArraySlice(bytes)), parsed?.bits, text)
        }
        XCTAssertEqual(seen.count, 2_000)
        XCTAssertNil(JobID.bits(of: ArraySlice("job_8\(String(repeating: "0", count: 25))".utf8)), "more than 128 bits")
        XCTAssertNil(JobID.bits(of: ArraySlice("eng_0\(String(repeating: "0", count: 25))".utf8)), "another kind's prefix")
        XCTAssertEqual(JobID("job_7ZZZZZZZZZZZZZZZZZZZZZZZZZ")?.bits, UInt128.max)
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

/// Presets and custom settings validated without libav (a dispatcher's view).
final class PresetModelTests: XCTestCase {
    func testEveryNamedPresetIsValidAndFoundByName() throws {
        for p in TranscodePreset.all {
            XCTAssertNoThrow(try p.validate(), p.name)
            XCTAssertEqual(try TranscodePreset.named(p.name), p)
        }
        for l in LadderPreset.all { XCTAssertNoThrow(try l.validate(), l.name) }
        XCTAssertEqual(try LadderPreset.named("hls-ladder-h264").rungs.count, 3)
    }

    func testUnknownPresetNamesEveryPreset() {
        XCTAssertThrowsError(try TranscodePreset.named("h264-4k")) { error in
            let e = error as? ModelError
            XCTAssertEqual(e?.code, .validationFailed)
            XCTAssertEqual(e?.details.first?.0, "preset")
            for p in TranscodePreset.all { XCTAssertTrue(e?.message.contains(p.name) ?? false, p.name) }
            XCTAssertTrue(e?.message.contains("hls-ladder-h264") ?? false)
        }
    }

    /// Each out-of-range or unknown value is refused with the setting it concerns.
    func testCustomSettingsAreRefusedWithTheSettingNamed() {
        func refused(_ setting: String, _ make: () throws -> TranscodePreset, line: UInt = #line) {
            XCTAssertThrowsError(try make(), line: line) { error in
                XCTAssertEqual((error as? ModelError)?.details.first?.0, setting, "\(error)", line: line)
            }
        }
        refused("codec") { try TranscodePreset.custom(codec: "mpeg2") }
        refused("width") { try TranscodePreset.custom(width: 15) }
        refused("height") { try TranscodePreset.custom(height: 721) }
        refused("crf") { try TranscodePreset.custom(crf: -5) }
        refused("crf") { try TranscodePreset.custom(crf: 52) }
        refused("crf") { try TranscodePreset.custom(crf: 20, bitrateKbps: 900) }
        refused("bitrate_kbps") { try TranscodePreset.custom(bitrateKbps: 10) }
        refused("speed") { try TranscodePreset.custom(speed: "ludicrous") }
        refused("profile") { try TranscodePreset.custom(codec: "av1", profile: "main") }
        refused("profile") { try TranscodePreset.custom(profile: "high10") }
        refused("gop_seconds") { try TranscodePreset.custom(gopSeconds: 0) }
        refused("max_fps") { try TranscodePreset.custom(maxFrameRate: 0) }
        refused("audio_codec") { try TranscodePreset.custom(audioCodec: "mp3") }
        refused("audio_bitrate_kbps") { try TranscodePreset.custom(audioBitrateKbps: 8) }
        XCTAssertNoThrow(try TranscodePreset.custom(codec: "hevc", width: 1280, height: 720, crf: 28, speed: "fast", profile: "main"))
    }
}

final class HexTests: XCTestCase {
    func testEncodingIsLowercaseTwoDigitsPerByteWhateverTheSequence() {
        let bytes: [UInt8] = [0x00, 0x01, 0x0F, 0x10, 0x7F, 0x80, 0xAB, 0xFF]
        let expected = "00010f107f80abff"
        XCTAssertEqual(Hex.encode(bytes), expected)                       // contiguous
        XCTAssertEqual(Hex.encode(bytes.lazy.map { $0 }), expected)       // not contiguous
        XCTAssertEqual(Hex.encode(contiguous: bytes[...]), expected)
        XCTAssertEqual(Hex.encode([UInt8]()), "")
        let all = (0...255).map(UInt8.init)
        XCTAssertEqual(Hex.decode(Hex.encode(all)), all)
    }
}
