// Web.FastLane: the synchronous lane (ADR 0019). A route may carry, beside its handler, a
// fast handler: a synchronous function that answers from memory (a cached record, say) or
// declines. The connection offers it a plain request (GET, HTTP/1.1 keep-alive, no body,
// no precondition header, an origin-form path with no query, no percent-encoding and
// nothing to normalize) the moment the head is parsed, before a `Request` is built: no
// String per header, no dictionary of parameters, no middleware closures, no suspension.
// When it answers, the response is framed here and queued for the socket; when it
// declines, the request takes the full path as if the lane did not exist.
//
// The contract is the route's: a fast handler answers byte for byte what the route's full
// pipeline (its middleware included: request id, authentication, metrics) would answer
// for the same request, apart from values that differ between any two answers (the
// request id, the Date). It declines whenever it cannot be sure (a key it has not seen,
// a record not in memory, a conditional request). Tests hold each fast handler to this
// against its full path (DispatcherTests.FastLaneTests).
//
// Nothing here is unsafe: the head's bytes are copied into an array the connection keeps
// and reuses (a memcpy of a few hundred bytes, no allocation once it has grown), and the
// response is built in another.
import HTTP1
import Ring

/// A route's synchronous lane: answers into `response` and returns true, or returns false
/// (having written nothing that matters) for the full path to answer.
public typealias FastHandler = @Sendable (_ request: FastRequest, _ response: inout FastResponse) -> Bool

/// Says whether an answer a fast handler made may be sent again, unchanged but for the
/// Date and a request id the server made, for a byte-identical request on the same
/// connection (LaneShortcut.swift); when it may, it records the request as the handler
/// records one (metrics), since the handler does not run, with `elapsed()` as its duration:
/// the nanoseconds since the server turned to the request (one clock read; call it once,
/// after deciding). Runs on the loop thread and must not block. Made once per route, not
/// per answer.
public typealias FastReplayCheck = @Sendable (_ replay: FastReplay, _ elapsed: () -> Int64) -> Bool

/// What a fast answer was made from, as its handler gives it in `FastResponse.replay`:
/// everything a replay must find unchanged (a cached record by reference, a stamp of the
/// authentication) and the check that finds it. Only for answers that depend on nothing
/// else but the request's bytes; the check must fail the moment any of it changes.
public struct FastReplay {
    public let anchor: AnyObject
    public let stamp0: UInt64
    public let stamp1: Int64
    let check: FastReplayCheck
    /// When the check comes down to words holding values (`ReplayGuard`), the answer may be
    /// replayed by the io_uring reap itself (Ring.ReplayTable, ADR 0019 addendum 5) while
    /// they do; `recorder` then records those replays. nil: only the check decides.
    let reapGuards: [ReplayGuard]?
    let recorder: FastReplayRecorder?

    public init(anchor: AnyObject, stamp0: UInt64 = 0, stamp1: Int64 = 0, check: @escaping FastReplayCheck,
                reapGuards: [ReplayGuard]? = nil, recorder: FastReplayRecorder? = nil) {
        self.anchor = anchor
        self.stamp0 = stamp0
        self.stamp1 = stamp1
        self.check = check
        self.reapGuards = recorder == nil ? nil : reapGuards
        self.recorder = recorder
    }
}

/// Records the replays the reap answered for a route as its check records one:
/// `record(count, totalNanoseconds)`, on the loop thread. Made once per route.
public final class FastReplayRecorder: Sendable {
    let record: @Sendable (_ count: Int, _ totalNanoseconds: Int64) -> Void
    public init(_ record: @escaping @Sendable (_ count: Int, _ totalNanoseconds: Int64) -> Void) { self.record = record }
}

/// A plain request as the fast lane sees it: the head's bytes and where its parts are.
public struct FastRequest {
    let bytes: [UInt8]
    let head: RequestHead
    /// The path's segments that matched the route's `:name` parameters (at most two).
    let parameter0: Range<Int>
    let parameter1: Range<Int>
    public let parameterCount: Int
    /// The route's pattern ("/api/v1/jobs/:id"): a label for metrics.
    public let route: String

