// TranscodeAPI.MediaPath: a file path as the bytes the kernel sees. Linux names are bytes,
// not text: a Swift String made from argv repairs invalid UTF-8 (0xFF becomes U+FFFD),
// which would silently read or write a different file. Requests carry a MediaPath to the
// system calls; `description` (messages only) may show the repaired text.
//
// Non-goals: normalisation, `..` handling or any other interpretation of the bytes.

public struct MediaPath: Sendable, Hashable, CustomStringConvertible, ExpressibleByStringLiteral {
    /// The path's bytes, without a terminating NUL.
    public var bytes: [UInt8]

    public init(_ string: String) { bytes = Array(string.utf8) }
    public init(stringLiteral value: String) { self.init(value) }
    public init(bytes: [UInt8]) { self.bytes = bytes }

    /// The bytes as text, for messages (invalid UTF-8 shown as U+FFFD).
    public var description: String { String(decoding: bytes, as: UTF8.self) }

    /// The bytes, if they are valid UTF-8 (so a String round-trips them exactly).
    public var string: String? {
        var it = bytes.makeIterator()
        var decoder = UTF8()
        while true {
            switch decoder.decode(&it) {
            case .scalarValue: continue
            case .emptyInput: return String(decoding: bytes, as: UTF8.self)
            case .error: return nil
            }
        }
    }

    public var isEmpty: Bool { bytes.isEmpty }

    /// Everything before the last '/' ("." when there is none; "/" for a file in the root).
    public var directory: MediaPath {
        guard let slash = bytes.lastIndex(of: UInt8(ascii: "/")) else { return "." }
        return slash == 0 ? "/" : MediaPath(bytes: Array(bytes[..<slash]))
    }

    /// Everything after the last '/'.
    public var lastComponent: [UInt8] {
        guard let slash = bytes.lastIndex(of: UInt8(ascii: "/")) else { return bytes }
        return Array(bytes[(slash + 1)...])
    }

    /// The extension of the last component, lowercased ASCII ("" when there is none).
    public var fileExtension: String {
        let name = lastComponent
        guard let dot = name.lastIndex(of: UInt8(ascii: ".")), dot > 0 else { return "" }
        return String(decoding: name[(dot + 1)...].map { ($0 >= 0x41 && $0 <= 0x5A) ? $0 + 0x20 : $0 }, as: UTF8.self)
    }

    /// `self + "/" + component`.
    public func appending(_ component: [UInt8]) -> MediaPath {
        MediaPath(bytes: bytes.last == UInt8(ascii: "/") ? bytes + component : bytes + [UInt8(ascii: "/")] + component)
    }
    public func appending(_ component: String) -> MediaPath { appending(Array(component.utf8)) }
}
