// libFuzzer target for HTTP1: request heads, response heads and chunked bodies. Beyond "never crash", it
// checks that feeding the same bytes in two pieces gives the same result as feeding them
// whole, and traps if not. Built by `make fuzz` / `make fuzz-smoke` with -sanitize=fuzzer.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    let split = size == 0 ? 0 : Int(bytes[0]) % (size + 1)

    // Request head: whole vs prefix-then-whole.
    var whole = RequestHeadParser()
    let a = Result { () throws(HTTPParseError) -> RequestHead? in try whole.parse(bytes) }
    var pieces = RequestHeadParser()
    let prefix = Result { () throws(HTTPParseError) -> RequestHead? in try pieces.parse(UnsafeRawBufferPointer(rebasing: bytes[..<split])) }
    switch prefix {
    case .failure(let e):
        guard case .failure(let w) = a, w.status == e.status else { fatalError("prefix error \(e) but whole gives \(a)") }
    case .success(.some(let h)):
        guard case .success(.some(let w)) = a, w == h else { fatalError("prefix head differs from whole") }
    case .success(.none):
        let b = Result { () throws(HTTPParseError) -> RequestHead? in try pieces.parse(bytes) }
        switch (a, b) {
        case (.success(let x), .success(let y)) where x == y: break
        case (.failure(let x), .failure(let y)) where x.status == y.status: break
        default: fatalError("split \(split): \(a) vs \(b)")
        }
    }

    // Response head (the client side): whole vs prefix-then-whole.
    var rWhole = ResponseHeadParser()
    let ra = Result { () throws(HTTPParseError) -> ParsedResponseHead? in try rWhole.parse(bytes, requestMethod: "GET") }
    var rPieces = ResponseHeadParser()
    let rPrefix = Result { () throws(HTTPParseError) -> ParsedResponseHead? in
        try rPieces.parse(UnsafeRawBufferPointer(rebasing: bytes[..<split]), requestMethod: "GET")
    }
    switch rPrefix {
    case .failure:
        // A prefix may only fail early on its size; then the whole must fail too.
        guard case .failure = ra else { fatalError("response prefix failed but whole gives \(ra)") }
    case .success(.some(let h)):
        guard case .success(.some(let w)) = ra, w == h else { fatalError("response prefix head differs from whole") }
    case .success(.none):
        let rb = Result { () throws(HTTPParseError) -> ParsedResponseHead? in try rPieces.parse(bytes, requestMethod: "GET") }
        switch (ra, rb) {
        case (.success(let x), .success(let y)) where x == y: break
        case (.failure, .failure): break
        default: fatalError("response split \(split): \(ra) vs \(rb)")
        }
    }

    // Chunked body: whole vs two pieces, same data and same verdict.
    func decode(_ parts: [UnsafeRawBufferPointer]) -> Result<([UInt8], Bool), HTTPParseError> {
        var d = ChunkedDecoder(bodyBytesMax: 1 << 20)
        var body: [UInt8] = []
        var ended = false
        for p in parts where !ended {
            var events: [ChunkedDecoder.Event] = []
            do {
                _ = try d.decode(p, into: &events)
            } catch {
                return .failure(error)
            }
            for e in events {
                switch e {
                case .data(let r): body += p[r]
                case .end: ended = true
                }
            }
        }
        return .success((body, ended))
    }
    let one = decode([bytes])
    let two = decode([UnsafeRawBufferPointer(rebasing: bytes[..<split]), UnsafeRawBufferPointer(rebasing: bytes[split...])])
    switch (one, two) {
    case (.success(let x), .success(let y)) where x.0 == y.0 && x.1 == y.1: break
    case (.failure(let x), .failure(let y)) where x.status == y.status: break
    default: fatalError("chunked split \(split): \(one) vs \(two)")
    }
    return 0
}
