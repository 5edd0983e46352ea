// Dispatcher.EngineAPIRoutes: the endpoints engines call (HTTP lease transport).
//
//   POST /api/v1/engines/register                       join token (or an admin key) as bearer
//   POST /api/v1/engines/{id}/heartbeat                 engine token as bearer, from here on
//   POST /api/v1/engines/{id}/lease?wait=SECONDS        200 {lease} | 204 (long poll, ≤ 60 s)
//   GET  /api/v1/engines/{id}/jobs/{job}/input?lease_epoch=N
//   POST /api/v1/engines/{id}/jobs/{job}/outputs?lease_epoch=N&name=REL   (streamed body)
//   POST /api/v1/engines/{id}/jobs/{job}/progress       {"lease_epoch","progress","fps","speed","eta_seconds"}
//   POST /api/v1/engines/{id}/jobs/{job}/complete       {"lease_epoch","outputs":[{"name","file_id"}],"quality_report","work"}
//   POST /api/v1/engines/{id}/jobs/{job}/fail           {"lease_epoch","reason","requeue"}
//
// Fencing (X5): every call about a job presents the lease epoch it was given; a job no
// longer held by this engine under that epoch answers 409 `stale_lease`, so an engine
// that lost its lease (it was offline, or restarted) can never report over a retried job.
// An engine token is `id.secret`-free: the bearer is the secret, the id is in the path,
// and the registry keeps only its SHA-256. Who a call is from and how its body is read
// (credentials, the leased job, BodyProblems) are in EngineCalls.swift.
import Engines
import Files
import Jobs
import JSON
import SpoolAPI
import SpoolModel
import Storage
import Web

extension DispatchServer {
    static let leaseWaitMax: Duration = .seconds(60)

