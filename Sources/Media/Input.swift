// Media.InputFile: an opened, probed, limit-checked demuxer over a local file.
//
// Opening is done in two steps so refusals are readable: Spool opens the file (FileInput)
// and asks libav which demuxer would take its first bytes (av_probe_input_format3); if
// that demuxer is not on the allow-list the file is refused by name ("hls is not
// allowed") before libav opens anything. Then the demuxer is opened, forced, over a custom
// AVIOContext reading it with pread (no libav file protocol), with
// `protocol_whitelist=none` and `format_whitelist` as a second fence, and an interrupt
// callback that enforces the open deadline and cancellation.
internal import CLibAV
import TranscodeAPI
#if canImport(Glibc)
import Glibc
#endif

@safe final class InputFile {
    let ctx: UnsafeMutablePointer<AVFormatContext>
    let path: String
    let limits: MediaLimits
    let interrupt: InterruptState
    private(set) var packetsRead = 0

    /// The custom AVIOContext of a streamed input (nil for files). Released after the
    /// format context is closed (stored properties outlive deinit's body).
    let io: CustomIO?

    /// Opens a local file read with pread through a custom AVIOContext, so the demuxer
    /// opens nothing by name (protocol_whitelist=none, as for streams).
    init(path: MediaPath, limits: MediaLimits, cancel: CancellationFlag?) throws(MediaError) {
        LibAVLogging.ensureInstalled()
        self.path = path.description
        self.limits = limits
        let file = try FileInput(path: path)
        let format = unsafe try InputFile.detectFormat(file, limits: limits)
        let interrupt = InterruptState(cancel: cancel)
        self.interrupt = interrupt
        let io = try CustomIO(file: file, interrupt: interrupt)
        self.io = io
        do {
            unsafe ctx = try InputFile.openContext(url: "", format: format, io: io, limits: limits, interrupt: interrupt, label: self.path)
        } catch {
            throw io.failure ?? error
        }
        LibAVObjects.retain()
        try finishOpening()
    }

    /// Opens a streamed input (a pipe, a socket, memory) read through a custom AVIOContext.
    /// The stream must not need seeking: MPEG-TS, Matroska, fragmented or faststart MP4.
    init(source: any ByteSource, name: String, limits: MediaLimits, cancel: CancellationFlag?) throws(MediaError) {
        LibAVLogging.ensureInstalled()
        self.path = name
        self.limits = limits
        let interrupt = InterruptState(cancel: cancel)
        self.interrupt = interrupt
        let io = try CustomIO(source: source, interrupt: interrupt)
        self.io = io
        interrupt.arm(seconds: limits.openTimeoutSeconds)
        var probed: UnsafePointer<AVInputFormat>? = nil
        let score = unsafe av_probe_input_buffer2(io.ctx, &probed, name, nil, 0, UInt32(min(max(limits.probeBytes, 2048), 1 << 20)))
        if unsafe score < 0 || probed == nil {
            if let f = io.failure { throw f }
            if interrupt.cancel?.isCancelled == true { throw .cancelled }
            if io.bytesRead == 0 { throw .emptyInput(path: name) }
            throw .unrecognizedFormat(path: name)
        }
        let format = unsafe probed!
        let formatName = unsafe String(cString: format.pointee.name)
        guard limits.allows(demuxer: formatName) else {
            throw .demuxerNotAllowed(name: formatName, allowed: limits.allowedDemuxers)
        }
        do {
            unsafe ctx = try InputFile.openContext(url: "", format: format, io: io, limits: limits, interrupt: interrupt, label: name)
        } catch {
            throw io.failure ?? error
        }
        LibAVObjects.retain()
        try finishOpening()
    }

    private static func openContext(url: String, format: UnsafePointer<AVInputFormat>, io: CustomIO?, limits: MediaLimits,
                             interrupt: InterruptState, label: String) throws(MediaError) -> UnsafeMutablePointer<AVFormatContext> {
        guard let c = unsafe avformat_alloc_context() else { throw outOfMemory("allocating a demuxer") }
        unsafe c.pointee.interrupt_callback = interrupt.callback
        if let io {
            unsafe c.pointee.pb = io.ctx
            unsafe c.pointee.flags |= AVFMT_FLAG_CUSTOM_IO
        }
        let opts = Options([
            ("protocol_whitelist", "none"),   // files and streams come through `io`; nothing else is opened
            ("format_whitelist", limits.allowedDemuxers.joined(separator: ",")),
            ("probesize", String(limits.probeBytes)),
            ("analyzeduration", String(limits.analyzeMicroseconds)),
            ("max_streams", String(max(1, limits.maxStreams) * 4)),
        ])
        interrupt.arm(seconds: limits.openTimeoutSeconds)
        var p: UnsafeMutablePointer<AVFormatContext>? = unsafe c
        let rc = unsafe avformat_open_input(&p, url, format, &opts.ptr)
        guard rc >= 0, let opened = unsafe p else {
            // avformat_open_input frees the context on failure (not a custom pb).
            throw InputFile.openError(rc, interrupt: interrupt, phase: "opening \(label)")
        }
        return unsafe opened
    }

