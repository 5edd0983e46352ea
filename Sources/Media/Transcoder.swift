// Media: safe Swift over libav (FFmpeg 5.1) in-process, and the only module that imports
// CLibAV. It implements TranscodeAPI's contract (LibAVTranscoderPlugin) for the requests
// and presets of TranscodeAPI and SpoolModel, adding only what needs libav: encoder
// presence, limits checked against decoded data, codec strings read from bitstreams.
//
// Media.Transcoder: one transcode (file or stream in, file or stream out) on the shared
// Pipeline (Pipeline.swift), which also drives ladders (Ladder.swift).
//
//   demux → decode (libav threads) → scale (libswscale, built from the first decoded frame)
//         → libx264 → mux (MP4 +faststart / MPEG-TS / Matroska)
//         → decode → resample (libswresample) → FIFO (encoder frame size) → AAC → mux
//
// The pipeline is synchronous and runs on a dedicated thread; `Transcoder.transcode` is
// the async front that starts that thread and resumes the caller when it ends, so no
// libav call ever blocks an event loop or the cooperative pool. Cancellation is a flag
// checked before every packet and every frame, and by libav's interrupt callback; when
// it fires the pipeline throws `.cancelled`, every owner frees its libav object, and the
// staged output (StagedOutput: a temporary renamed onto the output name on success only)
// is removed.
internal import CLibAV
import SpoolModel
import Threads
import TranscodeAPI
#if canImport(Glibc)
import Glibc
#endif

public enum Transcoder {
    /// Runs a transcode on its own thread; cancelling the calling task cancels the job.
    public static func transcode(_ request: TranscodeRequest, cancel: CancellationFlag = CancellationFlag(),
                                 progress: (@Sendable (TranscodeProgress) -> Void)? = nil) async throws(MediaError) -> TranscodeSummary {
        try await DedicatedThread.run(cancel: cancel, input: request.inputStream) { () throws(MediaError) in
            try transcodeBlocking(request, cancel: cancel, progress: progress)
        }
    }

    /// Runs a transcode on the calling thread (which must be allowed to block).
    public static func transcodeBlocking(_ request: TranscodeRequest, cancel: CancellationFlag = CancellationFlag(),
                                         progress: (@Sendable (TranscodeProgress) -> Void)? = nil) throws(MediaError) -> TranscodeSummary {
        LibAVLogging.ensureInstalled()
        try request.preset.checkedForThisLibav()
        if request.outputStream != nil {
            guard let f = request.outputFormat, TranscodeRequest.streamFormats.contains(f) else {
                throw .invalidSettings(reason: "a streamed output needs a format: \(TranscodeRequest.streamFormats.joined(separator: ", "))")
            }
        }
        if request.inputStream == nil && request.outputStream == nil {
            try refuseOutputOntoInput(request.inputPath, request.outputPath)
        }
        // A file output is staged: nothing at the final name until it is complete.
        let staged = request.outputStream == nil ? try StagedOutput.file(request.outputPath, overwrite: request.overwrite) : nil
        let target: TargetPlan = request.outputStream.map {
            .stream(sink: $0, format: request.outputFormat ?? "mpegts", name: request.output)
        } ?? .file(path: staged!.workPath, label: request.output)
        let plan = PipelinePlan(
            input: request.input, inputPath: request.inputPath, inputStream: request.inputStream, targets: [target],
            renditions: [RenditionPlan(name: request.preset.name, video: request.preset.video, target: 0)],
            audio: request.preset.audio, limits: request.limits, threads: request.threads,
            progressInterval: request.progressInterval, skipUpscaled: false, measureQuality: request.measureQuality)
        do {
            let r = try Pipeline(plan: plan, cancel: cancel, progress: progress).run()
            var size = r.bytesWritten
            if let staged {
                try staged.commit()
                var st = stat()
                size = unsafe (try? request.outputPath.withCPath { unsafe lstat($0, &st) }) == 0 ? Int64(st.st_size) : 0
            }
            let v = r.renditions.first
            return TranscodeSummary(
                input: request.input, output: request.output, preset: request.preset.name,
                mediaSeconds: r.mediaSeconds, elapsedSeconds: r.elapsedSeconds, videoFrames: v?.frames ?? 0,
                audioSamples: Int(r.audioSamples), width: v?.width ?? 0, height: v?.height ?? 0,
                fps: r.fps, speed: r.speed, outputBytes: size, quality: v?.quality, audioCopied: r.audioCopied,
                videoCopied: r.videoCopied, decodeErrors: r.decodeErrors)
        } catch {
            staged?.abandon()
            throw error
        }
    }

    /// Refuses an output path that names the input file (same device and inode).
    static func refuseOutputOntoInput(_ input: MediaPath, _ output: MediaPath) throws(MediaError) {
        var a = stat(), b = stat()
        if unsafe (try? input.withCPath { unsafe stat($0, &a) }) == 0, unsafe (try? output.withCPath { unsafe stat($0, &b) }) == 0,
           a.st_dev == b.st_dev && a.st_ino == b.st_ino {
            throw .invalidSettings(reason: "the output \(output) is the input file")
        }
    }
}

/// Each transcode runs on a thread of its own (Threads.OSThread, 8 MiB stack), not on the
/// blocking pool: it is long-lived CPU work that would starve the pool's short jobs.
enum DedicatedThread {
    /// Runs blocking `work` on a dedicated thread and awaits its result; cancelling the
    /// calling task sets `cancel` and stops the input stream, so the work ends within a frame.
    static func run<T: Sendable>(cancel: CancellationFlag, input: (any ByteSource)?,
                                 _ work: @escaping @Sendable () throws(MediaError) -> T) async throws(MediaError) -> T {
        do {
            return try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (k: CheckedContinuation<T, any Error>) in
                    let started = OSThread.spawn(stackBytes: 8 << 20) {
                        // However the work ends, a producer feeding the input must not stay
                        // suspended on a full channel.
                        defer { input?.stopReading() }
                        do { k.resume(returning: try work()) } catch { k.resume(throwing: error) }
                    }
                    if !started { k.resume(throwing: MediaError.libav(operation: "starting a transcode thread", code: clibav_averror(EAGAIN), message: "no thread")) }
                }
            } onCancel: {
                cancel.cancel()
                input?.stopReading()
            }
        } catch let e as MediaError {
            throw e
        } catch {
            throw .libav(operation: "transcoding", code: 0, message: "\(error)")
        }
    }
}

