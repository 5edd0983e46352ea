// Media.StagedOutput: a file (or HLS directory) output built under a temporary name in
// the destination directory and renamed onto the final name only when the job succeeds.
//
// - Nothing appears at the final name until the output is complete and fsync'ed: a job
//   that fails, is cancelled or is killed never leaves a partial file there (a SIGKILL
//   can leave the hidden temporary, `.spool-tmp-PID-RANDOM[.ext]`, which names the
//   process that made it; the extension keeps libav's container choice).
// - An existing output is refused (`output_exists`) unless `overwrite` is set. Without
//   it the final rename is renameat2(RENAME_NOREPLACE), so a file created meanwhile is not
//   replaced either.
// - A symlink at the final name is never followed. With `overwrite` the link itself is
//   replaced by the rename (rename does not follow links); its target is untouched.
//   Without `overwrite` it is an existing output like any other.
// - A directory output (HLS ladder) that exists is replaced, with `overwrite`, by an
//   atomic exchange (RENAME_EXCHANGE) and the old tree is then removed.
//
// libav opens the temporary through /proc/self/fd/DIRFD/NAME: an ASCII path whatever
// bytes the user's path holds (and no ':' for libav to read as a protocol), resolved
// against the directory opened at the start, so renaming a parent meanwhile cannot
// redirect the output.
internal import CLibAV
import TranscodeAPI
import Foundation

final class StagedOutput {
    let final: MediaPath
    let isDirectory: Bool
    let overwrite: Bool
    private let directoryFD: Int32
    private let finalName: [UInt8]
    private let tempName: String
    /// The temporary file's descriptor (files only), kept for fsync.
    private var fileFD: Int32 = -1
    private var done = false

    /// The temporary output, as a path libav (and FileManager) can open.
    var workPath: String { "/proc/self/fd/\(directoryFD)/\(tempName)" }
    var label: String { final.description }

