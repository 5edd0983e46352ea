// Access.AdminKey: the admin key a server starts with. SPOOL_ADMIN_KEY registers that
// secret as an admin key (a different value later revokes the one registered before it, so
// rotating the variable rotates the key). Without it, and with no admin key in the
// database yet, one is generated, written to DATA_DIR/admin.key (mode 0600, through a
// temp file, fsync and rename, then the directory fsync'd) and returned to be printed once.
import Relational
import SpoolModel
#if canImport(Glibc)
import Glibc
#endif

public struct AccessSetupError: Error, Sendable, CustomStringConvertible {
    public var description: String
}

extension AccessService {
    /// What is wrong with a SPOOL_ADMIN_KEY value (nil when nothing is), for a command to
    /// refuse it before it starts anything.
    public static func adminKeyProblem(_ given: String) -> String? {
        guard (32...256).contains(given.utf8.count), given.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            return "SPOOL_ADMIN_KEY must be 32 to 256 visible ASCII characters without spaces "
                + "(generate one with: head -c 30 /dev/urandom | base32)"
        }
        return nil
    }

    /// Makes sure an admin key exists. Returns a newly generated secret (to print once), or
    /// nil when SPOOL_ADMIN_KEY was given or an admin key already exists.
    public func ensureAdminKey(fromEnvironment given: String?, dataDirectory: String) async throws -> String? {
        if let given {
            if let problem = Self.adminKeyProblem(given) { throw AccessSetupError(description: problem) }
            let h = Self.hash(given)
            let now = clock.unixMilliseconds
            let known = try await database.writing { db -> Bool in
                // Earlier SPOOL_ADMIN_KEY values stop working: the variable is the one source.
                try db.execute("UPDATE access_keys SET revoked_at = ? WHERE origin = 'environment' AND hash <> ? AND revoked_at IS NULL",
                               [now, h])
                return try db.exists("SELECT 1 FROM access_keys WHERE hash = ? AND is_admin = 1 AND revoked_at IS NULL", [h])
            }
            invalidateCache()
            if !known { _ = try await insert(secret: given, tenant: Self.adminTenant, admin: true, origin: "environment") }
            return nil
        }
        let exists = try await database.reading { db in
            try db.exists("SELECT 1 FROM access_keys WHERE is_admin = 1 AND revoked_at IS NULL LIMIT 1")
        }
        if exists { return nil }
        let secret = Self.generateSecret()
        try writeSecretFile(dataDirectory + "/admin.key", secret + "\n")
        _ = try await insert(secret: secret, tenant: Self.adminTenant, admin: true, origin: "generated")
        return secret
    }
}

/// A warning when DATA_DIR/admin.key exists and others than its owner may read or write
/// it (say it was copied with a loosened mode): whoever read it holds an admin key. The
/// file is not tightened behind the operator's back; the warning names both fixes.
public func adminKeyFileWarning(dataDirectory: String) -> String? {
    let path = dataDirectory + "/admin.key"
    var st = stat()
    guard stat(path, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { return nil }
    let mode = st.st_mode & 0o777
    guard mode & 0o077 != 0 else { return nil }
    return "\(path) has mode \(String(mode, radix: 8)): others than its owner can read or change the admin key; "
        + "run chmod 600 \(path), and revoke the key (DELETE /api/v1/keys/{id}) if someone else may have read it"
}

/// Writes `text` to `path` with mode 0600: temp file, fsync, rename, directory fsync.
func writeSecretFile(_ path: String, _ text: String) throws {
    let tmp = path + ".tmp"
    let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard fd >= 0 else { throw AccessSetupError(description: "cannot create \(tmp): \(String(cString: strerror(errno)))") }
    let bytes = Array(text.utf8)
    var done = 0
    while done < bytes.count {
        let n = bytes[done...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else {
            close(fd); unlink(tmp)
            throw AccessSetupError(description: "cannot write \(tmp): \(String(cString: strerror(errno)))")
        }
        done += n
    }
    // fchmod too: a leftover temp file keeps its old mode through O_CREAT.
    guard fchmod(fd, 0o600) == 0, fsync(fd) == 0 else {
        close(fd); unlink(tmp)
        throw AccessSetupError(description: "cannot sync \(tmp): \(String(cString: strerror(errno)))")
    }
    close(fd)
    guard rename(tmp, path) == 0 else {
        throw AccessSetupError(description: "cannot rename \(tmp) to \(path): \(String(cString: strerror(errno)))")
    }
    let slash = path.lastIndex(of: "/")
    let dir = slash.map { String(path[..<$0]) } ?? "."
    let dfd = open(dir.isEmpty ? "/" : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if dfd >= 0 { _ = fsync(dfd); close(dfd) }
}
