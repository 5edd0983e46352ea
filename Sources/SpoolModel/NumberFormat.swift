// SpoolModel.NumberFormat: the one place numbers become text for people (CLI reports,
// error messages, playlists), without Foundation: fixed decimals, seconds and byte sizes
// in binary units. Every service words a number the same way.

public enum NumberFormat {
    /// `value` with exactly `places` decimals, rounded half away from zero ("2.50" for
    /// 2.5 with 2 places, "-0.50" for -0.5); "?" when it is not finite.
    public static func fixed(_ value: Double, places: Int) -> String {
        guard value.isFinite else { return "?" }
        let places = min(max(places, 0), 9)
        var scale = 1.0
        for _ in 0..<places { scale *= 10 }
        let scaled = (value.magnitude * scale).rounded()
        // Past 2^63 the digits are not exact anyway: Swift's shortest form then.
        guard scaled < 9.2e18 else { return value.description }
        let units = UInt64(scaled), divisor = UInt64(scale)
        let sign = value < 0 && units != 0 ? "-" : ""
        guard places > 0 else { return sign + String(units) }
        let fraction = String(units % divisor)
        return sign + String(units / divisor) + "." + String(repeating: "0", count: places - fraction.count) + fraction
    }

    /// Seconds as a limit or a duration is worded: whole numbers without decimals ("2"),
    /// anything else with one ("2.5").
    public static func seconds(_ value: Double) -> String {
        value == value.rounded() && value.magnitude < 9.2e18 ? String(Int64(value)) : fixed(value, places: 1)
    }

    /// "900 bytes", "512 KiB", "1.5 MiB", "2 GiB": binary units, at most one decimal.
    public static func bytes<T: BinaryInteger>(_ count: T) -> String {
        let units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
        var v = Double(count)
        var u = 0
        while v.magnitude >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
        if u == 0 { return "\(count) bytes" }
        let tenths = fixed(v, places: 1)
        return (tenths.hasSuffix(".0") ? String(tenths.dropLast(2)) : tenths) + " " + units[u]
    }
}
