// SpoolModel.Identifiers: ids for jobs, files, engines and tenants. An id is a prefix and
// 26 characters of Crockford base32 over 128 bits: 48 bits of milliseconds, then 80 random
// bits (the ULID layout), so ids sort by creation time (stable pagination cursors) and
// never collide in practice. Parsing is strict: an id from a URL path is either exactly
// this shape or refused, so no user-chosen string ever reaches a query or a file name.
public struct EntityID<Kind: EntityKind>: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The full text, prefix included ("job_01J…").
    public let text: String

    /// Parses `text`, refusing anything that is not `Kind.prefix` + 26 base32 characters.
    public init?(_ text: String) {
        // Ids are parsed on every request that names one: no array is made.
        let utf8 = text.utf8, prefix = Kind.prefix.utf8
        guard utf8.count == prefix.count + 26, utf8.starts(with: prefix) else { return nil }
        let body = utf8.dropFirst(prefix.count)
        for b in body where Crockford.value(of: b) == nil { return nil }
        // The first character carries only 3 of the 128 bits (48-bit time: 10 chars = 50 bits).
        guard let first = body.first.flatMap(Crockford.value(of:)), first < 8 else { return nil }
        self.text = text
    }

    /// The 128 bits the id's 26 characters spell (its kind is its type's): a key that hashes
    /// and compares without a String.
    public var bits: UInt128 { Crockford.decode128(text.utf8.dropFirst(Kind.prefix.utf8.count)) }

    /// The bits of the id `bytes` spell, or nil where `init?` would refuse the same text;
    /// nothing is allocated (the HTTP fast lane looks jobs up by it).
    public static func bits(of bytes: ArraySlice<UInt8>) -> UInt128? {
        let prefix = Kind.prefix.utf8
        guard bytes.count == prefix.count + 26, bytes.starts(with: prefix) else { return nil }
        let body = bytes.dropFirst(prefix.count)
        for b in body where Crockford.value(of: b) == nil { return nil }
        guard let first = body.first.flatMap(Crockford.value(of:)), first < 8 else { return nil }
        return Crockford.decode128(body)
    }

    /// A new id for `milliseconds` since the Unix epoch and 80 random bits from `rng`.
    public static func generate<R: RandomNumberGenerator>(milliseconds: UInt64, using rng: inout R) -> EntityID {
        var bytes = [UInt8](repeating: 0, count: 16)
        let ms = milliseconds & 0xFFFF_FFFF_FFFF
        for i in 0..<6 { bytes[i] = UInt8(truncatingIfNeeded: ms >> (8 * UInt64(5 - i))) }
        let a = rng.next(), b = rng.next()
        for i in 0..<8 { bytes[6 + i] = UInt8(truncatingIfNeeded: a >> (8 * UInt64(i))) }
        for i in 0..<2 { bytes[14 + i] = UInt8(truncatingIfNeeded: b >> (8 * UInt64(i))) }
        return EntityID(unchecked: Kind.prefix + Crockford.encode128(bytes))
    }

    private init(unchecked text: String) { self.text = text }

    /// Milliseconds since the Unix epoch when the id was generated.
    public var milliseconds: UInt64 {
        let body = Array(text.utf8.dropFirst(Kind.prefix.utf8.count))
        var ms: UInt64 = 0
        for b in body.prefix(10) { ms = ms << 5 | UInt64(Crockford.value(of: b)!) }
        return ms
    }

    public var description: String { text }
    public static func < (a: EntityID, b: EntityID) -> Bool { a.text < b.text }
}

public protocol EntityKind: Sendable { static var prefix: String { get } }
public enum JobKind: EntityKind { public static let prefix = "job_" }
public enum FileKind: EntityKind { public static let prefix = "file_" }
public enum EngineKind: EntityKind { public static let prefix = "eng_" }
public enum TenantKind: EntityKind { public static let prefix = "ten_" }

public typealias JobID = EntityID<JobKind>
public typealias FileID = EntityID<FileKind>
public typealias EngineID = EntityID<EngineKind>
public typealias TenantID = EntityID<TenantKind>

/// Crockford's base32 (no I, L, O, U), upper case only: one spelling per id.
enum Crockford {
    static let alphabet = Array("0123456789ABCDEFGHJKMNPQRSTVWXYZ".utf8)

    /// Each byte's value, 0xFF for a byte outside the alphabet (a table: ids are parsed on
    /// every request that names one).
    static let values: [UInt8] = {
        var t = [UInt8](repeating: 0xFF, count: 256)
        for (i, c) in alphabet.enumerated() { t[Int(c)] = UInt8(i) }
        return t
    }()

    /// 26 valid characters (the first below 8) as 128 bits. Concrete overloads, in this
    /// non-generic type: inside `EntityID<Kind>` the code would run unspecialized when
    /// called from another module, boxing every byte.
    static func decode128(_ body: ArraySlice<UInt8>) -> UInt128 { decode(body) }
    static func decode128(_ body: Substring.UTF8View) -> UInt128 { decode(body) }

    private static func decode(_ body: some Sequence<UInt8>) -> UInt128 {
        var v: UInt128 = 0
        for b in body { v = v << 5 | UInt128(value(of: b)!) }
        return v
    }

    static func value(of b: UInt8) -> UInt8? {
        let v = values[Int(b)]
        return v == 0xFF ? nil : v
    }

    /// 16 bytes as 26 characters (the top 2 bits of the first character are zero).
    static func encode128(_ bytes: [UInt8]) -> String {
        precondition(bytes.count == 16)
        var hi: UInt64 = 0, lo: UInt64 = 0
        for i in 0..<8 { hi = hi << 8 | UInt64(bytes[i]) }
        for i in 8..<16 { lo = lo << 8 | UInt64(bytes[i]) }
        var out = [UInt8](repeating: 0, count: 26)
        for i in (0..<26).reversed() {
            out[i] = alphabet[Int(lo & 31)]
            lo = lo >> 5 | (hi & 31) << 59
            hi >>= 5
        }
        return String(decoding: out, as: UTF8.self)
    }
}
