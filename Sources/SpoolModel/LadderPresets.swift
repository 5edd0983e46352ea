// SpoolModel.LadderPresets: decode-once ladders as plain validated values: the rungs
// (each a name and video settings), the audio shared by all, the segment length.
// Media writes them as HLS with fMP4 segments and a master playlist whose CODECS name
// what each rung really is.

public struct LadderRung: Sendable, Equatable {
    /// Directory name of the rendition ("720p"): letters, digits, '-' and '_'.
    public var name: String
    public var video: VideoSettings
    public init(name: String, video: VideoSettings) { self.name = name; self.video = video }
}

public struct LadderPreset: Sendable, Equatable {
    public var name: String
    public var summary: String
    public var rungs: [LadderRung]
    public var audio: AudioSettings
    public var segmentSeconds: Double

    public init(name: String, summary: String, rungs: [LadderRung], audio: AudioSettings = AudioSettings(), segmentSeconds: Double = 4) {
        self.name = name; self.summary = summary; self.rungs = rungs; self.audio = audio; self.segmentSeconds = segmentSeconds
    }

    /// A rung fitting `width`×`height`, x264 veryfast at CRF 23 capped at `maxKbps`.
    public static func rung(_ name: String, width: Int32, height: Int32, maxKbps: Int, profile: String = "high") -> LadderRung {
        var v = VideoSettings()
        v.maxWidth = width; v.maxHeight = height; v.rateControl = .crf(23); v.speed = "veryfast"
        v.profile = profile; v.maxBitrateKbps = maxKbps; v.fixedGOP = true
        v.copyWhenMatching = false
        return LadderRung(name: name, video: v)
    }

    /// hls-ladder-h264: 1080p (≤ 6 Mb/s), 720p (≤ 3 Mb/s), 360p (≤ 800 kb/s, Main), 4 s
    /// fMP4 segments, AAC 128 kb/s shared by every rendition.
    public static let hlsLadderH264 = LadderPreset(
        name: "hls-ladder-h264",
        summary: "HLS (fMP4) ladder: H.264 1080p/720p/360p, CRF 23 capped at 6000/3000/800 kb/s, 4 s segments; AAC 128 kb/s",
        rungs: [rung("1080p", width: 1920, height: 1080, maxKbps: 6000),
                rung("720p", width: 1280, height: 720, maxKbps: 3000),
                rung("360p", width: 640, height: 360, maxKbps: 800, profile: "main")])

    public static let all: [LadderPreset] = [hlsLadderH264]

    public static func named(_ name: String) throws(ModelError) -> LadderPreset {
        guard let p = all.first(where: { $0.name == name }) else {
            throw .invalidSetting("preset", "unknown ladder preset \"\(name)\"; ladders: \(all.map(\.name).joined(separator: ", "))")
        }
        return p
    }

    public func validate() throws(ModelError) {
        guard !rungs.isEmpty, rungs.count <= 8 else { throw .invalidSetting("rungs", "a ladder needs 1...8 rungs") }
        guard segmentSeconds >= 1, segmentSeconds <= 10 else {
            throw .invalidSetting("segment_seconds", "segment length \(segmentSeconds) s must be in 1...10")
        }
        var seen = Set<String>()
        for r in rungs {
            let ok = !r.name.isEmpty && r.name.count <= 32 && r.name.utf8.allSatisfy {
                ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x2D || $0 == 0x5F
            }
            guard ok else { throw .invalidSetting("rungs", "rung name \"\(r.name)\" must be 1-32 letters, digits, '-' or '_'") }
            guard seen.insert(r.name).inserted else { throw .invalidSetting("rungs", "rung name \"\(r.name)\" is used twice") }
            // Any codec Spool drives: fMP4 segments carry H.264, HEVC, VP9, AV1, AAC and Opus.
            try TranscodePreset(name: r.name, summary: "", video: r.video, audio: audio).validate()
        }
    }
}

