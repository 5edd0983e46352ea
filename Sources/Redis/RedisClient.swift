// Redis.RedisClient: the Redis client every service shares, usable from any task. Its
// connections live on one event loop (its own, or one it is given): ordinary commands
// share one pipelined connection (RedisConnection), so commands of concurrent callers go
// out together; a blocking command (XREADGROUP ... BLOCK) takes a connection of its own
// from a small idle set, since it holds its connection until it answers.
//
// A broken connection is replaced on the next command (one reconnect shared by every
// caller that needs it). A command that fails on a lost connection is not retried here:
// it may or may not have run, and only the caller knows whether running it twice is
// safe (the queue's commands are written to be).
import Crypto
import RESP
import Ring
import Threads

public struct RedisConfiguration: Sendable {
    public var endpoint: RedisEndpoint
    public var connectTimeout: Duration = .seconds(3)
    /// Longest wait for the replies of one call (blocking commands add their block time).
    public var commandTimeout: Duration = .seconds(5)
    /// Idle connections kept for blocking commands.
    public var maxIdleBlocking = 4
    public var limits = RESPLimits()
    public init(endpoint: RedisEndpoint) { self.endpoint = endpoint }
}

public final class RedisClient: Sendable {
    public let configuration: RedisConfiguration
    let loop: EventLoop
    let ownsLoop: Bool
    private let state: LoopBound<Connections>

    /// Loop-confined: the shared connection, the one being opened, idle blocking ones.
    final class Connections {
        var shared: RedisConnection?
        /// Callers waiting for the connection being opened (nil: none is being opened).
        var opening: [UnsafeContinuation<Result<LoopBound<RedisConnection>, RedisError>, Never>]?
        var idleBlocking: [RedisConnection] = []
        var closed = false
        let loop: EventLoop
        init(loop: EventLoop) { self.loop = loop }
    }

    private init(configuration: RedisConfiguration, loop: EventLoop, ownsLoop: Bool, state: LoopBound<Connections>) {
        self.configuration = configuration
        self.loop = loop
        self.ownsLoop = ownsLoop
        self.state = state
    }

    /// A client on `loop`, or on an event loop of its own; checks Redis answers (PING).
    public static func connect(_ configuration: RedisConfiguration, loop: EventLoop? = nil) async throws(RedisError) -> RedisClient {
        let l: EventLoop
        if let loop { l = loop } else {
            do { l = try EventLoop.start(id: 800) } catch { throw RedisError(.connection, "no event loop for the Redis client: \(error)") }
        }
        let client: RedisClient
        do {
            client = try await l.run { RedisClient(configuration: configuration, loop: l, ownsLoop: loop == nil, state: LoopBound(Connections(loop: l), loop: l)) }
        } catch {
            throw RedisError(.connection, "\(error)")
        }
        do throws(RedisError) {
            let pong = try await client.send(["PING"])
            guard pong.text == "PONG" else { throw RedisError(.protocolError, "PING answered \(pong)") }
        } catch {
            await client.shutdown()
            throw error
        }
        return client
    }

    /// Closes every connection (and stops the client's own loop). Commands after it fail.
    public func shutdown() async {
        let state = self.state
        _ = try? await loop.run {
            let s = state.value
            s.closed = true
            if let c = s.shared { await c.close() }
            for c in s.idleBlocking { await c.close() }
            s.shared = nil
            s.idleBlocking = []
        }
        if ownsLoop {
            // shutdown() waits for the loop's thread: not on a cooperative thread.
            let l = loop
            _ = try? await BlockingPool.shared.run { l.shutdown() }
        }
    }

    // MARK: Commands

    /// One command; an error reply is thrown as `.server`.
    @discardableResult
    public func send(_ args: [String]) async throws(RedisError) -> RESPValue {
        let reply = try await pipeline([args])[0]
        if case .error(let e) = reply { throw RedisError(.server, e) }
        return reply
    }

