// `spool probe`, `spool transcode` and `spool synthesize`: local media commands on the
// Media module (libav in-process; no ffmpeg command line anywhere).
import ArgumentParser
import Dispatch
import HostMetrics
import JSON
import Lifecycle
import Media
import SpoolModel
import Synchronization
import TranscodeAPI
#if canImport(Glibc)
import Glibc
#endif

/// `spool probe INPUT`: the input's streams as JSON on stdout.
struct Probe: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the streams of a media file as JSON.")

    @Argument(help: "The media file to inspect ('-' reads stdin).")
    var input: String

    func run() throws {
        do {
            let result = input == "-"
                ? try MediaProbe.probe(source: FileDescriptorSource(fd: STDIN_FILENO), name: "-")
                : try MediaProbe.probe(MediaPath.commandLineArgument(input))
            print(result.json)
        } catch {
            printError("spool probe: \(error)")
            throw ExitCode(1)
        }
    }
}

/// `spool transcode INPUT OUTPUT --preset NAME`: one local transcode.
struct Transcode: AsyncParsableCommand, StopsGracefully {
    static let configuration = CommandConfiguration(
        abstract: "Transcode a file locally (libav in-process).",
        discussion: """
        Presets:
        \(TranscodePreset.all.map { "  \($0.name): \($0.summary)" }.joined(separator: "\n"))
        \(LadderPreset.all.map { "  \($0.name): \($0.summary); OUTPUT is a new directory (master.m3u8 + one directory per rendition)" }.joined(separator: "\n"))
          custom: --codec h264|hevc|vp9|av1 with --width/--height (a bounding box), --crf or --bitrate, \
        --speed, --gop, --profile, --audio-codec aac|opus.
        The output container follows the extension: .mp4 (faststart), .ts, .mkv, .webm; a codec the \
        container cannot carry is refused before any work.
        '-' as INPUT reads stdin (MPEG-TS, Matroska or faststart/fragmented MP4); '-' as OUTPUT writes \
        stdout in --format (mpegts, mp4 (fragmented) or matroska), with progress on stderr.
        The output is written under a temporary name next to OUTPUT and renamed on success; an existing \
        OUTPUT is refused unless --overwrite.
        Progress is a bar on a terminal and plain lines otherwise.
        SIGINT (Ctrl-C), SIGTERM or SIGHUP cancels the job and removes the partial output; the exit status \
        is then 128 + the signal's number (130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP). A second \
        signal ends the process at once. Other failures exit 1.
        """
    )

    @Argument(help: "Input media file.")
    var input: String

    @Argument(help: "Output file (.mp4, .ts or .mkv), or '-' for stdout.")
    var output: String

    @Flag(help: "Replace OUTPUT if it exists (a symlink there is replaced itself; its target is never written).")
    var overwrite = false

    @Option(help: "Container when OUTPUT is '-': mpegts, mp4 (fragmented) or matroska.")
    var format: String = "mpegts"

    @Option(help: "Preset name (see below), or 'custom'.")
    var preset: String = "h264-720p"

    @Option(help: "custom: video codec (h264, hevc, vp9, av1).") var codec: String = "h264"
    @Option(help: "custom: audio codec (aac, opus).") var audioCodec: String = "aac"
    // Numeric options take their value unconditionally, so "--crf -5" reaches validate()
    // ("--crf must be 0...51") instead of being read as an unknown flag "-5".
    @Option(parsing: .unconditional, help: "custom: maximum output width (even).") var width: Int32?
    @Option(parsing: .unconditional, help: "custom: maximum output height (even).") var height: Int32?
    @Option(parsing: .unconditional, help: "custom: constant rate factor 0...51.") var crf: Int?
    @Option(parsing: .unconditional, help: "custom: video bitrate in kb/s (instead of CRF).") var bitrate: Int?
    @Option(help: "custom: x264 speed preset.") var speed: String = "veryfast"
    @Option(parsing: .unconditional, help: "custom: keyframe interval in seconds.") var gop: Double = 2
    @Option(help: "custom: H.264 profile (baseline, main, high).") var profile: String?
    @Option(parsing: .unconditional, help: "custom: at most this many frames per second (faster sources are decimated).") var maxFps: Int?
    @Option(parsing: .unconditional, help: "Codec threads (0 = automatic).") var threads: Int32 = 0
    @Flag(help: "Also measure PSNR and SSIM of the output against the scaled source.") var quality = false

    func validate() throws {
        for (name, v) in [("--width", width), ("--height", height)] {
            if let v, !(16...8192).contains(v) || v % 2 != 0 { throw ValidationError("\(name) must be an even number in 16...8192") }
        }
        if let crf, !(0...51).contains(crf) { throw ValidationError("--crf must be 0...51") }
        if let bitrate, !(50...100_000).contains(bitrate) { throw ValidationError("--bitrate must be 50...100000 (kb/s)") }
        guard gop > 0 && gop <= 20 else { throw ValidationError("--gop must be more than 0 and at most 20 (seconds)") }
        if let maxFps, !(1...240).contains(maxFps) { throw ValidationError("--max-fps must be 1...240") }
        guard (0...256).contains(threads) else { throw ValidationError("--threads must be 0...256 (0 = automatic)") }
    }