    /// The `k`th path parameter (in the order of the pattern). The lane only sees paths
    /// without percent-encoding, so this is exactly what the full path would decode.
    public func parameter(_ k: Int) -> String {
        precondition(k < parameterCount, "the route has \(parameterCount) parameters")
        return String(decoding: bytes[k == 0 ? parameter0 : parameter1], as: UTF8.self)
    }

    /// The `k`th path parameter's bytes (no String made).
    public func parameterBytes(_ k: Int) -> ArraySlice<UInt8> {
        precondition(k < parameterCount, "the route has \(parameterCount) parameters")
        return bytes[k == 0 ? parameter0 : parameter1]
    }

    /// The value of the first field named `name` (any case), without surrounding spaces.
    public func header(_ name: StaticString) -> ArraySlice<UInt8>? {
        for f in head.fields where Self.nameEquals(bytes, f.name, name) {
            var lo = f.value.lowerBound, hi = f.value.upperBound
            while lo < hi && (bytes[lo] == 0x20 || bytes[lo] == 0x09) { lo += 1 }
            while hi > lo && (bytes[hi - 1] == 0x20 || bytes[hi - 1] == 0x09) { hi -= 1 }
            return bytes[lo..<hi]
        }
        return nil
    }

    /// How many fields are named `name` (any case).
    public func count(_ name: StaticString) -> Int {
        head.fields.reduce(0) { $0 + (Self.nameEquals(bytes, $1.name, name) ? 1 : 0) }
    }

    /// Whether any field is named `name` (any case).
    public func contains(_ name: StaticString) -> Bool {
        head.fields.contains { Self.nameEquals(bytes, $0.name, name) }
    }

    static func nameEquals(_ bytes: [UInt8], _ r: Range<Int>, _ name: StaticString) -> Bool {
        guard r.count == name.utf8CodeUnitCount else { return false }
        return name.withUTF8Buffer { n in
            var k = 0
            for i in r {
                var c = bytes[i]
                if c >= 0x41 && c <= 0x5A { c |= 0x20 }
                var d = n[k]
                if d >= 0x41 && d <= 0x5A { d |= 0x20 }
                if c != d { return false }
                k += 1
            }
            return true
        }
    }
}

/// What a fast handler answers: a status, header fields and a body. The server adds what it
/// adds to a full-path response: an ETag of the body for a 200 without one, Date,
/// Content-Length and the framing.
public struct FastResponse {
    public var status = 200
    /// "Name: value\r\n" for each field, in the order written.
    var fields: [UInt8] = []
    public var body: [UInt8] = []
    /// The first field the server could not send (a control character in its value): the
    /// request is answered 500, as the full path answers a handler's invalid header.
    var invalidField: String?
    /// Whether the handler gave an ETag (else a 200 gets the body's, as Conditional.apply gives it).
    var hasETag = false
    /// Set by a handler whose answer may be replayed (`FastReplay`); nil: never replayed.
    public var replay: FastReplay?
    /// Where in `fields` the counter digits of a request id the server made start (the
    /// part a replay makes anew), or -1.
    var madeRequestIDAt = -1

    /// Ready for the next request, keeping the fields' storage.
    mutating func reset() {
        status = 200
        fields.removeAll(keepingCapacity: true)
        body = []
        invalidField = nil
        hasETag = false
        replay = nil
        madeRequestIDAt = -1
    }

    /// Adds `name: value`. Values must be free of control characters (tab allowed), as any
    /// handler's header must be; one that is not makes the answer a 500.
    public mutating func header(_ name: StaticString, _ value: String) {
        append(name, value.utf8)
    }

    /// Adds `name: value` from bytes (a request header's value, say); the same rule.
    public mutating func header(_ name: StaticString, _ value: ArraySlice<UInt8>) {
        append(name, value)
    }

    /// `name: "<16 hex digits>"`, the entity tag `entityTag(hash:)` spells.
    public mutating func header(_ name: StaticString, entityTagHash hash: UInt64) {
        if Self.isETag(name) { hasETag = true }
        appendName(name)
        appendEntityTag(hash: hash, to: &fields)
        fields.append(0x0D); fields.append(0x0A)
    }

