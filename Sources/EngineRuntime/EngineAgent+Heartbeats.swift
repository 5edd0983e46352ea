// EngineRuntime.EngineAgent+Heartbeats: how an engine joins and stays known: registration
// (credentials in DATA/engine.json, reused on restart; a server that is down or answers
// 429/5xx is asked again for up to a minute), heartbeats (state, load, the jobs it
// runs, capabilities when they change; a 401/404 means register again), and backpressure
// (busy over its limits of load per CPU, available memory and I/O wait).
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
    /// How long an engine keeps asking a server that does not answer its registration
    /// (or answers 429/5xx) before it gives up.
    static let registrationPatienceSeconds: Int64 = 60

    func authorization(_ token: String) -> [(name: String, value: String)] { [("Authorization", "Bearer " + token)] }

    func register(_ client: HTTPClient) async throws {
        if let saved = EngineCredentials.load(credentialsPath), saved.server == configuration.server {
            state.withLock { $0.credentials = saved }
            if (try? await sendHeartbeat(client, stateName: "online")) == 200 {
                logger.info("engine \(saved.engineID): credentials from \(credentialsPath) accepted")
                return
            }
        }
        guard let join = configuration.joinToken, !join.isEmpty else {
            throw EngineError("no usable credentials in \(credentialsPath) and no join token: give --join-token or set SPOOL_JOIN_TOKEN")
        }
        var w = JSONWriter()
        w.beginObject()
        w.field("name", configuration.name)
        w.field("host", hostName())
        w.field("version", SpoolVersion.string)
        w.field("tags", configuration.tags)
        w.key("capabilities"); w.rawJSON(runner.capabilitiesJSON())
        if let saved = state.withLock({ $0.credentials }) {
            w.field("engine_id", saved.engineID)
            w.field("token", saved.token)
        }
        w.endObject()
        // A server that is restarting or overloaded (no answer, 429, 5xx) is asked again for
        // a while, backing off; a refusal (a bad token, a bad request) ends the start at once.
        guard let loop = EventLoop.current else { preconditionFailure("register runs on the engine's event loop") }
        let patience = loop.now + .seconds(Self.registrationPatienceSeconds)
        var pause: Duration = .milliseconds(250)
        var r: ClientResponse
        while true {
            let problem: String
            do {
                r = try await client.execute(ClientRequest(method: "POST", url: api + "/engines/register",
                                                           headers: authorization(join) + [("Content-Type", "application/json")],
                                                           body: .bytes(Array(w.text.utf8))))
                guard r.status == 429 || r.status >= 500 else { break }
                problem = "answered \(r.status)"
            } catch {
                problem = "cannot reach the server at \(configuration.server): \(error)"
            }
            guard loop.now + pause < patience else { throw EngineError("registration failed for \(Self.registrationPatienceSeconds) s; last: \(problem)") }
            logger.warning("registration: \(problem); again in \(pause)")
            do { try await loop.sleep(until: loop.now + pause) } catch { throw EngineError("registration cancelled") }
            pause = min(pause * 2, .seconds(5))
        }
        guard r.status == 201, let doc = try? JSONDocument(parsing: r.body), let id = try? doc.root["engine_id"]?.string(),
              let token = try? doc.root["token"]?.string() else {
            throw EngineError("registration refused (\(r.status)): \(String(decoding: r.body.prefix(500), as: UTF8.self))")
        }
        let creds = EngineCredentials(engineID: id, token: token, server: configuration.server)
        do { try creds.save(credentialsPath) } catch { throw EngineError(error.message) }
        let interval = (try? doc.root["heartbeat_interval_seconds"]?.double()) ?? 5
        state.withLock { s in
            s.credentials = creds
            s.heartbeatSeconds = max(0.5, min(60, interval))
            s.sentCapabilities = runner.capabilitiesJSON()
        }
        logger.info("registered as engine \(id) with \(configuration.server)")
    }

    /// Posts one heartbeat; returns the status.
    @discardableResult
    func sendHeartbeat(_ client: HTTPClient, stateName: String? = nil) async throws -> Int {
        guard let creds = state.withLock({ $0.credentials }) else { return 0 }
        let sample = monitor.sample()
        let load = sample.cpus > 0 ? sample.loadAverage1m / Double(sample.cpus) : 0
        let busy = overloaded(sample)
        let caps = runner.capabilitiesJSON()
        let (name, running, sendCaps) = state.withLock { s -> (String, [String], Bool) in
            s.busy = busy
            let n = stateName ?? (s.draining ? "draining" : busy ? "busy" : "online")
            return (n, Array(s.running.keys).sorted(), s.sentCapabilities != caps)
        }
        var w = JSONWriter()
        w.beginObject()
        w.field("state", name)
        w.field("load", min(1_000, max(0, load.isFinite ? load : 0)))
        w.field("running", stateName == "offline" ? [] : running)
        if sendCaps { w.key("capabilities"); w.rawJSON(caps) }
        w.endObject()
        let r = try await client.execute(ClientRequest(method: "POST", url: api + "/engines/\(creds.engineID)/heartbeat",
                                                       headers: authorization(creds.token) + [("Content-Type", "application/json")],
                                                       body: .bytes(Array(w.text.utf8)), timeout: .seconds(15)))
        if r.status == 200 {
            let interval = (try? JSONDocument(parsing: r.body))?.root["heartbeat_interval_seconds"].flatMap { try? $0.double() }
            state.withLock { s in
                if sendCaps { s.sentCapabilities = caps }
                if let interval { s.heartbeatSeconds = max(0.5, min(60, interval)) }
            }
        }
        return r.status
    }

    func heartbeatLoop(_ client: LoopBound<HTTPClient>) async {
        let loop = client.loop
        // Wakes early on drain/stop so the server hears at once.
        let wake = loop.spawn { [self] in for await _ in wakeHeartbeat { _ = try? await sendHeartbeat(client.value) } }
        defer { wake.cancel() }
        while !Task.isCancelled {
            let seconds = state.withLock { $0.heartbeatSeconds }
            do { try await loop.sleep(until: loop.now + .milliseconds(Int64(seconds * 1000))) } catch { return }
            do {
                let status = try await sendHeartbeat(client.value)
                if status == 401 || status == 404 {
                    logger.warning("the server no longer knows this engine (\(status)): registering again")
                    try? await register(client.value)
                }
            } catch {
                logger.warning("heartbeat failed: \(error)")
            }
        }
    }

    /// Over the configured limits (then the engine reports busy and leases nothing).
    func overloaded(_ s: ResourceSample) -> Bool {
        let perCPU = s.cpus > 0 ? s.loadAverage1m / Double(s.cpus) : 0
        if perCPU > configuration.maxLoadPerCPU { return true }
        if s.memoryTotalBytes > 0 && s.memoryAvailableBytes < configuration.minMemoryAvailableBytes { return true }
        if let wait = IOWait.fraction(), wait > configuration.maxIOWaitFraction { return true }
        return false
    }
}


