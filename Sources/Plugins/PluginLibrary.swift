// Plugins.PluginLibrary: transcoder plugins as shared objects (CShims/CPlugin/include/
// spool_plugin.h). `load` opens one with dlopen and checks its table: the entry symbol,
// the ABI version, a valid name, every function; each refusal says exactly what is wrong.
// `loadDirectory` loads every *.so of a directory, keeping the good ones and the reasons
// for the others. A library stays loaded for the life of the process (never dlclosed: a
// plugin may have started threads).
import CPlugin
import Glibc
import JSON
import ProcFS

public struct PluginLoadError: Error, Sendable, CustomStringConvertible {
    public var path: String
    public var reason: String
    public var description: String { "plugin \(path): \(reason)" }
}

/// A loaded plugin's table (static storage in the library, which is never unloaded).
public struct PluginTable: @unchecked Sendable {
    let table: UnsafePointer<spool_plugin>
    public let name: String
    public let path: String
    /// Its capabilities document (a JSON object) and the names in its "capabilities" list.
    public let capabilitiesJSON: String
    public let capabilities: [String]
}

public enum PluginLibrary {
    public static let abiVersion = UInt32(SPOOL_PLUGIN_ABI_VERSION)

    /// `describe: false` skips asking the plugin for its capabilities (the worker: the
    /// engine asked at start, and HandBrake's answer runs HandBrakeCLI once more).
    public static func load(_ path: String, describe: Bool = true) throws(PluginLoadError) -> PluginTable {
        func fail(_ reason: String) -> PluginLoadError { PluginLoadError(path: path, reason: reason) }
        dlerror()
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            throw fail("cannot be loaded: \(dlerror().map { String(cString: $0) } ?? "dlopen failed")")
        }
        guard let symbol = dlsym(handle, SPOOL_PLUGIN_ENTRY) else {
            throw fail("has no \(SPOOL_PLUGIN_ENTRY) symbol (export `const spool_plugin *spool_plugin_entry(void)`)")
        }
        let entry = unsafeBitCast(symbol, to: spool_plugin_entry_fn.self)
        guard let table = entry() else { throw fail("\(SPOOL_PLUGIN_ENTRY)() returned NULL") }
        let t = table.pointee
        guard t.abi_version == abiVersion else {
            throw fail("is built for plugin ABI version \(t.abi_version); this engine speaks version \(abiVersion) (rebuild it against this spool_plugin.h)")
        }
        guard let cName = t.name else { throw fail("has no name") }
        let name = String(cString: cName)
        guard (1...32).contains(name.utf8.count),
              name.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2d || $0 == 0x5f }) else {
            throw fail("has an invalid name \"\(name)\" (1 to 32 of a-z, 0-9, - and _)")
        }
        var missing: [String] = []
        if t.capabilities_json == nil { missing.append("capabilities_json") }
        if t.start == nil { missing.append("start") }
        if t.poll == nil { missing.append("poll") }
        if t.cancel == nil { missing.append("cancel") }
        if t.free_job == nil { missing.append("free_job") }
        guard missing.isEmpty else { throw fail("\(name) lacks \(missing.joined(separator: ", "))") }
        guard describe else { return PluginTable(table: table, name: name, path: path, capabilitiesJSON: "{}", capabilities: []) }
        guard let capsText = t.capabilities_json!().map({ String(cString: $0) }),
              let doc = try? JSONDocument(parsing: Array(capsText.utf8)), doc.root.kind == .object else {
            throw fail("\(name): capabilities_json() is not a JSON object")
        }
        var capabilities: [String] = []
        if let list = doc.root["capabilities"], list.kind == .array {
            for v in list.elements { if let s = try? v.string(), !s.isEmpty, s.utf8.count <= 64 { capabilities.append(s) } }
        }
        guard !capabilities.isEmpty else {
            if let why = try? doc.root["error"]?.string() { throw fail("\(name) cannot run here: \(why)") }
            throw fail("\(name): capabilities_json() names no capability (a job selects a plugin by one: {\"capabilities\":[\"\(name)\"]})")
        }
        return PluginTable(table: table, name: name, path: path, capabilitiesJSON: capsText, capabilities: capabilities)
    }

    /// Every *.so in `directory` (sorted by name): the loaded tables and the refusals.
    public static func loadDirectory(_ directory: String) -> (plugins: [PluginTable], errors: [PluginLoadError]) {
        guard let names = ProcFile.listDirectory(directory) else {
            return ([], [PluginLoadError(path: directory, reason: "cannot open the plugin directory: \(String(cString: strerror(errno)))")])
        }
        var plugins: [PluginTable] = [], errors: [PluginLoadError] = []
        for name in names where name.hasSuffix(".so") {
            let path = (directory.hasSuffix("/") ? directory : directory + "/") + name
            do {
                let p = try load(path)
                if plugins.contains(where: { $0.name == p.name }) {
                    errors.append(PluginLoadError(path: path, reason: "another plugin is already named \(p.name)"))
                } else {
                    plugins.append(p)
                }
            } catch { errors.append(error) }
        }
        return (plugins, errors)
    }
}
