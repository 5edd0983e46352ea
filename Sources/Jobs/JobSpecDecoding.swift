// Jobs.JobSpecDecoding: the strict reading of a job submission. Everything wrong is
// collected, not just the first thing: unknown fields, wrong types, out-of-range numbers,
// unknown presets, a bad file id, each named by its JSON Pointer in the 422's details.
// Malformed JSON is a 400 `invalid_json`; a duplicate key (which the parser refuses) is a
// 422 naming the duplicated member.
//
//   {"input":{"file_id":ID},                         required
//    "preset":NAME | "outputs":[{"preset":NAME}|{"custom":{...}}, ...] (1...8)
//      | "ladder":NAME | {"rungs":[...],...} | "custom":{...}      exactly one of these
//    "priority":0...9, "ttl_seconds":1...2592000, "max_attempts":1...20,
//    "webhook_url":"http(s)://...", "required_capabilities":[...], "metadata":{...},
//    "quality":true|false (PSNR/SSIM of the outputs in the result),
//    "limits":{"max_seconds":1...604800, "max_cpu_seconds":1...604800, "max_memory_mib":256...1048576}}
import JSON
import SpoolModel
#if canImport(Glibc)
import Glibc
#endif

extension JobSpec {
    static let topKeys: Set<String> = ["input", "preset", "outputs", "ladder", "custom", "webhook_url", "ttl_seconds",
                                       "priority", "required_capabilities", "metadata", "max_attempts", "quality", "limits"]
    static let customKeys: Set<String> = ["codec", "width", "height", "crf", "bitrate_kbps", "gop_seconds", "speed", "profile",
                                          "audio_codec", "audio_bitrate_kbps", "max_fps"]
    static let ladderKeys: Set<String> = ["rungs", "segment_seconds", "audio_codec", "audio_bitrate_kbps"]
    static let rungKeys: Set<String> = ["name", "width", "height", "max_bitrate_kbps", "codec", "profile"]
    public static let maxOutputs = 8
    public static let maxCapabilities = 32
    public static let maxMetadataEntries = 32
    public static let maxMetadataKeyCharacters = 64
    public static let maxMetadataValueCharacters = 512
    public static let maxWebhookURLBytes = 2048

    /// Parses and validates a request body.
    public static func decode(_ body: [UInt8]) throws(ModelError) -> JobSpec {
        let doc: JSONDocument
        do {
            doc = try JSONDocument(parsing: body)
        } catch {
            if error.kind == .duplicateKey {
                let pointer = JSONLocator.pointerOfKey(at: error.offset, in: body)
                throw ModelError(.validationFailed, "\(pointer): duplicate key", details: [(pointer, "duplicate key")])
            }
            throw ModelError(.invalidJSON, "the request body is not valid JSON: \(error.description)",
                             details: [("offset", String(error.offset)), ("reason", error.kind.description)])
        }
        return try decode(doc.root)
    }

