// Media.Plugin: the interface an engine uses to run transcodes (TranscoderPlugin) and to
// watch the machine (ResourceMonitorPlugin), and the built-in libav implementations.
//
// Capabilities are discovered from the linked libav, never hard-coded: which of the
// encoders Spool knows how to drive are present, which demuxers of the allow-list and
// which muxers exist, which hardware device types can really be opened here.
internal import CLibAV
import JSON
import Synchronization
#if canImport(Glibc)
import Glibc
import SpoolModel
#endif

public struct TranscoderCapabilities: Sendable, Equatable {
    /// Encoders Spool can drive and this libav has (e.g. "libx264", "aac").
    public var encoders: [String]
    /// Encoders this libav has that Spool knows but does not drive yet.
    public var encodersPresentNotDriven: [String]
    /// Decoders present, by codec name (video and audio).
    public var videoDecoders: Int
    public var audioDecoders: Int
    /// Allowed input formats present in this libav.
    public var demuxers: [String]
    /// Output containers present and supported.
    public var muxers: [String]
    /// Hardware device types that could actually be opened (e.g. "vaapi"). A software
    /// Vulkan driver (lavapipe) counts as openable too; Spool does not use devices yet.
    public var hardwareDevices: [String]
    /// Hardware device types libav was built with (whether or not one opened).
    public var hardwareTypesBuilt: [String]
    public var presets: [String]
    public var libavVersion: String

    public func write<S: JSONSink>(to w: inout JSONWriter<S>) {
        func list(_ k: String, _ v: [String]) { w.key(k); w.beginArray(); for s in v { w.string(s) }; w.endArray() }
        w.beginObject()
        w.field("libav", libavVersion)
        list("encoders", encoders)
        list("encoders_present_not_driven", encodersPresentNotDriven)
        w.field("video_decoders", videoDecoders)
        w.field("audio_decoders", audioDecoders)
        list("demuxers", demuxers)
        list("muxers", muxers)
        list("hardware_devices", hardwareDevices)
        list("hardware_types_built", hardwareTypesBuilt)
        list("presets", presets)
        w.endObject()
    }

    public var json: String { var w = JSONWriter(); write(to: &w); return w.text }
}

/// A transcode job as an engine hands it to a plugin.
public struct TranscodeJob: Sendable {
    public enum Kind: Sendable {
        case single(TranscodeRequest)
        case ladder(LadderRequest)
    }
    public var id: String
    public var kind: Kind
    public init(id: String, kind: Kind) { self.id = id; self.kind = kind }
}

public enum TranscodeJobResult: Sendable {
    case single(TranscodeSummary)
    case ladder(LadderSummary)
}

public protocol TranscoderPlugin: Sendable {
    var name: String { get }
    func capabilities() -> TranscoderCapabilities
    /// Runs a job off the caller's executor; throws `.cancelled` after `cancel(jobID:)`.
    func transcode(_ job: TranscodeJob, progress: (@Sendable (TranscodeProgress) -> Void)?) async throws(MediaError) -> TranscodeJobResult
    /// Cancels a running job; unknown ids are ignored.
    func cancel(jobID: String)
}

public struct ResourceSample: Sendable, Equatable {
    public var cpus: Int
    public var loadAverage1m: Double
    public var memoryTotalBytes: Int64
    public var memoryAvailableBytes: Int64
    public var processResidentBytes: Int64
}

public protocol ResourceMonitorPlugin: Sendable {
    var name: String { get }
    func sample() -> ResourceSample
}

/// The built-in plugin: libav in-process.
public final class LibAVTranscoderPlugin: TranscoderPlugin {
    public let name = "libav"
    private let running = Mutex<[String: (flag: CancellationFlag, source: (any ByteSource)?)]>([:])

    public init() {}

    /// Probed once per process (opening hardware devices takes up to a second).
    public func capabilities() -> TranscoderCapabilities { LibAVCapabilities.cached }

    public func transcode(_ job: TranscodeJob, progress: (@Sendable (TranscodeProgress) -> Void)?) async throws(MediaError) -> TranscodeJobResult {
        let flag = CancellationFlag()
        let duplicate = running.withLock { jobs -> Bool in
            if jobs[job.id] != nil { return true }
            switch job.kind {
            case .single(let r): jobs[job.id] = (flag, r.inputStream)
            case .ladder(let r): jobs[job.id] = (flag, r.inputStream)
            }
            return false
        }
        if duplicate { throw .invalidSettings(reason: "job \(job.id) is already running") }
        defer { _ = running.withLock { $0.removeValue(forKey: job.id) } }
        switch job.kind {
        case .single(let r): return .single(try await Transcoder.transcode(r, cancel: flag, progress: progress))
        case .ladder(let r): return .ladder(try await Transcoder.transcodeLadder(r, cancel: flag, progress: progress))
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

/// Reads /proc: load, memory, this process's resident size.
public final class ProcResourceMonitor: ResourceMonitorPlugin {
    public let name = "proc"
    public init() {}

    public func sample() -> ResourceSample {
        let load = (readFile("/proc/loadavg")?.split(separator: " ").first).flatMap { Double($0) } ?? 0
        var total: Int64 = 0, available: Int64 = 0
        for line in (readFile("/proc/meminfo") ?? "").split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count >= 2, let kb = Int64(parts[1]) else { continue }
            if parts[0] == "MemTotal:" { total = kb * 1024 }
            if parts[0] == "MemAvailable:" { available = kb * 1024 }
        }
        let pages = (readFile("/proc/self/statm")?.split(separator: " ").dropFirst().first).flatMap { Int64($0) } ?? 0
        return ResourceSample(cpus: Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), loadAverage1m: load,
                              memoryTotalBytes: total, memoryAvailableBytes: available,
                              processResidentBytes: pages * Int64(sysconf(Int32(_SC_PAGESIZE))))
    }

    private func readFile(_ path: String) -> String? {
        let fd = unsafe open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = unsafe buf.withUnsafeMutableBytes { unsafe Glibc.read(fd, $0.baseAddress, 4096) }
            if n <= 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
