// The transcoder contract without Media (and so without libav): a simulated plugin runs,
// reports and cancels jobs through TranscoderPlugin exactly as an engine would drive the
// libav one.
import SpoolModel
import Synchronization
import TranscodeAPI
import XCTest

/// A plugin that "transcodes" by counting frames: `frames` progress reports, then a
/// summary; a cancelled job throws `.cancelled` at its next frame.
final class SimulatedPlugin: TranscoderPlugin {
    let name = "simulated"
    let frames: Int
    private let cancelled = Mutex<Set<String>>([])
    private let running = Mutex<Set<String>>([])

    init(frames: Int) { self.frames = frames }

    func capabilities() -> TranscoderCapabilities {
        TranscoderCapabilities(encoders: ["sim264"], videoDecoders: 1, audioDecoders: 0, demuxers: ["sim"], muxers: ["sim"],
                               presets: TranscodePreset.all.map(\.name), libavVersion: "none")
    }

    func transcode(_ job: TranscodeJob, progress: (@Sendable (TranscodeProgress) -> Void)?) async throws(TranscodeFailure) -> TranscodeJobResult {
        guard running.withLock({ $0.insert(job.id).inserted }) else { throw .invalidJob("job \(job.id) is already running") }
        defer { running.withLock { _ = $0.remove(job.id) } }
        guard case .single(let request) = job.kind else { throw .invalidJob("ladders are not simulated") }
        do { try request.preset.validate() } catch { throw .invalidJob(error.message) }
        for frame in 1...frames {
            if cancelled.withLock({ $0.remove(job.id) != nil }) { throw .cancelled }
            progress?(TranscodeProgress(videoFrames: frame, mediaSeconds: Double(frame) / 25, totalSeconds: Double(frames) / 25,
                                        elapsedSeconds: Double(frame) / 100, fps: 100, speed: 4,
                                        etaSeconds: Double(frames - frame) / 100))
            await Task.yield()
        }
        return .single(TranscodeSummary(input: request.input, output: request.output, preset: request.preset.name,
                                        mediaSeconds: Double(frames) / 25, elapsedSeconds: Double(frames) / 100,
                                        videoFrames: frames, audioSamples: 0, width: 640, height: 360, fps: 100, speed: 4,
                                        outputBytes: 1234))
    }

    func cancel(jobID: String) { cancelled.withLock { _ = $0.insert(jobID) } }
}

final class Reports: @unchecked Sendable {
    private let lock = Mutex<[TranscodeProgress]>([])
    func add(_ p: TranscodeProgress) { lock.withLock { $0.append(p) } }
    var all: [TranscodeProgress] { lock.withLock { $0 } }
}

final class FakePluginTests: XCTestCase {
    func job(_ id: String, preset: TranscodePreset = .h264_360p) -> TranscodeJob {
        TranscodeJob(id: id, kind: .single(TranscodeRequest(input: "in.mp4", output: "out.mp4", preset: preset)))
    }

    func testASimulatedEngineRunsAJobThroughTheContract() async throws {
        let plugin: any TranscoderPlugin = SimulatedPlugin(frames: 10)
        let reports = Reports()
        let result = try await plugin.transcode(job("a"), progress: { reports.add($0) })
        guard case .single(let s) = result else { return XCTFail("a single job answers with a single summary") }
        XCTAssertEqual(s.videoFrames, 10)
        XCTAssertEqual(s.preset, "h264-360p")
        XCTAssertEqual(reports.all.map(\.videoFrames), Array(1...10))
        XCTAssertEqual(reports.all.last?.fraction, 1)
        XCTAssertEqual(plugin.capabilities().presets, TranscodePreset.all.map(\.name))
    }

    func testCancellingByIdEndsWithCancelled() async {
        let plugin = SimulatedPlugin(frames: 1000)
        let reports = Reports()
        do {
            _ = try await plugin.transcode(job("b"), progress: { p in
                reports.add(p)
                if p.videoFrames == 5 { plugin.cancel(jobID: "b") }
            })
            XCTFail("finished despite cancellation")
        } catch {
            XCTAssertEqual(error, .cancelled)
            XCTAssertTrue(error.isCancelled)
        }
        XCTAssertEqual(reports.all.count, 5)
    }

    func testRefusalsCarryAStableCode() async {
        var bad = TranscodePreset.h264_720p
        bad.video.rateControl = .crf(99)
        do {
            _ = try await SimulatedPlugin(frames: 1).transcode(job("c", preset: bad), progress: nil)
            XCTFail("a bad preset ran")
        } catch {
            XCTAssertEqual(error.code, "invalid_settings")
            XCTAssertTrue(error.message.contains("CRF 99"), error.message)
            XCTAssertFalse(error.isCancelled)
        }
    }
}
