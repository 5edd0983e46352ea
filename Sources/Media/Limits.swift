// Media.MediaLimits: media is untrusted. TranscodeAPI's caps are checked here while
// opening (header values) and again while working (decoded frames, packet timestamps,
// counts), and every violation is a MediaError with a reason a user can read.
internal import CLibAV
import SpoolModel
import TranscodeAPI

extension MediaLimits {
    func checkPicture(width: Int32, height: Int32) throws(MediaError) {
        guard width > 0, height > 0 else {
            throw .invalidData(reason: "picture size \(width)×\(height) is not valid")
        }
        guard width <= maxWidth, height <= maxHeight else {
            throw .limitExceeded(reason: "input is \(width)×\(height); the limit is \(maxWidth)×\(maxHeight)")
        }
    }

    func checkDecodedFrameMemory(width: Int32, height: Int32, pixelFormat: Int32, framesInFlight: Int) throws(MediaError) {
        let desc = unsafe pixelFormat >= 0 ? av_pix_fmt_desc_get(AVPixelFormat(rawValue: pixelFormat)) : nil
        // An unknown format is counted as 8-bit 4:2:0, the smallest common one.
        let bits = unsafe desc.map { unsafe Int(av_get_padded_bits_per_pixel($0)) }.flatMap { $0 > 0 ? $0 : nil } ?? 12
        let frameBytes = Int(max(0, width)) * Int(max(0, height)) * bits / 8
        let (total, overflow) = frameBytes.multipliedReportingOverflow(by: max(1, framesInFlight))
        if overflow || total > maxDecodedFrameBytes {
            let name = unsafe desc.flatMap { unsafe cString($0.pointee.name) } ?? "unknown format"
            throw .limitExceeded(reason: "decoding \(width)×\(height) \(name) with \(framesInFlight) frames in flight needs \(overflow ? "more than \(NumberFormat.bytes(Int.max))" : NumberFormat.bytes(total)) of decoded frames; the limit is \(NumberFormat.bytes(maxDecodedFrameBytes))")
        }
    }

    func checkDuration(_ seconds: Double) throws(MediaError) {
        if seconds > maxDurationSeconds {
            throw .limitExceeded(reason: "input lasts \(NumberFormat.seconds(seconds.rounded())) s; the limit is \(NumberFormat.seconds(maxDurationSeconds)) s")
        }
    }
}