    /// Several commands in one write; their replies in order, error replies included.
    public func pipeline(_ commands: [[String]]) async throws(RedisError) -> [RESPValue] {
        var cmd = RESPCommand()
        for c in commands { cmd.append(c) }
        let state = self.state
        let config = configuration
        return try await onLoop { () async throws(RedisError) -> [RESPValue] in
            let conn = try await Self.shared(state.value, config)
            return try await conn.send(cmd, timeout: config.commandTimeout)
        }
    }

    /// A command that blocks server-side up to `block` (XREADGROUP ... BLOCK ms), on a
    /// connection of its own; an error reply is thrown as `.server`.
    public func blocking(_ args: [String], block: Duration) async throws(RedisError) -> RESPValue {
        let state = self.state
        let config = configuration
        let reply = try await onLoop { () async throws(RedisError) -> RESPValue in
            let s = state.value
            let conn: RedisConnection
            if let idle = s.idleBlocking.popLast() { conn = idle } else {
                conn = try await RedisConnection.open(config.endpoint, timeout: config.connectTimeout, limits: config.limits)
            }
            let r = try await conn.send(RESPCommand(args), timeout: config.commandTimeout + block)
            if !conn.isBroken && !s.closed && s.idleBlocking.count < config.maxIdleBlocking {
                s.idleBlocking.append(conn)
            } else {
                await conn.close()
            }
            return r[0]
        }
        if case .error(let e) = reply { throw RedisError(.server, e) }
        return reply
    }

    /// Runs Lua `script` (EVALSHA when Redis has it cached, EVAL the first time).
    public func eval(_ script: RedisScript, keys: [String], args: [String]) async throws(RedisError) -> RESPValue {
        let tail = [String(keys.count)] + keys + args
        let first = try await pipeline([["EVALSHA", script.sha1] + tail])[0]
        if case .error(let e) = first {
            guard e.hasPrefix("NOSCRIPT") else { throw RedisError(.server, e) }
            return try await send(["EVAL", script.source] + tail)
        }
        return first
    }

    // MARK: Connections

    private func onLoop<T: Sendable>(_ body: sending @escaping () async throws(RedisError) -> T) async throws(RedisError) -> T {
        let r: Result<T, RedisError>
        do {
            r = try await loop.run { () async -> Result<T, RedisError> in
                do throws(RedisError) { return .success(try await body()) } catch { return .failure(error) }
            }
        } catch {
            throw RedisError(.connection, "the Redis client's loop is gone: \(error)")
        }
        return try r.get()
    }

    /// The shared connection, opened (once, for every caller waiting) when missing or broken.
    private static func shared(_ s: Connections, _ config: RedisConfiguration) async throws(RedisError) -> RedisConnection {
        guard !s.closed else { throw RedisError(.connection, "the Redis client was shut down") }
        if let c = s.shared, !c.isBroken { return c }
        s.shared = nil
        if s.opening != nil {
            let r = await withUnsafeContinuation { s.opening!.append($0) }
            return try r.get().value
        }
        s.opening = []
        let result: Result<LoopBound<RedisConnection>, RedisError>
        do throws(RedisError) {
            let c = try await RedisConnection.open(config.endpoint, timeout: config.connectTimeout, limits: config.limits)
            if s.closed { await c.close(); throw RedisError(.connection, "the Redis client was shut down") }
            s.shared = c
            result = .success(LoopBound(c, loop: s.loop))
        } catch {
            result = .failure(error)
        }
        let waiting = s.opening ?? []
        s.opening = nil
        for w in waiting { w.resume(returning: result) }
        return try result.get().value
    }
}

/// A Lua script and its SHA-1 (what EVALSHA names it by).
public struct RedisScript: Sendable {
    public let source: String
    public let sha1: String
    public init(_ source: String) {
        self.source = source
        self.sha1 = Insecure.SHA1.hash(data: Array(source.utf8)).map { b in
            let h = String(b, radix: 16)
            return b < 16 ? "0" + h : h
        }.joined()
    }
}