    private init(final: MediaPath, isDirectory: Bool, overwrite: Bool) throws(MediaError) {
        self.final = final
        self.isDirectory = isDirectory
        self.overwrite = overwrite
        unsafe try final.withCPath { _ in }   // refuses NUL bytes and the empty path
        let name = final.lastComponent
        guard !name.isEmpty, name != Array(".".utf8), name != Array("..".utf8) else {
            throw .outputUnwritable(path: final.description, reason: "the output needs a file name")
        }
        finalName = name
        let ext = final.fileExtension
        let suffix = isDirectory || ext.isEmpty || ext.count > 8 || !ext.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) })
            ? "" : "." + ext
        tempName = ".spool-tmp-\(getpid())-\(String(UInt64.random(in: 0...UInt64.max), radix: 16))" + suffix
        let dirPath = final.directory
        let fd = unsafe try dirPath.withCPath { unsafe open($0, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        guard fd >= 0 else { throw .outputUnwritable(path: final.description, reason: "its directory: " + errnoText()) }
        directoryFD = fd
        do {
            try refuseExisting()
        } catch {
            close(fd)
            throw error
        }
    }

    /// Creates the temporary file (O_EXCL|O_NOFOLLOW: it is new and ours).
    static func file(_ final: MediaPath, overwrite: Bool) throws(MediaError) -> StagedOutput {
        let s = try StagedOutput(final: final, isDirectory: false, overwrite: overwrite)
        s.fileFD = unsafe s.tempName.withCString { unsafe openat(s.directoryFD, $0, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o666) }
        guard s.fileFD >= 0 else {
            let reason = errnoText()
            s.done = true   // nothing of ours to remove (EEXIST would name someone else's file)
            throw .outputUnwritable(path: final.description, reason: reason)
        }
        return s
    }

    /// Creates the temporary directory.
    static func directory(_ final: MediaPath, overwrite: Bool) throws(MediaError) -> StagedOutput {
        let s = try StagedOutput(final: final, isDirectory: true, overwrite: overwrite)
        guard unsafe s.tempName.withCString({ unsafe mkdirat(s.directoryFD, $0, 0o777) }) == 0 else {
            let reason = errnoText()
            s.done = true
            throw .outputUnwritable(path: final.description, reason: reason)
        }
        return s
    }

    /// What is at the final name: refused unless `overwrite`, and only what the final
    /// rename can replace (a file output cannot replace a directory, nor the reverse).
    private func refuseExisting() throws(MediaError) {
        var st = stat()
        let rc = unsafe finalName.withUnsafeCString { unsafe fstatat(directoryFD, $0, &st, AT_SYMLINK_NOFOLLOW) }
        if rc != 0 {
            guard errno == ENOENT else { throw .outputUnwritable(path: label, reason: errnoText()) }
            return
        }
        guard overwrite else { throw .outputExists(path: label) }
        let isDir = (st.st_mode & S_IFMT) == S_IFDIR
        if isDir && !isDirectory { throw .outputUnwritable(path: label, reason: "it is a directory") }
        if !isDir && isDirectory && (st.st_mode & S_IFMT) != S_IFLNK {
            throw .outputUnwritable(path: label, reason: "it exists and is not a directory")
        }
    }

    /// Makes the output durable and puts it at the final name.
    func commit() throws(MediaError) {
        precondition(!done, "a staged output is committed once")
        if isDirectory {
            syncTree(workPath)
        } else if fsync(fileFD) != 0 {
            throw .outputUnwritable(path: label, reason: "fsync: " + errnoText())
        }
        let rc = unsafe tempName.withCString { temp in
            unsafe finalName.withUnsafeCString { name in unsafe renameIntoPlace(temp, name) }
        }
        guard rc == 0 else {
            if errno == EEXIST && !overwrite { throw .outputExists(path: label) }
            throw .outputUnwritable(path: label, reason: errnoText())
        }
        done = true
        _ = fsync(directoryFD)
    }

    /// temp → final: RENAME_NOREPLACE without `overwrite`; with it a plain rename for a
    /// file (replaces a file or a symlink) and an exchange for a directory that exists.
    private func renameIntoPlace(_ temp: UnsafePointer<CChar>, _ name: UnsafePointer<CChar>) -> Int32 {
        let fd = directoryFD
        if !overwrite {
            let rc = unsafe clibav_renameat2(fd, temp, fd, name, clibav_rename_noreplace())
            if rc == 0 || (errno != EINVAL && errno != ENOSYS) { return rc }
            // No RENAME_NOREPLACE on this filesystem: check, then rename (a small race).
            var st = stat()
            if unsafe fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 { errno = EEXIST; return -1 }
            return unsafe renameat(fd, temp, fd, name)
        }
        if isDirectory {
            var st = stat()
            if unsafe fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 {
                guard unsafe clibav_renameat2(fd, temp, fd, name, clibav_rename_exchange()) == 0 else { return -1 }
                // The old output now has the temporary name.
                try? FileManager.default.removeItem(atPath: workPath)
                return 0
            }
        }
        return unsafe renameat(fd, temp, fd, name)
    }

    /// Removes the temporary output (any failure or cancellation).
    func abandon() {
        guard !done else { return }
        done = true
        if isDirectory {
            try? FileManager.default.removeItem(atPath: workPath)
        } else {
            _ = unsafe tempName.withCString { unsafe unlinkat(directoryFD, $0, 0) }
        }
    }

    deinit {
        abandon()
        if fileFD >= 0 { close(fileFD) }
        close(directoryFD)
    }

    /// fsyncs every file and directory under `path` (an HLS tree: two levels).
    private func syncTree(_ path: String) {
        let fm = FileManager.default
        for name in (try? fm.contentsOfDirectory(atPath: path)) ?? [] {
            let child = path + "/" + name
            var isDir: ObjCBool = false
            if unsafe fm.fileExists(atPath: child, isDirectory: &isDir), isDir.boolValue { syncTree(child) } else { syncFile(child, flags: O_RDONLY) }
        }
        syncFile(path, flags: O_RDONLY | O_DIRECTORY)
    }

    private func syncFile(_ path: String, flags: Int32) {
        let fd = unsafe open(path, flags | O_CLOEXEC | O_NOFOLLOW)
        if fd >= 0 { _ = fsync(fd); close(fd) }
    }
}

extension Array where Element == UInt8 {
    /// Calls `body` with the bytes as a C string (the caller has refused NUL bytes).
    func withUnsafeCString<R>(_ body: (UnsafePointer<CChar>) -> R) -> R {
        unsafe (self + [0]).withUnsafeBufferPointer { b in unsafe b.withMemoryRebound(to: CChar.self) { unsafe body($0.baseAddress!) } }
    }
}
