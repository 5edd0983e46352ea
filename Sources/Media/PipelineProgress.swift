// Media.Pipeline progress: how much media is done (from the video grid, the audio
// samples or the copied packets' ends) and the rate-limited reports built from it.
internal import CLibAV
import SpoolModel
import TranscodeAPI

extension Pipeline {
    var mediaSeconds: Double {
        if videoCopy != nil { return copiedVideoEnd }
        if !renditions.isEmpty, lastVideoPts >= 0 { return Double(lastVideoPts + 1) * videoTimeBase.double }
        if let enc = audioEncoder { return unsafe Double(audioSamples) / Double(enc.ctx.pointee.sample_rate) }
        return copiedAudioEnd
    }

    func report(force: Bool) {
        guard let progress else { return }
        let now = monotonicNanos()
        if !force && Double(now &- lastReportNanos) / 1e9 < plan.progressInterval { return }
        lastReportNanos = now
        let elapsed = Double(now - startNanos) / 1e9
        let media = mediaSeconds
        let total = input.durationSeconds
        let speed = elapsed > 0 ? media / elapsed : 0
        var eta: Double? = nil
        if total > 0 && speed > 0 { eta = max(0, (total - media) / speed) }
        progress(TranscodeProgress(videoFrames: sourceFrames, mediaSeconds: media, totalSeconds: total,
                                   elapsedSeconds: elapsed, fps: elapsed > 0 ? Double(sourceFrames) / elapsed : 0,
                                   speed: speed, etaSeconds: eta))
    }
}