    public static func decode(_ root: JSONValue) throws(ModelError) -> JobSpec {
        var r = FieldReader()
        guard r.object(root, allowed: topKeys) else { throw r.error }
        var fileID: FileID?
        if let input = r.required(root, "input"), r.object(input, allowed: ["file_id"]) {
            if let text = r.string(r.required(input, "file_id"), maxBytes: 64) {
                fileID = FileID(text)
                if fileID == nil { r.fail(input["file_id"]!, "must be a file id (\"file_\" and 26 base32 characters)") }
            }
        }
        let forms = ["preset", "outputs", "ladder", "custom"].filter { root[$0] != nil }
        var outputs: JobOutputs?
        if forms.isEmpty {
            r.fail("/preset", "one of preset, outputs, ladder or custom is required")
        } else if forms.count > 1 {
            for f in forms.dropFirst() { r.fail("/" + f, "give only one of preset, outputs, ladder or custom (\(forms[0]) is given)") }
        } else if let v = root["preset"] {
            let names = TranscodePreset.all.map(\.name) + LadderPreset.all.map(\.name)
            if let n = r.string(v, maxBytes: 64) {
                if names.contains(n) { outputs = .preset(n) } else { r.fail(v, "unknown preset \"\(n)\"; presets: \(names.joined(separator: ", "))") }
            }
        } else if let v = root["outputs"] {
            outputs = r.outputList(v).map(JobOutputs.outputs)
        } else if let v = root["ladder"] {
            outputs = r.ladder(v).map(JobOutputs.ladder)
        } else if let v = root["custom"] {
            outputs = r.custom(v).map(JobOutputs.custom)
        }
        var spec = JobSpec(inputFileID: fileID ?? FileID("file_00000000000000000000000000")!, outputs: outputs ?? .preset(""))
        if let v = r.optional(root, "priority"), let p = r.int(v, in: JobSpec.priorities) { spec.priority = p }
        if let v = r.optional(root, "ttl_seconds"), let t = r.int(v, in: Int(JobSpec.ttlRange.lowerBound)...Int(JobSpec.ttlRange.upperBound)) {
            spec.ttlSeconds = Int64(t)
        }
        if let v = r.optional(root, "max_attempts"), let m = r.int(v, in: JobSpec.maxAttemptsRange) { spec.maxAttempts = m }
        if let v = r.optional(root, "webhook_url"), let u = r.string(v, maxBytes: maxWebhookURLBytes) {
            if let problem = webhookProblem(u) { r.fail(v, problem) } else { spec.webhookURL = normalizedWebhookURL(u) }
        }
        if let v = r.optional(root, "required_capabilities") { spec.requiredCapabilities = r.capabilities(v) }
        if let v = r.optional(root, "metadata") { spec.metadata = r.metadata(v) }
        if let v = r.optional(root, "quality") {
            if v.kind == .bool, let b = try? v.bool() { spec.measureQuality = b } else { r.fail(v, "must be true or false") }
        }
        if let v = r.optional(root, "limits"), r.object(v, allowed: ["max_seconds", "max_cpu_seconds", "max_memory_mib"]) {
            if let x = r.optional(v, "max_seconds") { spec.limits.maxSeconds = r.int(x, in: TranscodeLimits.secondsRange) }
            if let x = r.optional(v, "max_cpu_seconds") { spec.limits.maxCPUSeconds = r.int(x, in: TranscodeLimits.secondsRange) }
            if let x = r.optional(v, "max_memory_mib") { spec.limits.maxMemoryMiB = r.int(x, in: TranscodeLimits.memoryMiBRange) }
        }
        guard r.problems.isEmpty else { throw r.error }
        return spec
    }

    /// Why `url` is not an acceptable webhook URL (nil when it is). Whether its host may be
    /// a private address is the webhook sender's policy, not decided here.
    static func webhookProblem(_ url: String) -> String? {
        let bytes = Array(url.utf8)
        guard bytes.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { return "must be an ASCII URL without spaces" }
        let rest: ArraySlice<UInt8>
        // The scheme is case-insensitive (RFC 3986 §3.1); it is stored in lower case.
        let scheme = url.prefix(8).lowercased()
        if scheme == "https://" { rest = bytes[8...] } else if scheme.hasPrefix("http://") { rest = bytes[7...] } else {
            return "must be an http:// or https:// URL"
        }
        let authority = rest.prefix { $0 != UInt8(ascii: "/") && $0 != UInt8(ascii: "?") && $0 != UInt8(ascii: "#") }
        guard !authority.isEmpty else { return "must name a host" }
        guard !authority.contains(UInt8(ascii: "@")) else { return "must not carry user information (user:password@)" }
        let colon = UInt8(ascii: ":")
        // A port, when given, is 1 to 65535; an IPv6 address goes in brackets (RFC 3986 3.2.2).
        var port: ArraySlice<UInt8>?
        if authority.first == UInt8(ascii: "[") {
            guard let close = authority.firstIndex(of: UInt8(ascii: "]")) else { return "must name a host (an IPv6 literal needs its ']')" }
            let literal = String(decoding: authority[(authority.startIndex + 1)..<close], as: UTF8.self)
            var address = in6_addr()
            guard !literal.isEmpty, inet_pton(AF_INET6, literal, &address) == 1 else {
                return "must name a host (between brackets, an IPv6 address)"
            }
            let after = authority[(close + 1)...]
            if let c = after.first {
                guard c == colon else { return "must have ':port' after an IPv6 literal" }
                port = after.dropFirst()
            }
        } else {
            let colons = authority.reduce(0) { $0 + ($1 == colon ? 1 : 0) }
            guard colons <= 1 else { return "must name one host and at most one port (an IPv6 address goes in brackets)" }
            if let c = authority.firstIndex(of: colon) {
                guard c > authority.startIndex else { return "must name a host" }
                port = authority[(c + 1)...]
            }
        }
        if let digits = port {
            guard !digits.isEmpty, digits.count <= 5, digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                  let n = Int(String(decoding: digits, as: UTF8.self)), (1...65535).contains(n) else {
                return "must have a port from 1 to 65535"
            }
        }
        return nil
    }