    func resolvePreset() throws -> TranscodePreset {
        let customFlags = width != nil || height != nil || crf != nil || bitrate != nil || profile != nil || maxFps != nil
        do {
            if preset == "custom" {
                return try TranscodePreset.custom(codec: codec, width: width, height: height, crf: crf, bitrateKbps: bitrate,
                                                  gopSeconds: gop, speed: speed, profile: profile, audioCodec: audioCodec,
                                                  maxFrameRate: maxFps)
            }
            if customFlags { throw ValidationError("--width/--height/--crf/--bitrate/--profile need --preset custom") }
            return try TranscodePreset.named(preset)
        } catch let e as ModelError {
            throw ValidationError(e.message)
        }
    }

    func run() async throws {
        ProcessMemory.settleForTranscoding()
        if let ladder = LadderPreset.all.first(where: { $0.name == preset }) {
            try await runLadder(ladder)
            return
        }
        let chosen = try resolvePreset()
        let toStdout = output == "-"
        if toStdout && !TranscodeRequest.streamFormats.contains(format) {
            throw ValidationError("--format must be one of \(TranscodeRequest.streamFormats.joined(separator: ", "))")
        }
        // Reports go where the media does not.
        let reportFD = toStdout ? STDERR_FILENO : STDOUT_FILENO
        let tty = isatty(reportFD) == 1
        let flag = CancellationFlag()
        let shutdown = ShutdownSignal.install()
        shutdown.onSignal { _ in flag.cancel() }
        var request = TranscodeRequest(inputPath: input == "-" ? "stdin" : inputPath, outputPath: toStdout ? "stdout" : outputPath,
                                       preset: chosen, threads: threads, progressInterval: tty ? 0.25 : 1.0)
        request.measureQuality = quality
        request.overwrite = overwrite
        if input == "-" { request.inputStream = FileDescriptorSource(fd: STDIN_FILENO) }
        if toStdout {
            request.outputStream = FileDescriptorSink(fd: STDOUT_FILENO)
            request.outputFormat = format
        }
        let printer = ProgressPrinter(tty: tty, fd: reportFD)
        do {
            let s = try await Transcoder.transcode(request, cancel: flag, progress: { printer.show($0) })
            printer.finish()
            printer.line("done: \(fmt(s.mediaSeconds)) s of media in \(fmt(s.elapsedSeconds)) s "
                  + "(\(fmt(s.fps)) fps, \(fmt(s.speed))× real time)")
            printer.line("output: \(s.output) (\(NumberFormat.bytes(s.outputBytes)), \(s.width)×\(s.height), \(s.videoFrames) frames, preset \(s.preset))")
            if let q = s.quality { printer.line("quality: \(describe(q))") }
            if s.decodeErrors > 0 { printer.line("skipped: \(s.decodeErrors) undecodable packets") }
        } catch {
            printer.finish()
            printError("spool transcode: \(error)")
            throw ExitCode(cancelledExitStatus(error == .cancelled, shutdown))
        }
    }
}

extension Transcode {
    /// INPUT and OUTPUT as the bytes given on the command line (a name that is not valid
    /// UTF-8 is not rewritten); when both repair to the same text, argv order tells them apart.
    var inputPath: MediaPath { MediaPath.commandLineArgument(input) }
    var outputPath: MediaPath { MediaPath.commandLineArgument(output, occurrence: input == output ? 1 : 0) }

    /// A decode-once ladder into an HLS directory.
    func runLadder(_ ladder: LadderPreset) async throws {
        guard output != "-" else { throw ValidationError("\(ladder.name) writes a directory; give one as OUTPUT") }
        let tty = isatty(STDOUT_FILENO) == 1
        let flag = CancellationFlag()
        let shutdown = ShutdownSignal.install()
        shutdown.onSignal { _ in flag.cancel() }
        var request = LadderRequest(inputPath: input == "-" ? "stdin" : inputPath, outputDirectoryPath: outputPath, preset: ladder,
                                    threads: threads, progressInterval: tty ? 0.25 : 1.0)
        request.measureQuality = quality
        request.overwrite = overwrite
        if input == "-" { request.inputStream = FileDescriptorSource(fd: STDIN_FILENO) }
        let printer = ProgressPrinter(tty: tty, fd: STDOUT_FILENO)
        do {
            let s = try await Transcoder.transcodeLadder(request, cancel: flag, progress: { printer.show($0) })
            printer.finish()
            printer.line("done: \(fmt(s.mediaSeconds)) s of media in \(fmt(s.elapsedSeconds)) s "
                         + "(\(fmt(s.fps)) source fps, \(fmt(s.speed))× real time), \(s.renditions.count) renditions")
            for r in s.renditions {
                printer.line("  \(r.name): \(r.width)×\(r.height), \(r.frames) frames, \(r.segments) segments, "
                             + "peak \(r.bandwidth / 1000) kb/s, \(NumberFormat.bytes(r.bytes)), \(r.codecs)"
                             + (r.quality.map { "; \(describe($0))" } ?? ""))
            }
            printer.line("output: \(s.master) (\(NumberFormat.bytes(s.outputBytes)))")
            if s.decodeErrors > 0 { printer.line("skipped: \(s.decodeErrors) undecodable packets") }
        } catch {
            printer.finish()
            printError("spool transcode: \(error)")
            throw ExitCode(cancelledExitStatus(error == .cancelled, shutdown))
        }
    }
}

