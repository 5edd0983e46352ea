// Media.Pipeline video path: each decoded frame is given a strictly increasing timestamp
// on the source's grid, then for every rendition put on the rendition's own grid (a
// slower output drops frames that land on a taken slot) and scaled (the scaler rebuilt
// when the decoded pictures change) into a slot of the rendition's encoder thread, which
// remembers it for quality, encodes and muxes it (PipelineEncoders.swift).
internal import CLibAV
import SpoolModel
import TranscodeAPI

extension Pipeline {
    func videoFrame(_ frame: Frame) throws(MediaError) {
        try checkCancelled()
        guard let vi = videoIn else { return }
        let tb = videoTimeBase
        var pts: Int64
        let ts = unsafe frame.ptr.pointee.best_effort_timestamp
        if ts != AVCode.noPTS {
            pts = unsafe av_rescale_q(ts, input.stream(vi).pointee.time_base, tb) - av_rescale_q(origin, clibav_time_base_q(), tb)
            if lastVideoPts < 0 { videoOrigin = min(0, pts) }
            pts -= videoOrigin
        } else {
            pts = lastVideoPts + 1
        }
        if pts <= lastVideoPts { pts = lastVideoPts + 1 }
        lastVideoPts = pts
        for r in renditions {
            try checkCancelled()
            // On the rendition's own time grid: a slower output drops the frames that
            // land on a slot already taken.
            let decimating = av_cmp_q(r.timeBase, tb) > 0
            // Flooring keeps frame k of a 2× faster source only when k is even, so 100
            // frames at 50 fps give exactly 50 at 25 fps.
            var rpts = decimating ? av_rescale_q_rnd(pts, tb, r.timeBase, AV_ROUND_DOWN) : av_rescale_q(pts, tb, r.timeBase)
            if rpts <= r.lastPts {
                if decimating { continue }
                rpts = r.lastPts + 1
            }
            r.lastPts = rpts
            if r.scaler == nil || !r.scaler!.matches(frame) {
                if let dec = videoDecoder {
                    try plan.limits.checkDecodedFrameMemory(width: frame.width, height: frame.height, pixelFormat: frame.format,
                                                            framesInFlight: dec.framesInFlight)
                }
                r.scaler = try VideoScaler(srcWidth: frame.width, srcHeight: frame.height, srcFormat: frame.format,
                                           dstWidth: r.width, dstHeight: r.height, dstFormat: AV_PIX_FMT_YUV420P,
                                           limits: plan.limits)
            }
            // Scaled into a slot of the rendition's encoder thread, which encodes it (and
            // remembers it for quality) while this thread goes on decoding.
            let worker = r.worker!
            let slot = try worker.slot()
            try r.scaler!.scale(frame, into: slot)
            slot.pts = rpts
            worker.submit(slot)
            r.frames += 1
        }
        sourceFrames += 1
        report(force: false)
    }
}