    /// `url` with its scheme in lower case (a valid webhook URL, `webhookProblem` nil).
    static func normalizedWebhookURL(_ url: String) -> String {
        let scheme = url.prefix(8).lowercased()
        let length = scheme == "https://" ? 8 : 7
        return String(url.prefix(length)).lowercased() + url.dropFirst(length)
    }
}

/// Reads fields, collecting every problem as (JSON Pointer, what is wrong).
/// At most `listedMax` problems are listed in the 422's details (a body of a hundred
/// thousand unknown fields gets a bounded answer); the rest are counted in its message.
struct FieldReader {
    static let listedMax = 50
    var problems: [(String, String)] = []
    /// Pointers already failed (one problem per pointer) and the problems not listed.
    private var failed: Set<String> = []
    private var unlisted = 0
    /// Every problem found so far, listed or not.
    var failures: Int { problems.count + unlisted }

    var error: ModelError {
        let first = problems.first.map { "\($0.0.isEmpty ? "/" : $0.0): \($0.1)" } ?? "invalid request"
        let others = problems.count - 1 + unlisted
        let more = others > 0 ? " (and \(others) more\(unlisted > 0 ? ", \(unlisted) of them not listed" : ""))" : ""
        return ModelError(.validationFailed, first + more, details: problems)
    }

    mutating func fail(_ v: JSONValue, _ problem: String) { fail(v.pointer, problem) }
    mutating func fail(_ pointer: String, _ problem: String) {
        guard failed.insert(pointer).inserted else { return }
        if problems.count < Self.listedMax { problems.append((pointer, problem)) } else { unlisted += 1 }
    }

    /// True when `v` is an object; each member not in `allowed` is a problem.
    mutating func object(_ v: JSONValue, allowed: Set<String>) -> Bool {
        guard v.kind == .object else { fail(v, "must be an object"); return false }
        // Each member's pointer made from the object's (found once): finding it from the
        // root for every member would walk the object again each time.
        var base: String?
        for (k, _) in v.members where !allowed.contains(k) {
            if base == nil { base = v.pointer }
            fail(base! + "/" + k.escapedAsPointerToken(), "unknown field \"\(k)\"")
        }
        return true
    }

    mutating func required(_ parent: JSONValue, _ key: String) -> JSONValue? {
        guard let v = parent[key] else { fail(parent.pointer + "/" + key, "is required"); return nil }
        return v
    }

    /// A member that may be absent. A null is present, and the reader of its type refuses
    /// it as the wrong type, as the OpenAPI document's types (none of them nullable) say.
    func optional(_ parent: JSONValue, _ key: String) -> JSONValue? {
        parent[key]
    }

    mutating func string(_ v: JSONValue?, maxBytes: Int, minBytes: Int = 1) -> String? {
        guard let v else { return nil }
        guard let s = try? v.string() else { fail(v, "must be a string"); return nil }
        guard s.utf8.count >= minBytes, s.utf8.count <= maxBytes else {
            fail(v, minBytes > 0 ? "must be \(minBytes) to \(maxBytes) bytes long" : "must be at most \(maxBytes) bytes long"); return nil
        }
        return s
    }

