// Jobs.JobJSON: the JSON forms of a job. The API form (`Job.encode`) is what every job
// endpoint answers; the outputs are written in the request's own form, so what a client
// sent comes back as it sent it (with a custom spec's defaults filled in). The same
// writers give the stored text of the outputs, capabilities, metadata and result columns.
import JSON
import SpoolModel

extension Job: JSONEncodable {
    /// {"id","state","tenant","priority","input":{"file_id"}, one of "preset"|"outputs"|"ladder"|"custom",
    ///  "required_capabilities","webhook_url","ttl_seconds","metadata","quality","attempts","max_attempts","reason",
    ///  "progress","lease_epoch","engine_id","next_attempt_at","expires_at","result","created_at","updated_at"}
    public func encode<S: JSONSink>(to w: inout JSONWriter<S>) {
        w.beginObject()
        w.field("id", id.text)
        w.field("state", state.rawValue)
        w.field("tenant", tenant)
        w.field("priority", priority)
        w.key("input"); w.beginObject(); w.field("file_id", inputFileID.text); w.endObject()
        outputs.encodeMember(to: &w)
        w.key("required_capabilities"); requiredCapabilities.encode(to: &w)
        w.key("webhook_url"); webhookURL.encode(to: &w)
        w.field("ttl_seconds", ttlSeconds)
        w.key("metadata"); encodeMetadata(metadata, to: &w)
        w.field("quality", measureQuality)
        w.key("limits"); limits.encode(to: &w)
        w.field("attempts", attempts)
        w.field("max_attempts", maxAttempts)
        w.key("reason"); reason.encode(to: &w)
        w.field("progress", progress)
        w.field("lease_epoch", leaseEpoch)
        w.key("engine_id"); engineID.map(\.text).encode(to: &w)
        w.key("next_attempt_at"); nextAttemptAt.map(RFC3339.format).encode(to: &w)
        w.field("expires_at", RFC3339.format(expiresAt))
        w.key("result")
        if let result { result.encode(to: &w) } else { w.null() }
        w.field("created_at", RFC3339.format(createdAt))
        w.field("updated_at", RFC3339.format(updatedAt))
        w.endObject()
    }
}

func encodeMetadata<S: JSONSink>(_ m: [String: String], to w: inout JSONWriter<S>) {
    w.beginObject()
    for k in m.keys.sorted() { w.field(k, m[k]!) }
    w.endObject()
}

extension JobResultOutput: JSONEncodable {
    /// {"file_id","name","url"}
    public func encode<S: JSONSink>(to w: inout JSONWriter<S>) {
        w.beginObject()
        w.field("file_id", fileID.text)
        w.key("name"); name.encode(to: &w)
        w.key("url"); url.encode(to: &w)
        w.endObject()
    }
}

extension JobResult: JSONEncodable {
    /// {"outputs":[{"file_id","name","url"}],"quality_report":<the report>|null}
    public func encode<S: JSONSink>(to w: inout JSONWriter<S>) {
        w.beginObject()
        w.key("outputs")
        w.beginArray()
        for o in outputs { o.encode(to: &w) }
        w.endArray()
        w.key("quality_report")
        if let q = qualityReport { w.rawJSON(q) } else { w.null() }
        w.endObject()
    }

    /// Reads the stored form back (nil when damaged).
    static func decodeStored(_ text: String) -> JobResult? {
        guard let doc = try? JSONDocument(parsing: text), let outs = doc.root["outputs"], outs.kind == .array else { return nil }
        var result = JobResult(outputs: [])
        for o in outs.elements {
            guard let f = try? o["file_id"]?.string(), let id = FileID(f) else { return nil }
            result.outputs.append(JobResultOutput(fileID: id, name: try? o["name"]?.string(), url: try? o["url"]?.string()))
        }
        if let q = doc.root["quality_report"], !q.isNull { result.qualityReport = q.rawText }
        return result
    }
}

extension JobOutputs {
    /// Writes the one member ("preset", "outputs", "ladder" or "custom") of an open object.
    public func encodeMember<S: JSONSink>(to w: inout JSONWriter<S>) {
        switch self {
        case .preset(let n): w.field("preset", n)
        case .outputs(let list):
            w.key("outputs")
            w.beginArray()
            for o in list {
                w.beginObject()
                switch o {
                case .preset(let n): w.field("preset", n)
                case .custom(let c): w.key("custom"); c.encode(to: &w)
                }
                w.endObject()
            }
            w.endArray()
        case .ladder(.named(let n)): w.field("ladder", n)
        case .ladder(.custom(let l)):
            w.key("ladder")
            w.beginObject()
            w.key("rungs")
            w.beginArray()
            for r in l.rungs {
                w.beginObject()
                w.field("name", r.name)
                w.field("width", r.width)
                w.field("height", r.height)
                w.field("max_bitrate_kbps", r.maxBitrateKbps)
                w.field("codec", r.codec)
                if let p = r.profile { w.field("profile", p) }
                w.endObject()
            }
            w.endArray()
            w.field("segment_seconds", l.segmentSeconds)
            w.field("audio_codec", l.audioCodec)
            w.field("audio_bitrate_kbps", l.audioBitrateKbps)
            w.endObject()
        case .custom(let c): w.key("custom"); c.encode(to: &w)
        }
    }

