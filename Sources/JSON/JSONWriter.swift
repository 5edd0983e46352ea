// JSON.JSONWriter: compact JSON straight into a byte sink. The sink is a protocol so the
// same writer fills a [UInt8] here and pooled buffers in Web (no intermediate String).
// Commas and colons are placed by the writer itself from a small container stack, so a
// caller cannot produce `{"a":1"b":2}`; misuse (a value where a key is due, unbalanced
// ends) is a programming error and traps.
//
// Escaping: `"` `\` and U+0000..U+001F are escaped (the short forms \b \f \n \r \t where
// they exist, \u00XX otherwise); everything else, all of Unicode, is written as UTF-8,
// which Swift strings guarantee is valid. Non-finite doubles have no JSON form and are
// written as null.

/// Where a JSONWriter puts its bytes.
public protocol JSONSink {
    mutating func write(_ bytes: UnsafeRawBufferPointer)
    mutating func write(byte: UInt8)
}

extension Array: JSONSink where Element == UInt8 {
    @inline(__always) public mutating func write(_ bytes: UnsafeRawBufferPointer) { unsafe append(contentsOf: bytes) }
    @inline(__always) public mutating func write(byte: UInt8) { append(byte) }
}

public struct JSONWriter<Sink: JSONSink> {
    public var sink: Sink
    /// One entry per open container: is it an object, and has it a member yet.
    private var stack: [(object: Bool, first: Bool)] = []
    private var afterKey = false
    private var done = false

    public init(into sink: Sink) { self.sink = sink }

    public var isComplete: Bool { done && stack.isEmpty }

    @inline(__always)
    private mutating func beforeValue() {
        if afterKey { afterKey = false; return }
        if let top = stack.last {
            precondition(!top.object, "JSONWriter: an object member needs a key first")
            if !top.first { sink.write(byte: 0x2C) }
            stack[stack.count - 1].first = false
        } else {
            precondition(!done, "JSONWriter: only one top-level value")
            done = true
        }
    }

    public mutating func key(_ k: String) {
        guard let top = stack.last, top.object, !afterKey else { preconditionFailure("JSONWriter: a key outside an object") }
        if !top.first { sink.write(byte: 0x2C) }
        stack[stack.count - 1].first = false
        writeString(k)
        sink.write(byte: 0x3A)
        afterKey = true
    }

    public mutating func beginObject() { beforeValue(); sink.write(byte: 0x7B); stack.append((true, true)) }
    public mutating func endObject() {
        precondition(stack.last?.object == true && !afterKey, "JSONWriter: unbalanced endObject")
        stack.removeLast(); sink.write(byte: 0x7D)
    }
    public mutating func beginArray() { beforeValue(); sink.write(byte: 0x5B); stack.append((false, true)) }
    public mutating func endArray() {
        precondition(stack.last?.object == false, "JSONWriter: unbalanced endArray")
        stack.removeLast(); sink.write(byte: 0x5D)
    }

    public mutating func string(_ s: String) { beforeValue(); writeString(s) }
    public mutating func bool(_ b: Bool) { beforeValue(); raw(b ? "true" : "false") }
    public mutating func null() { beforeValue(); raw("null") }
    public mutating func int(_ v: some BinaryInteger) { beforeValue(); raw(String(v)) }
    public mutating func double(_ d: Double) {
        beforeValue()
        guard d.isFinite else { raw("null"); return }
        // Swift's description is the shortest text that reads back to the same Double,
        // and is valid JSON for finite values ("1e-05", "5.0", "1.7976931348623157e+308").
        raw(d.description)
    }

    /// Writes already-valid JSON text as one value (e.g. a stored document).
    public mutating func rawJSON(_ text: String) { beforeValue(); raw(text) }

    // Convenience for object members.
    public mutating func field(_ k: String, _ v: String) { key(k); string(v) }
    public mutating func field(_ k: String, _ v: some BinaryInteger) { key(k); int(v) }
    public mutating func field(_ k: String, _ v: Double) { key(k); double(v) }
    public mutating func field(_ k: String, _ v: Bool) { key(k); bool(v) }
    // Disfavoured: Int, Int64, UInt64 and Int32 are both BinaryInteger and JSONEncodable, and
    // two equally generic overloads made `field("width", 1920)` ambiguous (a compile error).
    // Both overloads write the same bytes for them.
    @_disfavoredOverload
    public mutating func field(_ k: String, _ v: some JSONEncodable) { key(k); v.encode(to: &self) }

    private mutating func raw(_ s: String) {
        var s = s
        s.withUTF8 { unsafe sink.write(UnsafeRawBufferPointer($0)) }
    }

    private mutating func writeString(_ s: String) {
        var s = s
        s.withUTF8 { u in
            sink.write(byte: 0x22)
            var runStart = 0
            for i in 0..<u.count {
                let c = unsafe u[i]
                guard c < 0x20 || c == 0x22 || c == 0x5C else { continue }
                if runStart < i { unsafe sink.write(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: u[runStart..<i]))) }
                runStart = i + 1
                sink.write(byte: 0x5C)
                switch c {
                case 0x22: sink.write(byte: 0x22)
                case 0x5C: sink.write(byte: 0x5C)
                case 0x08: sink.write(byte: 0x62)
                case 0x0C: sink.write(byte: 0x66)
                case 0x0A: sink.write(byte: 0x6E)
                case 0x0D: sink.write(byte: 0x72)
                case 0x09: sink.write(byte: 0x74)
                default:
                    let hex: [UInt8] = Array("0123456789abcdef".utf8)
                    sink.write(byte: 0x75); sink.write(byte: 0x30); sink.write(byte: 0x30)
                    sink.write(byte: hex[Int(c >> 4)]); sink.write(byte: hex[Int(c & 15)])
                }
            }
            if runStart < u.count { unsafe sink.write(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: u[runStart...]))) }
            sink.write(byte: 0x22)
        }
    }
}

extension JSONWriter where Sink == [UInt8] {
    public init() { self.init(into: []) }
    public var bytes: [UInt8] { sink }
    public var text: String { String(decoding: sink, as: UTF8.self) }
}