    mutating func int(_ v: JSONValue, in range: ClosedRange<Int>) -> Int? {
        guard v.kind == .number else { fail(v, "must be an integer"); return nil }
        guard let n = try? v.int64() else {
            fail(v, v.rawText.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }) ? "must be an integer" : "must be an integer from \(range.lowerBound) to \(range.upperBound)")
            return nil
        }
        guard n >= Int64(range.lowerBound), n <= Int64(range.upperBound) else {
            fail(v, "must be an integer from \(range.lowerBound) to \(range.upperBound)"); return nil
        }
        return Int(n)
    }

    mutating func double(_ v: JSONValue) -> Double? {
        guard v.kind == .number, let d = try? v.double() else { fail(v, "must be a number"); return nil }
        return d
    }

    mutating func capabilities(_ v: JSONValue) -> [String] {
        guard v.kind == .array else { fail(v, "must be an array of strings"); return [] }
        guard v.count <= JobSpec.maxCapabilities else { fail(v, "at most \(JobSpec.maxCapabilities) capabilities"); return [] }
        var out: [String] = []
        for e in v.elements {
            guard let s = string(e, maxBytes: 64) else { continue }
            guard s.utf8.allSatisfy(isCapabilityByte) else { fail(e, "letters, digits and . _ : / - only"); continue }
            guard !out.contains(s) else { fail(e, "\"\(s)\" is listed twice"); continue }
            out.append(s)
        }
        return out
    }

    private func isCapabilityByte(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2E || b == 0x5F || b == 0x3A || b == 0x2F || b == 0x2D
    }

    mutating func metadata(_ v: JSONValue) -> [String: String] {
        guard v.kind == .object else { fail(v, "must be an object of strings"); return [:] }
        guard v.count <= JobSpec.maxMetadataEntries else { fail(v, "at most \(JobSpec.maxMetadataEntries) entries"); return [:] }
        var out: [String: String] = [:]
        for (k, m) in v.members {
            // Lengths in characters (Unicode scalars), as the OpenAPI document's maxLength counts them.
            guard !k.isEmpty, k.unicodeScalars.count <= JobSpec.maxMetadataKeyCharacters else {
                fail(m, "keys must be 1 to \(JobSpec.maxMetadataKeyCharacters) characters long"); continue
            }
            guard let s = try? m.string() else { fail(m, "must be a string"); continue }
            guard s.unicodeScalars.count <= JobSpec.maxMetadataValueCharacters else {
                fail(m, "must be at most \(JobSpec.maxMetadataValueCharacters) characters long"); continue
            }
            out[k] = s
        }
        return out
    }

    mutating func outputList(_ v: JSONValue) -> [JobOutput]? {
        guard v.kind == .array else { fail(v, "must be an array of outputs"); return nil }
        guard (1...JobSpec.maxOutputs).contains(v.count) else { fail(v, "must hold 1 to \(JobSpec.maxOutputs) outputs"); return nil }
        var out: [JobOutput] = []
        for e in v.elements {
            guard object(e, allowed: ["preset", "custom"]) else { continue }
            switch (e["preset"], e["custom"]) {
            case (let p?, nil):
                let names = TranscodePreset.all.map(\.name)
                if let n = string(p, maxBytes: 64) {
                    if names.contains(n) { out.append(.preset(n)) } else { fail(p, "unknown preset \"\(n)\"; presets: \(names.joined(separator: ", "))") }
                }
            case (nil, let c?): if let c = custom(c) { out.append(.custom(c)) }
            case (nil, nil): fail(e.pointer + "/preset", "an output needs preset or custom")
            case (_?, let c?): fail(c, "give preset or custom, not both")
            }
        }
        return out.count == v.count ? out : nil
    }

    mutating func custom(_ v: JSONValue) -> CustomOutput? {
        guard object(v, allowed: JobSpec.customKeys) else { return nil }
        let before = failures
        var c = CustomOutput()
        if let x = optional(v, "codec"), let s = string(x, maxBytes: 16) { c.codec = s }
        if let x = optional(v, "width"), let n = int(x, in: 0...65_536) { c.width = Int32(n) }
        if let x = optional(v, "height"), let n = int(x, in: 0...65_536) { c.height = Int32(n) }
        if let x = optional(v, "crf"), let n = int(x, in: -1_000...1_000) { c.crf = n }
        if let x = optional(v, "bitrate_kbps"), let n = int(x, in: 0...10_000_000) { c.bitrateKbps = n }
        if let x = optional(v, "gop_seconds"), let d = double(x) { c.gopSeconds = d }
        if let x = optional(v, "speed"), let s = string(x, maxBytes: 16) { c.speed = s }
        if let x = optional(v, "profile"), let s = string(x, maxBytes: 16) { c.profile = s }
        if let x = optional(v, "audio_codec"), let s = string(x, maxBytes: 16) { c.audioCodec = s }
        if let x = optional(v, "audio_bitrate_kbps"), let n = int(x, in: 0...10_000_000) { c.audioBitrateKbps = n }
        if let x = optional(v, "max_fps"), let n = int(x, in: 0...100_000) { c.maxFrameRate = n }
        guard failures == before else { return nil }
        do { _ = try c.preset() } catch {
            // Name every out-of-range setting: each one alone on the defaults, then the combination.
            let single: [(String, (inout CustomOutput) -> Void)] = [
                ("codec", { $0.codec = c.codec }), ("width", { $0.width = c.width }), ("height", { $0.height = c.height }),
                ("crf", { $0.crf = c.crf }), ("bitrate_kbps", { $0.bitrateKbps = c.bitrateKbps }),
                ("gop_seconds", { $0.gopSeconds = c.gopSeconds }), ("speed", { $0.speed = c.speed }),
                ("audio_codec", { $0.audioCodec = c.audioCodec }), ("audio_bitrate_kbps", { $0.audioBitrateKbps = c.audioBitrateKbps }),
                ("max_fps", { $0.maxFrameRate = c.maxFrameRate }),
            ]
            for (key, apply) in single where v[key] != nil {
                var alone = CustomOutput()
                apply(&alone)
                do { _ = try alone.preset() } catch let e { fail(v.pointer + "/" + key, e.details.first?.1 ?? e.message) }
            }
            fail(v.pointer + "/" + (error.details.first?.0 ?? ""), error.details.first?.1 ?? error.message)
            return nil
        }
        return c
    }

    mutating func ladder(_ v: JSONValue) -> LadderSpec? {
        if v.kind == .string {
            let names = LadderPreset.all.map(\.name)
            guard let n = string(v, maxBytes: 64) else { return nil }
            guard names.contains(n) else { fail(v, "unknown ladder \"\(n)\"; ladders: \(names.joined(separator: ", "))"); return nil }
            return .named(n)
        }
        guard v.kind == .object else { fail(v, "must be a ladder name or a ladder object"); return nil }
        guard object(v, allowed: JobSpec.ladderKeys) else { return nil }
        let before = failures
        var l = CustomLadder()
        if let x = optional(v, "segment_seconds"), let d = double(x) { l.segmentSeconds = d }
        if let x = optional(v, "audio_codec"), let s = string(x, maxBytes: 16) { l.audioCodec = s }
        if let x = optional(v, "audio_bitrate_kbps"), let n = int(x, in: 0...10_000_000) { l.audioBitrateKbps = n }
        if let rs = required(v, "rungs") {
            if rs.kind != .array || !(1...8).contains(rs.count) { fail(rs, "must be an array of 1 to 8 rungs") }
            for e in rs.elements where object(e, allowed: JobSpec.rungKeys) {
                let name = string(required(e, "name"), maxBytes: 32)
                let w = required(e, "width").flatMap { int($0, in: 0...65_536) }
                let h = required(e, "height").flatMap { int($0, in: 0...65_536) }
                let kbps = required(e, "max_bitrate_kbps").flatMap { int($0, in: 0...10_000_000) }
                guard let name, let w, let h, let kbps else { continue }
                var rung = CustomLadder.Rung(name: name, width: Int32(w), height: Int32(h), maxBitrateKbps: kbps)
                if let x = optional(e, "codec"), let s = string(x, maxBytes: 16) { rung.codec = s }
                if let x = optional(e, "profile"), let s = string(x, maxBytes: 16) { rung.profile = s }
                var one = CustomLadder()
                one.rungs = [rung]
                do { _ = try one.preset() } catch { fail(e.pointer + "/" + rungField(error), error.details.first?.1 ?? error.message) }
                l.rungs.append(rung)
            }
        }
        guard failures == before else { return nil }
        do { _ = try l.preset() } catch {
            let field = error.details.first?.0 ?? ""
            fail(v.pointer + "/" + (JobSpec.ladderKeys.contains(field) ? field : "rungs"), error.details.first?.1 ?? error.message)
            return nil
        }
        return .custom(l)
    }

    /// The rung member a ladder validation error is about.
    private func rungField(_ e: ModelError) -> String {
        switch e.details.first?.0 ?? "" {
        case "width": return "width"
        case "height": return "height"
        case "max_bitrate_kbps": return "max_bitrate_kbps"
        case "codec": return "codec"
        case "profile": return "profile"
        default: return "name"
        }
    }
}
