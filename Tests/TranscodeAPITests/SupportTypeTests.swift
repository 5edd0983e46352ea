// The small pieces beside the contract: MediaPath's byte handling, the one set of number
// formatters, HostMetrics' /proc parsing, and the API's bodies (escaped by the writer).
import HostMetrics
import JSON
import ProcFS
import SpoolAPI
import SpoolModel
import Threads
import TranscodeAPI
import Web
import XCTest

final class SupportTypeTests: XCTestCase {
    func testMediaPathKeepsBytes() {
        let p = MediaPath(bytes: Array("dir/sub/".utf8) + [0xFF, 0x2E, 0x4D, 0x50, 0x34])   // "\xFF.MP4"
        XCTAssertNil(p.string)
        XCTAssertEqual(p.directory, "dir/sub")
        XCTAssertEqual(p.lastComponent, [0xFF, 0x2E, 0x4D, 0x50, 0x34])
        XCTAssertEqual(p.fileExtension, "mp4")
        XCTAssertEqual(MediaPath("/a").directory, "/")
        XCTAssertEqual(MediaPath("a").directory, ".")
        XCTAssertEqual(MediaPath(".profile").fileExtension, "")
        XCTAssertEqual(MediaPath("out/").appending("x.ts"), "out/x.ts")
    }

    func testLimitsWithoutLibav() {
        var limits = MediaLimits()
        XCTAssertTrue(limits.allows(demuxer: "mov,mp4,m4a,3gp,3g2,mj2"))
        XCTAssertFalse(limits.allows(demuxer: "hls"))
        XCTAssertEqual(limits.decodeErrorBudget(packets: 10), 5)
        XCTAssertEqual(limits.decodeErrorBudget(packets: 1000), 50)
        limits.maxDecodeErrorFraction = .nan
        XCTAssertEqual(limits.decodeErrorBudget(packets: 1000), 5)
    }

    func testNumberFormats() {
        XCTAssertEqual(NumberFormat.fixed(2, places: 2), "2.00")
        XCTAssertEqual(NumberFormat.fixed(1.005, places: 1), "1.0")
        XCTAssertEqual(NumberFormat.fixed(0.98765, places: 3), "0.988")
        XCTAssertEqual(NumberFormat.fixed(-0.5, places: 2), "-0.50")
        XCTAssertEqual(NumberFormat.fixed(-0.0001, places: 2), "0.00")
        XCTAssertEqual(NumberFormat.fixed(25, places: 3), "25.000")
        XCTAssertEqual(NumberFormat.fixed(29.97002997, places: 3), "29.970")
        XCTAssertEqual(NumberFormat.fixed(7.6, places: 0), "8")
        XCTAssertEqual(NumberFormat.fixed(.infinity, places: 2), "?")
        XCTAssertEqual(NumberFormat.fixed(1e300, places: 2), "1e+300")
        XCTAssertEqual(NumberFormat.seconds(2), "2")
        XCTAssertEqual(NumberFormat.seconds(21600), "21600")
        XCTAssertEqual(NumberFormat.seconds(2.25), "2.3")
        XCTAssertEqual(NumberFormat.bytes(900), "900 bytes")
        XCTAssertEqual(NumberFormat.bytes(225 * 1024), "225 KiB")
        XCTAssertEqual(NumberFormat.bytes(200_000), "195.3 KiB")
        XCTAssertEqual(NumberFormat.bytes(Int64(3) << 29), "1.5 GiB")
        XCTAssertEqual(NumberFormat.bytes(Int.max), "8 EiB")
    }

    /// Service ports come from below the ephemeral range, where no outgoing connection can
    /// take one between its choice and the service's bind; each is handed out once.
    func testListenPortsAreFreeAndBelowTheEphemeralRange() throws {
        XCTAssertEqual(ListenPorts.ephemeralRange("32768\t60999\n"), 32768...60999)
        XCTAssertEqual(ListenPorts.ephemeralRange("1024 65535"), 1024...65535)
        XCTAssertNil(ListenPorts.ephemeralRange("60999 32768"))
        XCTAssertNil(ListenPorts.ephemeralRange("32768"))
        XCTAssertNil(ListenPorts.ephemeralRange("a b"))
        XCTAssertEqual(ListenPorts.candidates(ephemeral: 32768...60999), 10_000...32767)
        XCTAssertNil(ListenPorts.candidates(ephemeral: 1024...65535), "too few below: the kernel picks")
        let range = try XCTUnwrap(ProcFile.read("/proc/sys/net/ipv4/ip_local_port_range").flatMap(ListenPorts.ephemeralRange))
        var seen = Set<UInt16>()
        for _ in 0..<50 {
            let port = try XCTUnwrap(ListenPorts.unused())
            XCTAssertTrue(seen.insert(port).inserted, "port \(port) handed out twice")
            if ListenPorts.candidates(ephemeral: range) != nil { XCTAssertLessThan(port, range.lowerBound) }
        }
    }

