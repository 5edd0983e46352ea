// EngineRuntime.EngineAgent+Jobs: what an engine does with work: slots that long-poll for
// leases (resumed local-queue jobs first), and each job from its input (EngineAgent+Input:
// downloaded, or streamed) through the runner to its outputs' upload (EngineAgent+Output
// for a streamed one) and completion, every call under its lease epoch (a 409 drops the
// work unreported); progress at most once a second.
import Glibc
import JSON
import Jobs
import Logging
import ProcFS
import Ring
import SpoolModel
import Synchronization
import Threads
import TranscodeAPI
import Web

extension EngineAgent {

    func slotLoop(_ client: LoopBound<HTTPClient>, slot: Int) async {
        let loop = client.loop
        var failures = 0
        while !isDraining {
            if state.withLock({ $0.busy }) {
                try? await loop.sleep(until: loop.now + .seconds(1))
                continue
            }
            do {
                let next = state.withLock { s -> Lease? in s.resumable.isEmpty ? nil : s.resumable.removeFirst() }
                if let resumed = next {
                    await execute(client, resumed, resumed: true)
                    continue
                }
                guard let lease = try await lease(client.value) else { failures = 0; continue }
                failures = 0
                if isDraining {
                    try? await report(client.value, lease, "fail", body: failBody(reason: "engine draining", requeue: true))
                    try? await local.withLock({ $0 })?.finished(lease.jobID)
                    break
                }
                await execute(client, lease)
            } catch {
                failures += 1
                logger.warning("slot \(slot): lease failed: \(error)")
                let backoff = min(10_000, 250 << min(failures, 6))
                try? await loop.sleep(until: loop.now + .milliseconds(Int64(backoff)))
            }
        }
    }

    struct Lease: Sendable {
        var jobID: String
        var epoch: Int64
        var spec: JobSpec
        /// The spec as the server sent it (kept in the local queue).
        var specText: String
    }

    func lease(_ client: HTTPClient) async throws -> Lease? {
        guard let creds = state.withLock({ $0.credentials }) else { throw EngineError("not registered") }
        let r = try await client.execute(ClientRequest(method: "POST", url: api + "/engines/\(creds.engineID)/lease?wait=\(configuration.leaseWaitSeconds)",
                                                       headers: authorization(creds.token)))
        switch r.status {
        case 204: return nil
        case 200: break
        default: throw EngineError("lease answered \(r.status): \(String(decoding: r.body.prefix(300), as: UTF8.self))")
        }
        guard let doc = try? JSONDocument(parsing: r.body), let epoch = try? doc.root["lease_epoch"]?.int64(),
              let id = try? doc.root["job"]?["id"]?.string(), let specValue = doc.root["spec"] else {
            throw EngineError("the lease answer is not a lease")
        }
        let spec: JobSpec
        do { spec = try JobSpec.decode(specValue) } catch {
            // A spec this engine cannot read: fail it (counted), do not loop on it.
            let bad = Lease(jobID: id, epoch: epoch, spec: JobSpec(inputFileID: FileID("file_00000000000000000000000000")!, outputs: .preset("")),
                            specText: specValue.rawText)
            try? await report(client, bad, "fail", body: failBody(reason: "invalid_settings: \(error.message)", requeue: false))
            return nil
        }
        let lease = Lease(jobID: id, epoch: epoch, spec: spec, specText: specValue.rawText)
        // Recorded (committed) before any work starts on it.
        if let queue = local.withLock({ $0 }) {
            do { try await queue.received(LocalJob(jobID: id, epoch: epoch, specText: lease.specText, starts: 0), at: Int64(SystemClock.shared.unixMilliseconds)) } catch {
                logger.error("job \(id): not recorded in the local queue (\(error)); giving it back")
                try? await report(client, lease, "fail", body: failBody(reason: "engine could not record the lease", requeue: true))
                return nil
            }
        }
        return lease
    }