    func installEngineAPIRoutes(on v1: inout RouteBuilder, counters: FileTransferCounters = FileTransferCounters()) {
        let engines = self.engines, jobs = self.jobs, files = self.files, scheduler = self.scheduler
        let settings = self.settings, access = self.access, clock = self.clock

        v1.post("engines/register", body: .buffered(max: 256 << 10)) { req in
            let token = bearer(req) ?? ""
            let join = settings.current.engines.joinToken
            var allowed = !join.isEmpty && constantTimeEqual(token, join)
            if !allowed, try await engines.acceptsJoinToken(token) { allowed = true }
            if !allowed, let owner = try await access.authenticate(token), owner.isAdmin { allowed = true }
            if !allowed && settings.current.insecureNoAuth { allowed = true }
            guard allowed else {
                throw APIError(status: 401, code: "unauthorized", message: "registering an engine needs a join token (or an admin key) as the bearer")
            }
            let r = try EngineRegistration(req.json().root)
            let secret = Hex.random(bytes: 32)
            let record: EngineRecord
            if let id = r.engineID, let known = try await engines.get(id), try await engines.verifyCredential(id, r.previousToken ?? "") {
                // A restarted engine that kept its id: same record, fresh token.
                record = try await engines.reregister(known.id, name: r.name, host: r.host, tags: r.tags,
                                                       capabilitiesJSON: r.capabilitiesJSON, credential: secret)
            } else {
                record = try await engines.register(name: r.name, host: r.host, tags: r.tags, capabilitiesJSON: r.capabilitiesJSON, credential: secret)
            }
            return .json(201) { w in
                w.beginObject()
                w.field("engine_id", record.id.text)
                w.field("token", secret)
                w.field("heartbeat_interval_seconds", max(1, settings.current.engines.heartbeatTimeoutSeconds / 3))
                w.endObject()
            }
        }

        v1.post("engines/:id/heartbeat", body: .buffered(max: 256 << 10)) { req in
            let engine = try await authenticatedEngine(req, engines)
            let root = try req.json().root
            var problems = BodyProblems()
            problems.onlyKnown(root, ["state", "load", "running", "capabilities"])
            var state = EngineState.online
            if let v = root["state"] {
                if let s = try? v.string(), let st = EngineState(rawValue: s) { state = st } else { problems.add("/state", "must be online, busy, draining or offline") }
            }
            var load = 0.0
            if let v = root["load"] {
                if let d = try? v.double() { load = d } else { problems.add("/load", "must be a number") }
            }
            var running: Set<String> = []
            if let list = root["running"] {
                if list.kind == .array {
                    for item in list.elements { if let s = try? item.string() { running.insert(s) } }
                } else {
                    problems.add("/running", "must be an array of job ids")
                }
            }
            var caps: String?
            if let v = root["capabilities"] {
                if v.kind == .object { caps = v.rawText } else { problems.add("/capabilities", "must be an object") }
            }
            try problems.check()
            let record = try await engines.heartbeat(engine.id, load: load, state: state, capabilitiesJSON: caps)
            if state != .online { scheduler.release(engine: engine.id) }
            try await scheduler.reclaim(engine: engine.id, listed: state == .offline ? nil : running)
            return .json(200) { w in
                w.beginObject()
                w.field("engine_id", record.id.text)
                w.field("state", record.state.rawValue)
                // Every answer says how often to beat: an engine that restarted with its saved
                // credentials never registers, and the timeout may have been reloaded.
                w.field("heartbeat_interval_seconds", max(1, settings.current.engines.heartbeatTimeoutSeconds / 3))
                w.endObject()
            }
        }

        v1.post("engines/:id/lease") { req in
            let engine = try await authenticatedEngine(req, engines)
            guard engine.state == .online else {
                throw APIError(status: 409, code: "engine_not_online", message: "a \(engine.state.rawValue) engine takes no new work")
            }
            var wait = Duration.seconds(20)
            if let w = req.query("wait") {
                // Decimal seconds (Double() also reads hex and exponents); capped at 60 s
                // before the conversion to milliseconds, which traps past Int64 (wait=1e16
                // killed the server).
                guard !w.isEmpty, w.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2E }), let s = Double(w), s.isFinite, s >= 0 else {
                    throw ModelError.invalidField("wait", "must be seconds (0 to 60)")
                }
                wait = s >= 60 ? Self.leaseWaitMax : .milliseconds(Int64(s * 1000))
            }
            guard let job = await scheduler.lease(engine: engine.id, capabilities: engineCapabilities(engine), wait: wait) else {
                return Response(status: 204)
            }
            return .json(200) { w in writeLease(job, into: &w) }
        }

        v1.get("engines/:id/jobs/:job/input") { req in
            let (_, job) = try await leasedJob(req, engines, jobs)
            let record = try await files.metadata(id: job.inputFileID, tenant: job.tenant)
            switch try await files.location(of: record) {
            case .localFile(let path):
                let r = try await Response.file(path, for: req, contentType: record.contentType, etag: record.entityTag,
                                                lastModified: record.lastModifiedSeconds)
                counters.countDownload(r, for: req, fileSize: record.size)
                return r
            case .url(let url):
                return Response(status: 307, headers: [("Location", url)])
            }
        }

        v1.post("engines/:id/jobs/:job/outputs", body: .streaming(max: Self.uploadBodyMax), timeLimits: Self.uploadTimeLimits) { req in
            let (_, job) = try await leasedJob(req, engines, jobs)
            guard let name = req.query("name"), isSafeOutputName(name) else {
                throw ModelError.invalidField("name", "must be a relative path of letters, digits, '.', '-', '_' and '/' (no '..')")
            }
            let body = req.bodyStream
            defer { counters.uploaded?(Int64(body.bytesRead)) }
            let record = try await files.upload(tenant: job.tenant, contentType: contentType(ofOutput: name),
                                                declaredLength: body.declaredLength, from: RequestBodySource(body))
            return .json(201) { w in
                w.beginObject()
                w.field("file_id", record.id.text)
                w.field("name", name)
                w.field("size", record.size)
                w.field("sha256", record.sha256)
                w.endObject()
            }
        }

        v1.post("engines/:id/jobs/:job/progress", body: .buffered(max: 16 << 10)) { req in
            let (engine, job) = try await leasedJob(req, engines, jobs)
            let root = try req.json().root
            var problems = BodyProblems()
            problems.onlyKnown(root, ["lease_epoch", "progress", "fps", "speed", "eta_seconds"])
            // Out of range is the engine's bug, said as such (the Progress schema's bounds).
            var progress = problems.read { try number(root, "progress", in: 0...100) }.flatMap { $0 } ?? 0
            let fps = problems.read { try number(root, "fps", in: 0...1e9) }.flatMap { $0 } ?? 0
            let speed = problems.read { try number(root, "speed", in: 0...1e9) }.flatMap { $0 } ?? 0
            let eta = problems.read { try number(root, "eta_seconds", in: 0...1e12) }.flatMap { $0 }
            try problems.check()
            let detail = ProgressDetail(fps: fps, speed: speed, etaSeconds: eta)
            // Within one lease what watchers see never goes back (a pass restarted inside
            // the engine, reports out of order); a new lease starts again from its own.
            if job.state == .transcoding { progress = max(progress, job.progress) }
            let updated = try await jobs.transition(job.id, to: .transcoding, leaseEpoch: job.leaseEpoch,
                                                    progress: progress, detail: detail, holder: engine.id)
            return .json(200) { w in writeJobState(updated, into: &w) }
        }

        v1.post("engines/:id/jobs/:job/complete", body: .buffered(max: 1 << 20)) { req in
            let (engine, job) = try await leasedJob(req, engines, jobs)
            let root = try req.json().root
            var problems = BodyProblems()
            problems.onlyKnown(root, ["lease_epoch", "outputs", "quality_report", "work"])
            // Every problem of the body first (all of them named in one 422), then the files.
            var named: [(Int, FileID, String)] = []
            if let list = root["outputs"], list.kind == .array, (1...10_000).contains(list.count) {
                for (i, o) in list.elements.enumerated() {
                    guard problems.onlyKnown(o, ["file_id", "name"]) else { continue }
                    guard let f = try? o["file_id"]?.string(), let id = FileID(f), let name = try? o["name"]?.string(), isSafeOutputName(name) else {
                        problems.add("/outputs/\(i)", "must be {\"file_id\": ID, \"name\": PATH}")
                        continue
                    }
                    named.append((i, id, name))
                }
            } else {
                problems.add("/outputs", "must list the uploaded outputs (1 to 10000)")
            }
            var quality: String?
            if let q = root["quality_report"], !q.isNull {
                if q.kind == .object || q.kind == .array { quality = q.rawText } else { problems.add("/quality_report", "must be an object") }
            }
            let work = problems.read { try number(root, "work", in: 0...1e18) }.flatMap { $0 }
            try problems.check()
            var outputs: [JobResultOutput] = []
            for (i, id, name) in named {
                guard try await files.exists(id: id, tenant: job.tenant) else {
                    problems.add("/outputs/\(i)/file_id", "no such output file of this job's tenant")
                    continue
                }
                outputs.append(JobResultOutput(fileID: id, name: name,
                                               url: DispatchServer.outputURL(id, storage: settings.current.storage,
                                                                             unixSeconds: clock.unixMilliseconds / 1000)))
            }
            try problems.check()
            let done = try await jobs.complete(job.id, engine: engine.id, leaseEpoch: job.leaseEpoch,
                                               result: JobResult(outputs: outputs, qualityReport: quality))
            scheduler.finished(job.id, measuredWork: work)
            return .json(200) { w in writeJobState(done, into: &w) }
        }

        v1.post("engines/:id/jobs/:job/fail", body: .buffered(max: 16 << 10)) { req in
            let (engine, job) = try await leasedJob(req, engines, jobs)
            let root = try req.json().root
            var problems = BodyProblems()
            problems.onlyKnown(root, ["lease_epoch", "reason", "requeue"])
            // Wrong types are the engine's bug, said as such: a "requeue" read as false
            // would burn an attempt the engine meant to give back.
            var reason = "failed"
            if let r = root["reason"], !r.isNull {
                if let text = try? r.string() { reason = text } else { problems.add("/reason", "must be a string") }
            }
            var requeue = false
            if let q = root["requeue"], !q.isNull {
                if let b = try? q.bool() { requeue = b } else { problems.add("/requeue", "must be true or false") }
            }
            try problems.check()
            // At most 1,000 bytes, cut at a character boundary (a count of characters let
            // one letter with thousands of combining marks through).
            if reason.utf8.count > 1_000 {
                var cut = ""
                for ch in reason {
                    if cut.utf8.count + ch.utf8.count > 1_000 { break }
                    cut.append(ch)
                }
                reason = cut.isEmpty ? "failed" : cut
            }
            let updated: Job
            if requeue && job.state != .completing {
                // Given back unstarted or interrupted (the engine is draining): no attempt counted.
                updated = try await jobs.transition(job.id, to: .pending, reason: "requeued: " + reason, leaseEpoch: job.leaseEpoch, holder: engine.id)
            } else {
                updated = try await jobs.transition(job.id, to: .failed, reason: reason, leaseEpoch: job.leaseEpoch, holder: engine.id)
            }
            scheduler.finished(job.id, measuredWork: nil)
            scheduler.wake()
            return .json(200) { w in writeJobState(updated, into: &w) }
        }
    }
}

