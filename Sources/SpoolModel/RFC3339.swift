// SpoolModel.RFC3339: the one formatter of calendar timestamps in API bodies (jobs,
// files, events), from the Unix milliseconds the services store.
/// RFC 3339 timestamps in UTC with milliseconds ("2027-01-15T08:00:00.000Z").
public enum RFC3339 {
    public static func format(_ unixMilliseconds: Int64) -> String {
        let ms = unixMilliseconds
        let days = ms >= 0 ? ms / 86_400_000 : (ms - 86_399_999) / 86_400_000
        let inDay = ms - days * 86_400_000
        let (y, m, d) = civil(days)
        let secs = inDay / 1000
        // "YYYY-MM-DDTHH:MM:SS.mmmZ", digit by digit into one buffer (years past 9999 or
        // before 0 keep their own width).
        var out: [UInt8] = []
        out.reserveCapacity(24)
        func digits(_ v: Int64, _ n: Int) {
            var v = v
            if v < 0 { out.append(0x2D); v = -v }
            var scratch: (UInt8, UInt8, UInt8, UInt8) = (0x30, 0x30, 0x30, 0x30)
            if v >= 10_000 { out.append(contentsOf: String(v).utf8); return }
            scratch.3 = UInt8(truncatingIfNeeded: 0x30 + v % 10)
            scratch.2 = UInt8(truncatingIfNeeded: 0x30 + v / 10 % 10)
            scratch.1 = UInt8(truncatingIfNeeded: 0x30 + v / 100 % 10)
            scratch.0 = UInt8(truncatingIfNeeded: 0x30 + v / 1000 % 10)
            if n >= 4 { out.append(scratch.0) }
            if n >= 3 { out.append(scratch.1) }
            out.append(scratch.2)
            out.append(scratch.3)
        }
        digits(y, 4); out.append(0x2D); digits(m, 2); out.append(0x2D); digits(d, 2); out.append(0x54)
        digits(secs / 3600, 2); out.append(0x3A); digits(secs / 60 % 60, 2); out.append(0x3A); digits(secs % 60, 2)
        out.append(0x2E); digits(inDay % 1000, 3); out.append(0x5A)
        return String(decoding: out, as: UTF8.self)
    }

    /// Howard Hinnant's civil-from-days (proleptic Gregorian).
    private static func civil(_ z0: Int64) -> (Int64, Int64, Int64) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? yoe + era * 400 + 1 : yoe + era * 400, m, d)
    }
}