/// The I/O wait the engine backs off on: the busiest disk's share of time with I/O in
/// flight since the previous call (/proc/diskstats, the io_ticks column, as iostat's
/// %util). Not the CPU's iowait share from /proc/stat: the kernel counts a thread waiting
/// in io_uring_enter with requests in flight as iowait, so an idle engine (its loops parked
/// on the ring) read 99 % there and reported itself busy forever.
enum IOWait {
    static let last = Mutex<(ticks: [String: UInt64], at: Int64)?>(nil)

    static func fraction() -> Double? {
        guard let text = ProcFile.read("/proc/diskstats", limit: 256 << 10) else { return nil }
        let now = SystemClock.nanoseconds()
        let ticks = ioTicks(text)
        return last.withLock { prev in
            defer { prev = (ticks, now) }
            guard let p = prev else { return nil }
            return busiest(previous: p.ticks, current: ticks, elapsedMilliseconds: Double(now - p.at) / 1e6)
        }
    }

    /// Milliseconds each block device has spent with I/O in flight (loop and RAM devices left out).
    static func ioTicks(_ diskstats: String) -> [String: UInt64] {
        var out: [String: UInt64] = [:]
        for line in diskstats.split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count >= 13 else { continue }
            let name = String(f[2])
            if name.hasPrefix("loop") || name.hasPrefix("ram") || name.hasPrefix("zram") { continue }
            if let t = UInt64(f[12]) { out[name] = t }
        }
        return out
    }

    /// The largest share of `elapsedMilliseconds` any device was busy (0...1), nil without time.
    static func busiest(previous: [String: UInt64], current: [String: UInt64], elapsedMilliseconds: Double) -> Double? {
        guard elapsedMilliseconds > 0 else { return nil }
        var top = 0.0
        for (name, t) in current {
            guard let p = previous[name], t >= p else { continue }
            top = max(top, Double(t - p) / elapsedMilliseconds)
        }
        return min(1, top)
    }
}
