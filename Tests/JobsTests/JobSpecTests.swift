// JobsTests.JobSpecTests: strict decoding of submissions (every bad field named by its
// JSON Pointer, duplicate keys, malformed JSON), the stored forms read back, and the
// in-process event bus's replay window and subscription lifetime.
import Events
@testable import Jobs
import JSON
import SpoolModel
import Threads
import XCTest

final class JobSpecTests: XCTestCase {
    static let file = "file_01J00000000000000000000000"

    func decode(_ text: String) throws(ModelError) -> JobSpec { try JobSpec.decode(Array(text.utf8)) }

    func problems(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> [String: String] {
        do {
            _ = try decode(text)
            XCTFail("accepted \(text)", file: file, line: line)
            return [:]
        } catch {
            XCTAssertEqual(error.code, .validationFailed, "\(error)", file: file, line: line)
            return Dictionary(error.details, uniquingKeysWith: { a, _ in a })
        }
    }

    func testSmallestBodyAndDefaults() throws {
        let spec = try decode(#"{"input":{"file_id":"\#(Self.file)"},"preset":"h264-720p"}"#)
        XCTAssertEqual(spec.inputFileID.text, Self.file)
        XCTAssertEqual(spec.outputs, .preset("h264-720p"))
        XCTAssertEqual(spec.priority, 5)
        XCTAssertNil(spec.ttlSeconds)
        XCTAssertNil(spec.maxAttempts)
        XCTAssertEqual(try decode(#"{"input":{"file_id":"\#(Self.file)"},"preset":"hls-ladder-h264"}"#).outputs, .preset("hls-ladder-h264"))
    }

    func testRichBody() throws {
        let spec = try decode("""
            {"input":{"file_id":"\(Self.file)"},
             "outputs":[{"preset":"h264-360p"},{"custom":{"codec":"hevc","width":1280,"height":720,"crf":28,"profile":"main"}}],
             "priority":9,"ttl_seconds":600,"max_attempts":2,"webhook_url":"https://hooks.example.com/spool?x=1",
             "required_capabilities":["gpu","codec:hevc"],"metadata":{"customer":"42","note":""}}
            """)
        var custom = CustomOutput()
        custom.codec = "hevc"; custom.width = 1280; custom.height = 720; custom.crf = 28; custom.profile = "main"
        XCTAssertEqual(spec.outputs, .outputs([.preset("h264-360p"), .custom(custom)]))
        XCTAssertEqual(spec.priority, 9)
        XCTAssertEqual(spec.ttlSeconds, 600)
        XCTAssertEqual(spec.maxAttempts, 2)
        XCTAssertEqual(spec.webhookURL, "https://hooks.example.com/spool?x=1")
        XCTAssertEqual(spec.requiredCapabilities, ["gpu", "codec:hevc"])
        XCTAssertEqual(spec.metadata, ["customer": "42", "note": ""])
        // The stored form reads back to the same value.
        XCTAssertEqual(JobOutputs.decodeStored(spec.outputs.storedText), spec.outputs)

        let ladder = try decode("""
            {"input":{"file_id":"\(Self.file)"},"ladder":{"rungs":[{"name":"720p","width":1280,"height":720,"max_bitrate_kbps":3000},
             {"name":"360p","width":640,"height":360,"max_bitrate_kbps":800,"profile":"main"}],"segment_seconds":6}}
            """)
        guard case .ladder(.custom(let l)) = ladder.outputs else { return XCTFail("\(ladder.outputs)") }
        XCTAssertEqual(l.rungs.map(\.name), ["720p", "360p"])
        XCTAssertEqual(l.segmentSeconds, 6)
        XCTAssertEqual(JobOutputs.decodeStored(ladder.outputs.storedText), ladder.outputs)
        XCTAssertEqual(try decode(#"{"input":{"file_id":"\#(Self.file)"},"ladder":"hls-ladder-h264"}"#).outputs, .ladder(.named("hls-ladder-h264")))
    }

    func testEveryBadFieldIsNamed() {
        let p = problems("""
            {"input":{"file_id":"nope","extra":1},"preset":"h265-4k","priority":"5","ttl_seconds":0,"max_attempts":2.5,
             "webhook_url":"ftp://x","required_capabilities":["gpu","gpu","bad cap"],"metadata":{"a":1,"b":"ok"},"colour":"red"}
            """)
        XCTAssertEqual(Set(p.keys), ["/input/file_id", "/input/extra", "/preset", "/priority", "/ttl_seconds", "/max_attempts",
                                     "/webhook_url", "/required_capabilities/1", "/required_capabilities/2", "/metadata/a", "/colour"])
        XCTAssertEqual(p["/colour"], "unknown field \"colour\"")
        XCTAssertEqual(p["/priority"], "must be an integer")
        XCTAssertTrue(p["/preset"]?.contains("unknown preset") ?? false)
    }

    /// A webhook URL's scheme is read in any case and stored in lower case; a port is 1 to
    /// 65535 (a port the sender could not use was taken, and the webhook never went out).
    func testWebhookURLSchemesAndPorts() throws {
        func spec(_ url: String) throws(ModelError) -> JobSpec {
            try decode(#"{"input":{"file_id":"\#(Self.file)"},"preset":"h264-720p","webhook_url":"\#(url)"}"#)
        }
        XCTAssertEqual(try spec("HTTP://hooks.example.com/a").webhookURL, "http://hooks.example.com/a")
        XCTAssertEqual(try spec("HttpS://Hooks.example.com:8443/A?B").webhookURL, "https://Hooks.example.com:8443/A?B")
        XCTAssertEqual(try spec("http://[::1]:65535/x").webhookURL, "http://[::1]:65535/x")
        XCTAssertEqual(try spec("http://127.0.0.1:1").webhookURL, "http://127.0.0.1:1")
        XCTAssertEqual(try spec("https://[2001:db8::1]/h").webhookURL, "https://[2001:db8::1]/h")
        for bad in ["http://h:0/", "http://h:99999/", "http://h:/", "http://h:8o/", "http://[::1]:0", "http://[::1]x", "http://[::1", "httpx://h",
                    "http://example.com:80:90/h", "http://2001:db8::1/h", "http://[]/h", "http://[]:80/h", "http://[example.com]/h",
                    "http://[1.2.3.4]/h", "http://:80/h", "http://user:pw@host/"] {
            let p = problems(#"{"input":{"file_id":"\#(Self.file)"},"preset":"h264-720p","webhook_url":"\#(bad)"}"#)
            XCTAssertEqual(Array(p.keys), ["/webhook_url"], bad)
        }
        XCTAssertEqual(problems(#"{"input":{"file_id":"\#(Self.file)"},"preset":"h264-720p","webhook_url":"http://h:0/"}"#)["/webhook_url"],
                       "must have a port from 1 to 65535")
        XCTAssertEqual(problems(#"{"input":{"file_id":"\#(Self.file)"},"preset":"h264-720p","webhook_url":"http://u:p@h/"}"#)["/webhook_url"],
                       "must not carry user information (user:password@)")
    }

    /// null is not "absent": an optional field given null is the wrong type, as the
    /// OpenAPI document (no nullable request field) says.
    func testNullIsAWrongTypeNotADefault() {
        let top = ["priority", "ttl_seconds", "max_attempts", "webhook_url", "required_capabilities", "metadata", "quality", "limits"]
        for field in top {
            XCTAssertEqual(Set(problems(#"{"input":{"file_id":"\#(Self.file)"},"preset":"h264-720p","\#(field)":null}"#).keys), ["/" + field], field)
        }
        XCTAssertEqual(Set(problems(#"{"input":{"file_id":"\#(Self.file)"},"preset":"h264-720p","limits":{"max_seconds":null}}"#).keys), ["/limits/max_seconds"])
        XCTAssertEqual(Set(problems(#"{"input":{"file_id":"\#(Self.file)"},"custom":{"codec":"h264","crf":null}}"#).keys), ["/custom/crf"])
        XCTAssertEqual(Set(problems(#"{"input":{"file_id":"\#(Self.file)"},"preset":null}"#).keys), ["/preset"])
    }

    /// A body of many unknown fields (about a hundred thousand fit the 1 MiB limit) gets a
    /// bounded answer: the first 50 are listed, the rest counted in the message.
    func testManyUnknownFieldsAreCountedNotAllListed() {
        let n = 20_000
        let extra = (0..<n).map { "\"u\($0)\":1" }.joined(separator: ",")
        do {
            _ = try decode(#"{"input":{"file_id":"\#(Self.file)"},"preset":"h264-720p","a/b~c":0,\#(extra)}"#)
            XCTFail("accepted")
        } catch {
            XCTAssertEqual(error.code, .validationFailed)
            XCTAssertEqual(error.details.count, FieldReader.listedMax)
            XCTAssertEqual(error.details.first?.0, "/a~1b~0c")
            XCTAssertEqual(error.details.last?.0, "/u48")
            XCTAssertTrue(error.message.hasSuffix("(and \(n) more, \(n + 1 - FieldReader.listedMax) of them not listed)"), error.message)
        }
    }

    func testOutputFormsAndRanges() {
        XCTAssertEqual(Set(problems(#"{"input":{"file_id":"\#(Self.file)"}}"#).keys), ["/preset"])
        XCTAssertEqual(Set(problems(#"{"input":{"file_id":"\#(Self.file)"},"preset":"h264-720p","ladder":"hls-ladder-h264"}"#).keys), ["/ladder"])
        XCTAssertEqual(Set(problems(#"{"preset":"h264-720p"}"#).keys), ["/input"])
        XCTAssertEqual(Set(problems(#"{"input":{"file_id":"\#(Self.file)"},"priority":10,"ttl_seconds":99999999999999999999,"preset":"h264-720p"}"#).keys),
                       ["/priority", "/ttl_seconds"])
        // Every out-of-range custom setting is named, not only the first.
        let custom = problems(#"{"input":{"file_id":"\#(Self.file)"},"custom":{"codec":"h264","width":17,"crf":99,"speed":"warp","audio_bitrate_kbps":1}}"#)
        XCTAssertEqual(Set(custom.keys), ["/custom/width", "/custom/crf", "/custom/speed", "/custom/audio_bitrate_kbps"])
        let outputs = problems(#"{"input":{"file_id":"\#(Self.file)"},"outputs":[{"preset":"h264-720p"},{"preset":"hls-ladder-h264"},{"custom":{"crf":"x"}},{}]}"#)
        XCTAssertEqual(Set(outputs.keys), ["/outputs/1/preset", "/outputs/2/custom/crf", "/outputs/3/preset"])
        let rungs = problems(#"{"input":{"file_id":"\#(Self.file)"},"ladder":{"rungs":[{"name":"a","width":1280,"height":720,"max_bitrate_kbps":3000},{"name":"b","width":7,"height":360,"max_bitrate_kbps":800}]}}"#)
        XCTAssertEqual(Set(rungs.keys), ["/ladder/rungs/1/width"])
        XCTAssertEqual(Set(problems(#"{"input":{"file_id":"\#(Self.file)"},"preset":"h264-720p","metadata":{"\#(String(repeating: "k", count: 65))":"v"}}"#).keys).count, 1)
        // Lengths count characters, as the OpenAPI document's maxLength does: 64 and 512 "é" (two bytes each) fit.
        let wide = try? decode(#"{"input":{"file_id":"\#(Self.file)"},"preset":"h264-720p","metadata":{"\#(String(repeating: "é", count: 64))":"\#(String(repeating: "é", count: 512))"}}"#)
        XCTAssertEqual(wide?.metadata.values.first?.unicodeScalars.count, 512)
        XCTAssertEqual(Set(problems(#"{"input":{"file_id":"\#(Self.file)"},"preset":"h264-720p","metadata":{"k":"\#(String(repeating: "é", count: 513))"}}"#).keys), ["/metadata/k"])
        XCTAssertEqual(Set(problems("[1]").keys), [""])
    }

    func testDuplicateKeysAre422NamingTheMember() {
        XCTAssertEqual(problems(#"{"input":{"file_id":"\#(Self.file)"},"preset":"h264-720p","preset":"h264-360p"}"#), ["/preset": "duplicate key"])
        XCTAssertEqual(problems(#"{"input":{"file_id":"\#(Self.file)","file_id":"\#(Self.file)"},"preset":"h264-720p"}"#), ["/input/file_id": "duplicate key"])
        XCTAssertEqual(Set(problems(#"{"input":{"file_id":"x"},"outputs":[{"preset":"a"},{"preset":"b","pre\u0073et":"c"}]}"#).keys), ["/outputs/1/preset"])
        XCTAssertEqual(Set(problems(#"{"metadata":{"a/b":"1","a\/b":"2"}}"#).keys), ["/metadata/a~1b"])
    }

    func testMalformedJSONIs400() {
        for bad in ["", "{", #"{"input":}"#, "{\"a\":1}x", "\u{FF}"] {
            do {
                _ = try decode(bad)
                XCTFail("accepted \(bad)")
            } catch {
                XCTAssertEqual(error.code, .invalidJSON, bad)
            }
        }
    }

    func testRFC3339() {
        XCTAssertEqual(RFC3339.format(0), "1970-01-01T00:00:00.000Z")
        XCTAssertEqual(RFC3339.format(1_800_000_000_123), "2027-01-15T08:00:00.123Z")
        XCTAssertEqual(RFC3339.format(951_782_400_000), "2000-02-29T00:00:00.000Z")
        XCTAssertEqual(RFC3339.format(253_402_300_799_999), "9999-12-31T23:59:59.999Z")
        XCTAssertEqual(RFC3339.format(253_402_300_800_000), "10000-01-01T00:00:00.000Z")
        XCTAssertEqual(RFC3339.format(-1), "1969-12-31T23:59:59.999Z")
    }

    func testBackoffDoublesUpToTheCap() {
        var s = JobSettings()
        s.retryBackoffSeconds = 5
        s.retryBackoffMaxSeconds = 300
        XCTAssertEqual((1...8).map { s.backoffMilliseconds(afterFailures: $0) }, [5_000, 10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000])
        XCTAssertEqual(s.backoffMilliseconds(afterFailures: 1_000), 300_000)
        // With jitter: every wait within backoff × (1 ± jitter), and not all the same.
        var jittered = s
        jittered.retryJitter = 0.5
        var rng = SystemRandomNumberGenerator()
        let waits = (0..<200).map { _ in jittered.retryWait(afterFailures: 2, using: &rng) }
        XCTAssertTrue(waits.allSatisfy { (5_000...15_000).contains($0) }, "\(waits.min()!)...\(waits.max()!)")
        XCTAssertGreaterThan(Set(waits).count, 50)
        jittered.retryJitter = 0
        XCTAssertEqual(jittered.retryWait(afterFailures: 2, using: &rng), 10_000)
    }
}

final class EventBusTests: XCTestCase {
    func testReplayWindowResumeAndLiveOrder() async {
        let bus = InProcessEventBus(replayWindow: { 3 })
        var ids: [UInt64] = []
        for i in 0..<5 { ids.append(bus.publishNow(subject: "job_a", type: .progressUpdated, payload: #"{"n":\#(i)}"#).id) }
        bus.publishNow(subject: "job_b", type: .jobCreated, payload: "{}")
        XCTAssertEqual(ids, ids.sorted())
        XCTAssertEqual(bus.retained(subject: "job_a").map(\.id), Array(ids[2...]), "only the window is kept")

        let all = await bus.subscribe(subject: "job_a", after: nil)
        XCTAssertEqual(all.replayedThrough, ids[4])
        let resumed = await bus.subscribe(subject: "job_a", after: ids[3])
        let live = await bus.publish(subject: "job_a", type: .jobFinished, payload: "{}")
        var a = all.events.makeAsyncIterator(), r = resumed.events.makeAsyncIterator()
        var gotAll: [UInt64] = [], gotResumed: [UInt64] = []
        for _ in 0..<4 { gotAll.append(await a.next()!.id) }
        for _ in 0..<2 { gotResumed.append(await r.next()!.id) }
        XCTAssertEqual(gotAll, [ids[2], ids[3], ids[4], live.id])
        XCTAssertEqual(gotResumed, [ids[4], live.id])
    }

    /// Ids are the calendar's milliseconds << 20 plus a sequence: they rise within a
    /// millisecond, and a bus made later (a restart) starts above every id of the one before,
    /// so a Last-Event-ID from before the restart orders before everything after it.
    func testIdsRiseAcrossARestart() async {
        let clock = ManualClock(unixMilliseconds: 1_800_000_000_000)
        let before = InProcessEventBus(clock: clock)
        let a = (0..<3).map { _ in before.publishNow(subject: "job_a", type: .progressUpdated, payload: "{}").id }
        XCTAssertEqual(a, [Event.firstID(atUnixMilliseconds: 1_800_000_000_000), a[0] + 1, a[0] + 2])
        clock.advance(by: .milliseconds(1))
        let after = InProcessEventBus(clock: clock)
        let b = after.publishNow(subject: "job_a", type: .jobFinished, payload: "{}").id
        XCTAssertGreaterThan(b, a[2])
        let resumed = await after.subscribe(subject: "job_a", after: a[2])
        XCTAssertEqual(resumed.replayedThrough, b, "the old id orders before the new bus's events: they are replayed")
        // Within one bus ids never go back, even when the calendar does.
        let stepped = ManualClock(unixMilliseconds: 1_800_000_000_000)
        let bus = InProcessEventBus(clock: stepped)
        let x = bus.publishNow(subject: "s", type: .jobCreated, payload: "{}").id
        let y = InProcessEventBus(clock: ManualClock(unixMilliseconds: 1_799_999_999_000)).publishNow(subject: "s", type: .jobCreated, payload: "{}").id
        XCTAssertLessThan(y, x, "a second bus on an earlier calendar starts lower (the documented limit)")
        XCTAssertEqual(bus.publishNow(subject: "s", type: .jobCreated, payload: "{}").id, x + 1)
    }

    func testSubscriptionEndsWithItsConsumer() async {
        let bus = InProcessEventBus()
        let sub = await bus.subscribe(subject: "job_x", after: nil)
        XCTAssertEqual(bus.subscriberCount(subject: "job_x"), 1)
        let consumer = Task { for await _ in sub.events {} }
        consumer.cancel()
        await consumer.value
        XCTAssertEqual(bus.subscriberCount(subject: "job_x"), 0)
        let global = await bus.subscribeAll()
        bus.publishNow(subject: "eng_1", type: .engineHeartbeat, payload: "{}")
        var it = global.makeAsyncIterator()
        let v1 = await it.next()?.type
        XCTAssertEqual(v1, .engineHeartbeat)
    }
}

extension JobSpecTests {
    func testTranscodeLimitsAreReadInRangeAndRoundTrip() throws {
        let spec = try decode(#"{"input":{"file_id":"\#(Self.file)"},"preset":"h264-360p","limits":{"max_seconds":30,"max_cpu_seconds":60,"max_memory_mib":512}}"#)
        XCTAssertEqual(spec.limits, TranscodeLimits(maxSeconds: 30, maxCPUSeconds: 60, maxMemoryMiB: 512))
        XCTAssertTrue(try decode(#"{"input":{"file_id":"\#(Self.file)"},"preset":"h264-360p"}"#).limits.isEmpty)
        // The transcode form (lease answers, the worker's request) carries them back.
        var w = JSONWriter()
        spec.encodeTranscodeForm(to: &w)
        XCTAssertEqual(try JobSpec.decode(Array(w.text.utf8)).limits, spec.limits)
        // Required capabilities travel too (they choose an engine's plugin).
        var needs = spec
        needs.requiredCapabilities = ["handbrake", "handbrake-preset:Fast_1080p30"]
        var w2 = JSONWriter()
        needs.encodeTranscodeForm(to: &w2)
        XCTAssertEqual(try JobSpec.decode(Array(w2.text.utf8)).requiredCapabilities, needs.requiredCapabilities)
        XCTAssertEqual(TranscodeLimits.decodeStored(spec.limits.jsonText), spec.limits)

        let bad = problems(#"{"input":{"file_id":"\#(Self.file)"},"preset":"h264-360p","limits":{"max_seconds":0,"max_memory_mib":1,"max_cpu_seconds":"9","gpu":1}}"#)
        XCTAssertNotNil(bad["/limits/max_seconds"], "\(bad)")
        XCTAssertNotNil(bad["/limits/max_memory_mib"], "\(bad)")
        XCTAssertNotNil(bad["/limits/max_cpu_seconds"], "\(bad)")
        XCTAssertNotNil(bad["/limits/gpu"], "\(bad)")
        XCTAssertNotNil(problems(#"{"input":{"file_id":"\#(Self.file)"},"preset":"h264-360p","limits":[1]}"#)["/limits"])
    }
}
