// Web.Conditional: ETag / If-None-Match and Last-Modified / If-Modified-Since (RFC 9110
// §13). A 200 answer to GET or HEAD gets a strong ETag (a hash of its body) unless the
// handler set one; a request whose If-None-Match matches (weak comparison, or "*") gets
// 304 with the validators and no body. If-Modified-Since is consulted only when there is
// no If-None-Match, as the RFC orders. If-Match (strong comparison) and, without it,
// If-Unmodified-Since come first: failing either is 412. A handler that changes state
// (DELETE) checks them itself through `Conditional.failsPrecondition`.
#if canImport(Glibc)
import Glibc
#endif

/// A strong entity tag for `body`: 64-bit FNV-1a, quoted.
public func entityTag(of body: [UInt8]) -> String {
    var h = FNV1a()
    h.combine(body)
    return entityTag(hash: h.value)
}

/// The entity tag for a 64-bit hash: 16 lower-case hex digits, quoted.
public func entityTag(hash: UInt64) -> String {
    var text: [UInt8] = []
    text.reserveCapacity(18)
    appendEntityTag(hash: hash, to: &text)
    return String(decoding: text, as: UTF8.self)
}

func appendEntityTag(hash h: UInt64, to out: inout [UInt8]) {
    out.append(0x22)
    for i in (0..<16).reversed() {
        let nibble = UInt8(truncatingIfNeeded: h >> (4 * UInt64(i))) & 15
        out.append(nibble < 10 ? 0x30 + nibble : 0x57 + nibble)
    }
    out.append(0x22)
}

/// 64-bit FNV-1a, fed in pieces (an entity tag over a record's fields without joining them
/// first). Concrete methods only: a public generic would run unspecialized in other modules.
public struct FNV1a: Sendable {
    public private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325
    public init() {}

    public mutating func combine(_ bytes: [UInt8]) { feed(bytes) }
    public mutating func combine(_ text: String) { feed(text.utf8) }

    public mutating func combine(byte: UInt8) {
        value ^= UInt64(byte)
        value = value &* 0x100_0000_01b3
    }

    /// `n` as its decimal text ("-12" for -12), as `String(n)` would spell it.
    public mutating func combine(decimal n: Int64) {
        if n < 0 { combine(byte: 0x2D) }
        let m = n.magnitude
        var divisor: UInt64 = 1
        while divisor <= m / 10 { divisor *= 10 }
        while divisor > 0 {
            combine(byte: UInt8(truncatingIfNeeded: 0x30 + m / divisor % 10))
            divisor /= 10
        }
    }

    private mutating func feed(_ bytes: some Sequence<UInt8>) {
        for b in bytes { combine(byte: b) }
    }
}

/// True when an `If-None-Match` header value matches `tag` (weak comparison, or "*"): for a
/// handler that answers 304 itself (to know it sends no body).
public func ifNoneMatch(_ header: String, matches tag: String) -> Bool { Conditional.matches(header, tag) }

public enum Conditional {
    /// Adds validators to a successful GET/HEAD response and turns it into 304 when the
    /// request's preconditions say the client's copy is current (412 when If-Match or
    /// If-Unmodified-Since fails). The server applies it to every answer; a middleware that
    /// must see the final status (the metrics) may apply it first, and the server's call
    /// then does nothing.
    public static func apply(_ request: Request, _ response: inout Response) {
        guard !response.conditionsApplied else { return }
        response.conditionsApplied = true
        guard request.method == "GET" || request.method == "HEAD", response.status == 200 || response.status == 206 else { return }
        var tag = response.headers.value(of: "ETag")
        if tag == nil && response.stream == nil {
            let t = entityTag(of: response.body)
            response.headers.append(("ETag", t))
            tag = t
        }
        // RFC 9110 §13.2.2: If-Match first, else If-Unmodified-Since; failing either is 412
        // whatever If-None-Match says.
        if failsPrecondition(request, tag: tag, lastModified: response.headers.value(of: "Last-Modified")) {
            response = preconditionFailed
            response.conditionsApplied = true
            return
        }
        let notModified: Bool
        if let inm = request.headerList("If-None-Match") {
            notModified = tag.map { matches(inm, $0) } ?? false
        } else if let ims = request.header("If-Modified-Since").flatMap(HTTPDate.parse),
                  let lm = response.headers.value(of: "Last-Modified").flatMap(HTTPDate.parse) {
            notModified = lm <= ims
        } else {
            notModified = false
        }
        if notModified {
            response.status = 304
            response.body = []
            response.stream = nil
            response.headers.removeAll { $0.name.equalsIgnoringCase("Content-Type") || $0.name.equalsIgnoringCase("Content-Range") }
        }
    }

