// SchedulerBench: jobs scheduled per second by the dispatcher's fair scheduler with 100
// engines asking for work, on the real services (SQLite, WAL, synchronous=FULL, in a
// directory on the same disk as the yardstick). N jobs from three tenants (weights 3:2:1)
// are submitted first; then rounds offer every free engine at once (Scheduler.offer, what
// one round does for engines parked in long polls); each assignment is a committed
// transition with a new lease epoch. Engines given a job complete it at once (outside the
// timed part) and ask again. Printed: jobs scheduled per second of round time, and the
// shares each tenant got while all three were waiting.
//   SchedulerBench DIR JOBS
import Dispatcher
import Engines
import Foundation
import Jobs
import ServerConfig
import SpoolModel
import Threads

@main
struct SchedulerBench {
    static func main() async throws {
        let args = CommandLine.arguments
        guard args.count == 3, let total = Int(args[2]), total >= 3 else {
            print("usage: SchedulerBench DIR JOBS"); exit(2)
        }
        let dir = args[1]
        try? FileManager.default.removeItem(atPath: dir)
        var settings = ServerSettings()
        settings.scheduler.tenantWeights = "a=3,b=2,c=1"
        let server = try await DispatchServer.open(dataDirectory: dir, settings: LiveSettings(settings))
        let tenants = ["a", "b", "c"]
        for i in 0..<total {
            let spec = JobSpec(inputFileID: FileID("file_01ARZ3NDEKTSV4RRFFQ69G5FAV")!, outputs: .preset("h264-720p"))
            _ = try await server.jobs.submit(tenant: tenants[i % 3], spec: spec, idempotencyKey: nil, requestHash: "", render: { _ in [] })
        }
        var engines: [EngineID] = []
        for i in 0..<100 {
            engines.append(try await server.engines.register(name: "bench-\(i)", host: "bench", capabilitiesJSON: #"{"encoders":["libx264"]}"#,
                                                             credential: "bench-credential-\(i)-0123456789").id)
        }
        let caps: Set<String> = ["libx264", "h264"]
        var scheduled = 0, rounds = 0
        var order: [String] = []
        var roundSeconds = 0.0
        var free = engines
        while scheduled < total {
            let t0 = DispatchTime.now().uptimeNanoseconds
            let answers = await server.scheduler.offer(free.map { ($0, caps) })
            roundSeconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            rounds += 1
            var given: [(EngineID, Job)] = []
            for (e, job) in zip(free, answers) { if let job { given.append((e, job)) } }
            if given.isEmpty { break }
            scheduled += given.count
            // Complete them (not timed) so the engines ask again.
            for (e, job) in given {
                order.append(job.tenant)
                _ = try await server.jobs.complete(job.id, engine: e, leaseEpoch: job.leaseEpoch, result: JobResult(outputs: []))
                server.scheduler.finished(job.id, measuredWork: nil)
            }
            free = given.map(\.0)
        }
        var counts: [String: Int] = [:], window = 0
        for t in order { counts[t, default: 0] += 1; window += 1; if counts[t]! == total / 3 { break } }
        let shares = tenants.map { t in "\(t) \(String(format: "%.3f", Double(counts[t] ?? 0) / Double(max(1, window))))" }.joined(separator: ", ")
        print("scheduler: \(scheduled) jobs to 100 engines in \(rounds) rounds, \(String(format: "%.3f", roundSeconds)) s of rounds: "
              + "jobs_per_second=\(String(format: "%.0f", Double(scheduled) / roundSeconds)); shares while contended (weights 3:2:1 = 0.500, 0.333, 0.167): \(shares)")
        try? FileManager.default.removeItem(atPath: dir)
    }
}
