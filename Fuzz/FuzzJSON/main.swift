// libFuzzer target for JSON. Beyond "never crash" (and, under AddressSanitizer, never read
// outside the input), it traps when:
//   - the .native (C; and its .nativeAVX2 form) or .simd stage-1 kernel disagrees with
//     .scalar (structural offsets, backslash bitmap, or error kind and offset), or the whole
//     parse does (nodes, or error kind and offset);
//   - parsing the fuzzer's own buffer directly (stage 1 and 2 on exactly `size` bytes, so
//     ASan sees any overread) differs from parsing a [UInt8] copy through JSONDocument;
//   - an accepted document does not round-trip: JSONTree -> writer -> parse -> equal tree,
//     and writing that tree again gives the same bytes;
//   - a value's rawText does not parse back to the same tree (small documents).
// It also reads every value every way (string, numbers, pointer, the typed integer
// fields' readers against the value's own) to reach the readers.
// Built with the JSON sources in one module (internal API visible) by `make fuzz-json`.

func same(_ a: [JSONDocument.Node], _ b: [JSONDocument.Node]) -> Bool {
    guard a.count == b.count else { return false }
    for i in 0..<a.count {
        let x = a[i], y = b[i]
        if x.start != y.start || x.end != y.end || x.count != y.count || x.kind != y.kind || x.flag != y.flag { return false }
    }
    return true
}

enum Outcome {
    case nodes([JSONDocument.Node])
    case error(JSONError.Kind, Int)

    func matches(_ o: Outcome) -> Bool {
        switch (self, o) {
        case (.nodes(let a), .nodes(let b)): return same(a, b)
        case (.error(let k, let at), .error(let k2, let at2)): return k == k2 && at == at2
        default: return false
        }
    }
}

/// Stage 1 and stage 2 directly on `raw`; also returns stage 1's index.
func parseRaw(_ raw: UnsafeRawBufferPointer, _ kernel: JSONScanKernel) -> (StructuralIndex?, Outcome) {
    let ix: StructuralIndex
    do throws(JSONError) {
        ix = try Stage1.index(raw, kernel: kernel)
    } catch {
        return (nil, .error(error.kind, error.offset))
    }
    var failure: JSONError?
    let nodes = [JSONDocument.Node](unsafeUninitializedCapacity: max(1, ix.positions.count)) { buffer, written in
        var b = TreeBuilder(input: raw, index: ix, maxDepth: 512, nodes: buffer.baseAddress!)
        do throws(JSONError) {
            written = try b.build()
        } catch {
            failure = error
            written = 0
        }
    }
    if let failure { return (ix, .error(failure.kind, failure.offset)) }
    return (ix, .nodes(nodes))
}

func document(_ bytes: [UInt8], _ kernel: JSONScanKernel) -> (JSONDocument?, Outcome) {
    var o = JSONDocument.Options()
    o.kernel = kernel
    do throws(JSONError) {
        let d = try JSONDocument(parsing: bytes, options: o)
        return (d, .nodes(d.allNodes))
    } catch {
        return (nil, .error(error.kind, error.offset))
    }
}

func tree(_ v: JSONValue) -> JSONTree {
    do throws(JSONError) { return try JSONTree(json: v) } catch { fatalError("JSONTree of an accepted document failed: \(error)") }
}

/// Reads every value every way; checks rawText re-parses to the same tree when asked.
func readAll(_ v: JSONValue, checkRawText: Bool) {
    _ = v.pointer
    if checkRawText {
        do throws(JSONError) {
            let alone = try JSONDocument(parsing: v.rawText)
            guard tree(alone.root) == tree(v) else { fatalError("rawText of \(v.pointer) reads differently") }
        } catch {
            fatalError("rawText of \(v.pointer) does not parse: \(error)")
        }
    }
    switch v.kind {
    case .object:
        var n = 0
        for (k, m) in v.members {
            n += 1
            guard let found = v[k], found.index == m.index else { fatalError("member \(k) not found by name") }
            readAll(m, checkRawText: checkRawText)
        }
        guard n == v.count else { fatalError("member count") }
    case .array:
        var n = 0
        for e in v.elements { n += 1; readAll(e, checkRawText: checkRawText) }
        guard n == v.count else { fatalError("element count") }
    case .string:
        do {
            let s = try v.string()
            let u = try v.withUTF8 { Array($0) }
            guard Array(s.utf8) == u else { fatalError("string() and withUTF8 differ") }
        } catch { fatalError("string read failed: \(error)") }
    case .number:
        let d = try? v.double()
        if let i = try? v.int64() {
            guard let d, d == Double(i) else { fatalError("int64 \(i) but double \(String(describing: d))") }
        }
        if let u = try? v.uint64() {
            guard let d, d == Double(u) else { fatalError("uint64 \(u) but double \(String(describing: d))") }
        }
        // The typed fields' readers (up to eight digits read without a call) agree.
        guard (try? Int64.read(v.document, node: v.index)) == (try? v.int64()),
              (try? UInt64.read(v.document, node: v.index)) == (try? v.uint64()) else { fatalError("typed integer read differs") }
    case .bool:
        guard (try? v.bool()) != nil else { fatalError("bool read failed") }
    case .null:
        guard v.isNull else { fatalError("null") }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let raw = UnsafeRawBufferPointer(start: data, count: size)
    let bytes = Array(raw)

    // Kernels against the scalar reference, on the fuzzer's exact-size buffer.
    let (ixR, rawR) = parseRaw(raw, .scalar)
    let (ixS, rawS) = parseRaw(raw, .simd)
    for (kernel, (ix, out)) in [(JSONScanKernel.simd, (ixS, rawS)), (.native, parseRaw(raw, .native)), (.nativeAVX2, parseRaw(raw, .nativeAVX2))] {
        switch (ix, ixR) {
        case (let a?, let b?):
            guard a.positions == b.positions, a.backslashWords == b.backslashWords else { fatalError("stage 1 indexes differ (\(kernel))") }
        case (nil, nil): break
        default: fatalError("stage 1: \(kernel) failed and scalar did not, or the other way")
        }
        guard out.matches(rawR) else { fatalError("\(kernel) and scalar disagree: \(out) vs \(rawR)") }
    }

    // The public path on a copy must give the same result.
    let (docS, outS) = document(bytes, .simd)
    let (docR, outR) = document(bytes, .scalar)
    guard outS.matches(rawS), outR.matches(rawR) else { fatalError("JSONDocument differs from the raw-buffer parse") }

    guard let doc = docS, docR != nil else { return 0 }

    // Round trip through JSONTree and the writer.
    let t = tree(doc.root)
    let written = t.jsonBytes
    do throws(JSONError) {
        let again = try JSONDocument(parsing: written)
        let t2 = tree(again.root)
        guard t2 == t else { fatalError("round trip changed the tree") }
        guard t2.jsonBytes == written else { fatalError("writing the re-read tree gave other bytes") }
        var o = JSONDocument.Options()
        o.kernel = .scalar
        _ = try JSONDocument(parsing: written, options: o)
    } catch {
        fatalError("written form does not parse: \(error)")
    }

    readAll(doc.root, checkRawText: doc.valueCount <= 64)
    return 0
}
