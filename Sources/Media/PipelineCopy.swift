// Media.Pipeline stream copy: when the input's video or audio already is what a single
// output asks for, its packets are remuxed (timestamps made relative to the start) and
// the codec is never opened.
internal import CLibAV
import SpoolModel

extension Pipeline {
    /// Sets up video stream copy when the single requested rendition is satisfied by the
    /// input stream as it is: same codec (and profile, if one is asked), a yuv420p picture
    /// with square pixels inside the box (nothing to scale), within the frame-rate cap and
    /// any bitrate asked, no quality report, a container that carries it. MP4-family
    /// outputs need the codec headers as extradata (MPEG-TS input has none): re-encode then.
    func setUpVideoCopy(index v: Int, rate: AVRational) throws(MediaError) -> Bool {
        guard plan.renditions.count == 1, !plan.skipUpscaled, !plan.measureQuality else { return false }
        let r = plan.renditions[0]
        let s = r.video
        let st = unsafe input.stream(v)
        let par = unsafe st.pointee.codecpar.pointee
        guard s.copyWhenMatching, !s.fixedGOP, let wanted = VideoCodec(rawValue: s.codec), unsafe par.codec_id == wanted.codecID,
              unsafe par.format == AV_PIX_FMT_YUV420P.rawValue,
              unsafe par.width > 0, unsafe par.height > 0, unsafe par.width % 2 == 0, unsafe par.height % 2 == 0,
              s.maxWidth.map({ unsafe par.width <= $0 }) ?? true, s.maxHeight.map({ unsafe par.height <= $0 }) ?? true else { return false }
        let sar = unsafe par.sample_aspect_ratio
        if sar.num > 0 && sar.den > 0 && sar.num != sar.den { return false }   // encoding would make square pixels
        if let m = s.maxFrameRate, rate.double > Double(m) + 0.001 { return false }
        if let p = s.profile, unsafe !wanted.profileIDs(p).contains(par.profile) { return false }
        var capKbps = s.maxBitrateKbps
        if case .bitrate(let kbps) = s.rateControl { capKbps = min(kbps, capKbps ?? .max) }
        if let cap = capKbps, unsafe !(par.bit_rate > 0 && par.bit_rate <= Int64(cap) * 1250) { return false }
        let t = try target(r.target)
        guard unsafe (try? t.muxer.checkCarries(par.codec_id, name: s.codec)) != nil else { return false }
        if unsafe par.extradata_size == 0 && t.muxer.formatName != "mpegts" { return false }
        guard t.videoStream == nil else { throw .invalidSettings(reason: "two renditions write to the same output") }
        let index = unsafe try t.muxer.addStream(copying: st.pointee.codecpar, timeBase: st.pointee.time_base)
        let out = unsafe t.muxer.ctx.pointee.streams[index]!
        unsafe out.pointee.avg_frame_rate = rate
        if unsafe par.codec_id == AV_CODEC_ID_HEVC && (t.muxer.formatName == "mp4" || t.muxer.formatName == "mov"),
           let ex = unsafe par.extradata, unsafe ex[0] == 1 {
            // Parameter sets in an hvcC record: 'hvc1', as the encode path writes.
            unsafe out.pointee.codecpar.pointee.codec_tag = Muxer.hvc1Tag
        }
        t.videoStream = index
        videoIn = v
        videoTimeBase = av_inv_q(rate)
        videoCopy = unsafe VideoCopy(name: r.name, target: t, targetIndex: r.target, width: par.width, height: par.height,
                              frameRate: rate.double, codecs: t.muxer.codecString(stream: index, frameRate: rate.double))
        return true
    }

    /// Makes a copied packet's timestamps relative to the start (checkTimestamps has
    /// bounded them, so this cannot overflow) and returns where it ends, in seconds.
    func rebaseCopied(_ packet: Packet, stream: Int) -> Double? {
        let tb = unsafe input.stream(stream).pointee.time_base
        let shift = av_rescale_q(origin, clibav_time_base_q(), tb)
        let p = unsafe packet.ptr
        if unsafe p.pointee.dts != AVCode.noPTS { unsafe p.pointee.dts -= shift }
        unsafe p.pointee.pos = -1
        guard unsafe p.pointee.pts != AVCode.noPTS else { return nil }
        unsafe p.pointee.pts -= shift
        return unsafe Double(p.pointee.pts + p.pointee.duration) * tb.double
    }

    /// Writes a copied video packet: timestamps made relative to the start, keyframe
    /// flags kept; the muxer rescales from the input stream's time base.
    func copyVideo(_ packet: Packet, into copy: VideoCopy) throws(MediaError) {
        if let end = rebaseCopied(packet, stream: videoIn!) { copiedVideoEnd = max(copiedVideoEnd, end) }
        try copy.target.write(packet, stream: copy.target.videoStream!)
        copy.frames += 1
        sourceFrames += 1
        report(force: false)
    }

    /// Sets up stream copy when the input's audio already is what the settings ask for.
    func setUpAudioCopy(index a: Int, settings: AudioSettings) throws(MediaError) -> Bool {
        let st = unsafe input.stream(a)
        let par = unsafe st.pointee.codecpar.pointee
        guard settings.copyIfCompatible, let wanted = AudioCodec(rawValue: settings.codec), unsafe par.codec_id == wanted.codecID,
              unsafe par.ch_layout.nb_channels >= 1, unsafe par.ch_layout.nb_channels <= settings.maxChannels,
              unsafe par.sample_rate > 0, unsafe par.bit_rate > 0, unsafe par.bit_rate <= Int64(settings.bitrateKbps) * 1250,
              unsafe wanted != .aac || par.profile == FF_PROFILE_AAC_LOW else { return false }   // playlists say AAC-LC
        for t in targets.values {
            guard unsafe (try? t.muxer.checkCarries(par.codec_id, name: settings.codec)) != nil else { return false }
            // ADTS AAC (from MPEG-TS) has no AudioSpecificConfig; MP4-family outputs that
            // write their header first (fragmented, HLS) need one: re-encode instead.
            if unsafe par.extradata_size == 0 && t.muxer.formatName != "mpegts" { return false }
        }
        for t in targets.values {
            t.audioStream = unsafe try t.muxer.addStream(copying: st.pointee.codecpar, timeBase: st.pointee.time_base)
        }
        audioIn = a
        audioCopy = true
        return true
    }

    /// Writes a copied audio packet to every output, timestamps made relative to the start.
    func copyAudio(_ packet: Packet) throws(MediaError) {
        if let end = rebaseCopied(packet, stream: audioIn!) { copiedAudioEnd = max(copiedAudioEnd, end) }
        audioFramesOut += 1
        let outs = targets.keys.sorted().compactMap { targets[$0] }.filter { $0.audioStream != nil }
        for (i, t) in outs.enumerated() {
            if i == outs.count - 1 {
                try t.write(packet, stream: t.audioStream!)
            } else {
                sharedPacket.unref()
                unsafe try check(av_packet_ref(sharedPacket.ptr, packet.ptr), "sharing an audio packet")
                try t.write(sharedPacket, stream: t.audioStream!)
            }
        }
    }
}
