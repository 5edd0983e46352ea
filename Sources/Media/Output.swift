// Media.Muxer: an output file. The container is chosen from the extension and must be
// one Spool writes (MP4 with faststart, MPEG-TS, Matroska/WebM). The file is opened with
// `protocol_whitelist=file`; a name is always given as "file:PATH" so libav never treats
// part of it as a protocol. Timestamps are rescaled from the encoder's time base to the
// stream's (muxers pick their own time base in avformat_write_header).
internal import CLibAV
import TranscodeAPI

@safe final class Muxer {
    let ctx: UnsafeMutablePointer<AVFormatContext>
    let path: String
    /// The name messages use (the user's path when `path` is a staged temporary).
    let label: String
    let formatName: String
    private var encoderTimeBases: [AVRational] = []
    private var headerWritten = false
    private var finished = false

    static let allowedMuxers = ["mp4", "mpegts", "matroska", "webm", "mov", "hls"]

    /// The custom AVIOContext of a streamed output (nil for files).
    let io: CustomIO?

    /// A streamed output (a pipe, a socket, memory) in `formatName` ("mpegts", "mp4" or
    /// "matroska"). MP4 is written fragmented (empty moov, a fragment per keyframe), since
    /// a stream cannot be rewritten for faststart.
    convenience init(sink: any ByteSink, formatName: String, name: String = "stream") throws(MediaError) {
        try self.init(path: name, formatName: formatName, io: try CustomIO(sink: sink, interrupt: nil))
    }

    convenience init(path: String, formatName: String? = nil, label: String? = nil) throws(MediaError) {
        try self.init(path: path, formatName: formatName, io: nil, label: label)
    }

    /// Extra muxer options for avformat_write_header (e.g. HLS segmenting).
    var headerOptions: [(String, String)] = []

    private init(path: String, formatName: String?, io: CustomIO?, label: String? = nil) throws(MediaError) {
        self.path = path
        self.label = label ?? path
        self.io = io
        var p: UnsafeMutablePointer<AVFormatContext>? = nil
        let rc = unsafe avformat_alloc_output_context2(&p, nil, formatName, path)
        guard rc >= 0, let c = unsafe p else {
            throw .outputUnwritable(path: self.label, reason: "no container for this file name (use .mp4, .ts, .mkv or .webm)")
        }
        unsafe ctx = c
        LibAVObjects.retain()
        self.formatName = unsafe String(cString: c.pointee.oformat.pointee.name)
        guard Muxer.allowedMuxers.contains(self.formatName) else {
            throw .outputUnwritable(path: self.label, reason: "container \(self.formatName) is not supported; use .mp4, .ts, .mkv or .webm")
        }
        if let io {
            unsafe c.pointee.pb = io.ctx
            unsafe c.pointee.flags |= AVFMT_FLAG_CUSTOM_IO
        }
    }

    var isStreamed: Bool { io != nil }
    var bytesWritten: Int64 { io?.bytesWritten ?? 0 }

    deinit {
        // FFmpeg 5.1's HLS muxer frees its fMP4 init buffers and inner contexts only in
        // av_write_trailer (its deinit leaks them, found with LeakSanitizer): an aborted
        // HLS output is closed with the trailer too; the caller deletes what it wrote.
        if headerWritten && !finished && formatName == "hls" {
            _ = unsafe av_write_trailer(ctx)
        }
        if unsafe io == nil && ctx.pointee.pb != nil && (ctx.pointee.oformat.pointee.flags & AVFMT_NOFILE) == 0 {
            unsafe avio_closep(&ctx.pointee.pb)
        }
        unsafe ctx.pointee.pb = nil   // a custom pb is freed by its owner, `io`
        unsafe avformat_free_context(ctx)
        LibAVObjects.release()
    }

    /// Whether encoders must put codec headers in extradata for this container.
    var needsGlobalHeader: Bool { unsafe (ctx.pointee.oformat.pointee.flags & AVFMT_GLOBALHEADER) != 0 }

    /// Refuses, before any work, a codec this container cannot carry (asked of libav).
    func checkCarries(_ id: AVCodecID, name: String) throws(MediaError) {
        let inner = formatName == "hls" ? "mp4" : formatName
        guard let fmt = unsafe av_guess_format(inner, nil, nil) else { return }
        let answer = unsafe avformat_query_codec(fmt, id, FF_COMPLIANCE_NORMAL)
        // Muxers without a codec table (MPEG-TS) answer "don't know": Spool's own list then.
        let carries = answer >= 0 ? answer == 1
            : inner != "mpegts" || [AV_CODEC_ID_H264, AV_CODEC_ID_HEVC, AV_CODEC_ID_AAC, AV_CODEC_ID_OPUS].contains(id)
        if !carries {
            throw .invalidSettings(reason: "the \(formatName) container cannot carry \(name)")
        }
    }

