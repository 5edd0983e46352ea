// Files.FileRecord and FileSettings: what the service knows of one stored file (its
// metadata row) and the limits it enforces, read through a closure at each upload so a
// configuration reload applies to the next upload at once.
import SpoolModel

/// One uploaded file: who owns it, its length and SHA-256, the Content-Type it came with,
/// when it was committed, and the storage key of its bytes.
public struct FileRecord: Sendable, Equatable {
    public var id: FileID
    public var tenant: String
    public var size: Int64
    /// 64 lower-case hex digits.
    public var sha256: String
    public var contentType: String
    /// Unix milliseconds when the upload was committed.
    public var createdMilliseconds: Int64
    public var storageKey: String

    public init(id: FileID, tenant: String, size: Int64, sha256: String, contentType: String,
                createdMilliseconds: Int64, storageKey: String) {
        self.id = id
        self.tenant = tenant
        self.size = size
        self.sha256 = sha256
        self.contentType = contentType
        self.createdMilliseconds = createdMilliseconds
        self.storageKey = storageKey
    }
}

public struct FileSettings: Sendable, Equatable {
    /// One file at most (413 above it: from Content-Length before reading, or at the byte
    /// that crosses it for a chunked body).
    public var maxFileBytes: Int64
    /// Every committed file plus the uploads in flight at most (507 above it).
    public var totalQuotaBytes: Int64

    public init(maxFileBytes: Int64 = 10 << 30, totalQuotaBytes: Int64 = 100 << 30) {
        self.maxFileBytes = maxFileBytes
        self.totalQuotaBytes = totalQuotaBytes
    }
}

/// Upper bound of a stored Content-Type (longer ones are refused with 422).
let contentTypeBytesMax = 255

/// Whether `text` is a media type as RFC 9110 §8.3.1 spells one: `type "/" subtype`, both
/// tokens, then any `; name=value` parameters (value a token or a quoted string), with
/// optional spaces around the semicolons. Only ASCII: a stored type is sent back as a
/// header, so it must be one the client could have sent.
public func isValidMediaType(_ text: String) -> Bool {
    let b = Array(text.utf8)
    var i = 0
    func isTokenChar(_ c: UInt8) -> Bool {
        switch c {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): return true
        default: return "!#$%&'*+-.^_`|~".utf8.contains(c)
        }
    }
    func token() -> Bool {
        let start = i
        while i < b.count && isTokenChar(b[i]) { i += 1 }
        return i > start
    }
    func spaces() { while i < b.count && (b[i] == 0x20 || b[i] == 0x09) { i += 1 } }
    guard token(), i < b.count, b[i] == UInt8(ascii: "/") else { return false }
    i += 1
    guard token() else { return false }
    while true {
        spaces()
        if i == b.count { return true }
        guard b[i] == UInt8(ascii: ";") else { return false }
        i += 1
        spaces()
        if i == b.count { return true }
        if b[i] == UInt8(ascii: ";") { continue }
        guard token(), i < b.count, b[i] == UInt8(ascii: "=") else { return false }
        i += 1
        if i < b.count && b[i] == 0x22 {
            // quoted-string: qdtext or a backslash and one visible character (or space/tab).
            i += 1
            var closed = false
            while i < b.count {
                let c = b[i]
                if c == 0x22 { closed = true; i += 1; break }
                if c == 0x5C {
                    guard i + 1 < b.count, b[i + 1] == 0x09 || (b[i + 1] >= 0x20 && b[i + 1] < 0x7F) else { return false }
                    i += 2
                    continue
                }
                guard c == 0x09 || (c >= 0x20 && c < 0x7F) else { return false }
                i += 1
            }
            guard closed else { return false }
        } else {
            guard token() else { return false }
        }
    }
}
