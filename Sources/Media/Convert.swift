// Media.Convert: picture scaling (libswscale), audio resampling (libswresample) and the
// audio FIFO that regroups samples into the encoder's frame size.
//
// libav asserts abort the process (swscale with an unknown pixel format, for one), so a
// scaler is only ever built from a decoded frame whose format, width and height have been
// validated, and rebuilt (validated again) if the decoder's output changes mid-stream.
internal import CLibAV
import TranscodeAPI

@safe final class VideoScaler {
    let sws: OpaquePointer
    let srcWidth: Int32, srcHeight: Int32, srcFormat: Int32
    let dstWidth: Int32, dstHeight: Int32, dstFormat: AVPixelFormat

    init(srcWidth: Int32, srcHeight: Int32, srcFormat: Int32,
         dstWidth: Int32, dstHeight: Int32, dstFormat: AVPixelFormat, limits: MediaLimits) throws(MediaError) {
        try limits.checkPicture(width: srcWidth, height: srcHeight)
        let fmt = AVPixelFormat(rawValue: srcFormat)
        guard srcFormat >= 0, unsafe av_pix_fmt_desc_get(fmt) != nil else {
            throw .invalidData(reason: "decoded picture has an unknown pixel format (\(srcFormat))")
        }
        guard sws_isSupportedInput(fmt) != 0 else {
            throw .invalidData(reason: unsafe "pixel format \(cString(av_get_pix_fmt_name(fmt)) ?? "?") cannot be scaled")
        }
        guard dstWidth > 0, dstHeight > 0, dstWidth % 2 == 0, dstHeight % 2 == 0 else {
            throw .invalidSettings(reason: "output size \(dstWidth)×\(dstHeight) must be positive and even")
        }
        guard let s = unsafe sws_getContext(srcWidth, srcHeight, fmt, dstWidth, dstHeight, dstFormat,
                                     SWS_BICUBIC, nil, nil, nil) else {
            throw .invalidData(reason: "no scaler from \(srcWidth)×\(srcHeight) to \(dstWidth)×\(dstHeight)")
        }
        unsafe sws = s
        LibAVObjects.retain()
        self.srcWidth = srcWidth; self.srcHeight = srcHeight; self.srcFormat = srcFormat
        self.dstWidth = dstWidth; self.dstHeight = dstHeight; self.dstFormat = dstFormat
    }

    deinit {
        unsafe sws_freeContext(sws)
        LibAVObjects.release()
    }

    func matches(_ f: Frame) -> Bool { f.width == srcWidth && f.height == srcHeight && f.format == srcFormat }

    /// Scales `src` into `dst`. Its buffers are written in place when they have the right
    /// size and format and nothing else holds them (the encoder or the quality meter may
    /// still hold the previous picture; then it gets fresh ones). A fresh picture per frame
    /// was a new multi-megabyte allocation each time, which the C library maps and unmaps:
    /// every frame paid page faults and the kernel zeroing the pages.
    func scale(_ src: Frame, into dst: Frame) throws(MediaError) {
        let reusable = unsafe dst.ptr.pointee.buf.0 != nil && dst.width == dstWidth && dst.height == dstHeight
            && dst.format == dstFormat.rawValue && av_frame_is_writable(dst.ptr) != 0
        if !reusable {
            dst.unref()
            unsafe dst.ptr.pointee.width = dstWidth
            unsafe dst.ptr.pointee.height = dstHeight
            unsafe dst.ptr.pointee.format = dstFormat.rawValue
            unsafe try check(av_frame_get_buffer(dst.ptr, 0), "allocating a scaled picture")
        }
        unsafe try check(sws_scale_frame(sws, dst.ptr, src.ptr), "scaling a picture")
        dst.pts = src.pts
    }
}

/// A channel layout owned by Swift (AVChannelLayout may hold an allocated map).
@safe struct ChannelLayout: ~Copyable {
    var layout = unsafe AVChannelLayout()

    init(channels: Int32) { unsafe clibav_channel_layout_default(&layout, channels) }

    /// The frame's layout, or the default for its channel count when it is unspecified.
    init(of frame: Frame) {
        let l = unsafe frame.ptr.pointee.ch_layout
        if unsafe l.order == AV_CHANNEL_ORDER_UNSPEC || clibav_channel_layout_valid(&frame.ptr.pointee.ch_layout) == 0 {
            unsafe clibav_channel_layout_default(&layout, max(1, l.nb_channels))
        } else {
            _ = unsafe clibav_channel_layout_copy(&layout, &frame.ptr.pointee.ch_layout)
        }
    }

    var channels: Int32 { unsafe layout.nb_channels }

    deinit {
        var l = unsafe layout
        unsafe av_channel_layout_uninit(&l)
    }
}

@safe final class AudioResampler {
    let swr: OpaquePointer
    let srcFormat: Int32, srcRate: Int32, srcChannels: Int32
    let dstFormat: AVSampleFormat, dstRate: Int32, dstChannels: Int32

