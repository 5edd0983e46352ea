// Shared helpers for MediaTests: a scratch directory, one synthesized clip per format
// (made once per run, never committed), and ffprobe (test-only) as an independent judge.
import Foundation
import Media
import TranscodeAPI
import SpoolTestSupport
import XCTest

enum Scratch {
    static let dir: String = {
        // Remove the scratch directories of earlier runs whose process is gone.
        let tmp = NSTemporaryDirectory()
        for name in (try? FileManager.default.contentsOfDirectory(atPath: tmp)) ?? [] where name.hasPrefix("spool-media-tests-") {
            if let pid = Int32(name.dropFirst("spool-media-tests-".count)), kill(pid, 0) != 0 && errno == ESRCH {
                try? FileManager.default.removeItem(atPath: tmp + name)
            }
        }
        let d = tmp + "spool-media-tests-\(getpid())"
        try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }()

    static func path(_ name: String) -> String { dir + "/" + name }
}

/// Synthesized clips, made on first use and shared by the tests of one run.
enum Clips {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var made: [String: String] = [:]

    static func clip(_ name: String, spec: TestClipSpec = TestClipSpec()) throws -> String {
        lock.lock(); defer { lock.unlock() }
        if let p = made[name] { return p }
        let p = Scratch.path(name)
        try TestMedia.synthesize(to: p, spec: spec)
        made[name] = p
        return p
    }

    /// 2 s, 320×240 @ 25 fps, stereo 48 kHz tone, MP4.
    static func mp4() throws -> String { try clip("clip.mp4") }
    /// The same as MPEG-TS.
    static func ts() throws -> String { try clip("clip.ts") }
}

struct FFStream {
    var codec: String
    var type: String
    var width: Int?
    var height: Int?
    var frames: Int?
    var packets: Int?
    var duration: Double?
    var sampleRate: Int?
    var channels: Int?
}

/// `ffprobe -v error -count_frames -count_packets -show_streams -of json FILE` (any
/// decoding error ends up in the output and fails the JSON parse).
func ffprobeStreams(_ path: String) throws -> [FFStream] {
    let (rc, out) = try runProcess("/usr/bin/ffprobe", ["-v", "error", "-count_frames", "-count_packets", "-show_streams", "-of", "json", path])
    guard rc == 0 else { throw NSError(domain: "ffprobe", code: Int(rc), userInfo: [NSLocalizedDescriptionKey: out]) }
    let obj = try JSONSerialization.jsonObject(with: Data(out.utf8)) as! [String: Any]
    let streams = obj["streams"] as? [[String: Any]] ?? []
    return streams.map { s in
        FFStream(codec: s["codec_name"] as? String ?? "", type: s["codec_type"] as? String ?? "",
                 width: s["width"] as? Int, height: s["height"] as? Int,
                 frames: (s["nb_read_frames"] as? String).flatMap(Int.init),
                 packets: (s["nb_read_packets"] as? String).flatMap(Int.init),
                 duration: (s["duration"] as? String).flatMap(Double.init),
                 sampleRate: (s["sample_rate"] as? String).flatMap(Int.init),
                 channels: s["channels"] as? Int)
    }
}

/// Asserts `body` throws a MediaError within `seconds` and returns it.
func expectMediaError(within seconds: Double = 2, file: StaticString = #filePath, line: UInt = #line,
                      _ body: () throws -> Void) -> MediaError? {
    let start = Date()
    var caught: MediaError?
    do {
        try body()
        XCTFail("expected a MediaError, got success", file: file, line: line)
    } catch let e as MediaError {
        caught = e
    } catch {
        XCTFail("expected a MediaError, got \(type(of: error)): \(error)", file: file, line: line)
    }
    let took = Date().timeIntervalSince(start)
    XCTAssertLessThan(took, seconds, "took \(took) s", file: file, line: line)
    return caught
}

final class ProgressLog: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [TranscodeProgress] = []
    var onReport: (@Sendable (TranscodeProgress) -> Void)?
    func add(_ p: TranscodeProgress) {
        lock.lock(); items.append(p); let cb = onReport; lock.unlock()
        cb?(p)
    }
    var all: [TranscodeProgress] { lock.lock(); defer { lock.unlock() }; return items }
}

/// The largest value recorded (from any thread).
final class ManagedAtomicMax: @unchecked Sendable {
    private let lock = NSLock()
    private var v = 0
    func record(_ x: Int) { lock.lock(); v = max(v, x); lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return v }
}

/// Descriptors open in this process (/proc/self/fd), for leak checks.
func openDescriptorCount() -> Int {
    ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []).count
}

/// Runs `body` on a new thread and waits at most `seconds` for it; false if it did not
/// finish (the thread is left running: the caller must unblock it).
func finishes(within seconds: Double, _ body: @escaping @Sendable () -> Void) -> Bool {
    let done = DispatchSemaphore(value: 0)
    Thread { body(); done.signal() }.start()
    return done.wait(timeout: .now() + seconds) == .success
}