    /// The 412 a failed If-Match or If-Unmodified-Since gets.
    public static let preconditionFailedError = APIError(
        status: 412, code: "precondition_failed", message: "the resource does not match If-Match or has changed since If-Unmodified-Since")

    static var preconditionFailed: Response { preconditionFailedError.response }

    /// True when the request's If-Match (strong comparison, or "*") names none of the current
    /// representation's tags or, without If-Match, the resource was modified after its
    /// If-Unmodified-Since (an unparsable date is no condition). `tag` and `lastModified`
    /// describe the current representation; a resource with no tag matches only "*".
    public static func failsPrecondition(_ request: Request, tag: String?, lastModified: String?) -> Bool {
        if let im = request.headerList("If-Match") {
            return !matchesStrongly(im, tag)
        }
        if let ius = request.header("If-Unmodified-Since").flatMap(HTTPDate.parse),
           let lm = lastModified.flatMap(HTTPDate.parse) {
            return lm > ius
        }
        return false
    }

    /// If-Match uses the strong comparison: a weak tag on either side never matches.
    static func matchesStrongly(_ header: String, _ tag: String?) -> Bool {
        for item in header.split(separator: ",") {
            let t = item.trimmingSpaces
            if t == "*" { return true }
            if let tag, !t.hasPrefix("W/"), !tag.hasPrefix("W/"), t == Substring(tag) { return true }
        }
        return false
    }

    /// If-None-Match uses the weak comparison: W/"x" matches "x".
    static func matches(_ header: String, _ tag: String) -> Bool {
        let opaque = { (t: Substring) -> Substring in t.hasPrefix("W/") ? t.dropFirst(2) : t }
        let mine = opaque(Substring(tag))
        for item in header.split(separator: ",") {
            let t = item.trimmingSpaces
            if t == "*" || opaque(t) == mine { return true }
        }
        return false
    }
}

extension Substring {
    var trimmingSpaces: Substring {
        var s = self
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return s
    }
}

/// IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), the HTTP date format, as Unix seconds.
public enum HTTPDate {
    private static let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    public static func format(_ seconds: Int64) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(32)
        append(seconds, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// "Sun, 06 Nov 1994 08:49:37 GMT" for `seconds` since the epoch, appended as bytes
    /// (Last-Modified is written on every read of a job).
    public static func append(_ seconds: Int64, to out: inout [UInt8]) {
        let dayCount = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secs = seconds - dayCount * 86_400
        let (y, m, d) = civil(fromDays: dayCount)
        let weekday = Int((dayCount % 7 + 11) % 7)   // 1970-01-01 was a Thursday
        out.append(contentsOf: days[weekday].utf8)
        out.append(0x2C); out.append(0x20)
        appendDigits(d, 2, to: &out)
        out.append(0x20)
        out.append(contentsOf: months[Int(m) - 1].utf8)
        out.append(0x20)
        if (0...9999).contains(y) { appendDigits(y, 4, to: &out) } else { out.append(contentsOf: String(y).utf8) }
        out.append(0x20)
        appendDigits(secs / 3600, 2, to: &out)
        out.append(0x3A)
        appendDigits(secs / 60 % 60, 2, to: &out)
        out.append(0x3A)
        appendDigits(secs % 60, 2, to: &out)
        out.append(contentsOf: " GMT".utf8)
    }

    /// `v` (0 ≤ v < 10^width) as exactly `width` decimal digits.
    private static func appendDigits(_ v: Int64, _ width: Int, to out: inout [UInt8]) {
        var divisor: Int64 = 1
        for _ in 1..<width { divisor *= 10 }
        while divisor > 0 {
            out.append(UInt8(truncatingIfNeeded: 0x30 + v / divisor % 10))
            divisor /= 10
        }
    }

    private static let longDays = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]