    /// Built from the first decoded frame, converting into the encoder's format.
    init(from frame: Frame, to encoder: Encoder) throws(MediaError) {
        let fmt = frame.format
        guard fmt >= 0, unsafe av_get_sample_fmt_name(AVSampleFormat(rawValue: fmt)) != nil else {
            throw .invalidData(reason: "decoded audio has an unknown sample format (\(fmt))")
        }
        let rate = unsafe frame.ptr.pointee.sample_rate
        guard rate > 0, rate <= 768_000 else { throw .invalidData(reason: "decoded audio has sample rate \(rate)") }
        var inLayout = ChannelLayout(of: frame)
        guard inLayout.channels > 0, inLayout.channels <= 64 else {
            throw .invalidData(reason: "decoded audio has \(inLayout.channels) channels")
        }
        var s: OpaquePointer? = nil
        let rc = unsafe swr_alloc_set_opts2(&s, &encoder.ctx.pointee.ch_layout, encoder.ctx.pointee.sample_fmt,
                                     encoder.ctx.pointee.sample_rate,
                                     &inLayout.layout, AVSampleFormat(rawValue: fmt), rate, 0, nil)
        guard rc >= 0, let swr = unsafe s else { unsafe swr_free(&s); throw mediaError(rc, "setting up the audio resampler") }
        let initRC = unsafe swr_init(swr)
        if initRC < 0 { unsafe swr_free(&s); throw mediaError(initRC, "setting up the audio resampler") }
        unsafe self.swr = swr
        LibAVObjects.retain()
        srcFormat = fmt; srcRate = rate; srcChannels = inLayout.channels
        dstFormat = unsafe encoder.ctx.pointee.sample_fmt; dstRate = unsafe encoder.ctx.pointee.sample_rate
        dstChannels = unsafe encoder.ctx.pointee.ch_layout.nb_channels
    }

    deinit {
        var s: OpaquePointer? = unsafe swr
        unsafe swr_free(&s)
        LibAVObjects.release()
    }

    func matches(_ f: Frame) -> Bool {
        unsafe f.format == srcFormat && f.ptr.pointee.sample_rate == srcRate && max(1, f.ptr.pointee.ch_layout.nb_channels) == srcChannels
    }

    /// Converts `frame` (nil = drain what swr buffered) and appends the result to `fifo`.
    func convert(_ frame: Frame?, into fifo: AudioFIFO, scratch: Frame) throws(MediaError) {
        let inSamples = unsafe frame?.ptr.pointee.nb_samples ?? 0
        let capacity = unsafe swr_get_out_samples(swr, inSamples)
        guard capacity > 0 else { return }
        scratch.unref()
        unsafe scratch.ptr.pointee.nb_samples = capacity
        unsafe scratch.ptr.pointee.format = dstFormat.rawValue
        unsafe scratch.ptr.pointee.sample_rate = dstRate
        unsafe clibav_channel_layout_default(&scratch.ptr.pointee.ch_layout, dstChannels)
        unsafe try check(av_frame_get_buffer(scratch.ptr, 0), "allocating resampled audio")
        let out = unsafe clibav_frame_extended_data(scratch.ptr)
        let n: Int32
        if let frame {
            let input = unsafe UnsafeMutableRawPointer(clibav_frame_extended_data(frame.ptr))?
                .assumingMemoryBound(to: UnsafePointer<UInt8>?.self)
            n = unsafe swr_convert(swr, out, capacity, input, inSamples)
        } else {
            n = unsafe swr_convert(swr, out, capacity, nil, 0)
        }
        try check(n, "resampling audio")
        if n > 0 { try fifo.write(scratch, samples: n) }
    }
}

@safe final class AudioFIFO {
    let fifo: OpaquePointer

    init(format: AVSampleFormat, channels: Int32) throws(MediaError) {
        guard let f = unsafe av_audio_fifo_alloc(format, channels, 1024) else { throw outOfMemory("allocating the audio FIFO") }
        unsafe fifo = f
        LibAVObjects.retain()
    }

    deinit {
        unsafe av_audio_fifo_free(fifo)
        LibAVObjects.release()
    }

    var count: Int32 { unsafe av_audio_fifo_size(fifo) }

    func write(_ frame: Frame, samples: Int32) throws(MediaError) {
        let planes = unsafe UnsafeMutableRawPointer(clibav_frame_extended_data(frame.ptr))?
            .assumingMemoryBound(to: UnsafeMutableRawPointer?.self)
        let n = unsafe av_audio_fifo_write(fifo, planes, samples)
        if n < samples { throw mediaError(n < 0 ? n : clibav_averror(12), "buffering audio") }
    }

    /// Moves `samples` samples into a fresh buffer of `frame` (format/layout preset); with
    /// `padTo`, the frame holds that many samples and the rest is silence.
    func read(into frame: Frame, samples: Int32, padTo: Int32? = nil) throws(MediaError) {
        unsafe frame.ptr.pointee.nb_samples = max(samples, padTo ?? 0)
        unsafe try check(av_frame_get_buffer(frame.ptr, 0), "allocating an audio frame")
        if let padTo, padTo > samples {
            unsafe av_samples_set_silence(clibav_frame_extended_data(frame.ptr), samples, padTo - samples,
                                   frame.ptr.pointee.ch_layout.nb_channels, AVSampleFormat(rawValue: frame.format))
        }
        let planes = unsafe UnsafeMutableRawPointer(clibav_frame_extended_data(frame.ptr))?
            .assumingMemoryBound(to: UnsafeMutableRawPointer?.self)
        let n = unsafe av_audio_fifo_read(fifo, planes, samples)
        if n < samples { throw mediaError(n < 0 ? n : clibav_error_invaliddata(), "reading buffered audio") }
    }
}