    /// One job, start to end. Never throws: every outcome is reported (or, when the lease
    /// is lost, deliberately not).
    func execute(_ client: LoopBound<HTTPClient>, _ lease: Lease, resumed: Bool = false) async {
        let loop = client.loop
        let work = workRoot + "/" + lease.jobID
        removeTree(work)
        defer { removeTree(work) }
        state.withLock { $0.running[lease.jobID] = Running(epoch: lease.epoch) }
        defer { state.withLock { _ = $0.running.removeValue(forKey: lease.jobID) } }
        let queue = local.withLock { $0 }
        // Once the server has the outcome (or the lease is gone), the local record goes.
        var settled = false
        let starts = (try? await queue?.started(lease.jobID)) ?? 1
        logger.info("job \(lease.jobID) (epoch \(lease.epoch)): \(resumed ? "resumed from the local queue" : "started")\(starts > 1 ? " (start \(starts) here)" : "")")
        if starts > LocalQueue.maxStarts {
            try? await report(client.value, lease, "fail",
                              body: failBody(reason: "engine_restarts: started \(starts - 1) times on this engine without finishing", requeue: false))
            try? await queue?.finished(lease.jobID)
            return
        }
        do {
            try makeDirectory(work)
            let input = work + "/input"
            let prepared = try await prepareInput(client, lease, at: input)
            // On the stream route a single output streams straight into its upload too.
            let streamedOutput: StreamedOutput?
            do { streamedOutput = prepared.route == .stream ? try startOutputStream(client, lease, in: work) : nil } catch {
                prepared.writer?.cancel()   // it would wait for a reader that never comes
                throw error
            }
            let reporter = loop.spawn { [self] in await progressLoop(client, lease) }
            let result: RunnerResult
            do {
                result = try await runner.run(RunnerJob(jobID: lease.jobID, spec: lease.spec, inputPath: input,
                                                        outputDirectory: work + "/out", threads: configuration.threads,
                                                        inputIsStream: prepared.route == .stream,
                                                        outputStreamPath: streamedOutput?.path)) { [self] p in
                    state.withLock { $0.running[lease.jobID]?.progress = p }
                }
            } catch {
                reporter.cancel()
                _ = await streamedOutput?.finish(transcodeSucceeded: false)
                // A stream that broke explains the transcode's failure better than the transcode does.
                if let broken = await prepared.streamFailure(afterSuccess: false) { throw broken }
                throw error
            }
            reporter.cancel()
            // A transcode of an input that did not arrive whole must not count (and its
            // streamed output is then not kept).
            let broken = await prepared.streamFailure(afterSuccess: true)
            var outputs: [(name: String, fileID: String)] = []
            if let streamedOutput {
                let uploaded = await streamedOutput.finish(transcodeSucceeded: broken == nil)
                if let broken { throw broken }
                outputs.append((streamedOutput.name, try uploaded.get()))
            }
            if let broken { throw broken }
            for name in outputFiles(under: work + "/out") {
                let path = work + "/out/" + name
                if state.withLock({ $0.directUploads }) != false {
                    if let id = try await directUpload(client.value, lease, path: path, name: name) {
                        state.withLock { $0.directUploads = true }
                        outputs.append((name, id))
                        continue
                    }
                    state.withLock { $0.directUploads = false }
                }
                outputs.append((name, try await upload(client.value, lease, path: path, name: name)))
            }
            var w = JSONWriter()
            w.beginObject()
            w.field("lease_epoch", lease.epoch)
            w.key("outputs")
            w.beginArray()
            for o in outputs { w.beginObject(); w.field("name", o.name); w.field("file_id", o.fileID); w.endObject() }
            w.endArray()
            w.key("quality_report"); if let q = result.qualityReportJSON { w.rawJSON(q) } else { w.null() }
            w.field("work", result.work)
            w.endObject()
            try await report(client.value, lease, "complete", body: w.text)
            settled = true
            state.withLock { $0.completed += 1 }
            func ms(_ s: Double) -> String {
                let tenths = Int((s * 10_000).rounded())
                return "\(tenths / 10).\(tenths % 10) ms"
            }
            var start = ""
            if let waited = result.workerStartSeconds, let spawn = result.workerSpawnSeconds {
                start = "; sandboxed worker ready after \(ms(waited)) (its own start: \(ms(spawn)))"
                if let cpu = result.workerCPUSeconds { start += ", worker CPU \(ms(cpu))" }
            }
            logger.info("job \(lease.jobID): completed (\(outputs.count) output file(s)\(start))")
        } catch let e as StaleLease {
            settled = true
            runner.cancel(jobID: lease.jobID)
            logger.warning("job \(lease.jobID): \(e.description); its work is dropped")
        } catch {
            let stopping = state.withLock { $0.stopping }
            let failure = (error as? TranscodeFailure)
            let requeue = stopping && (failure?.isCancelled ?? true)
            let reason = failure.map { "\($0.code): \($0.message)" } ?? String(describing: error)
            state.withLock { $0.failed += requeue ? 0 : 1 }
            logger.warning("job \(lease.jobID): \(requeue ? "given back (stopping)" : "failed"): \(reason)")
            do {
                try await report(client.value, lease, "fail", body: failBody(reason: reason, requeue: requeue))
                settled = true
            } catch is StaleLease {
                settled = true
            } catch {
                // The server did not hear it: the record stays, and the next start resumes the job.
            }
        }
        if settled { try? await queue?.finished(lease.jobID) }
    }

