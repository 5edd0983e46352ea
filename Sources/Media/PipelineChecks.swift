// Media.Pipeline checks: packet timestamps from the file are bounded; undecodable packets
// are skipped and counted (as ffmpeg does) within an error budget
// (MediaLimits.maxDecodeErrorFraction, decodeErrorAllowance); and a job that asked for
// video (or audio) from an input that has it fails when none came out, instead of
// succeeding with an empty track.
internal import CLibAV
import TranscodeAPI

extension Pipeline {
    /// Packets or frames the decoders refused so far.
    var decodeErrors: Int { (videoDecoder?.errors ?? 0) + (audioDecoder?.errors ?? 0) }

    /// Fails the job when the decoders refused more than the budget allows: at the end,
    /// of the packets they were sent; while working, only when the container declares how
    /// many packets there are (so a few bad packets at the start of a stream are not
    /// judged against the handful read so far).
    func checkDecodeErrors(final: Bool) throws(MediaError) {
        let errors = decodeErrors
        guard errors > plan.limits.decodeErrorAllowance else { return }
        let streams = [videoDecoder, audioDecoder].compactMap { $0?.streamIndex }
        let sent = streams.reduce(0) { $0 + packetsPerStream[$1, default: 0] }
        var packets = sent
        if !final {
            let declared = streams.reduce(Int64(0)) { unsafe $0 + max(0, input.stream($1).pointee.nb_frames) }
            guard declared > 0 else { return }
            packets = max(sent, Int(clamping: declared))
        }
        let allowed = plan.limits.decodeErrorBudget(packets: packets)
        guard errors > allowed else { return }
        let last = [videoDecoder, audioDecoder].compactMap { $0 }.filter { $0.errors > 0 }
            .map { "stream \($0.streamIndex) (\($0.codecName)): \(libavErrorText($0.lastError))" }
        throw .tooManyDecodeErrors(path: plan.input, errors: errors, packets: sent, total: packets, allowed: allowed,
                                   lastError: last.joined(separator: "; "))
    }

    /// An input with video (audio) that was asked for must give at least one frame.
    func checkSomethingCameOut() throws(MediaError) {
        if videoIn != nil && sourceFrames == 0 && (!renditions.isEmpty || videoCopy != nil) {
            throw .noVideoFrames(path: plan.input)
        }
        if audioIn != nil && audioFramesOut == 0 && (audioEncoder != nil || audioCopy) {
            throw .noAudioFrames(path: plan.input)
        }
    }

    /// Packet timestamps and durations come from the file: past the duration limit they are
    /// a limit error, and wildly out of range (either way) they are invalid data, so no
    /// later timestamp arithmetic can overflow.
    func checkTimestamps(_ packet: Packet, stream idx: Int, maxSeconds: Double) throws(MediaError) {
        let tb = unsafe input.stream(idx).pointee.time_base.double
        let start = Double(origin) / Double(AV_TIME_BASE)
        let bound = maxSeconds + 3600
        for t in unsafe [packet.ptr.pointee.pts, packet.ptr.pointee.dts] where t != AVCode.noPTS {
            let secs = Double(t) * tb - start
            if secs > maxSeconds { try plan.limits.checkDuration(secs) }
            guard secs > -bound && secs < bound else {
                throw .invalidData(reason: "a packet timestamp (\(t) × \(tb) s) is far outside the media")
            }
        }
        let d = unsafe packet.ptr.pointee.duration
        guard d >= 0 && Double(d) * tb < bound else {
            throw .invalidData(reason: "a packet duration (\(d) × \(tb) s) is out of range")
        }
    }
}
