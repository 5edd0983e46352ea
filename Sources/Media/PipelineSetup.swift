// Media.Pipeline setup: the outputs opened on first use, and the video and audio paths
// chosen from the input's streams: stream copy when the input already is what was asked,
// otherwise a decoder, one encoder per rendition (skipping upscales in ladders) and one
// audio encoder shared by every target.
internal import CLibAV
import SpoolModel
import TranscodeAPI

extension Pipeline {
    func target(_ index: Int) throws(MediaError) -> Target {
        if let t = targets[index] { return t }
        let muxer: Muxer
        switch plan.targets[index] {
        case .file(let path, let label):
            muxer = try Muxer(path: path, label: label)
        case .stream(let sink, let format, let name):
            muxer = try Muxer(sink: sink, formatName: format, name: name)
        case .hls(let playlist, let pattern, let initName, let seconds):
            muxer = try Muxer(path: playlist, formatName: "hls")
            muxer.headerOptions = [
                ("hls_time", String(seconds)), ("hls_playlist_type", "vod"), ("hls_segment_type", "fmp4"),
                ("hls_segment_filename", pattern), ("hls_fmp4_init_filename", initName),
                ("hls_flags", "independent_segments"), ("protocol_whitelist", "file"),
            ]
        }
        let t = Target(muxer: muxer)
        targets[index] = t
        return t
    }

    func setUpVideo() throws(MediaError) {
        guard !plan.renditions.isEmpty,
              let v = input.bestStream(AVMEDIA_TYPE_VIDEO),
              unsafe (input.stream(v).pointee.disposition & AV_DISPOSITION_ATTACHED_PIC) == 0 else { return }
        let st = unsafe input.stream(v)
        let par = unsafe st.pointee.codecpar.pointee
        unsafe try plan.limits.checkPicture(width: par.width, height: par.height)
        var rate = unsafe st.pointee.avg_frame_rate
        if !rate.isValid || rate.double > 240 { rate = unsafe st.pointee.r_frame_rate }
        if !rate.isValid || rate.double > 240 || rate.double < 1 { rate = AVRational(num: 25, den: 1) }
        videoTimeBase = av_inv_q(rate)
        let sar = unsafe par.sample_aspect_ratio
        if try setUpVideoCopy(index: v, rate: rate) { return }
        let dec = unsafe try Decoder(stream: st, threads: plan.threads > 0 ? plan.threads : Pipeline.automaticDecoderThreads())
        unsafe try plan.limits.checkDecodedFrameMemory(width: dec.ctx.pointee.width, height: dec.ctx.pointee.height,
                                                pixelFormat: dec.ctx.pointee.pix_fmt.rawValue, framesInFlight: dec.framesInFlight)

        var chosen = plan.renditions
        if plan.skipUpscaled {
            let fits = chosen.filter { r in
                (r.video.maxHeight.map { unsafe $0 <= par.height } ?? true) || (r.video.maxWidth.map { unsafe $0 <= par.width } ?? true)
            }
            let smallest = chosen.min { ($0.video.maxHeight ?? .max) < ($1.video.maxHeight ?? .max) }
            chosen = fits.isEmpty ? (smallest.map { [$0] } ?? []) : fits
        }
        for r in chosen {
            let preset = TranscodePreset(name: r.name, summary: "", video: r.video, audio: AudioSettings())
            let (w, h) = unsafe preset.outputSize(sourceWidth: par.width, sourceHeight: par.height, sampleAspect: (sar.num, sar.den))
            let t = try target(r.target)
            try t.muxer.checkCarries(VideoCodec(rawValue: r.video.codec)?.codecID ?? AV_CODEC_ID_NONE, name: r.video.codec)
            var outRate = rate
            if let m = r.video.maxFrameRate, rate.double > Double(m) + 0.001 { outRate = AVRational(num: Int32(m), den: 1) }
            let enc = try Encoders.video(width: w, height: h, frameRate: outRate, settings: r.video,
                                         globalHeader: t.muxer.needsGlobalHeader,
                                         threads: plan.threads > 0 ? plan.threads : Pipeline.automaticEncoderThreads(renditions: chosen.count))
            guard t.videoStream == nil else {
                throw .invalidSettings(reason: "two renditions write to the same output")
            }
            t.videoStream = try t.muxer.addStream(for: enc)
            let rendition = Rendition(name: r.name, encoder: enc, target: t, targetIndex: r.target, width: w, height: h)
            if plan.measureQuality { rendition.quality = try QualityMeter(encoder: enc) }
            renditions.append(rendition)
        }
        videoIn = v
        videoDecoder = dec
    }

    func setUpAudio() throws(MediaError) {
        guard let settings = plan.audio, let a = input.bestStream(AVMEDIA_TYPE_AUDIO) else { return }
        // Audio goes to every output that has video (or to every planned output if none has).
        if targets.isEmpty { for i in plan.targets.indices { _ = try target(i) } }
        let st = unsafe input.stream(a)
        let par = unsafe st.pointee.codecpar.pointee
        if try setUpAudioCopy(index: a, settings: settings) { return }
        let dec = unsafe try Decoder(stream: st, threads: plan.threads)
        let channels = unsafe min(max(1, par.ch_layout.nb_channels), settings.maxChannels)
        let global = targets.values.contains { $0.muxer.needsGlobalHeader }
        for t in targets.values {
            try t.muxer.checkCarries(AudioCodec(rawValue: settings.codec)?.codecID ?? AV_CODEC_ID_NONE, name: settings.codec)
        }
        let enc = unsafe try Encoders.audio(settings.codec, sampleRate: par.sample_rate > 0 ? par.sample_rate : 48000, channels: channels,
                                     bitrateKbps: settings.bitrateKbps, globalHeader: global)
        for t in targets.values { t.audioStream = try t.muxer.addStream(for: enc) }
        audioIn = a; audioDecoder = dec; audioEncoder = enc
        fifo = unsafe try AudioFIFO(format: enc.ctx.pointee.sample_fmt, channels: channels)
    }
}
