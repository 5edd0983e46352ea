// Media.Codec: decoders and encoders (AVCodecContext owners) with the send/receive loop
// reduced to "send, then drain": receive returns nil when libav wants more input or has
// finished, so callers never handle EAGAIN themselves.
internal import CLibAV

@safe final class Decoder {
    let ctx: UnsafeMutablePointer<AVCodecContext>
    let streamIndex: Int
    let codecName: String

    /// Opens a decoder for an input stream; `threads` 0 lets libav choose (frame + slice).
    init(stream: UnsafeMutablePointer<AVStream>, threads: Int32 = 0) throws(MediaError) {
        let par = unsafe stream.pointee.codecpar!
        let name = unsafe cString(avcodec_get_name(par.pointee.codec_id)) ?? "unknown"
        codecName = name
        streamIndex = unsafe Int(stream.pointee.index)
        skipsErrors = true
        guard let codec = unsafe avcodec_find_decoder(par.pointee.codec_id) else { throw .decoderUnavailable(codec: name) }
        guard let c = unsafe avcodec_alloc_context3(codec) else {
            throw outOfMemory("allocating a decoder")
        }
        unsafe ctx = c
        LibAVObjects.retain()
        unsafe try check(avcodec_parameters_to_context(c, par), "reading parameters of stream \(streamIndex) (\(name))")
        unsafe c.pointee.pkt_timebase = stream.pointee.time_base
        unsafe c.pointee.thread_count = threads
        unsafe c.pointee.thread_type = FF_THREAD_FRAME | FF_THREAD_SLICE
        unsafe try check(avcodec_open2(c, codec, nil), "opening the decoder for stream \(streamIndex) (\(name))")
    }

    /// Decoded frames this decoder may hold at once besides its references: one per
    /// frame-decoding thread (libav resolves 0 threads to a count when opening), plus the
    /// reorder delay, plus the frame handed out.
    var framesInFlight: Int {
        let threads = unsafe (ctx.pointee.active_thread_type & FF_THREAD_FRAME) != 0 ? max(1, Int(ctx.pointee.thread_count)) : 1
        return unsafe threads + max(0, Int(ctx.pointee.has_b_frames)) + 1
    }

    /// A decoder for what `encoder` produces (same codec, its extradata), single-threaded.
    init(matching encoder: Encoder) throws(MediaError) {
        let id = unsafe encoder.ctx.pointee.codec_id
        let name = unsafe cString(avcodec_get_name(id)) ?? "unknown"
        codecName = name
        streamIndex = -1
        skipsErrors = false
        guard let codec = unsafe avcodec_find_decoder(id) else { throw .decoderUnavailable(codec: name) }
        guard let c = unsafe avcodec_alloc_context3(codec) else { throw outOfMemory("allocating a decoder") }
        unsafe ctx = c
        LibAVObjects.retain()
        guard let par = unsafe avcodec_parameters_alloc() else { throw outOfMemory("allocating codec parameters") }
        var p: UnsafeMutablePointer<AVCodecParameters>? = unsafe par
        defer { unsafe avcodec_parameters_free(&p) }
        unsafe try check(avcodec_parameters_from_context(par, encoder.ctx), "reading the \(encoder.codecName) parameters")
        unsafe try check(avcodec_parameters_to_context(c, par), "configuring a \(name) decoder")
        unsafe c.pointee.pkt_timebase = encoder.timeBase
        unsafe c.pointee.thread_count = 1
        unsafe try check(avcodec_open2(c, codec, nil), "opening a \(name) decoder for the rendition")
    }

    deinit {
        var p: UnsafeMutablePointer<AVCodecContext>? = unsafe ctx
        unsafe avcodec_free_context(&p)
        LibAVObjects.release()
    }

    /// Whether undecodable packets are counted and skipped (input streams) rather than
    /// thrown (a decoder checking Spool's own output).
    private let skipsErrors: Bool
    /// Packets or frames the decoder refused so far, and the last refusal.
    private(set) var errors = 0
    private(set) var lastError: Int32 = 0

    /// Sends a packet (nil = end of stream). A packet the decoder cannot decode is skipped
    /// and counted, as ffmpeg does (decoders resynchronise on the next keyframe); the
    /// pipeline fails the job when the count passes the error budget.
    func send(_ packet: Packet?) throws(MediaError) {
        let rc = unsafe avcodec_send_packet(ctx, packet?.ptr)
        if rc >= 0 || rc == AVCode.eof { return }
        try refuse(rc)
    }

    /// The next decoded frame into `frame`, or false when the decoder needs more input
    /// (or refused what it had: counted like a refused packet).
    func receive(into frame: Frame) throws(MediaError) -> Bool {
        frame.unref()
        let rc = unsafe avcodec_receive_frame(ctx, frame.ptr)
        if rc == AVCode.eagain || rc == AVCode.eof { return false }
        if rc < 0 { try refuse(rc); return false }
        return true
    }

    /// Counts a decoding error, or throws it when it is not about the data (out of
    /// memory, interrupted) or this decoder does not skip errors.
    private func refuse(_ rc: Int32) throws(MediaError) {
        guard skipsErrors, rc != clibav_averror(ENOMEM), rc != AVCode.exit else {
            throw mediaError(rc, "decoding stream \(streamIndex) (\(codecName))")
        }
        errors += 1
        lastError = rc
    }
}

@safe final class Encoder {
    let ctx: UnsafeMutablePointer<AVCodecContext>
    let codecName: String

    /// Allocates an encoder context; `configure` sets it up before it is opened.
    init(encoderName: String, globalHeader: Bool, privateOptions: [(String, String)],
         configure: (UnsafeMutablePointer<AVCodecContext>) throws(MediaError) -> Void) throws(MediaError) {
        codecName = encoderName
        guard let codec = unsafe avcodec_find_encoder_by_name(encoderName) else { throw .encoderUnavailable(codec: encoderName) }
        guard let c = unsafe avcodec_alloc_context3(codec) else {
            throw outOfMemory("allocating an encoder")
        }
        unsafe ctx = c
        LibAVObjects.retain()
        unsafe try configure(c)
        if globalHeader { unsafe c.pointee.flags |= AV_CODEC_FLAG_GLOBAL_HEADER }
        let opts = Options(privateOptions)
        unsafe try check(avcodec_open2(c, codec, &opts.ptr), "opening the \(encoderName) encoder")
        let unused = opts.remainingKeys
        if !unused.isEmpty {
            throw .invalidSettings(reason: "\(encoderName) does not take option(s) \(unused.joined(separator: ", "))")
        }
    }

    deinit {
        var p: UnsafeMutablePointer<AVCodecContext>? = unsafe ctx
        unsafe avcodec_free_context(&p)
        LibAVObjects.release()
    }

    var timeBase: AVRational { unsafe ctx.pointee.time_base }
    var frameSize: Int32 { unsafe ctx.pointee.frame_size }

    /// Sends a frame (nil = flush).
    func send(_ frame: Frame?) throws(MediaError) {
        let rc = unsafe avcodec_send_frame(ctx, frame?.ptr)
        if rc == AVCode.eof { return }
        try check(rc, "encoding with \(codecName)")
    }

    /// The next encoded packet, or false when the encoder needs more input (or is done).
    func receive(into packet: Packet) throws(MediaError) -> Bool {
        packet.unref()
        let rc = unsafe avcodec_receive_packet(ctx, packet.ptr)
        if rc == AVCode.eagain || rc == AVCode.eof { return false }
        try check(rc, "encoding with \(codecName)")
        return true
    }
}
