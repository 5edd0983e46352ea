// Media.Quality: PSNR and SSIM of a rendition against the scaled source it was encoded
// from, computed in-process while encoding (X3). The rendition's own packets are decoded
// again (the reconstruction a player will see) and each decoded picture is compared with
// the scaled source picture of the same timestamp, which is kept by reference until then.
//
//  - PSNR: per plane (Y, U, V) from the summed squared error over the whole rendition,
//    and the "average" over all samples (4:2:0: Y counts 4× each chroma plane).
//  - SSIM: luma only, mean over 8×8 windows on a 4-pixel grid (the usual approximation),
//    averaged over frames; the worst frame is reported too.
internal import CLibAV
import TranscodeAPI
#if canImport(Glibc)
import Glibc
#endif

final class QualityMeter {
    private let decoder: Decoder
    private let reconstructed: Frame
    private var sources: [(pts: Int64, frame: Frame)] = []
    private var sse: (Double, Double, Double) = (0, 0, 0)
    private var samples: (Double, Double, Double) = (0, 0, 0)
    private var ssimSum = 0.0
    private var ssimWorst = 1.0
    private var frames = 0

    init(encoder: Encoder) throws(MediaError) {
        decoder = try Decoder(matching: encoder)
        reconstructed = try Frame()
    }

    /// Keeps a reference to the picture the encoder was given.
    func remember(_ frame: Frame) throws(MediaError) {
        let copy = try Frame()
        unsafe try check(av_frame_ref(copy.ptr, frame.ptr), "keeping a source picture for quality")
        sources.append((frame.pts, copy))
    }

    /// Decodes one of the rendition's packets and compares what comes out.
    func feed(_ packet: Packet?) throws(MediaError) {
        try decoder.send(packet)
        while try decoder.receive(into: reconstructed) {
            let pts = unsafe reconstructed.ptr.pointee.best_effort_timestamp
            while let first = sources.first, first.pts < pts { sources.removeFirst() }
            guard let first = sources.first, first.pts == pts else { continue }
            sources.removeFirst()
            try compare(first.frame, reconstructed)
        }
    }

    func finish() throws(MediaError) -> QualityReport {
        try feed(nil)
        sources.removeAll()
        func psnr(_ e: Double, _ n: Double) -> Double {
            guard n > 0 else { return 0 }
            guard e > 0 else { return 100 }
            return min(100, 10 * log10(255.0 * 255.0 * n / e))
        }
        return QualityReport(
            frames: frames, psnrY: psnr(sse.0, samples.0), psnrU: psnr(sse.1, samples.1), psnrV: psnr(sse.2, samples.2),
            psnrAverage: psnr(sse.0 + sse.1 + sse.2, samples.0 + samples.1 + samples.2),
            ssimY: frames > 0 ? ssimSum / Double(frames) : 0, ssimYWorstFrame: frames > 0 ? ssimWorst : 0)
    }

    private func compare(_ a: Frame, _ b: Frame) throws(MediaError) {
        guard a.width == b.width, a.height == b.height, a.format == AV_PIX_FMT_YUV420P.rawValue,
              b.format == AV_PIX_FMT_YUV420P.rawValue else {
            throw .invalidData(reason: "quality: decoded rendition does not match its source picture")
        }
        let w = Int(a.width), h = Int(a.height)
        let e0 = planeSSE(a, b, 0, w, h), e1 = planeSSE(a, b, 1, w / 2, h / 2), e2 = planeSSE(a, b, 2, w / 2, h / 2)
        sse.0 += e0; sse.1 += e1; sse.2 += e2
        samples.0 += Double(w * h); samples.1 += Double(w / 2 * (h / 2)); samples.2 += Double(w / 2 * (h / 2))
        let s = ssim(a, b, w, h)
        ssimSum += s
        ssimWorst = min(ssimWorst, s)
        frames += 1
    }

    private func planeSSE(_ a: Frame, _ b: Frame, _ plane: Int32, _ w: Int, _ h: Int) -> Double {
        guard let pa = unsafe a.data(plane), let pb = unsafe b.data(plane) else { return 0 }
        let la = a.linesize(plane), lb = b.linesize(plane)
        var total: UInt64 = 0
        for y in 0..<h {
            let ra = unsafe pa + (y &* la), rb = unsafe pb + (y &* lb)
            var row: UInt64 = 0
            var x = 0
            while x < w {
                let d = unsafe Int(ra[x]) &- Int(rb[x])
                row &+= UInt64(d &* d)
                x &+= 1
            }
            total &+= row
        }
        return Double(total)
    }

    /// Mean SSIM of the luma planes over 8×8 windows every 4 pixels.
    private func ssim(_ a: Frame, _ b: Frame, _ w: Int, _ h: Int) -> Double {
        guard let pa = unsafe a.data(0), let pb = unsafe b.data(0), w >= 8, h >= 8 else { return 1 }
        let la = a.linesize(0), lb = b.linesize(0)
        let c1 = (0.01 * 255) * (0.01 * 255), c2 = (0.03 * 255) * (0.03 * 255)
        var sum = 0.0
        var windows = 0
        var y = 0
        while y + 8 <= h {
            var x = 0
            while x + 8 <= w {
                var sa: Int = 0, sb: Int = 0, saa: Int = 0, sbb: Int = 0, sab: Int = 0
                for dy in 0..<8 {
                    let ra = unsafe pa + ((y &+ dy) &* la &+ x), rb = unsafe pb + ((y &+ dy) &* lb &+ x)
                    for dx in 0..<8 {
                        let va = unsafe Int(ra[dx]), vb = unsafe Int(rb[dx])
                        sa &+= va; sb &+= vb; saa &+= va &* va; sbb &+= vb &* vb; sab &+= va &* vb
                    }
                }
                let n = 64.0
                let ma = Double(sa) / n, mb = Double(sb) / n
                let va = Double(saa) / n - ma * ma, vb = Double(sbb) / n - mb * mb, cov = Double(sab) / n - ma * mb
                sum += ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))
                windows += 1
                x &+= 4
            }
            y &+= 4
        }
        return windows > 0 ? sum / Double(windows) : 1
    }
}

