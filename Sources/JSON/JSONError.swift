// JSON.JSONError: every way input can be refused or a value read wrongly, with the byte
// offset (for syntax) or the JSON Pointer (for typed reads) a user needs to find it.

public struct JSONError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What is wrong, compared with `==` (`error.kind == .duplicateKey`). Kinds will be
    /// added, so this is a struct over a private enum, not an enum to switch over. Its
    /// description is the kind's text ("invalid number").
    public struct Kind: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String {
            case empty = "empty input"
            case invalidUTF8 = "invalid UTF-8"
            case controlCharacterInString = "unescaped control character in a string"
            case unterminatedString = "unterminated string"
            case invalidEscape = "invalid escape sequence"
            case loneSurrogate = "unpaired UTF-16 surrogate in a \\u escape"
            case invalidNumber = "invalid number"
            case invalidLiteral = "invalid literal"
            case unexpectedCharacter = "unexpected character"
            case unexpectedEnd = "unexpected end of input"
            case trailingContent = "content after the top-level value"
            case tooDeep = "nesting is deeper than the limit"
            case duplicateKey = "duplicate object key"
            case typeMismatch = "wrong type"
            case missingField = "missing field"
            case numberOutOfRange = "number out of range"
            case invalidValue = "invalid value"
        }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        // Syntax (stage 1 and stage 2)
        public static let empty = Kind(.empty)
        public static let invalidUTF8 = Kind(.invalidUTF8)
        public static let controlCharacterInString = Kind(.controlCharacterInString)
        public static let unterminatedString = Kind(.unterminatedString)
        public static let invalidEscape = Kind(.invalidEscape)
        public static let loneSurrogate = Kind(.loneSurrogate)
        public static let invalidNumber = Kind(.invalidNumber)
        public static let invalidLiteral = Kind(.invalidLiteral)
        public static let unexpectedCharacter = Kind(.unexpectedCharacter)
        public static let unexpectedEnd = Kind(.unexpectedEnd)
        public static let trailingContent = Kind(.trailingContent)
        public static let tooDeep = Kind(.tooDeep)
        public static let duplicateKey = Kind(.duplicateKey)
        // Typed reads
        public static let typeMismatch = Kind(.typeMismatch)
        public static let missingField = Kind(.missingField)
        public static let numberOutOfRange = Kind(.numberOutOfRange)
        public static let invalidValue = Kind(.invalidValue)

        public var description: String { value.rawValue }
    }

    public var kind: Kind
    /// Byte offset in the input for syntax errors; -1 for typed-read errors.
    public var offset: Int
    /// JSON Pointer (RFC 6901) of the value for typed-read errors; "" is the root.
    public var pointer: String
    /// Extra human detail ("expected string, found number").
    public var detail: String

    public init(_ kind: Kind, at offset: Int, detail: String = "") {
        self.kind = kind
        self.offset = offset
        self.pointer = ""
        self.detail = detail
    }

    public init(_ kind: Kind, pointer: String, detail: String = "") {
        self.kind = kind
        self.offset = -1
        self.pointer = pointer
        self.detail = detail
    }

    public var isSyntaxError: Bool { offset >= 0 }

    public var description: String {
        var s = kind.description
        if offset >= 0 { s += " at byte \(offset)" } else { s += " at \(pointer.isEmpty ? "/" : pointer)" }
        if !detail.isEmpty { s += ": " + detail }
        return s
    }
}