/// What an engine can do, as capability names a job may require: its tags ("GPU:0"), its
/// encoders ("libx265") and the codecs they give ("hevc"), its hardware device types.
func engineCapabilities(_ e: EngineRecord) -> Set<String> {
    var caps = Set(e.tags)
    guard let doc = try? JSONDocument(parsing: e.capabilitiesJSON) else { return caps }
    // "capabilities": what the engine's plugins give (e.g. "handbrake").
    for key in ["encoders", "hardware_devices", "muxers", "codecs", "capabilities"] {
        guard let list = doc.root[key], list.kind == .array else { continue }
        for v in list.elements { if let s = try? v.string() { caps.insert(s) } }
    }
    let codecOf = ["libx264": "h264", "libx265": "hevc", "libvpx-vp9": "vp9", "libsvtav1": "av1", "libaom-av1": "av1",
                   "libdav1d": "av1", "h264_nvenc": "h264", "hevc_nvenc": "hevc", "h264_vaapi": "h264", "hevc_vaapi": "hevc",
                   "aac": "aac", "libopus": "opus"]
    for enc in caps { if let c = codecOf[enc] { caps.insert(c) } }
    return caps
}

/// The lease answer: {"lease_epoch", "job": {...the API form...}, "spec": {...the request form...}}.
func writeLease(_ job: Job, into w: inout JSONWriter<[UInt8]>) {
    w.beginObject()
    w.field("lease_epoch", job.leaseEpoch)
    w.key("job"); job.encode(to: &w)
    w.key("spec")
    var spec = JobSpec(inputFileID: job.inputFileID, outputs: job.outputs)
    spec.measureQuality = job.measureQuality
    spec.limits = job.limits
    spec.requiredCapabilities = job.requiredCapabilities
    spec.encodeTranscodeForm(to: &w)
    w.endObject()
}

func writeJobState(_ job: Job, into w: inout JSONWriter<[UInt8]>) {
    w.beginObject()
    w.field("id", job.id.text)
    w.field("state", job.state.rawValue)
    w.field("progress", job.progress)
    w.field("lease_epoch", job.leaseEpoch)
    w.endObject()
}

func contentType(ofOutput name: String) -> String {
    switch name.split(separator: ".").last.map({ $0.lowercased() }) {
    case "m3u8": return "application/vnd.apple.mpegurl"
    case "mp4", "m4s": return "video/mp4"
    case "ts": return "video/mp2t"
    case "webm": return "video/webm"
    case "mkv": return "video/x-matroska"
    case "json": return "application/json"
    default: return "application/octet-stream"
    }
}
