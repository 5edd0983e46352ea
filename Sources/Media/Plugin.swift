// Media.Plugin: the built-in TranscoderPlugin (TranscodeAPI's contract): libav in-process.
//
// Capabilities are discovered from the linked libav, never hard-coded: which of the
// encoders Spool knows how to drive are present, which demuxers of the allow-list and
// which muxers exist, which hardware device types can really be opened here.
internal import CLibAV
import SpoolModel
import Synchronization
import TranscodeAPI

/// The built-in plugin: libav in-process.
public final class LibAVTranscoderPlugin: TranscoderPlugin {
    public let name = "libav"
    private let running = Mutex<[String: (flag: CancellationFlag, source: (any ByteSource)?)]>([:])

    public init() {}

    /// Probed once per process (opening hardware devices takes up to a second).
    public func capabilities() -> TranscoderCapabilities { LibAVCapabilities.cached }

    public func transcode(_ job: TranscodeJob, progress: (@Sendable (TranscodeProgress) -> Void)?) async throws(TranscodeFailure) -> TranscodeJobResult {
        let flag = CancellationFlag()
        let duplicate = running.withLock { jobs -> Bool in
            if jobs[job.id] != nil { return true }
            jobs[job.id] = (flag, job.inputStream)
            return false
        }
        if duplicate { throw .invalidJob("job \(job.id) is already running") }
        defer { _ = running.withLock { $0.removeValue(forKey: job.id) } }
        do throws(MediaError) {
            switch job.kind {
            case .single(let r): return .single(try await Transcoder.transcode(r, cancel: flag, progress: progress))
            case .ladder(let r): return .ladder(try await Transcoder.transcodeLadder(r, cancel: flag, progress: progress))
            }
        } catch {
            throw TranscodeFailure(error)
        }
    }

    public func cancel(jobID: String) {
        guard let job = running.withLock({ $0[jobID] }) else { return }
        job.flag.cancel()
        job.source?.stopReading()
    }

    public var runningJobs: [String] { running.withLock { Array($0.keys).sorted() } }
}

enum LibAVCapabilities {
    /// Encoders Spool drives today.
    static let driven = VideoCodec.allCases.map(\.encoderName) + AudioCodec.allCases.map(\.encoderName)
    /// Encoders Spool knows of but does not drive (reported when present).
    static let known = ["libaom-av1", "libvpx", "h264_vaapi", "hevc_vaapi", "h264_nvenc", "hevc_nvenc"]

    static let cached = probe()

    static func probe() -> TranscoderCapabilities {
        LibAVLogging.ensureInstalled()
        let encoders = driven.filter { unsafe avcodec_find_encoder_by_name($0) != nil }
        let more = known.filter { unsafe avcodec_find_encoder_by_name($0) != nil }
        var video = 0, audio = 0
        var it: UnsafeMutableRawPointer? = nil
        while let c = unsafe av_codec_iterate(&it) {
            guard unsafe av_codec_is_decoder(c) != 0 else { continue }
            if unsafe c.pointee.type == AVMEDIA_TYPE_VIDEO { video += 1 } else if unsafe c.pointee.type == AVMEDIA_TYPE_AUDIO { audio += 1 }
        }
        let demuxers = MediaLimits().allowedDemuxers.filter { unsafe av_find_input_format($0) != nil }
        let muxers = Muxer.allowedMuxers.filter { unsafe av_guess_format($0, nil, nil) != nil }
        var built: [String] = []
        var opened: [String] = []
        var t = av_hwdevice_iterate_types(AV_HWDEVICE_TYPE_NONE)
        while t != AV_HWDEVICE_TYPE_NONE {
            let name = unsafe cString(av_hwdevice_get_type_name(t)) ?? "?"
            built.append(name)
            var ref: UnsafeMutablePointer<AVBufferRef>? = nil
            if LibAVLogging.whileExpectingFailures({ unsafe av_hwdevice_ctx_create(&ref, t, nil, nil, 0) }) >= 0 {
                opened.append(name)
                unsafe av_buffer_unref(&ref)
            }
            t = av_hwdevice_iterate_types(t)
        }
        return TranscoderCapabilities(
            encoders: encoders, encodersPresentNotDriven: more, videoDecoders: video, audioDecoders: audio,
            demuxers: demuxers, muxers: muxers, hardwareDevices: opened, hardwareTypesBuilt: built,
            presets: TranscodePreset.all.map(\.name) + LadderPreset.all.map(\.name),
            libavVersion: unsafe cString(av_version_info()) ?? "?")
    }
}

extension TranscodeFailure {
    /// A MediaError as the contract carries it: the same code and message.
    public init(_ error: MediaError) { self.init(code: error.code, message: error.description) }
}