    /// `name: <IMF-fixdate>` for `seconds` since the epoch, as `HTTPDate.format` spells it.
    public mutating func header(_ name: StaticString, httpDate seconds: Int64) {
        appendName(name)
        HTTPDate.append(seconds, to: &fields)
        fields.append(0x0D); fields.append(0x0A)
    }

    private mutating func appendName(_ name: StaticString) {
        name.withUTF8Buffer { fields.append(contentsOf: $0) }
        fields.append(0x3A); fields.append(0x20)
    }

    // Generic only inside this module (specialized at both uses): a public generic would
    // run unspecialized from other modules, boxing each byte it iterates.
    private static func isETag(_ name: StaticString) -> Bool {
        name.withUTF8Buffer { n in n.count == 4 && n.elementsEqual("ETag".utf8) { $0 | 0x20 == $1 | 0x20 } }
    }

    private mutating func append(_ name: StaticString, _ value: some Collection<UInt8>) {
        if Self.isETag(name) { hasETag = true }
        for c in value where !(c == 0x09 || (c >= 0x20 && c != 0x7F)) {
            if invalidField == nil { invalidField = "\(name)" }
            return
        }
        appendName(name)
        fields.append(contentsOf: value)
        fields.append(0x0D); fields.append(0x0A)
    }
}

extension Router {
    /// Offers a plain GET to its route's fast handler: false when the request is not plain,
    /// the route has none, or the handler declined; true when `lane.response` holds the
    /// handler's answer. `head` indexes `raw`.
    func answerFast(_ head: RequestHead, raw: UnsafeRawBufferPointer, lane: inout FastLaneScratch) -> Bool {
        guard head.framing == .none, head.version == .http1_1, head.authority == nil,
              head.method.count == 3, raw[head.method.lowerBound] == 0x47, raw[head.method.lowerBound + 1] == 0x45,
              raw[head.method.lowerBound + 2] == 0x54,
              let (route, p0, p1, n) = fastRoute(raw, head.target) else { return false }
        lane.head.removeAll(keepingCapacity: true)
        unsafe lane.head.append(contentsOf: UnsafeRawBufferPointer(rebasing: raw[0..<head.headLength]))
        lane.response.reset()
        let request = FastRequest(bytes: lane.head, head: head, parameter0: p0, parameter1: p1, parameterCount: n, route: route.pattern)
        // Conditional requests are the server's own (Conditional.apply, 304, 412): full path.
        // A declined request may have grown the scratch (a long head): let it go here too,
        // or a client whose polls always decline would keep it for the connection's life.
        guard !request.contains("If-None-Match"), !request.contains("If-Modified-Since"),
              !request.contains("If-Match"), !request.contains("If-Unmodified-Since"),
              route.fast!(request, &lane.response) else {
            lane.response.replay = nil
            lane.shedLargeArrays()
            return false
        }
        return true
    }

    /// The route a plain path resolves to for GET, when it has a fast handler, with the
    /// parameters' ranges. Paths with a query, percent-encoding, an empty segment or a
    /// segment starting with a dot are not plain (the full path normalizes them).
    private func fastRoute(_ raw: UnsafeRawBufferPointer, _ target: Range<Int>) -> (Route, Range<Int>, Range<Int>, Int)? {
        guard !target.isEmpty, raw[target.lowerBound] == 0x2F else { return nil }
        // Segment starts, at most 16 (longer paths take the full path).
        var starts = InlineArray<16, Int>(repeating: 0)
        var count = 0
        var i = target.lowerBound + 1
        var segmentStart = i
        while true {
            if i == target.upperBound || raw[i] == 0x2F {
                if i == segmentStart {
                    // An empty segment: only a single trailing slash is plain.
                    guard i == target.upperBound, count > 0 else { return nil }
                    break
                }
                guard count < 16 else { return nil }
                starts[count] = segmentStart
                count += 1
                if i == target.upperBound { break }
                i += 1
                segmentStart = i
                continue
            }
            let c = raw[i]
            // '+' too: the full path's parameter decoding reads it as a space.
            if c == 0x3F || c == 0x25 || c == 0x2B || (i == segmentStart && c == 0x2E) { return nil }
            i += 1
        }
        guard count < routesBySegmentCount.count else { return nil }
        func segment(_ k: Int) -> Range<Int> {
            let s = starts[k]
            var e = s
            while e < target.upperBound && raw[e] != 0x2F { e += 1 }
            return s..<e
        }
        candidates: for index in routesBySegmentCount[count] {
            let route = routes[index]
            var p0 = 0..<0, p1 = 0..<0, n = 0
            for k in 0..<count {
                let r = segment(k)
                let literal = route.segmentBytes[k]
                if literal.first == 0x3A {
                    if n == 0 { p0 = r } else if n == 1 { p1 = r }
                    n += 1
                    continue
                }
                guard literal.count == r.count else { continue candidates }
                var j = r.lowerBound
                for b in literal {
                    guard raw[j] == b else { continue candidates }
                    j += 1
                }
            }
            // The first route of this path for GET is the one the full path would run.
            guard route.method == "GET" else { continue }
            guard route.fast != nil, n <= 2 else { return nil }
            return (route, p0, p1, n)
        }
        return nil
    }
}