    func failBody(reason: String, requeue: Bool) -> String {
        var w = JSONWriter()
        w.beginObject()
        w.field("reason", String(reason.prefix(900)))
        w.field("requeue", requeue)
        w.endObject()
        return w.text
    }

    /// Reports progress at most once a second, when it changed.
    func progressLoop(_ client: LoopBound<HTTPClient>, _ lease: Lease) async {
        let loop = client.loop
        while !Task.isCancelled {
            do { try await loop.sleep(until: loop.now + .seconds(1)) } catch { return }
            guard let (p, last) = state.withLock({ s -> (TranscodeProgress, Double)? in
                guard let r = s.running[lease.jobID], let p = r.progress else { return nil }
                return (p, r.reported)
            }) else { continue }
            // Within the bounds the dispatcher holds reports to (422 otherwise).
            let percent = max(0, min(99.9, (p.fraction ?? 0) * 100))
            guard percent != last else { continue }
            var w = JSONWriter()
            w.beginObject()
            w.field("lease_epoch", lease.epoch)
            w.field("progress", percent.isFinite ? percent : 0)
            w.field("fps", p.fps.isFinite ? min(1e9, max(0, p.fps)) : 0)
            w.field("speed", p.speed.isFinite ? min(1e9, max(0, p.speed)) : 0)
            w.key("eta_seconds"); if let eta = p.etaSeconds, eta.isFinite { w.double(min(1e12, max(0, eta))) } else { w.null() }
            w.endObject()
            do {
                try await report(client.value, lease, "progress", body: w.text)
                state.withLock { $0.running[lease.jobID]?.reported = percent }
            } catch is StaleLease {
                runner.cancel(jobID: lease.jobID)
                return
            } catch {
                logger.debug("progress report failed: \(error)")
            }
        }
    }

    struct StaleLease: Error, CustomStringConvertible { var description: String }

    /// POST engines/ID/jobs/JOB/WHAT with the epoch; a 409 is a lost lease.
    func report(_ client: HTTPClient, _ lease: Lease, _ what: String, body: String) async throws {
        guard let creds = state.withLock({ $0.credentials }) else { throw EngineError("not registered") }
        let url = api + "/engines/\(creds.engineID)/jobs/\(lease.jobID)/\(what)?lease_epoch=\(lease.epoch)"
        let r = try await client.execute(ClientRequest(method: "POST", url: url,
                                                       headers: authorization(creds.token) + [("Content-Type", "application/json")],
                                                       body: .bytes(Array(body.utf8)), timeout: .seconds(60)))
        if r.status == 409 { throw StaleLease(description: "lease lost: \(String(decoding: r.body.prefix(300), as: UTF8.self))") }
        guard (200..<300).contains(r.status) else {
            throw EngineError("\(what) answered \(r.status): \(String(decoding: r.body.prefix(300), as: UTF8.self))")
        }
    }

    func upload(_ client: HTTPClient, _ lease: Lease, path: String, name: String) async throws -> String {
        let url = try outputURL(lease, name: name)
        let r = try await client.execute(ClientRequest(method: "POST", url: url, headers: try authorization(), body: .stream { writer in
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw EngineError("cannot open \(path): \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            var buffer = [UInt8](repeating: 0, count: 256 << 10)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 { if errno == EINTR { continue }; throw EngineError("reading \(path): \(String(cString: strerror(errno)))") }
                if n == 0 { break }
                try await writer.write(Array(buffer[..<n]))
            }
        }))
        return try uploadedFileID(r, lease: lease, name: name)
    }
}
