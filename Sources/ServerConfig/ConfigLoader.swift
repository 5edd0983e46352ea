// ServerConfig.ConfigLoader: one typed ServerSettings from, in rising precedence, the
// JSON file (`--config FILE`), the SPOOL_* environment and the flags. The three sources are
// swift-configuration providers (an InMemoryProvider built from the file after a strict
// parse, the EnvironmentVariablesProvider, an InMemoryProvider for the flags), asked key by
// key in precedence order, so each value's source is known. Every problem names the key,
// its source and the fix; all problems are reported together. The file is parsed with
// Spool's strict JSON parser: a syntax error gives the file, line and column; an unknown
// key or a duplicate one is an error (a typo must not pass silently).
import Configuration
import JSON
#if canImport(Glibc)
import Glibc
#endif

/// Why the configuration cannot be used: one line per problem.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public var problems: [String]
    public init(_ problems: [String]) { self.problems = problems }
    public var description: String {
        problems.count == 1 ? "configuration: " + problems[0]
            : "configuration: \(problems.count) problems:\n  " + problems.joined(separator: "\n  ")
    }
}

public struct ConfigLoader: Sendable {
    /// The JSON file, if any (`--config FILE`).
    public var filePath: String?
    /// The process environment (only SPOOL_* names are read).
    public var environment: [String: String]
    /// From the command line, by setting key ("listen", "data_dir", "loops",
    /// "insecure_no_auth", or any other key): the flag's text as typed.
    public var flags: [String: String]

    public init(filePath: String? = nil, environment: [String: String] = ConfigLoader.processEnvironment(),
                flags: [String: String] = [:]) {
        self.filePath = filePath
        var env = environment
        // SPOOL_JOIN_TOKEN is the short name engines and `spool up` use for engines.join_token.
        if let token = env["SPOOL_JOIN_TOKEN"], env["SPOOL_ENGINES_JOIN_TOKEN"] == nil { env["SPOOL_ENGINES_JOIN_TOKEN"] = token }
        self.environment = env
        self.flags = flags
    }

    /// Reads, merges and validates; throws every problem found.
    public func load() throws(ConfigError) -> ServerSettings {
        var problems: [String] = []
        let file = filePath.map { path in (path, readSettingsFile(path, problems: &problems)) }
        let flagValues = parseFlags(problems: &problems)
        // Go on after the file's and the flags' problems: all of them are reported at once.

        let fileName = file.map { "file \($0.0)" } ?? "file"
        let sources: [(provider: any ConfigProvider, name: (SettingSpec) -> String)] = [
            (InMemoryProvider(name: "flags", values: flagValues), { spec in spec.flag ?? "flag \(spec.key)" }),
            (EnvironmentVariablesProvider(environmentVariables: environment.filter { $0.key.hasPrefix("SPOOL_") }),
             { spec in spec.environment }),
            (InMemoryProvider(name: fileName, values: file?.1 ?? [:]), { _ in fileName }),
        ]
        var settings = ServerSettings()
        for spec in SettingsSchema.all {
            let key = AbsoluteConfigKey(spec)
            for (provider, name) in sources {
                let found: ConfigValue?
                do {
                    found = try provider.value(forKey: key, type: spec.configType).value
                } catch {
                    let raw = environment[spec.environment].map { "\"\($0)\"" } ?? "?"
                    problems.append("\(spec.key) = \(raw) (from \(name(spec))): \(spec.expectation)")
                    break
                }
                guard let found else { continue }
                guard let value = SettingValue(found.content) else {
                    problems.append("\(spec.key) = \(found.content) (from \(name(spec))): \(spec.expectation)")
                    break
                }
                if let fix = spec.problem(with: value) {
                    problems.append("\(spec.key) = \(spec.shown(value)) (from \(name(spec))): \(fix)")
                } else {
                    spec.set(&settings, value)
                }
                break
            }
        }
        problems += SettingsSchema.crossKeyProblems(settings)
        if !problems.isEmpty { throw ConfigError(problems) }
        return settings
    }

    /// The flags as typed values (the flag's text parsed for its key's type).
    private func parseFlags(problems: inout [String]) -> [AbsoluteConfigKey: ConfigValue] {
        var out: [AbsoluteConfigKey: ConfigValue] = [:]
        for (key, text) in flags.sorted(by: { $0.key < $1.key }) {
            guard let spec = SettingsSchema.spec(key) else {
                problems.append("unknown setting \"\(key)\" given as a flag" + suggestion(for: key))
                continue
            }
            let name = spec.flag ?? "flag \(key)"
            let content: ConfigContent?
            switch spec.kind {
            case .int: content = Int64(text).map { .int(Int($0)) }
            case .bool: content = ["true", "1", "yes"].contains(text) ? .bool(true) : ["false", "0", "no"].contains(text) ? .bool(false) : nil
            case .string: content = .string(text)
            }
            guard let content else {
                problems.append("\(key) = \"\(text)\" (from \(name)): \(spec.expectation)")
                continue
            }
            out[AbsoluteConfigKey(spec)] = ConfigValue(content, isSecret: spec.redact != nil)
        }
        return out
    }

