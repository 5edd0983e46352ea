// Pipe mode: input read through a custom AVIOContext from a byte source that trickles,
// output written through one to a sink; results match file mode.
import Foundation
import Media
import TranscodeAPI
import SpoolTestSupport
import XCTest
import SpoolModel

/// Fails after handing out `limit` bytes (a peer that disconnects).
final class FailingSource: ByteSource, @unchecked Sendable {
    let inner: MemorySource
    var left: Int
    init(_ bytes: [UInt8], failAfter limit: Int) { inner = MemorySource(bytes, chunk: 4096); left = limit }
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard left > 0 else { throw MediaError.inputUnreadable(path: "peer", reason: "connection reset") }
        let n = try inner.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<min(buffer.count, left)]))
        left -= n
        return n
    }
}

final class FailingSink: ByteSink, @unchecked Sendable {
    var left: Int
    init(failAfter: Int) { left = failAfter }
    func write(_ bytes: UnsafeRawBufferPointer) throws {
        left -= bytes.count
        if left < 0 { throw MediaError.outputUnwritable(path: "peer", reason: "broken pipe") }
    }
}

final class StreamingTests: XCTestCase {
    private func bytes(_ path: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path))) }

    func testProbeFromATricklingStream() throws {
        let source = MemorySource(try bytes(try Clips.ts()), chunk: 100)
        let r = try MediaProbe.probe(source: source, name: "trickle")
        XCTAssertEqual(r.format, "mpegts")
        XCTAssertEqual(Set(r.streams.map(\.codec)), ["h264", "aac"])
    }

    func testStreamedTranscodeIsIdenticalToFileMode() throws {
        let preset = try TranscodePreset.custom(width: 160, height: 120, crf: 28, speed: "ultrafast")
        let clip = try Clips.ts()
        let fileOut = Scratch.path("file-mode.ts")
        var fileRequest = TranscodeRequest(input: clip, output: fileOut, preset: preset, threads: 1)
        fileRequest.progressInterval = 10
        _ = try Transcoder.transcodeBlocking(fileRequest)

        let sink = MemorySink()
        var streamRequest = TranscodeRequest(input: "trickle", output: "memory", preset: preset, threads: 1)
        streamRequest.inputStream = MemorySource(try bytes(clip), chunk: 1000)
        streamRequest.outputStream = sink
        streamRequest.outputFormat = "mpegts"
        let baseline = LibAVObjects.live
        let summary = try Transcoder.transcodeBlocking(streamRequest)
        XCTAssertEqual(LibAVObjects.live, baseline)
        XCTAssertEqual(summary.videoFrames, 50)
        XCTAssertEqual(summary.outputBytes, Int64(sink.bytes.count))
        XCTAssertEqual(sink.bytes, try bytes(fileOut), "streamed output differs from file mode")
    }

    func testStreamedFragmentedMP4Output() throws {
        let sink = MemorySink()
        var request = TranscodeRequest(input: "pipe", output: "memory", preset: .h264_360p)
        request.inputStream = MemorySource(try bytes(try Clips.mp4()), chunk: 4096)   // faststart MP4 streams
        request.outputStream = sink
        request.outputFormat = "mp4"
        _ = try Transcoder.transcodeBlocking(request)
        let out = Scratch.path("fragmented.mp4")
        FileManager.default.createFile(atPath: out, contents: Data(sink.bytes))
        XCTAssertNotNil(Data(sink.bytes.prefix(4096)).range(of: Data("moof".utf8)), "not fragmented")
        let streams = try ffprobeStreams(out)
        let v = try XCTUnwrap(streams.first { $0.type == "video" })
        XCTAssertEqual(v.codec, "h264")
        XCTAssertEqual(v.width, 480)
        XCTAssertEqual(v.frames, 50)
        XCTAssertEqual(streams.first { $0.type == "audio" }?.codec, "aac")
    }

    func testHostileStreamsEndInTypedErrors() throws {
        let baseline = LibAVObjects.live
        let playlist = Array("#EXTM3U\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n".utf8)
        let cases: [(String, any ByteSource, Set<String>)] = [
            ("empty", MemorySource([]), ["empty_input"]),
            ("random", MemorySource(pattern(seed: 9, count: 256 * 1024), chunk: 777), ["unrecognized_format", "invalid_data"]),
            ("playlist", MemorySource(playlist), ["format_not_allowed", "unrecognized_format"]),
            ("reset", FailingSource(try bytes(try Clips.ts()), failAfter: 30_000), ["input_unreadable"]),
        ]
        for (name, source, codes) in cases {
            var request = TranscodeRequest(input: name, output: "memory", preset: .h264_360p)
            request.inputStream = source
            request.outputStream = MemorySink()
            request.outputFormat = "mpegts"
            let e = expectMediaError { _ = try Transcoder.transcodeBlocking(request) }
            XCTAssertTrue(e.map { codes.contains($0.code) } ?? false, "\(name): \(String(describing: e))")
        }
        var request = TranscodeRequest(input: "ok", output: "peer", preset: .h264_360p)
        request.inputStream = MemorySource(try bytes(try Clips.ts()))
        request.outputStream = FailingSink(failAfter: 20_000)
        request.outputFormat = "mpegts"
        let e = expectMediaError { _ = try Transcoder.transcodeBlocking(request) }
        XCTAssertEqual(e?.code, "output_unwritable", String(describing: e))
        XCTAssertEqual(LibAVObjects.live, baseline)
    }
}

