// The `spool` executable: one binary for every role. This issue gives it `version` and
// `kernel-check`; serve, engine, up, transcode and submit arrive with their issues.
import ArgumentParser
import Ring
#if canImport(Glibc)
import Glibc
#endif

@main
struct Spool: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spool",
        abstract: "Spool: a distributed video transcoding system on io_uring.",
        version: SpoolVersion.string,
        subcommands: [Version.self, KernelCheck.self]
    )
}

enum SpoolVersion {
    static let string = "0.1.0"
}

struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the Spool version and runtime facts.")

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func run() throws {
        let release = KernelFacts.release
        if json {
            print("{\"version\":\"\(SpoolVersion.string)\",\"kernel\":\"\(release)\"}")
        } else {
            print("spool \(SpoolVersion.string) (kernel \(release))")
        }
    }
}

struct KernelCheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernel-check",
        abstract: "Report whether io_uring can run here, and which I/O backend Spool would use.",
        discussion: "Exit status: 0 io_uring fully usable; 77 usable but optional features missing; 1 unusable (the epoll fallback runs)."
    )

    @Flag(help: "Install a seccomp filter that blocks io_uring first (shows what Docker's default profile does).")
    var simulateSeccomp = false

    @Flag(help: "Also start an event loop and report the backend it actually chose.")
    var startLoop = false

    func run() throws {
        if simulateSeccomp {
            do { try KernelReport.denyIOUringWithSeccomp() } catch {
                print("could not install the seccomp filter: \(error)")
                throw ExitCode(2)
            }
        }
        let report = KernelReport.collect()
        print(report.render())
        if startLoop {
            do {
                let loop = try EventLoop.start()
                print("  started loop:            \(loop.backendKind): \(loop.backendSummary)")
                loop.shutdown()
            } catch {
                print("  started loop:            FAILED: \(error)")
                throw ExitCode(1)
            }
        }
        if report.exitCode != 0 { throw ExitCode(report.exitCode) }
    }
}
