// JSON.JSONPointer: where a node sits in its document, as an RFC 6901 JSON Pointer
// ("/outputs/0/width"), found by walking down from the root; typed-read errors carry it.

extension JSONDocument {
    /// JSON Pointer (RFC 6901) of node `target`, found by walking down from the root.
    func pointer(of target: Int) -> String {
        var path = ""
        var at = 0
        while at != target {
            let n = node(at)
            var c = at + 1
            var found = false
            if n.kind == .array {
                var k = 0
                while c < Int(n.end) {
                    let e = next(after: c)
                    if target >= c && target < e { path += "/\(k)"; at = c; found = true; break }
                    c = e
                    k += 1
                }
            } else if n.kind == .object {
                while c < Int(n.end) {
                    let v = c + 1
                    let e = next(after: v)
                    if target >= c && target < e {
                        let key = JSONValue(document: self, index: c).unescapedKey
                        path += "/" + key.escapedAsPointerToken()
                        at = target == c ? c : v
                        if target == c { return path }
                        found = true
                        break
                    }
                    c = e
                }
            }
            if !found { break }
        }
        return path
    }
}

extension String {
    /// This string as one JSON Pointer reference token (RFC 6901: "~" -> "~0", "/" -> "~1").
    public func escapedAsPointerToken() -> String {
        var s = ""
        for ch in self {
            switch ch {
            case "~": s += "~0"
            case "/": s += "~1"
            default: s.append(ch)
            }
        }
        return s
    }
}
