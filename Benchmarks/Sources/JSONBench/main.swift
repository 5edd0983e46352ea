// JSONBench: parse a ~1 MB array of job records and read the same fields from every
// record with Spool's JSON module and with Foundation's JSONDecoder (Codable), in the same
// process, rounds interleaved. Both must produce the checksum gen_jobs.py printed (the
// result is checked before anything is timed). The simdjson side is a C++ harness
// (yardstick/simdjson_bench.cpp) run by run.sh on the same file.
//
// Usage: JSONBench FILE EXPECTED_CHECKSUM [ITERATIONS]
// With JSONBENCH_COUNT_ALLOCATIONS=1 and LD_PRELOAD of yardstick/malloc_count.so, it counts
// instead: heap allocations per parse of the whole list and of its first tenth, which must
// be equal (stage 2 allocates per parse, never per value); exit 1 when they differ.
import Foundation
import JSON
#if canImport(Glibc)
import Glibc
#endif

@main
struct JSONBench {
    struct Output: Decodable { let width: Int64; let height: Int64 }
    struct Input: Decodable { let bytes: UInt64 }
    struct Job: Decodable {
        let id: String
        let priority: Int64
        let progress: Double
        let input: Input
        let outputs: [Output]
    }

    /// Spool: parse (stage 1 + stage 2, full validation), then read fields on demand.
    static func spool(_ bytes: [UInt8]) throws -> (UInt64, Double) {
        try read(try JSONDocument(parsing: bytes))
    }

    /// The reading half of `spool`: the same fields from every record of a parsed document.
    static func read(_ doc: JSONDocument) throws -> (UInt64, Double) {
        // Scalars through the typed fields (no value is made for them); containers and
        // the id (read in place, as simdjson's string_view) as values, through the same
        // typed fields (a missing one is an error, as for the scalars).
        var sum: UInt64 = 0
        var progress = 0.0
        for job in doc.root.elements {
            let id = try job.field("id", as: JSONValue.self)
            let input = try job.field("input", as: JSONValue.self)
            let outs = try job.field("outputs", as: JSONValue.self)
            sum &+= UInt64(try id.withUTF8 { $0.count })
            sum &+= UInt64(bitPattern: try job.field("priority", as: Int64.self))
            progress += try job.field("progress", as: Double.self)
            sum &+= try input.field("bytes", as: UInt64.self)
            for o in outs.elements {
                sum &+= UInt64(bitPattern: try o.field("width", as: Int64.self)) &+ UInt64(bitPattern: try o.field("height", as: Int64.self))
            }
        }
        return (sum, progress)
    }

    static func foundation(_ data: Data) throws -> (UInt64, Double) {
        let jobs = try JSONDecoder().decode([Job].self, from: data)
        var sum: UInt64 = 0
        var progress = 0.0
        for j in jobs {
            sum &+= UInt64(j.id.utf8.count)
            sum &+= UInt64(bitPattern: j.priority)
            progress += j.progress
            sum &+= j.input.bytes
            for o in j.outputs { sum &+= UInt64(bitPattern: o.width) &+ UInt64(bitPattern: o.height) }
        }
        return (sum, progress)
    }

    static func time(_ body: () throws -> Void) rethrows -> Double {
        let t0 = ContinuousClock.now
        try body()
        let d = ContinuousClock.now - t0
        return Double(d.components.seconds) * 1e6 + Double(d.components.attoseconds) / 1e12
    }

