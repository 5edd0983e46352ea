// Media.CodecStrings: RFC 6381 codec strings (HLS CODECS) for what was actually written:
// read from the parameter sets in the stream's extradata first (the SPS, hvcC, av1C or
// the AV1 sequence header), then from the codec parameters' profile and level, and only
// then a documented default.
//
//   H.264  avc1.PPCCLL               profile_idc, constraint flags, level_idc (hex)
//   HEVC   hvc1|hev1.S P.C.T L.BB…   profile space+idc, compatibility flags bit-reversed
//                                    (hex), tier L/H + level_idc, constraint bytes (ISO/IEC
//                                    14496-15 Annex E), e.g. hvc1.1.6.L93.B0
//   VP9    vp09.PP.LL.DD             profile, level (from picture size and rate), bit depth
//   AV1    av01.P.LLT.DD             profile, seq_level_idx + tier M/H, bit depth
//   audio  mp4a.40.2 (AAC-LC; .5 HE, .29 HE v2), opus, ac-3, ec-3, mp4a.40.34 (MP3), fLaC
internal import CLibAV

enum CodecStrings {
    /// The codec string of a video stream as muxed (`par` is the output stream's, so its
    /// codec tag says hvc1 or hev1), at `frameRate` frames per second.
    static func video(_ par: AVCodecParameters, frameRate: Double) -> String {
        let extradata = unsafe par.extradata.map { unsafe Array(UnsafeBufferPointer(start: $0, count: Int(max(0, par.extradata_size)))) } ?? []
        let depth = unsafe bitDepth(par.format)
        switch unsafe par.codec_id {
        case AV_CODEC_ID_H264:
            return unsafe "avc1." + (h264ProfileBytes(extradata) ?? h264ProfileBytes(profile: par.profile, level: par.level))
        case AV_CODEC_ID_HEVC:
            let entry = unsafe par.codec_tag == Muxer.hvc1Tag ? "hvc1" : "hev1"
            if let ptl = hevcProfileTierLevel(extradata) { return entry + "." + hevc(ptl) }
            let main10 = unsafe par.profile == FF_PROFILE_HEVC_MAIN_10
            return unsafe entry + (main10 ? ".2.4" : ".1.6") + ".L\(par.level > 0 ? par.level : 93).B0"
        case AV_CODEC_ID_VP9:
            let profile = unsafe par.profile >= 0 ? par.profile : 0
            let level = unsafe vp9Level(width: par.width, height: par.height, frameRate: frameRate)
            return "vp09." + twoDigits(profile) + "." + twoDigits(level) + "." + twoDigits(depth)
        case AV_CODEC_ID_AV1:
            if let s = av1(extradata, depth: depth) { return s }
            let level = unsafe par.level >= 0 ? par.level : av1Level(width: par.width, height: par.height, frameRate: frameRate)
            return unsafe "av01.\(max(0, par.profile)).\(twoDigits(level))M.\(twoDigits(depth))"
        default:
            return unsafe cString(avcodec_get_name(par.codec_id)) ?? "unknown"
        }
    }

    /// The codec string of an audio stream (encoded or copied).
    static func audio(_ par: AVCodecParameters) -> String {
        switch unsafe par.codec_id {
        case AV_CODEC_ID_AAC:
            switch unsafe par.profile {
            case FF_PROFILE_AAC_MAIN: return "mp4a.40.1"
            case FF_PROFILE_AAC_HE: return "mp4a.40.5"
            case FF_PROFILE_AAC_HE_V2: return "mp4a.40.29"
            default: return "mp4a.40.2"   // LC: what the native encoder writes
            }
        case AV_CODEC_ID_OPUS: return "opus"
        case AV_CODEC_ID_AC3: return "ac-3"
        case AV_CODEC_ID_EAC3: return "ec-3"
        case AV_CODEC_ID_MP3: return "mp4a.40.34"
        case AV_CODEC_ID_FLAC: return "fLaC"
        default: return unsafe cString(avcodec_get_name(par.codec_id)) ?? "unknown"
        }
    }

    // MARK: H.264

    /// profile_idc, constraint flags and level_idc from an avcC record or the first SPS
    /// of Annex B extradata, as six hex digits.
    static func h264ProfileBytes(_ e: [UInt8]) -> String? {
        if e.count >= 4 && e[0] == 1 { return hex(e[1]) + hex(e[2]) + hex(e[3]) }
        guard let sps = annexBUnit(e, where: { $0[0] & 0x1F == 7 }), sps.count >= 4 else { return nil }
        return hex(sps[1]) + hex(sps[2]) + hex(sps[3])
    }

