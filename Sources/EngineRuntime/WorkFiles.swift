// EngineRuntime.WorkFiles: the engine's own files: its credentials (0600), and each job's
// work directory (input, outputs) under DATA/work/JOB, removed when the job ends.
import Glibc
import JSON
import ProcFS
import TranscodeAPI

/// mkdir -p (mode 0700).
func makeDirectory(_ path: String) throws(TranscodeFailure) {
    var prefix = path.hasPrefix("/") ? "/" : ""
    for part in path.split(separator: "/") {
        prefix += part
        if mkdir(prefix, 0o700) != 0 && errno != EEXIST {
            throw TranscodeFailure(code: "io_error", message: "cannot create \(prefix): \(String(cString: strerror(errno)))")
        }
        prefix += "/"
    }
}

/// rm -rf of a directory the engine made (never follows symbolic links).
func removeTree(_ path: String) {
    var st = stat()
    guard lstat(path, &st) == 0 else { return }
    if (st.st_mode & S_IFMT) == S_IFDIR {
        for name in ProcFile.directoryEntries(path) { removeTree(path + "/" + name) }
        rmdir(path)
    } else {
        unlink(path)
    }
}

/// Regular files under `root`, as paths relative to it, sorted (playlists after the
/// segments they name, so a reader never sees a playlist before its media).
func outputFiles(under root: String) -> [String] {
    var out: [String] = []
    func walk(_ rel: String) {
        let dir = rel.isEmpty ? root : root + "/" + rel
        for name in ProcFile.directoryEntries(dir) {
            let r = rel.isEmpty ? name : rel + "/" + name
            var st = stat()
            guard lstat(root + "/" + r, &st) == 0 else { continue }
            if (st.st_mode & S_IFMT) == S_IFDIR { walk(r) } else if (st.st_mode & S_IFMT) == S_IFREG { out.append(r) }
        }
    }
    walk("")
    return out.sorted { a, b in
        let pa = a.hasSuffix(".m3u8"), pb = b.hasSuffix(".m3u8")
        return pa != pb ? !pa : a < b
    }
}

func fileSize(_ path: String) -> Int64? {
    var st = stat()
    guard stat(path, &st) == 0 else { return nil }
    return Int64(st.st_size)
}

/// The engine's id and token, kept in DATA/engine.json (mode 0600) so a restart keeps its id.
struct EngineCredentials: Equatable {
    var engineID: String
    var token: String
    var server: String

    static func load(_ path: String) -> EngineCredentials? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 4_096)
        let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, 4_096) }
        guard n > 0, let doc = try? JSONDocument(parsing: Array(bytes[..<n])),
              let id = try? doc.root["engine_id"]?.string(), let token = try? doc.root["token"]?.string(),
              let server = try? doc.root["server"]?.string() else { return nil }
        return EngineCredentials(engineID: id, token: token, server: server)
    }

    /// Written to a temporary file (0600), synced, renamed over the old one.
    func save(_ path: String) throws(TranscodeFailure) {
        var w = JSONWriter()
        w.beginObject()
        w.field("engine_id", engineID)
        w.field("token", token)
        w.field("server", server)
        w.endObject()
        let bytes = Array(w.text.utf8)
        let tmp = path + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw TranscodeFailure(code: "io_error", message: "cannot write \(tmp): \(String(cString: strerror(errno)))") }
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd) == 0
        close(fd)
        guard n == bytes.count, synced, rename(tmp, path) == 0 else {
            throw TranscodeFailure(code: "io_error", message: "cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }
}