/// An async producer (as a socket reader would be) feeding a transcode through ByteChannel.
final class ByteChannelTests: XCTestCase {
    private func bytes(_ path: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path))) }

    func testAsyncProducerFeedsATranscodeWithBackpressure() async throws {
        let clip = try Clips.ts()
        let input = try bytes(clip)
        let preset = try TranscodePreset.custom(width: 160, height: 120, crf: 28, speed: "ultrafast")
        let fileOut = Scratch.path("channel-file-mode.ts")
        _ = try Transcoder.transcodeBlocking(TranscodeRequest(input: clip, output: fileOut, preset: preset, threads: 1))

        let channel = ByteChannel(capacity: 8 * 1024)   // far smaller than the input: the producer must wait
        let sink = MemorySink()
        var request = TranscodeRequest(input: "socket", output: "memory", preset: preset, threads: 1)
        request.inputStream = channel
        request.outputStream = sink
        request.outputFormat = "mpegts"
        let producer = Task {
            var i = 0
            while i < input.count {
                let end = min(input.count, i + 1316)
                try await channel.send(Array(input[i..<end]))
                i = end
                if i % (1316 * 16) == 0 { try await Task.sleep(for: .milliseconds(1)) }
            }
            channel.finish()
        }
        let summary = try await Transcoder.transcode(request)
        try await producer.value
        XCTAssertEqual(summary.videoFrames, 50)
        XCTAssertEqual(sink.bytes, try bytes(fileOut), "output from an async producer differs from file mode")
    }

    func testCancellingWhileTheProducerStallsEndsPromptly() async throws {
        let input = try bytes(try Clips.ts())
        let channel = ByteChannel(capacity: 64 * 1024)
        var request = TranscodeRequest(input: "stalled", output: "memory", preset: .h264_360p)
        request.inputStream = channel
        request.outputStream = MemorySink()
        request.outputFormat = "mpegts"
        try await channel.send(Array(input.prefix(input.count / 3)))   // then nothing more, never finished
        let baseline = LibAVObjects.live
        let task = Task { try await Transcoder.transcode(request) }
        try await Task.sleep(for: .milliseconds(300))
        let start = ContinuousClock.now
        task.cancel()
        let result = await task.result
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(2))
        switch result {
        case .success: XCTFail("finished without input")
        case .failure(let e): XCTAssertEqual(e as? MediaError, .cancelled)
        }
        XCTAssertEqual(LibAVObjects.live, baseline)
        do { try await channel.send([1, 2, 3]); XCTFail("send after the reader stopped") } catch {}
    }

    func testProducerFailureReachesTheTranscode() async throws {
        let input = try bytes(try Clips.ts())
        let channel = ByteChannel()
        var request = TranscodeRequest(input: "peer", output: "memory", preset: .h264_360p)
        request.inputStream = channel
        request.outputStream = MemorySink()
        request.outputFormat = "mpegts"
        try await channel.send(Array(input.prefix(40_000)))
        channel.fail(.inputUnreadable(path: "peer", reason: "connection reset"))
        do {
            _ = try await Transcoder.transcode(request)
            XCTFail("succeeded on a failed stream")
        } catch {
            XCTAssertEqual(error, .inputUnreadable(path: "peer", reason: "connection reset"))
        }
    }
}