    /// From libav's profile (with its constraint bits) and level; High 3.1 when unknown.
    static func h264ProfileBytes(profile: Int32, level: Int32) -> String {
        let idc = profile >= 0 ? UInt8(truncatingIfNeeded: profile & 0xFF) : 100
        let constraints: UInt8 = (profile >= 0 && profile & 0x200 != 0) ? 0x40 : 0   // FF_PROFILE_H264_CONSTRAINED
        return hex(idc) + hex(constraints) + hex(level > 0 ? UInt8(truncatingIfNeeded: level) : 31)
    }

    // MARK: HEVC

    /// The 12 bytes of general profile_tier_level, from an hvcC record or the SPS of
    /// Annex B extradata.
    static func hevcProfileTierLevel(_ e: [UInt8]) -> [UInt8]? {
        if e.count >= 13 && e[0] == 1 { return Array(e[1...12]) }
        guard let sps = annexBUnit(e, where: { $0.count > 1 && ($0[0] >> 1) & 0x3F == 33 }), sps.count >= 15 else { return nil }
        return Array(sps[3..<15])   // after the 2-byte NAL header and the VPS id / sub-layers byte
    }

    static func hevc(_ ptl: [UInt8]) -> String {
        let space = ["", "A", "B", "C"][Int(ptl[0] >> 6)]
        let tier = ptl[0] & 0x20 != 0 ? "H" : "L"
        var compat: UInt32 = 0
        for b in ptl[1...4] { compat = compat << 8 | UInt32(b) }
        var constraints = ptl[5...10].map { String($0, radix: 16, uppercase: true) }
        while constraints.last == "0" { constraints.removeLast() }
        return ([space + String(ptl[0] & 0x1F), String(compat.bitReversed, radix: 16, uppercase: true), tier + String(ptl[11])]
                + constraints).joined(separator: ".")
    }

    // MARK: VP9 and AV1

    /// The lowest VP9 level (×10) whose picture size and luma sample rate allow these.
    static func vp9Level(width: Int32, height: Int32, frameRate: Double) -> Int32 {
        let size = Double(width) * Double(height), rate = size * max(frameRate, 1)
        let levels: [(Int32, Double, Double)] = [
            (10, 36864, 829440), (11, 73728, 2764800), (20, 122880, 4608000), (21, 245760, 9216000),
            (30, 552960, 20736000), (31, 983040, 36864000), (40, 2228224, 83558400), (41, 2228224, 160432128),
            (50, 8912896, 311951360), (51, 8912896, 588251136), (52, 8912896, 1176502272),
            (60, 35651584, 1176502272), (61, 35651584, 2353004544), (62, 35651584, 4706009088)]
        return levels.first { size <= $0.1 && rate <= $0.2 }?.0 ?? 62
    }

    /// The lowest AV1 seq_level_idx whose picture size and display rate allow these.
    static func av1Level(width: Int32, height: Int32, frameRate: Double) -> Int32 {
        let size = Double(width) * Double(height), rate = size * max(frameRate, 1)
        let levels: [(Int32, Double, Double)] = [
            (0, 147456, 4423680), (1, 278784, 8363520), (4, 665856, 19975680), (5, 1065024, 31950720),
            (8, 2359296, 70778880), (9, 2359296, 141557760), (12, 8912896, 267386880), (13, 8912896, 534773760),
            (14, 8912896, 1069547520), (16, 35651584, 1069547520), (17, 35651584, 2139095040), (18, 35651584, 4278190080)]
        return levels.first { size <= $0.1 && rate <= $0.2 }?.0 ?? 31
    }

    /// From an av1C record, or the sequence header OBU of raw extradata.
    static func av1(_ e: [UInt8], depth: Int32) -> String? {
        if e.count >= 4 && e[0] == 0x81 {   // av1C: marker + version 1
            let bits: Int32 = e[2] & 0x40 == 0 ? 8 : (e[2] & 0x20 != 0 ? 12 : 10)
            return "av01.\(e[1] >> 5).\(twoDigits(Int32(e[1] & 0x1F)))\(e[2] & 0x80 != 0 ? "H" : "M").\(twoDigits(bits))"
        }
        var i = 0
        while i < e.count {
            let header = e[i]
            let type = (header >> 3) & 0x0F
            i += header & 0x04 != 0 ? 2 : 1
            var size = e.count - i
            if header & 0x02 != 0 {
                var reader = BitReader(e, byteOffset: i)
                guard let n = reader.leb128() else { return nil }
                i = reader.byteOffset
                size = n
            }
            guard size >= 0, i + size <= e.count else { return nil }
            if type == 1 {   // OBU_SEQUENCE_HEADER
                var r = BitReader(e, byteOffset: i)
                guard let seq = r.av1SequenceLevel() else { return nil }
                return "av01.\(seq.profile).\(twoDigits(seq.level))\(seq.tier ? "H" : "M").\(twoDigits(depth))"
            }
            i += size
        }
        return nil
    }