    /// The stored form: an object with the one member.
    public var storedText: String {
        var w = JSONWriter()
        w.beginObject()
        encodeMember(to: &w)
        w.endObject()
        return w.text
    }

    /// Reads the stored form back with the request decoder (nil when damaged).
    public static func decodeStored(_ text: String) -> JobOutputs? {
        guard let doc = try? JSONDocument(parsing: text) else { return nil }
        var r = FieldReader()
        let root = doc.root
        if let v = root["preset"], let n = r.string(v, maxBytes: 64) { return .preset(n) }
        if let v = root["outputs"] { return r.outputList(v).map(JobOutputs.outputs) }
        if let v = root["ladder"] { return r.ladder(v).map(JobOutputs.ladder) }
        if let v = root["custom"] { return r.custom(v).map(JobOutputs.custom) }
        return nil
    }
}

extension CustomOutput: JSONEncodable {
    public func encode<S: JSONSink>(to w: inout JSONWriter<S>) {
        w.beginObject()
        w.field("codec", codec)
        if let width { w.field("width", width) }
        if let height { w.field("height", height) }
        if let crf { w.field("crf", crf) }
        if let bitrateKbps { w.field("bitrate_kbps", bitrateKbps) }
        w.field("gop_seconds", gopSeconds)
        w.field("speed", speed)
        if let profile { w.field("profile", profile) }
        w.field("audio_codec", audioCodec)
        w.field("audio_bitrate_kbps", audioBitrateKbps)
        if let maxFrameRate { w.field("max_fps", maxFrameRate) }
        w.endObject()
    }
}


// MARK: Stored columns

func metadataText(_ m: [String: String]) -> String {
    var w = JSONWriter()
    encodeMetadata(m, to: &w)
    return w.text
}

func stringArray(_ text: String) -> [String] {
    (try? JSONDocument(parsing: text).root.decode([String].self)) ?? []
}

func stringMap(_ text: String) -> [String: String] {
    guard let doc = try? JSONDocument(parsing: text) else { return [:] }
    var out: [String: String] = [:]
    for (k, v) in doc.root.members { out[k] = try? v.string() }
    return out
}

extension JobSpec {
    /// The part of the request form a transcoder needs ({"input", the outputs member,
    /// "quality", "required_capabilities" (which select a plugin), "limits"}), which
    /// `JobSpec.decode` reads back: the lease answer's `spec` and the sandboxed worker's request.
    public func encodeTranscodeForm<S: JSONSink>(to w: inout JSONWriter<S>) {
        w.beginObject()
        w.key("input"); w.beginObject(); w.field("file_id", inputFileID.text); w.endObject()
        outputs.encodeMember(to: &w)
        w.field("quality", measureQuality)
        if !requiredCapabilities.isEmpty { w.key("required_capabilities"); requiredCapabilities.encode(to: &w) }
        if !limits.isEmpty { w.key("limits"); limits.encode(to: &w) }
        w.endObject()
    }
}

extension TranscodeLimits: JSONEncodable {
    /// {"max_seconds","max_cpu_seconds","max_memory_mib"}, each only when set.
    public func encode<S: JSONSink>(to w: inout JSONWriter<S>) {
        w.beginObject()
        if let v = maxSeconds { w.field("max_seconds", v) }
        if let v = maxCPUSeconds { w.field("max_cpu_seconds", v) }
        if let v = maxMemoryMiB { w.field("max_memory_mib", v) }
        w.endObject()
    }

    /// The stored column (written by `encode`; trusted, so out-of-range values are dropped).
    static func decodeStored(_ text: String?) -> TranscodeLimits {
        guard let text, let doc = try? JSONDocument(parsing: Array(text.utf8)) else { return TranscodeLimits() }
        func int(_ key: String) -> Int? { (try? doc.root[key]?.int64()).flatMap { $0.map { Int($0) } } }
        return TranscodeLimits(maxSeconds: int("max_seconds"), maxCPUSeconds: int("max_cpu_seconds"), maxMemoryMiB: int("max_memory_mib"))
    }
}