/// Real sockets: a peer trickles the input into one socket, another peer reads the output
/// from a second one, while the transcode reads and writes the other ends.
final class SocketStreamingTests: XCTestCase {
    func testSocketToSocketMatchesFileMode() throws {
        let clip = try Clips.ts()
        let input = Array(try Data(contentsOf: URL(fileURLWithPath: clip)))
        let preset = try TranscodePreset.custom(width: 160, height: 120, crf: 28, speed: "ultrafast")
        let fileOut = Scratch.path("socket-file-mode.ts")
        _ = try Transcoder.transcodeBlocking(TranscodeRequest(input: clip, output: fileOut, preset: preset, threads: 1))

        var inPair: [Int32] = [0, 0], outPair: [Int32] = [0, 0]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &inPair), 0)
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &outPair), 0)
        let writerFD = inPair[1], readerFD = outPair[1]
        let writer = Thread {
            var i = 0
            var chunks = 0
            while i < input.count {
                let n = min(1316, input.count - i)
                let w = input.withUnsafeBytes { write(writerFD, $0.baseAddress! + i, n) }
                if w <= 0 { break }
                i += w
                chunks += 1
                if chunks % 8 == 0 { usleep(500) }   // trickle
            }
            close(writerFD)
        }
        let received = MemorySink()
        let done = DispatchSemaphore(value: 0)
        let reader = Thread {
            var buf = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = buf.withUnsafeMutableBytes { read(readerFD, $0.baseAddress, 4096) }
                if n <= 0 { break }
                buf.withUnsafeBytes { try? received.write(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            }
            close(readerFD)
            done.signal()
        }
        writer.start()
        reader.start()
        var request = TranscodeRequest(input: "socket", output: "socket", preset: preset, threads: 1)
        request.inputStream = FileDescriptorSource(fd: inPair[0])
        request.outputStream = FileDescriptorSink(fd: outPair[0])
        request.outputFormat = "mpegts"
        let summary = try Transcoder.transcodeBlocking(request)
        close(inPair[0])
        close(outPair[0])
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success)
        XCTAssertEqual(summary.videoFrames, 50)
        XCTAssertEqual(received.bytes, Array(try Data(contentsOf: URL(fileURLWithPath: fileOut))),
                       "output read from the socket differs from file mode")
    }

    func testAPeerThatHangsUpIsAnErrorNotASIGPIPE() throws {
        var outPair: [Int32] = [0, 0]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &outPair), 0)
        close(outPair[1])   // the reader is gone before anything is written
        defer { close(outPair[0]) }
        var request = TranscodeRequest(input: try Clips.ts(), output: "socket", preset: .h264_360p)
        request.outputStream = FileDescriptorSink(fd: outPair[0])
        request.outputFormat = "mpegts"
        let e = expectMediaError { _ = try Transcoder.transcodeBlocking(request) }
        XCTAssertEqual(e?.code, "output_unwritable", String(describing: e))
    }
}
