// Media.Pipeline encode workers: each rendition's encoder runs on a thread of its own, fed
// scaled pictures through a two-slot handoff. Decoding and scaling the next picture then
// overlaps encoding this one, and the renditions of a ladder encode side by side.
//
//   pipeline thread: wait for a free slot → scale into it → queue it
//   encoder thread:  take the oldest queued slot → remember it for quality → encode →
//                    mux what comes out (under the target's lock) → free the slot
//
// Two slots are the least that lets both sides work at once; more would hold more
// pictures in memory without making either side faster. The encoder (and the quality
// meter) are touched only by the worker between `start` and `finish`/`abort`, which hand
// them back (through the lock) to the pipeline thread. A worker's failure (an encoder or
// muxer error, or a cancellation it noticed) is thrown at the pipeline's next handoff.
internal import CLibAV
import Threads
#if canImport(Glibc)
import Glibc
#endif

extension Pipeline {
    /// Encoder threads when the request leaves the choice to us. One rendition: the
    /// encoder's own choice (x264: 1.5 threads per CPU). Several: one per online CPU each.
    /// The renditions encode side by side on their own threads, so they fill the CPUs
    /// together, and the encoders' extra frame threads only held more pictures. Measured
    /// on 2 CPUs, a 3-rendition ladder: 12 % faster on 14 % less CPU time and 9 % less
    /// peak RSS than with x264's choice (docs/adr/0018-encoder-threads.md).
    static func automaticEncoderThreads(renditions: Int) -> Int32 {
        renditions > 1 ? Int32(min(64, onlineCPUs)) : 0
    }

    /// Video decoder threads when the request leaves the choice to us: one per online CPU
    /// (at most 16, libavcodec's own cap). libavcodec would take one more; here the
    /// encoders run on threads of their own beside the decoder, so the extra frame thread
    /// only held one more decoded picture and its references. Measured on 2 CPUs: the
    /// same speed and 8 MB (4 %) less peak RSS for a 1080p → 720p transcode, 8 MB less
    /// for a 3-rendition ladder (docs/adr/0018-encoder-threads.md, addendum 2).
    static func automaticDecoderThreads() -> Int32 {
        Int32(min(16, onlineCPUs))
    }

    /// Online CPUs (at least 1): what both automatic thread counts start from.
    private static var onlineCPUs: Int { max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN))) }
}

final class EncodeWorker: @unchecked Sendable {
    // @unchecked Sendable: `state` is behind its lock; `rendition`'s encoder, quality meter
    // and target are used by the worker thread alone while it runs (see the header).

    private struct State {
        var free: [Frame]
        var queued: [Frame] = []
        /// No more pictures: flush the encoder and stop.
        var ending = false
        /// Stop now, without flushing (the pipeline is failing or was cancelled).
        var aborting = false
        var finished = false
        var failure: MediaError?
    }

    /// The worker thread lets go of these (and `state`'s pictures) before it reports that
    /// it has finished, so every libav object is freed by the time `finish` or `abort`
    /// returns, not later on this thread.
    private var rendition: Rendition?
    private var packet: Packet?
    private let cancel: CancellationFlag
    private let state: ConditionLock<State>
    private var started = false

    init(rendition: Rendition, cancel: CancellationFlag) throws(MediaError) {
        self.rendition = rendition
        self.cancel = cancel
        packet = try Packet()
        state = ConditionLock(State(free: [try Frame(), try Frame()]))
    }

    /// Starts the encoder thread.
    func start() throws(MediaError) {
        let spawned = OSThread.spawn(stackBytes: 8 << 20) { [self] in run() }
        guard spawned else {
            throw .libav(operation: "starting an encoder thread", code: clibav_averror(EAGAIN), message: "no thread")
        }
        started = true
    }

    /// A slot to scale the next picture into; waits while the encoder holds both. Throws
    /// the worker's failure instead, if it has stopped.
    func slot() throws(MediaError) -> Frame {
        let (frame, failure) = state.wait(until: { !$0.free.isEmpty || $0.finished }) { s, _ -> (Frame?, MediaError?) in
            if s.finished { return (nil, s.failure ?? .libav(operation: "encoding", code: 0, message: "the encoder stopped early")) }
            return (s.free.removeLast(), nil)
        }
        if let failure { throw failure }
        return frame!
    }

    /// Hands a filled slot to the encoder.
    func submit(_ frame: Frame) {
        state.change { $0.queued.append(frame) }
    }

    /// No more pictures: waits until the encoder has flushed and its output is muxed, and
    /// throws the worker's failure if there was one.
    func finish() throws(MediaError) {
        guard started else { return }
        state.change { $0.ending = true }
        if let failure = state.wait(until: { $0.finished }, { s, _ in s.failure }) { throw failure }
    }

    /// Stops the worker without flushing and waits for it (any path that leaves the
    /// pipeline early: the encoder and its thread must be done before they are freed).
    func abort() {
        guard started else { return }
        state.change { $0.aborting = true }
        state.wait(until: { $0.finished }) { _, _ in }
    }

    private func run() {
        var failure: MediaError?
        do throws(MediaError) {
            while let frame = state.wait(until: { !$0.queued.isEmpty || $0.ending || $0.aborting }, { s, _ -> Frame? in
                s.aborting || s.queued.isEmpty ? nil : s.queued.removeFirst()
            }) {
                try rendition!.quality?.remember(frame)
                try rendition!.encoder.send(frame)
                try drain()
                state.change { $0.free.append(frame) }
            }
            if !state.withLock({ $0.aborting }) {
                try rendition!.encoder.send(nil)
                try drain()
            }
        } catch {
            failure = error
        }
        rendition = nil
        packet = nil
        state.change { s in
            s.free = []
            s.queued = []
            s.failure = failure
            s.finished = true
        }
    }

    private func drain() throws(MediaError) {
        let r = rendition!, packet = packet!
        while try r.encoder.receive(into: packet) {
            // At the end of input an encoder's flush can run for seconds (lookahead).
            if cancel.isCancelled { throw .cancelled }
            try r.quality?.feed(packet)
            try r.target.write(packet, stream: r.target.videoStream!)
        }
    }
}