    /// Allocations per parse of the list and of its first tenth (see the header).
    static func countAllocations(_ bytes: [UInt8]) throws -> Int32 {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "spool_malloc_calls") else {
            print("allocation count: spool_malloc_calls not found (run with LD_PRELOAD=malloc_count.so)")
            return 1
        }
        let calls = unsafeBitCast(symbol, to: (@convention(c) () -> UInt64).self)
        let full = try JSONDocument(parsing: bytes)
        let records = full.root.elements.map { $0.rawText }
        let tenth = Array(("[" + records.prefix(max(1, records.count / 10)).joined(separator: ",") + "]").utf8)
        func perParse(_ doc: [UInt8]) throws -> (allocations: UInt64, values: Int) {
            var values = try JSONDocument(parsing: doc).valueCount   // warm-up (runtime metadata, first pages)
            var best = UInt64.max
            for _ in 0..<5 {
                let before = calls()
                for _ in 0..<10 { values = try JSONDocument(parsing: doc).valueCount }
                best = min(best, (calls() - before) / 10)
            }
            return (best, values)
        }
        let a = try perParse(bytes), b = try perParse(tenth)
        print("JSON allocations per parse: \(a.allocations) for \(bytes.count) bytes (\(a.values) values), \(b.allocations) for \(tenth.count) bytes (\(b.values) values)")
        if a.allocations != b.allocations {
            print("JSON allocations per parse grow with the document: stage 2 allocates per value")
            return 1
        }
        print("JSON allocations per parse: constant (none per value)")
        return 0
    }

    static func main() throws {
        let args = CommandLine.arguments
        guard args.count >= 3, let expected = UInt64(args[2]) else {
            FileHandle.standardError.write("usage: JSONBench FILE EXPECTED_CHECKSUM [ITERATIONS]\n".data(using: .utf8)!)
            exit(2)
        }
        let iterations = args.count > 3 ? Int(args[3]) ?? 200 : 200
        if ProcessInfo.processInfo.environment["JSONBENCH_PROFILE_PARSE"] != nil {   // for perf record
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: args[1])))
            for _ in 0..<iterations { _ = try JSONDocument(parsing: bytes) }
            return
        }
        if ProcessInfo.processInfo.environment["JSONBENCH_PROFILE_READ"] != nil {   // for perf record
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: args[1])))
            let doc = try JSONDocument(parsing: bytes)
            var times: [Double] = []
            for _ in 0..<iterations { times.append(try time { _ = try read(doc) }) }
            print("read only: median \(times.sorted()[times.count / 2]) us")
            return
        }
        if ProcessInfo.processInfo.environment["JSONBENCH_COUNT_ALLOCATIONS"] != nil {
            exit(try countAllocations([UInt8](try Data(contentsOf: URL(fileURLWithPath: args[1])))))
        }
        let data = try Data(contentsOf: URL(fileURLWithPath: args[1]))
        let bytes = [UInt8](data)
        // Check results before timing.
        let (s1, _) = try spool(bytes)
        let (s2, _) = try foundation(data)
        guard s1 == expected, s2 == expected else {
            print("checksum mismatch: spool \(s1), foundation \(s2), expected \(expected)")
            exit(1)
        }
        var spoolTimes: [Double] = [], foundationTimes: [Double] = [], scalarTimes: [Double] = []
        var scalarOptions = JSONDocument.Options(), simdOptions = JSONDocument.Options()
        scalarOptions.kernel = .scalar
        simdOptions.kernel = .simd
        var sink = 0.0
        // Foundation is much slower: run it a tenth as often, interleaved.
        for i in 0..<iterations {
            spoolTimes.append(try time { sink += try spool(bytes).1 })
            if i % 10 == 0 {
                foundationTimes.append(try time { sink += try foundation(data).1 })
                scalarTimes.append(try time { _ = try JSONDocument(parsing: bytes, options: scalarOptions) })
            }
        }
        // Parse only, the default kernel (.native: the C stage 1 where the CPU has AVX2 and
        // PCLMULQDQ, in its AVX-512 form where it has AVX-512 F, BW and VBMI2), the C
        // kernel's AVX2 form there too, and the Swift SIMD kernel, interleaved.
        var nativeParse: [Double] = [], avx2Parse: [Double] = [], simdParse: [Double] = []
        var avx2Options = JSONDocument.Options()
        avx2Options.kernel = .nativeAVX2
        for _ in 0..<max(10, iterations / 4) {
            nativeParse.append(try time { _ = try JSONDocument(parsing: bytes) })
            if JSONScanKernel.nativeAVX512Available { avx2Parse.append(try time { _ = try JSONDocument(parsing: bytes, options: avx2Options) }) }
            simdParse.append(try time { _ = try JSONDocument(parsing: bytes, options: simdOptions) })
        }
        func median(_ xs: [Double]) -> Double { let s = xs.sorted(); return s[s.count / 2] }
        let mb = Double(bytes.count) / 1e6
        let sp = median(spoolTimes), fd = median(foundationTimes)
        print(String(format: "spool JSON (parse + read fields): median %.1f us, %.0f MB/s", sp, mb / (sp / 1e6)))
        let native = JSONScanKernel.nativeAVX512Available ? "C AVX-512 stage 1" : JSONScanKernel.nativeAvailable ? "C AVX2 stage 1" : "no AVX2: Swift SIMD"
        print("spool JSON parse only (\(native)): " + String(format: "median %.1f us, %.0f MB/s", median(nativeParse), mb / (median(nativeParse) / 1e6)))
        if !avx2Parse.isEmpty {
            print(String(format: "spool JSON parse only (C AVX2 stage 1): median %.1f us, %.0f MB/s", median(avx2Parse), mb / (median(avx2Parse) / 1e6)))
        }
        print(String(format: "spool JSON parse only (Swift SIMD stage 1): median %.1f us, %.0f MB/s", median(simdParse), mb / (median(simdParse) / 1e6)))
        print(String(format: "spool JSON parse only (scalar):   median %.1f us, %.0f MB/s", median(scalarTimes), mb / (median(scalarTimes) / 1e6)))
        print(String(format: "Foundation JSONDecoder (Codable): median %.1f us, %.0f MB/s", fd, mb / (fd / 1e6)))
        print(String(format: "spool / JSONDecoder: %.1fx", fd / sp))
        print("spool_median_us=\(String(format: "%.1f", sp)) checksum=\(s1) sink=\(sink > 0)")
    }
}
