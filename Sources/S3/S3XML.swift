// S3.S3XML: the few values Spool reads from S3's XML answers (an error's Code and Message,
// a multipart upload's UploadId, a listing's Key, Size, IsTruncated and continuation
// token). The answers are flat, machine-written documents, so elements are found by
// name, not parsed into a tree; text is unescaped (the five predefined entities and
// numeric references). Not a general XML parser, and never given a client's input.
enum S3XML {
    /// The text of every `<name>…</name>` in `text`, in order.
    static func all(_ name: String, in text: String) -> [String] {
        let open = Array("<\(name)>".utf8), close = Array("</\(name)>".utf8)
        let bytes = Array(text.utf8)
        var out: [String] = []
        var i = 0
        while let start = find(open, in: bytes, from: i) {
            let from = start + open.count
            guard let end = find(close, in: bytes, from: from) else { break }
            out.append(unescape(bytes[from..<end]))
            i = end + close.count
        }
        return out
    }

    static func first(_ name: String, in text: String) -> String? {
        all(name, in: text).first
    }

    private static func find(_ needle: [UInt8], in bytes: [UInt8], from: Int) -> Int? {
        guard needle.count <= bytes.count else { return nil }
        var i = from
        while i + needle.count <= bytes.count {
            if bytes[i] == needle[0] && bytes[i..<(i + needle.count)].elementsEqual(needle) { return i }
            i += 1
        }
        return nil
    }

    static func unescape(_ raw: ArraySlice<UInt8>) -> String {
        guard raw.contains(0x26) else { return String(decoding: raw, as: UTF8.self) }
        let text = String(decoding: raw, as: UTF8.self)
        var out = ""
        var rest = Substring(text)
        while let amp = rest.firstIndex(of: "&") {
            out += rest[..<amp]
            guard let semi = rest[amp...].firstIndex(of: ";") else { break }
            let entity = rest[rest.index(after: amp)..<semi]
            switch entity {
            case "amp": out += "&"
            case "lt": out += "<"
            case "gt": out += ">"
            case "quot": out += "\""
            case "apos": out += "'"
            default:
                var scalar: UInt32?
                if entity.hasPrefix("#x") { scalar = UInt32(entity.dropFirst(2), radix: 16) } else if entity.hasPrefix("#") { scalar = UInt32(entity.dropFirst()) }
                if let s = scalar.flatMap(Unicode.Scalar.init) { out.unicodeScalars.append(s) } else { out += rest[amp...semi] }
            }
            rest = rest[rest.index(after: semi)...]
        }
        return out + rest
    }

    /// `text` with &, <, >, " and ' escaped, for a request body.
    static func escape(_ text: String) -> String {
        var out = ""
        for c in text {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            default: out.append(c)
            }
        }
        return out
    }
}