    private func finishOpening() throws(MediaError) {
        // The container's declared values first: probing stream info may replace absurd
        // ones with 0×0 (the decoder refuses to open), which would hide the reason.
        try checkLimits()
        let info = unsafe avformat_find_stream_info(ctx, nil)
        if info < 0 {
            if let f = io?.failure { throw f }
            throw InputFile.openError(info, interrupt: interrupt, phase: "reading stream information from \(path)")
        }
        if let f = io?.failure { throw f }
        if interrupt.expired {
            throw .timedOut(phase: "opening \(path)", seconds: limits.openTimeoutSeconds)
        }
        interrupt.disarm()
        try checkLimits()
    }

    deinit {
        var p: UnsafeMutablePointer<AVFormatContext>? = unsafe ctx
        unsafe avformat_close_input(&p)
        LibAVObjects.release()
    }

    private static func openError(_ rc: Int32, interrupt: InterruptState, phase: String) -> MediaError {
        if interrupt.cancel?.isCancelled == true { return .cancelled }
        if interrupt.expired { return .timedOut(phase: phase, seconds: interrupt.deadlineSeconds) }
        if rc == AVCode.eof { return .invalidData(reason: "\(phase): the file ends before any media") }
        return mediaError(rc, phase)
    }

    /// Looks at the start of the file and names the demuxer libav would use; refuses
    /// unknown formats and demuxers not on the allow-list. (Empty and non-regular files
    /// were refused when opening.)
    private static func detectFormat(_ file: FileInput, limits: MediaLimits) throws(MediaError) -> UnsafePointer<AVInputFormat> {
        let path = file.label
        let want = Int(min(1 << 20, file.size))
        let padding = Int(clibav_probe_padding_size())
        // Probing needs zeroed padding after the bytes.
        var buf = [UInt8](repeating: 0, count: want + padding)
        var got = 0
        while got < want {
            let n: Result<Int, MediaError> = unsafe buf.withUnsafeMutableBytes { raw in
                Result { () throws(MediaError) in
                    unsafe try file.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[got..<want]), at: Int64(got))
                }
            }
            got += try n.get()
        }

        var score: Int32 = 0
        let format: UnsafePointer<AVInputFormat>? = unsafe path.withCString { name in
            unsafe buf.withUnsafeMutableBytes { raw in
                var pd = unsafe AVProbeData()
                unsafe pd.filename = name
                unsafe pd.buf = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
                unsafe pd.buf_size = Int32(got)
                return unsafe av_probe_input_format3(&pd, 1, &score)
            }
        }
        guard let format = unsafe format else { throw .unrecognizedFormat(path: path) }
        let name = unsafe String(cString: format.pointee.name)
        guard limits.allows(demuxer: name) else {
            throw .demuxerNotAllowed(name: name, allowed: limits.allowedDemuxers)
        }
        return unsafe format
    }

    private func checkLimits() throws(MediaError) {
        let n = unsafe Int(ctx.pointee.nb_streams)
        if n > limits.maxStreams {
            throw .limitExceeded(reason: "input has \(n) streams; the limit is \(limits.maxStreams)")
        }
        for i in 0..<n {
            let par = unsafe stream(i).pointee.codecpar.pointee
            if unsafe par.codec_type == AVMEDIA_TYPE_VIDEO && (par.width != 0 || par.height != 0) {
                unsafe try limits.checkPicture(width: par.width, height: par.height)
            }
        }
        if durationSeconds > 0 { try limits.checkDuration(durationSeconds) }
    }

    var streamCount: Int { unsafe Int(ctx.pointee.nb_streams) }

    func stream(_ i: Int) -> UnsafeMutablePointer<AVStream> { unsafe ctx.pointee.streams[i]! }

    /// Container duration in seconds (0 when unknown).
    var durationSeconds: Double {
        let d = unsafe ctx.pointee.duration
        guard d != AVCode.noPTS, d > 0 else { return 0 }
        return Double(d) / Double(AV_TIME_BASE)
    }

    var formatName: String { unsafe String(cString: ctx.pointee.iformat.pointee.name) }
    var formatLongName: String { unsafe cString(ctx.pointee.iformat.pointee.long_name) ?? formatName }

    /// The best stream of a type, or nil.
    func bestStream(_ type: AVMediaType) -> Int? {
        let i = unsafe av_find_best_stream(ctx, type, -1, -1, nil, 0)
        return i >= 0 ? Int(i) : nil
    }

    /// Reads the next packet into `packet`; false at the end of the input. Enforces the
    /// packet-count cap and turns interrupts into cancellation.
    func read(into packet: Packet) throws(MediaError) -> Bool {
        packet.unref()
        let rc = unsafe av_read_frame(ctx, packet.ptr)
        if rc == AVCode.eof {
            // A read error can end a demuxer's input like EOF does: the typed reason wins.
            if let f = io?.failure { throw f }
            return false
        }
        if rc < 0 {
            if interrupt.cancel?.isCancelled == true { throw .cancelled }
            if let f = io?.failure { throw f }
            throw mediaError(rc, "reading \(path)")
        }
        packetsRead += 1
        if packetsRead > limits.maxPackets {
            throw .limitExceeded(reason: "input has more than \(limits.maxPackets) packets; the limit is \(limits.maxPackets)")
        }
        return true
    }
}
