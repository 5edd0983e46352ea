// HTTP1.MediaType: the media-type grammar (RFC 9110 §8.3.1), on the parser's own token
// characters: what a server may store from a Content-Type and send back as one.

/// Whether `text` is a media type as RFC 9110 §8.3.1 spells one: `type "/" subtype`, both
/// tokens, then any `; name=value` parameters (value a token or a quoted string), with
/// optional spaces around the semicolons. Only ASCII: a stored type is sent back as a
/// header, so it must be one the client could have sent.
public func isValidMediaType(_ text: String) -> Bool {
    let b = Array(text.utf8)
    var i = 0
    func token() -> Bool {
        let start = i
        while i < b.count && isTChar(b[i]) { i += 1 }
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
