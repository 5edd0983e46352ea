// S3Bench: one object written to and read back from an S3-compatible store through Spool's
// S3Storage (SigV4, multipart with bounded parts in flight, on Spool's HTTP client), timed;
// s3_vs_boto3.sh runs boto3's managed transfer (upload_fileobj/download_fileobj, the same
// part size and concurrency) against the same server in alternating rounds and prints the
// ratios. The object is generated in memory (a repeating pattern) so neither side reads a
// disk; the bytes read back are compared with the pattern (in the download's CPU time:
// boto3's side compares too). Prints MiB/s and MiB per CPU-second of this process.
// Usage: S3Bench --endpoint URL --bucket B --key-id K --secret S --mib N --part-mib P --parts-in-flight C
import Glibc
import S3
import Storage

func argument(_ name: String, _ fallback: String) -> String {
    let args = CommandLine.arguments
    if let i = args.firstIndex(of: name), i + 1 < args.count { return args[i + 1] }
    return fallback
}

/// `total` bytes of a 1 MiB pattern, in 64 KiB pieces.
final class PatternSource: AsyncByteSource {
    let block: [UInt8]
    let total: Int
    var sent = 0
    init(total: Int) {
        self.total = total
        var x: UInt64 = 0x9E37_79B9_7F4A_7C15
        block = (0..<(1 << 20)).map { _ in x = x &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407; return UInt8(truncatingIfNeeded: x >> 33) }
    }
    func read(_ consume: (UnsafeRawBufferPointer) throws -> Void) async throws -> Bool {
        guard sent < total else { return false }
        let at = sent % block.count
        let n = min(65_536, total - sent, block.count - at)
        try block[at..<(at + n)].withUnsafeBytes { try consume($0) }
        sent += n
        return true
    }
}

let mib = Int(argument("--mib", "64"))!
var config = S3StorageConfiguration(endpoint: try S3Endpoint(
    url: argument("--endpoint", "http://127.0.0.1:9000"), bucket: argument("--bucket", "bench"), region: "us-east-1",
    credentials: S3Credentials(accessKeyID: argument("--key-id", "bench"), secretAccessKey: argument("--secret", "bench"))))
config.partSize = Int(argument("--part-mib", "8"))! << 20
config.partsInFlight = Int(argument("--parts-in-flight", "2"))!
let storage = try await S3Storage.open(config)
let key = "bench_" + String(UInt32.random(in: 0...UInt32.max))
/// This process's CPU time (user + system, every thread), in seconds.
func cpuSeconds() -> Double {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6
}
let clock = ContinuousClock()
var start = clock.now
var cpu = cpuSeconds()
let stored = try await storage.write(key: key, from: PatternSource(total: mib << 20))
let up = clock.now - start
let upCPU = cpuSeconds() - cpu
/// Compares what comes back with the pattern, piece by piece.
final class Checking: @unchecked Sendable {
    let block: [UInt8]
    var bytes = 0
    var mismatches = 0
    init(_ block: [UInt8]) { self.block = block }
    func check(_ piece: [UInt8]) {
        for b in piece {
            if b != block[bytes % block.count] { mismatches += 1 }
            bytes += 1
        }
    }
}
let checking = Checking(PatternSource(total: 0).block)
start = clock.now
cpu = cpuSeconds()
_ = try await storage.read(key: key) { piece in checking.check(piece) }
let down = clock.now - start
let downCPU = cpuSeconds() - cpu
try await storage.delete(key: key)
await storage.shutdown()
func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
guard checking.mismatches == 0, checking.bytes == mib << 20 else {
    print("S3Bench: the object read back differs (\(checking.bytes) bytes, \(checking.mismatches) wrong)")
    exit(1)
}
print("upload_mib_s \(Double(mib) / seconds(up)) download_mib_s \(Double(mib) / seconds(down)) "
      + "upload_mib_per_cpu_s \(Double(mib) / upCPU) download_mib_per_cpu_s \(Double(mib) / downCPU)")
