// SpoolModel.RFC3339: the one formatter of calendar timestamps in API bodies (jobs,
// files, events), from the Unix milliseconds the services store.
/// RFC 3339 timestamps in UTC with milliseconds ("2027-01-15T08:00:00.000Z").
public enum RFC3339 {
    public static func format(_ unixMilliseconds: Int64) -> String {
        let ms = unixMilliseconds
        let days = ms >= 0 ? ms / 86_400_000 : (ms - 86_399_999) / 86_400_000
        let inDay = ms - days * 86_400_000
        let (y, m, d) = civil(days)
        func pad(_ v: Int64, _ n: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, n - s.count)) + s
        }
        let secs = inDay / 1000
        return "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))T\(pad(secs / 3600, 2)):\(pad(secs / 60 % 60, 2)):\(pad(secs % 60, 2)).\(pad(inDay % 1000, 3))Z"
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