    /// Parses an HTTP-date in any of the three forms a recipient must accept (RFC 9110
    /// §5.6.7): IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), the obsolete RFC 850 form
    /// ("Sunday, 06-Nov-94 08:49:37 GMT") and asctime ("Sun Nov  6 08:49:37 1994"). An
    /// RFC 850 year more than 50 years after `now`'s (seconds since the epoch; the clock
    /// when nil) is the most recent past year with the same last two digits. Anything else
    /// is nil: for a condition, an unparsable date means no condition.
    public static func parse(_ text: String) -> Int64? { parse(text, now: nil) }

    public static func parse(_ text: String, now: Int64?) -> Int64? {
        let parts = text.split(separator: " ", omittingEmptySubsequences: false)
        // IMF-fixdate: day-name "," SP 2DIGIT SP month SP 4DIGIT SP time SP "GMT".
        if parts.count == 6, parts[0].count == 4, parts[0].hasSuffix(","), days.contains(String(parts[0].dropLast())),
           parts[5] == "GMT", parts[1].count == 2, parts[3].count == 4,
           let d = digits(parts[1]), let m = months.firstIndex(of: String(parts[2])), let y = digits(parts[3]) {
            return seconds(y, m + 1, d, parts[4])
        }
        // RFC 850: day-name-l "," SP 2DIGIT "-" month "-" 2DIGIT SP time SP "GMT".
        if parts.count == 4, parts[0].hasSuffix(","), longDays.contains(String(parts[0].dropLast())), parts[3] == "GMT" {
            let date = parts[1].split(separator: "-", omittingEmptySubsequences: false)
            guard date.count == 3, date[0].count == 2, date[2].count == 2, let d = digits(date[0]),
                  let m = months.firstIndex(of: String(date[1])), let yy = digits(date[2]) else { return nil }
            let nowYear = civil(fromDays: (now ?? Int64(time(nil))) / 86_400).0
            var y = nowYear - nowYear % 100 + yy
            if y > nowYear + 50 { y -= 100 }
            return seconds(y, m + 1, d, parts[2])
        }
        // asctime: day-name SP month SP (2DIGIT / SP DIGIT) SP time SP 4DIGIT; a one-digit
        // day leaves an empty part between two spaces.
        let fields = parts.count == 6 && parts[2].isEmpty && parts[3].count == 1 ? [parts[0], parts[1], parts[3], parts[4], parts[5]]
            : parts.count == 5 && parts[2].count == 2 ? Array(parts) : []
        if fields.count == 5, days.contains(String(fields[0])), let m = months.firstIndex(of: String(fields[1])),
           let d = digits(fields[2]), fields[4].count == 4, let y = digits(fields[4]) {
            return seconds(y, m + 1, d, fields[3])
        }
        return nil
    }

    /// A run of ASCII digits (no sign, no spaces) as a number.
    private static func digits(_ s: Substring) -> Int64? {
        guard !s.isEmpty, s.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return Int64(s)
    }

    /// The instant of a date and an "HH:MM:SS" time of day, or nil when out of range.
    private static func seconds(_ y: Int64, _ m: Int, _ d: Int64, _ time: Substring) -> Int64? {
        let hms = time.split(separator: ":", omittingEmptySubsequences: false)
        guard hms.count == 3, hms.allSatisfy({ $0.count == 2 }), let h = digits(hms[0]), let mi = digits(hms[1]), let s = digits(hms[2]),
              (1...31).contains(d), h < 24, mi < 60, s < 61
        else { return nil }
        return days(fromCivil: y, Int64(m), d) * 86_400 + h * 3600 + mi * 60 + s
    }

    // Howard Hinnant's days-from-civil and its inverse (proleptic Gregorian calendar).
    private static func days(fromCivil y0: Int64, _ m: Int64, _ d: Int64) -> Int64 {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    private static func civil(fromDays z0: Int64) -> (Int64, Int64, Int64) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d)
    }
}