    func testProcParsers() {
        XCTAssertEqual(ProcFile.loadAverage1m("0.69 0.52 0.40 1/123 4567\n"), 0.69)
        XCTAssertEqual(ProcFile.loadAverage1m(""), 0)
        let meminfo = "MemTotal:       24683656 kB\nMemFree:         1000 kB\nMemAvailable:   23950564 kB\n"
        XCTAssertEqual(ProcFile.meminfoBytes(meminfo, "MemTotal"), 24_683_656 * 1024)
        XCTAssertEqual(ProcFile.meminfoBytes(meminfo, "MemAvailable"), 23_950_564 * 1024)
        XCTAssertEqual(ProcFile.meminfoBytes(meminfo, "Mem"), 0)
        XCTAssertEqual(ProcFile.residentPages("12345 678 90 1 0 2 0\n"), 678)
        // /proc/PID/status separates with a tab, sometimes followed by spaces.
        XCTAssertEqual(ProcFile.field("Seccomp", in: "Name:\tspool\nSeccomp:\t2\nVmRSS:\t   4096 kB\n"), 2)
        XCTAssertEqual(ProcFile.field("VmRSS", in: "Seccomp:\t2\nVmRSS:\t   4096 kB\n"), 4096)
        XCTAssertNil(ProcFile.field("VmPin", in: "VmRSS:\t   4096 kB\n"))
        XCTAssertNil(ProcFile.read("/proc/self/no-such-file"))
        XCTAssertEqual(ProcFile.read("/proc/self/comm", limit: 3)?.count, 3)
    }

    func testResourceMonitorReadsProc() {
        let s = ProcResourceMonitor().sample()
        XCTAssertGreaterThan(s.cpus, 0)
        XCTAssertGreaterThan(s.memoryTotalBytes, s.memoryAvailableBytes)
        XCTAssertGreaterThan(s.memoryAvailableBytes, 0)
        XCTAssertGreaterThan(s.processResidentBytes, 1 << 20)
    }

    func testVersionJSONEscapesWhatItIsGiven() throws {
        let hostile = "6.1.0-\"quoted\"\\back\nline\u{7}\u{1F}é"
        let bytes = VersionInfo(version: SpoolVersion.string, kernel: hostile).jsonBytes
        let doc = try JSONDocument(parsing: bytes)
        XCTAssertEqual(try doc.root["kernel"]?.string(), hostile)
        XCTAssertEqual(try doc.root["version"]?.string(), SpoolVersion.string)
        XCTAssertNil(doc.root["api"])
        XCTAssertFalse(bytes.contains(0x0A), "a raw newline inside a JSON string")
    }

    func testHealthAndVersionRoutes() async throws {
        // Uptime on an injected clock: exactly what the clock says, no waiting.
        let clock = ManualClock()
        let router = Router { r in SpoolAPI.install(on: &r, clock: clock) }
        clock.advance(by: .seconds(3))
        let health = await router.respond(to: Request(method: "GET", target: "/api/v1/health", headers: [("Host", "x")]))
        XCTAssertEqual(health.status, 200)
        XCTAssertEqual(health.header("Content-Type"), "application/json")
        let h = try JSONDocument(parsing: health.body)
        XCTAssertEqual(try h.root["status"]?.string(), "ok")
        XCTAssertEqual(try h.root["uptime_seconds"]?.int64(), 3)
        let version = await router.respond(to: Request(method: "GET", target: "/api/v1/version", headers: [("Host", "x")]))
        XCTAssertEqual(String(decoding: version.body, as: UTF8.self), #"{"version":"0.1.0","api":"v1"}"#)
        let missing = await router.respond(to: Request(method: "GET", target: "/api/v1/nope", headers: [("Host", "x")]))
        XCTAssertEqual(missing.status, 404)
    }
}
