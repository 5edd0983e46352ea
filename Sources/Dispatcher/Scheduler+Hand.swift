// Dispatcher.Scheduler+Hand: what a scheduler holds between the queue and an engine: it
// collects what the queue delivers (a job no longer pending is dropped, a job delivered
// again keeps the newer delivery and the epoch read then), keeps the held deliveries in
// flight, rechecks them now and then, and estimates each job's cost for the fair shares.
import Files
import Jobs
import MessageQueue
import SpoolModel
import Threads

extension Scheduler {
    /// Takes what the queue delivers into the hand (a job no longer pending is acked and
    /// dropped; a held job delivered again keeps the newer delivery and the lease epoch read
    /// now), keeps held deliveries in flight, and now and then drops held jobs that stopped
    /// being pending (cancelled or expired while held).
    func collect() async throws {
        let now = clock.now
        for d in try await queue.receive(topic: Self.topic, consumer: consumer, max: 10_000, visibility: visibility, wait: .zero) {
            let text = d.message.body
            let previous = state.withLock { $0.hand[text] }
            guard let id = JobID(text), let job = try await jobs.get(id), job.state == .pending else {
                try? await queue.ack(d)
                if let previous {
                    state.withLock { $0.hand[text] = nil }
                    if previous.delivery.message.id != d.message.id { try? await queue.ack(previous.delivery) }
                }
                continue
            }
            if let previous {
                // Pending again since it was taken (its lease was lost), or delivered twice:
                // one delivery is enough, and the assignment is fenced on the epoch read now.
                state.withLock { s in
                    s.hand[text]?.delivery = d
                    s.hand[text]?.epoch = job.leaseEpoch
                    s.hand[text]?.extendedAt = now
                    s.hand[text]?.checkedAt = now
                }
                if previous.delivery.message.id != d.message.id { try? await queue.ack(previous.delivery) }
                continue
            }
            let pending = PendingJob(id: job.id, tenant: job.tenant, inputFileID: job.inputFileID,
                                     requiredCapabilities: job.requiredCapabilities, outputsText: job.outputs.storedText, priority: job.priority)
            let cost = await estimate(pending)
            state.withLock { $0.hand[text] = Held(delivery: d, job: pending, epoch: job.leaseEpoch, priority: job.priority, cost: cost, extendedAt: now, checkedAt: now) }
        }
        let held = state.withLock { Array($0.hand.values) }
        for h in held where now - h.extendedAt > visibility / 2 {
            do {
                try await queue.extend(h.delivery, visibility: visibility)
                state.withLock { $0.hand[h.job.id.text]?.extendedAt = now }
            } catch {
                // Its visibility ran out (a stalled scheduler): it is delivered again; drop this copy.
                state.withLock { $0.hand[h.job.id.text] = nil }
            }
        }
        for h in held where now - h.checkedAt > .seconds(60) {
            if let job = try await jobs.get(h.job.id), job.state == .pending {
                state.withLock { $0.hand[h.job.id.text]?.checkedAt = now }
            } else {
                state.withLock { $0.hand[h.job.id.text] = nil }
                try? await queue.ack(h.delivery)
            }
        }
    }

    /// Pixels per frame of every output × frames, the frames estimated from the input's
    /// size (about 4 KiB per frame of compressed video) until the engine measures them.
    func estimate(_ job: PendingJob) async -> Double {
        let bytes = (try? await files.metadata(id: job.inputFileID, tenant: nil).size) ?? 0
        let frames = max(1, Double(bytes) / 4_096)
        return Double(max(1, job.outputs.map(Self.pixels) ?? 1280 * 720)) * frames
    }

    /// Pixels per output frame, summed over every output the job makes.
    static func pixels(of outputs: JobOutputs) -> Int {
        func preset(_ name: String) -> Int {
            if let ladder = try? LadderPreset.named(name) { return ladder.rungs.reduce(0) { $0 + Int($1.video.maxWidth ?? 1280) * Int($1.video.maxHeight ?? 720) } }
            if let p = try? TranscodePreset.named(name) { return Int(p.video.maxWidth ?? 1280) * Int(p.video.maxHeight ?? 720) }
            return 1280 * 720
        }
        func custom(_ c: CustomOutput) -> Int { Int(c.width ?? 1280) * Int(c.height ?? 720) }
        switch outputs {
        case .preset(let name): return preset(name)
        case .custom(let c): return custom(c)
        case .outputs(let list):
            return list.reduce(0) { n, o in
                switch o {
                case .preset(let name): return n + preset(name)
                case .custom(let c): return n + custom(c)
                }
            }
        case .ladder(.named(let name)): return preset(name)
        case .ladder(.custom(let l)): return l.rungs.reduce(0) { $0 + Int($1.width) * Int($1.height) }
        }
    }
}
