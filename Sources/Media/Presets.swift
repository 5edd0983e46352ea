// Media.Presets: what only Media can add to the model's settings (SpoolModel.Presets):
// whether the encoders they name are in the linked libav, and the output picture size
// for a given source.
internal import CLibAV
import SpoolModel

extension TranscodePreset {
    /// The model's validation, then the encoders' presence in this libav.
    func checkedForThisLibav() throws(MediaError) {
        do { try validate() } catch { throw .invalidSettings(reason: error.message) }
        let video = VideoCodec(rawValue: self.video.codec)!, audio = AudioCodec(rawValue: self.audio.codec)!
        guard unsafe avcodec_find_encoder_by_name(video.encoderName) != nil else { throw .encoderUnavailable(codec: video.encoderName) }
        guard unsafe avcodec_find_encoder_by_name(audio.encoderName) != nil else { throw .encoderUnavailable(codec: audio.encoderName) }
    }

    /// The output size for a source picture: fits the box, keeps the display aspect
    /// (sample aspect ratio applied), rounds to even numbers.
    func outputSize(sourceWidth w: Int32, sourceHeight h: Int32, sampleAspect: (Int32, Int32)) -> (Int32, Int32) {
        var dw = Double(w)
        let dh = Double(h)
        // The sample aspect ratio comes from the bitstream: anything outside 1:16...16:1 is
        // treated as square rather than trusted.
        if sampleAspect.0 > 0 && sampleAspect.1 > 0 {
            let sar = Double(sampleAspect.0) / Double(sampleAspect.1)
            if sar >= 1.0 / 16 && sar <= 16 { dw *= sar }
        }
        var scale = 1.0
        if let mw = video.maxWidth { scale = Double(mw) / dw }
        if let mh = video.maxHeight { scale = min(video.maxWidth == nil ? .infinity : scale, Double(mh) / dh) }
        if video.maxWidth == nil && video.maxHeight == nil { scale = 1 }
        func even(_ v: Double) -> Int32 {
            let c = v.isFinite ? min(max(v, 2), 16384) : 2   // never trap on a hostile size
            return max(2, Int32((c / 2).rounded()) * 2)
        }
        return (even(dw * scale), even(dh * scale))
    }
}

extension LadderPreset {
    /// The model's validation, then every rung's encoders' presence in this libav.
    func checkedForThisLibav() throws(MediaError) {
        do { try validate() } catch { throw .invalidSettings(reason: error.message) }
        for r in rungs { try TranscodePreset(name: r.name, summary: "", video: r.video, audio: audio).checkedForThisLibav() }
    }
}
