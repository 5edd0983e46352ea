// libFuzzer target for RESP (the Redis protocol codec). Beyond "never crash" (and, under
// AddressSanitizer, never read outside the input), it traps when:
//   - the input fed whole and fed in two pieces (split where its first byte says) gives
//     different replies, or a different error (kind and offset);
//   - an accepted reply does not round-trip: encode -> parse -> the same value;
//   - the parser holds a different number of unconsumed bytes after the same replies.
// Small limits make the limit checks reachable. Built with the RESP sources in one module
// by `make fuzz-resp`.

enum Outcome: Equatable {
    case values([RESPValue], Int)
    case error(RESPError)
}

func parse(_ pieces: [ArraySlice<UInt8>], _ limits: RESPLimits) -> Outcome {
    var p = RESPParser(limits: limits)
    var out: [RESPValue] = []
    do {
        for piece in pieces {
            p.append(piece)
            while let v = try p.next() { out.append(v) }
        }
        return .values(out, p.buffered)
    } catch {
        return .error(error)
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let split = size == 0 ? 0 : Int(bytes[0]) % (size + 1)
    var limits = RESPLimits()
    limits.maxBulkBytes = 256
    limits.maxArrayCount = 64
    limits.maxDepth = 8
    limits.maxLineBytes = 128

    let whole = parse([bytes[...]], limits)
    let pieces = parse([bytes[..<split], bytes[split...]], limits)
    if whole != pieces { fatalError("whole and split parses differ at \(split): \(whole) vs \(pieces)") }
    if case .values(let values, _) = whole {
        // Invalid UTF-8 in a status line is repaired (U+FFFD, 3 bytes each), so the
        // re-encoded line may be up to 3 times longer.
        var relaxed = limits
        relaxed.maxLineBytes = limits.maxLineBytes * 3
        for v in values {
            guard case .values(let again, 0) = parse([v.encoded[...]], relaxed), again == [v] else {
                fatalError("\(v) does not round-trip")
            }
        }
    }
    return 0
}
