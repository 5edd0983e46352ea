// Media.Pipeline audio: decoded frames → resampler → FIFO (the encoder's frame size) →
// encoder → every target that carries audio (a packet reference each).
internal import CLibAV

extension Pipeline {
    func audioFrame(_ frame: Frame) throws(MediaError) {
        try checkCancelled()
        guard let enc = audioEncoder, let fifo, let ai = audioIn else { return }
        if unsafe frame.ptr.pointee.nb_samples > 0 { audioFramesOut += 1 }
        if !audioStarted {
            audioStarted = true
            let ts = unsafe frame.ptr.pointee.best_effort_timestamp
            if ts != AVCode.noPTS {
                let rateTB = unsafe AVRational(num: 1, den: enc.ctx.pointee.sample_rate)
                let start = unsafe av_rescale_q(ts, input.stream(ai).pointee.time_base, rateTB) - av_rescale_q(origin, clibav_time_base_q(), rateTB)
                audioSamples = unsafe max(0, min(start, Int64(enc.ctx.pointee.sample_rate) * 10))
            }
        }
        if let r = resampler, !r.matches(frame) {
            try r.convert(nil, into: fifo, scratch: audioFrame)
            resampler = nil
        }
        if resampler == nil { resampler = try AudioResampler(from: frame, to: enc) }
        try resampler!.convert(frame, into: fifo, scratch: audioFrame)
        try encodeFIFO(final: false)
        if renditions.isEmpty { report(force: false) }
    }

    /// Writes every packet the audio encoder has ready to every target (a reference each).
    func drainAudio(_ enc: Encoder) throws(MediaError) {
        while try enc.receive(into: outPacket) {
            try checkCancelled()
            let audioTargets = targets.keys.sorted().compactMap { targets[$0] }.filter { $0.audioStream != nil }
            for (i, t) in audioTargets.enumerated() {
                if i == audioTargets.count - 1 {
                    try t.write(outPacket, stream: t.audioStream!)
                } else {
                    sharedPacket.unref()
                    unsafe try check(av_packet_ref(sharedPacket.ptr, outPacket.ptr), "sharing an audio packet")
                    try t.write(sharedPacket, stream: t.audioStream!)
                }
            }
        }
    }

    func encodeFIFO(final: Bool) throws(MediaError) {
        guard let enc = audioEncoder, let fifo else { return }
        let frameSize = enc.frameSize > 0 ? enc.frameSize : 1024
        let padLast = !Encoders.acceptsSmallLastFrame(enc)
        while fifo.count >= frameSize || (final && fifo.count > 0) {
            let n = min(frameSize, fifo.count)
            audioFrame.unref()
            unsafe audioFrame.ptr.pointee.format = enc.ctx.pointee.sample_fmt.rawValue
            unsafe audioFrame.ptr.pointee.sample_rate = enc.ctx.pointee.sample_rate
            _ = unsafe clibav_channel_layout_copy(&audioFrame.ptr.pointee.ch_layout, &enc.ctx.pointee.ch_layout)
            if n < frameSize && padLast {
                // Encoders that need full frames get the last one padded with silence.
                try fifo.read(into: audioFrame, samples: n, padTo: frameSize)
            } else {
                try fifo.read(into: audioFrame, samples: n)
            }
            audioFrame.pts = audioSamples
            audioSamples += Int64(n)
            try enc.send(audioFrame)
            try drainAudio(enc)
        }
    }

    func finishAudio() throws(MediaError) {
        guard let enc = audioEncoder, let fifo else { return }
        if let r = resampler { try r.convert(nil, into: fifo, scratch: audioFrame) }
        try encodeFIFO(final: true)
        try enc.send(nil)
        try drainAudio(enc)
    }
}
