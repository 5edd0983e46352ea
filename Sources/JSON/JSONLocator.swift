// JSON.JSONLocator: the JSON Pointer of the key at a byte offset, for the one error the
// parser reports by offset that is a validation problem rather than a syntax one: a
// duplicate key (the parser stops at the second occurrence, whose opening quote is at the
// offset). Everything before the offset parsed, so a small tokenizer that only tracks
// containers, keys and array indices is enough.

public enum JSONLocator {
    private enum Frame {
        case object(key: String?, expectingKey: Bool)
        case array(index: Int)
    }

    /// "/a/0/b" for the key whose opening quote is at `offset`; "" when it cannot tell.
    public static func pointerOfKey(at offset: Int, in bytes: [UInt8]) -> String {
        guard offset >= 0, offset < bytes.count, bytes[offset] == 0x22 else { return "" }
        var stack: [Frame] = []
        var i = 0
        while i < offset {
            let c = bytes[i]
            switch c {
            case 0x7B: stack.append(.object(key: nil, expectingKey: true)); i += 1
            case 0x5B: stack.append(.array(index: 0)); i += 1
            case 0x7D, 0x5D: _ = stack.popLast(); i += 1
            case 0x2C:
                if case .array(let n)? = stack.last { stack[stack.count - 1] = .array(index: n + 1) }
                if case .object(let k, _)? = stack.last { stack[stack.count - 1] = .object(key: k, expectingKey: true) }
                i += 1
            case 0x3A:
                if case .object(let k, _)? = stack.last { stack[stack.count - 1] = .object(key: k, expectingKey: false) }
                i += 1
            case 0x22:
                let end = stringEnd(bytes, from: i)
                if case .object(_, true)? = stack.last {
                    stack[stack.count - 1] = .object(key: decodeString(bytes, i, end), expectingKey: false)
                }
                i = end + 1
            default: i += 1
            }
        }
        var path = ""
        for f in stack.dropLast() {
            switch f {
            case .object(let k, _): path += "/" + token(k ?? "")
            case .array(let n): path += "/\(n)"
            }
        }
        return path + "/" + token(decodeString(bytes, offset, stringEnd(bytes, from: offset)))
    }

    /// Index of the closing quote of the string opening at `start`.
    private static func stringEnd(_ b: [UInt8], from start: Int) -> Int {
        var j = start + 1
        while j < b.count {
            if b[j] == 0x5C { j += 2; continue }
            if b[j] == 0x22 { return j }
            j += 1
        }
        return b.count - 1
    }

    private static func decodeString(_ b: [UInt8], _ start: Int, _ end: Int) -> String {
        guard end > start, end < b.count else { return "" }
        return (try? JSONDocument(parsing: Array(b[start...end])).root.string()) ?? ""
    }

    private static func token(_ s: String) -> String {
        s.escapedAsPointerToken()
    }
}
