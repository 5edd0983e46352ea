// Media.MediaPath: what Media adds to TranscodeAPI's MediaPath: the path handed to the
// system calls as a C string, and the original bytes of a command-line argument.
import TranscodeAPI
#if canImport(Glibc)
import Glibc
#endif

extension MediaPath {
    /// Calls `body` with the path as a C string. A path with a NUL byte names no file
    /// (the kernel would stop at the NUL): refused rather than truncated.
    func withCPath<R>(_ body: (UnsafePointer<CChar>) -> R) throws(MediaError) -> R {
        guard !bytes.isEmpty else { throw .invalidSettings(reason: "an empty path names no file") }
        guard !bytes.contains(0) else { throw .invalidSettings(reason: "the path \(self) contains a NUL byte") }
        return unsafe (bytes + [0]).withUnsafeBufferPointer { b in
            unsafe b.withMemoryRebound(to: CChar.self) { unsafe body($0.baseAddress!) }
        }
    }

    /// The original bytes of a command-line argument that Swift handed over as `repaired`
    /// (String(cString:) replaces invalid UTF-8 with U+FFFD): the `occurrence`-th argv
    /// entry that repairs to the same text. An argument that was valid UTF-8 comes back
    /// as its own bytes; one not found in argv (a default value) as `repaired`'s bytes.
    public static func commandLineArgument(_ repaired: String, occurrence: Int = 0) -> MediaPath {
        var matches: [[UInt8]] = []
        let argv = unsafe CommandLine.unsafeArgv
        for i in 1..<Int(CommandLine.argc) {
            guard let arg = unsafe argv[i] else { continue }
            let bytes = unsafe Array(UnsafeBufferPointer(start: UnsafeRawPointer(arg).assumingMemoryBound(to: UInt8.self), count: strlen(arg)))
            if String(decoding: bytes, as: UTF8.self) == repaired { matches.append(bytes) }
        }
        guard !matches.isEmpty else { return MediaPath(repaired) }
        return MediaPath(bytes: matches[min(max(0, occurrence), matches.count - 1)])
    }
}

/// errno as text.
func errnoText(_ e: Int32 = errno) -> String { unsafe String(cString: strerror(e)) }