    // MARK: helpers

    /// The first Annex B NAL unit matching `matches` (its header included), with emulation
    /// prevention bytes removed.
    static func annexBUnit(_ e: [UInt8], where matches: ([UInt8]) -> Bool) -> [UInt8]? {
        var starts: [Int] = []
        var i = 0
        while i + 3 <= e.count {
            if e[i] == 0 && e[i + 1] == 0 && e[i + 2] == 1 { starts.append(i + 3); i += 3 } else { i += 1 }
        }
        for (k, s) in starts.enumerated() where s < e.count {
            let end = k + 1 < starts.count ? starts[k + 1] - 3 : e.count
            var unit: [UInt8] = []
            var zeros = 0
            for b in e[s..<max(s, end)] {
                if zeros >= 2 && b == 3 { zeros = 0; continue }
                zeros = b == 0 ? zeros + 1 : 0
                unit.append(b)
            }
            while unit.last == 0 { unit.removeLast() }   // a 4-byte start code's leading zero
            if !unit.isEmpty && matches(unit) { return unit }
        }
        return nil
    }

    static func bitDepth(_ format: Int32) -> Int32 {
        guard format >= 0, let desc = unsafe av_pix_fmt_desc_get(AVPixelFormat(rawValue: format)) else { return 8 }
        return unsafe desc.pointee.comp.0.depth
    }

    static func hex(_ b: UInt8) -> String { (b < 16 ? "0" : "") + String(b, radix: 16) }
    static func twoDigits(_ v: Int32) -> String { (v >= 0 && v < 10 ? "0" : "") + String(v) }
}

extension UInt32 {
    var bitReversed: UInt32 {
        var v = self, r: UInt32 = 0
        for _ in 0..<32 { r = r << 1 | (v & 1); v >>= 1 }
        return r
    }
}

/// Reads bits most significant first (AV1 headers).
struct BitReader {
    let bytes: [UInt8]
    private var bit: Int

    init(_ bytes: [UInt8], byteOffset: Int) { self.bytes = bytes; bit = byteOffset * 8 }

    var byteOffset: Int { (bit + 7) / 8 }

    mutating func read(_ n: Int) -> UInt64? {
        guard n <= 64, bit + n <= bytes.count * 8 else { return nil }
        var v: UInt64 = 0
        for _ in 0..<n {
            v = v << 1 | UInt64((bytes[bit >> 3] >> (7 - UInt8(bit & 7))) & 1)
            bit += 1
        }
        return v
    }

    mutating func flag() -> Bool? { read(1).map { $0 == 1 } }

    /// AV1's leb128 (at most 8 bytes), on a byte boundary.
    mutating func leb128() -> Int? {
        var value = 0
        for i in 0..<8 {
            guard let b = read(8) else { return nil }
            value |= Int(b & 0x7F) << (i * 7)
            if b & 0x80 == 0 { return value }
        }
        return nil
    }

    /// seq_profile, and seq_level_idx and seq_tier of the first operating point, from a
    /// sequence header OBU's payload (AV1 spec 5.5.1).
    mutating func av1SequenceLevel() -> (profile: UInt64, level: Int32, tier: Bool)? {
        guard let profile = read(3), read(1) != nil, let reduced = flag() else { return nil }
        if reduced { return read(5).map { (profile, Int32($0), false) } }
        guard let timing = flag() else { return nil }
        if timing {
            guard read(64) != nil, let equal = flag() else { return nil }
            if equal {   // uvlc num_ticks_per_picture_minus_1
                var zeros = 0
                while let b = flag(), !b { zeros += 1; guard zeros < 32 else { return nil } }
                guard read(zeros) != nil else { return nil }
            }
            // decoder_model_info: buffer delay length, decoding tick, two more lengths.
            guard let model = flag() else { return nil }
            if model { guard read(47) != nil else { return nil } }
        }
        // initial_display_delay_present, operating_points_cnt_minus_1, then the first
        // operating point's idc and level (and tier above level 4.0).
        guard read(1) != nil, read(5) != nil, read(12) != nil, let level = read(5) else { return nil }
        let tier = level > 7 ? flag() ?? false : false
        return (profile, Int32(level), tier)
    }
}