/// What a connection keeps for the fast lane, so answering allocates nothing once the
/// arrays have grown: the copied head, the handler's answer, the framed bytes.
struct FastLaneScratch {
    var head: [UInt8] = []
    var response = FastResponse()
    var out: [UInt8] = []
    /// Where in `out` the Date's value starts, and the made request id's counter digits
    /// (-1: none), after `HTTPServer.frame`.
    var dateAt = -1
    var requestIDAt = -1

    /// Lets go of arrays an unusual request or answer grew (a head of many kilobytes, a
    /// job with large metadata), so an idle connection keeps about what a typical answer
    /// needs (ADR 0004's idle footprint): at most 4 + 4 + 16 KiB, and a few hundred bytes
    /// each for an ordinary poll.
    mutating func shedLargeArrays() {
        if head.capacity > 4096 { head = [] }
        if response.fields.capacity > 4096 { response.fields = [] }
        if out.capacity > 16 * 1024 { out = [] }
    }
}

extension HTTPServer {
    /// Frames the fast answer in `lane.response` into `lane.out` as `send` frames a full
    /// one: status line, the handler's fields, Date, Content-Length (none for 1xx, 204 and
    /// 304, which carry no content), the body. Drops the response's body afterwards.
    static func frame(_ lane: inout FastLaneScratch, date: String) {
        let status = lane.response.status
        let contentless = status < 200 || status == 204 || status == 304
        lane.out.removeAll(keepingCapacity: true)
        ResponseHead.serializeStatusLine(status, into: &lane.out)
        let made = lane.response.madeRequestIDAt
        lane.requestIDAt = made < 0 ? -1 : lane.out.count + made
        lane.out.append(contentsOf: lane.response.fields)
        if status == 200 && !lane.response.hasETag {
            // As Conditional.apply does for a full-path 200 to GET without one.
            var h = FNV1a()
            h.combine(lane.response.body)
            lane.out.append(contentsOf: "ETag: ".utf8)
            appendEntityTag(hash: h.value, to: &lane.out)
            lane.out.append(0x0D); lane.out.append(0x0A)
        }
        lane.out.append(contentsOf: "Date: ".utf8)
        lane.dateAt = lane.out.count
        lane.out.append(contentsOf: date.utf8)
        lane.out.append(0x0D); lane.out.append(0x0A)
        if !contentless {
            lane.out.append(contentsOf: "Content-Length: ".utf8)
            appendDecimal(lane.response.body.count, to: &lane.out)
            lane.out.append(0x0D); lane.out.append(0x0A)
        }
        lane.out.append(0x0D); lane.out.append(0x0A)
        if !contentless { lane.out.append(contentsOf: lane.response.body) }
        lane.response.body = []
    }

    static func appendDecimal(_ n: Int, to out: inout [UInt8]) {
        if n >= 10 { appendDecimal(n / 10, to: &out) }
        out.append(UInt8(0x30 + n % 10))
    }
}