    static let hvc1Tag = UInt32(UInt8(ascii: "h")) | UInt32(UInt8(ascii: "v")) << 8
        | UInt32(UInt8(ascii: "c")) << 16 | UInt32(UInt8(ascii: "1")) << 24

    /// Adds a stream whose packets are copied from an input stream; returns its index.
    func addStream(copying par: UnsafePointer<AVCodecParameters>, timeBase: AVRational) throws(MediaError) -> Int {
        guard let st = unsafe avformat_new_stream(ctx, nil) else { throw outOfMemory("adding an output stream") }
        unsafe try check(avcodec_parameters_copy(st.pointee.codecpar, par), "describing a copied stream")
        unsafe st.pointee.codecpar.pointee.codec_tag = 0   // the input container's tag may mean nothing here
        unsafe st.pointee.time_base = timeBase
        encoderTimeBases.append(timeBase)
        return unsafe Int(st.pointee.index)
    }

    /// Adds a stream carrying `encoder`'s output; returns its index.
    func addStream(for encoder: Encoder) throws(MediaError) -> Int {
        guard let st = unsafe avformat_new_stream(ctx, nil) else { throw outOfMemory("adding an output stream") }
        unsafe try check(avcodec_parameters_from_context(st.pointee.codecpar, encoder.ctx), "describing the output stream")
        unsafe st.pointee.time_base = encoder.timeBase
        if unsafe encoder.ctx.pointee.codec_id == AV_CODEC_ID_HEVC && (formatName == "mp4" || formatName == "mov" || formatName == "hls") {
            // 'hvc1' (parameter sets in the sample entry) is what Apple players and the HLS
            // authoring spec require (the HLS muxer passes the tag to its fMP4 segments).
            unsafe st.pointee.codecpar.pointee.codec_tag = Muxer.hvc1Tag
        }
        if unsafe encoder.ctx.pointee.codec_type == AVMEDIA_TYPE_VIDEO {
            unsafe st.pointee.avg_frame_rate = encoder.ctx.pointee.framerate
        }
        encoderTimeBases.append(encoder.timeBase)
        return unsafe Int(st.pointee.index)
    }

    /// The RFC 6381 codec string of output stream `index` (CodecStrings).
    func codecString(stream index: Int, frameRate: Double = 0) -> String {
        let par = unsafe ctx.pointee.streams[index]!.pointee.codecpar.pointee
        return unsafe par.codec_type == AVMEDIA_TYPE_AUDIO ? CodecStrings.audio(par) : CodecStrings.video(par, frameRate: frameRate)
    }

    /// Records the time base of a stream added directly with avformat_new_stream.
    func registerRawStream(timeBase: AVRational) { encoderTimeBases.append(timeBase) }

    /// Opens the file and writes the header. MP4 outputs get `+faststart` (moov first).
    func writeHeader() throws(MediaError) {
        if unsafe io == nil && (ctx.pointee.oformat.pointee.flags & AVFMT_NOFILE) == 0 {
            let opts = Options([("protocol_whitelist", "file")])
            let rc = unsafe avio_open2(&ctx.pointee.pb, "file:" + path, AVIO_FLAG_WRITE, nil, &opts.ptr)
            if rc < 0 { throw .outputUnwritable(path: label, reason: libavErrorString(rc)) }
        }
        let opts = Options(headerOptions)
        if formatName == "mp4" || formatName == "mov" {
            opts.set("movflags", io == nil ? "+faststart" : "+frag_keyframe+empty_moov+default_base_moof")
        }
        let rc = unsafe avformat_write_header(ctx, &opts.ptr)
        if rc < 0, let f = io?.failure { throw f }
        try check(rc, "writing the \(formatName) header to \(label)")
        headerWritten = true
    }

    /// Writes an encoded packet produced by the encoder of stream `index`.
    func write(_ packet: Packet, stream index: Int) throws(MediaError) {
        unsafe packet.ptr.pointee.stream_index = Int32(index)
        unsafe av_packet_rescale_ts(packet.ptr, encoderTimeBases[index], ctx.pointee.streams[index]!.pointee.time_base)
        let rc = unsafe av_interleaved_write_frame(ctx, packet.ptr)
        if rc < 0, let f = io?.failure { throw f }
        try check(rc, "writing to \(label)")
    }

    /// Writes the trailer (and, for faststart MP4, moves the index to the front).
    func finish() throws(MediaError) {
        guard headerWritten, !finished else { return }
        finished = true
        let rc = unsafe av_write_trailer(ctx)
        if rc < 0, let f = io?.failure { throw f }
        try check(rc, "finishing \(label)")
        if let io {
            unsafe avio_flush(io.ctx)
            if let f = io.failure { throw f }
        } else if unsafe (ctx.pointee.oformat.pointee.flags & AVFMT_NOFILE) == 0 {
            unsafe try check(avio_closep(&ctx.pointee.pb), "closing \(label)")
        }
    }
}