/// `spool capabilities`: what the built-in libav plugin can do on this machine, as JSON.
struct Capabilities: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the libav plugin's capabilities (probed from the linked libav) and a resource sample as JSON.")

    func run() throws {
        var w = JSONWriter()
        w.beginObject()
        w.field("transcoder", LibAVTranscoderPlugin().capabilities())
        w.field("resources", ProcResourceMonitor().sample())
        w.endObject()
        print(w.text)
    }
}

/// `spool synthesize OUTPUT`: writes a generated test clip (moving gradient + tone).
struct Synthesize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a synthetic test clip (x264 + AAC; .mp4, .ts or .mkv) for demos and tests.")

    @Argument(help: "Output file.") var output: String
    @Option(help: "Seconds.") var seconds: Double = 2
    @Option(help: "Width.") var width: Int32 = 320
    @Option(help: "Height.") var height: Int32 = 240
    @Option(help: "Frames per second.") var fps: Int32 = 25

    func validate() throws {
        guard seconds > 0 && seconds <= 600 else { throw ValidationError("--seconds must be in (0, 600]") }
        guard (1...120).contains(fps) else { throw ValidationError("--fps must be 1...120") }
    }

    func run() throws {
        var spec = TestClipSpec()
        spec.seconds = seconds; spec.width = width; spec.height = height; spec.fps = fps
        do { try TestMedia.synthesize(to: output, spec: spec) } catch {
            printError("spool synthesize: \(error)")
            throw ExitCode(1)
        }
        print("wrote \(output): \(width)×\(height) @ \(fps) fps, \(fmt(seconds)) s, with a stereo tone")
    }
}

/// Progress as a redrawn bar on a terminal, as one line per report otherwise.
final class ProgressPrinter: Sendable {
    private let tty: Bool
    private let fd: Int32
    /// Whether a bar is on screen (it needs a newline before other output).
    private let drewBar = Mutex(false)

    init(tty: Bool, fd: Int32) { self.tty = tty; self.fd = fd }

    func line(_ s: String) { emit(s + "\n") }

    private func emit(_ s: String) { StandardError.write(s, to: fd) }

    func show(_ p: TranscodeProgress) {
        drewBar.withLock { drewBar in
            let eta = p.etaSeconds.map { "\(fmt($0)) s" } ?? "?"
            let total = p.totalSeconds > 0 ? "/\(fmt(p.totalSeconds))" : ""
            if tty {
                let width = 30
                let filled = Int((p.fraction ?? 0) * Double(width))
                let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
                let pct = p.fraction.map { "\(Int($0 * 100))%" } ?? "--"
                emit("\r[\(bar)] \(pct) \(fmt(p.mediaSeconds))\(total) s  \(p.videoFrames) frames  \(fmt(p.fps)) fps  \(fmt(p.speed))×  ETA \(eta)   ")
                drewBar = true
            } else {
                emit("progress: frames=\(p.videoFrames) time=\(fmt(p.mediaSeconds))\(total)s fps=\(fmt(p.fps)) speed=\(fmt(p.speed))x eta=\(eta)\n")
            }
        }
    }

    func finish() {
        drewBar.withLock { drewBar in
            if drewBar { emit("\n"); drewBar = false }
        }
    }
}

/// 128 + the signal's number when a stop signal cancelled the job, 1 for any other failure.
func cancelledExitStatus(_ cancelled: Bool, _ shutdown: ShutdownSignal) -> Int32 {
    guard cancelled, let signal = shutdown.received else { return 1 }
    return 128 + signal
}

func describe(_ q: QualityReport) -> String {
    "PSNR Y \(fmt(q.psnrY)) dB (all planes \(fmt(q.psnrAverage)) dB), SSIM Y \(NumberFormat.fixed(q.ssimY, places: 3)) (worst frame \(NumberFormat.fixed(q.ssimYWorstFrame, places: 3))) over \(q.frames) frames"
}

/// Two decimals, as every report of the media commands shows rates and durations.
func fmt(_ v: Double) -> String { NumberFormat.fixed(v, places: 2) }

func printError(_ s: String) {
    StandardError.write(s + "\n")
}