    /// The file's settings by key, or nil after recording why it cannot be read.
    private func readSettingsFile(_ path: String, problems: inout [String]) -> [AbsoluteConfigKey: ConfigValue] {
        let bytes: [UInt8]
        do { bytes = try readWholeFile(path) } catch {
            problems.append("cannot read the configuration file \(path): \(error.message)")
            return [:]
        }
        let document: JSONDocument
        do { document = try JSONDocument(parsing: bytes) } catch {
            let (line, column) = lineAndColumn(bytes, error.offset)
            let what = error.kind == .duplicateKey ? "a key appears twice" : "malformed JSON (\(error.kind))"
            problems.append("\(path):\(line):\(column): \(what)\(error.detail.isEmpty ? "" : ": " + error.detail)")
            return [:]
        }
        guard document.root.kind == .object else {
            problems.append("\(path): the top level must be a JSON object of settings, e.g. {\"listen\": \"127.0.0.1:8080\"}")
            return [:]
        }
        var out: [AbsoluteConfigKey: ConfigValue] = [:]
        flatten(document.root, prefix: "", path: path, into: &out, problems: &problems)
        return out
    }

    private func flatten(_ object: JSONValue, prefix: String, path: String,
                         into out: inout [AbsoluteConfigKey: ConfigValue], problems: inout [String]) {
        for (name, value) in object.members {
            let key = prefix.isEmpty ? name : prefix + "." + name
            if let spec = SettingsSchema.spec(key) {
                guard let content = Self.content(of: value, for: spec) else {
                    let shown = spec.redact == nil ? String(value.rawText.prefix(60)) : "(hidden)"
                    problems.append("\(key) = \(shown) (from file \(path)): \(spec.expectation)")
                    continue
                }
                // {"files":{"max_file_bytes":1},"files.max_file_bytes":2}: one key twice.
                guard out[AbsoluteConfigKey(spec)] == nil else {
                    problems.append("\(key) is given twice in \(path) (nested and as a dotted name): give it once")
                    continue
                }
                out[AbsoluteConfigKey(spec)] = ConfigValue(content, isSecret: spec.redact != nil)
            } else if value.kind == .object, SettingsSchema.all.contains(where: { $0.key.hasPrefix(key + ".") }) {
                flatten(value, prefix: key, path: path, into: &out, problems: &problems)
            } else {
                problems.append("unknown key \"\(key)\" in \(path)" + suggestion(for: key))
            }
        }
    }

    private static func content(of value: JSONValue, for spec: SettingSpec) -> ConfigContent? {
        switch spec.kind {
        case .int:
            guard value.kind == .number, let n = try? value.int64() else { return nil }
            return .int(Int(n))
        case .bool:
            guard let b = try? value.bool() else { return nil }
            return .bool(b)
        case .string:
            guard value.kind == .string, let s = try? value.string() else { return nil }
            return .string(s)
        }
    }

    /// The environment of this process.
    public static func processEnvironment() -> [String: String] {
        var out: [String: String] = [:]
        var p = environ
        while let entry = p.pointee {
            let s = String(cString: entry)
            if let eq = s.firstIndex(of: "=") { out[String(s[..<eq])] = String(s[s.index(after: eq)...]) }
            p += 1
        }
        return out
    }
}

/// " (did you mean jobs.max_attempts?)" for a near miss, or "".
func suggestion(for key: String) -> String {
    let best = SettingsSchema.all.map { ($0.key, editDistance(Array(key.utf8), Array($0.key.utf8))) }.min { $0.1 < $1.1 }
    guard let best, best.1 <= max(2, key.utf8.count / 4) else {
        return "; known keys: " + SettingsSchema.all.map(\.key).joined(separator: ", ")
    }
    return " (did you mean \(best.0)?)"
}

func editDistance(_ a: [UInt8], _ b: [UInt8]) -> Int {
    var row = Array(0...b.count)
    for i in 1...max(1, a.count) where !a.isEmpty {
        var previous = row[0]
        row[0] = i
        for j in stride(from: 1, through: b.count, by: 1) {
            let old = row[j]
            row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
            previous = old
        }
    }
    return a.isEmpty ? b.count : row[b.count]
}

/// 1-based line and column of a byte offset.
func lineAndColumn(_ bytes: [UInt8], _ offset: Int) -> (Int, Int) {
    var line = 1, column = 1
    for b in bytes.prefix(max(0, offset)) {
        if b == UInt8(ascii: "\n") { line += 1; column = 1 } else { column += 1 }
    }
    return (line, column)
}

extension AbsoluteConfigKey {
    /// ["spool", "jobs", "max_attempts"]: encodes as SPOOL_JOBS_MAX_ATTEMPTS for the environment.
    init(_ spec: SettingSpec) { self.init(["spool"] + spec.key.split(separator: ".").map(String.init)) }
}

extension SettingSpec {
    var configType: ConfigType {
        switch kind {
        case .int: return .int
        case .bool: return .bool
        case .string: return .string
        }
    }
}

extension SettingValue {
    init?(_ content: ConfigContent) {
        switch content {
        case .int(let i): self = .int(Int64(i))
        case .bool(let b): self = .bool(b)
        case .string(let s): self = .string(s)
        default: return nil
        }
    }
}
