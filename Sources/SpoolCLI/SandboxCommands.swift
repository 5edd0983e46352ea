// The sandbox in the CLI: `spool worker` (the confined child a transcode runs in; not for
// people), the options `spool engine` and `spool up` share to choose and limit it, and the
// runner they build from them.
import ArgumentParser
import CProcessStart
import EngineRuntime
import Media
import Lifecycle
import Plugins
import Threads
import Sandbox

/// `spool worker`: reads one transcode request on stdin, writes progress and the outcome as
/// JSON lines on stdout. Started by the engine inside its sandbox.
struct Worker: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one transcode request from stdin (the engine's sandboxed child).",
        shouldDisplay: false
    )

    func run() throws {
        let rc = Self.serveOneRequest()
        if rc != 0 { throw ExitCode(rc) }
    }

    /// The worker's whole life; its exit status. `Spool.main` calls it straight for the
    /// plain `spool worker` (no argument parser on a per-job start, or on a failed job's exit).
    static func serveOneRequest() -> Int32 {
        ProcessMemory.settleForTranscoding()
        // The engine cancels with "cancel" on stdin; a SIGTERM (someone else's) does the
        // same: the job is cancelled through its table (a plugin stops its own programs),
        // its failure written, and the worker exits. A second signal ends it at once.
        _ = OSThread.spawn {
            _ = spool_signal_wait()
            TranscodeWorker.requestStop()
            spool_signal_die(spool_signal_wait())
        }
        // libav's transcoder, statically linked, behind the same table as a loaded plugin.
        return TranscodeWorker.run(builtin: BuiltinPlugin.install(LibAVTranscoderPlugin()))
    }
}

enum SandboxMode: String, ExpressibleByArgument, CaseIterable {
    case auto, bubblewrap, direct, off
}

struct SandboxOptions: ParsableArguments {
    @Option(help: "Where transcodes run: auto (bubblewrap if it works here, else direct), bubblewrap, direct (a child under rlimits, seccomp and Landlock), off (in the engine's process).")
    var sandbox: SandboxMode = .auto

    @Option(help: "Wall-clock seconds a transcode may run before it is killed.")
    var maxTranscodeSeconds: Int = 6 * 3600

    @Option(help: "CPU seconds a transcode may use (RLIMIT_CPU).")
    var maxTranscodeCpuSeconds: Int = 4 * 3600

    @Option(help: "Memory of a transcode, in MiB: its address space (RLIMIT_AS) and, where the engine can make a memory cgroup per worker, its resident memory.")
    var maxTranscodeMemoryMib: Int = 4096

    @Option(help: "Load transcoder plugins (*.so, spool_plugin.h ABI) from this directory.")
    var pluginDir: String?

    func validate() throws {
        guard maxTranscodeSeconds >= 1 else { throw ValidationError("--max-transcode-seconds must be at least 1") }
        guard maxTranscodeCpuSeconds >= 1 else { throw ValidationError("--max-transcode-cpu-seconds must be at least 1") }
        guard maxTranscodeMemoryMib >= 256 else { throw ValidationError("--max-transcode-memory-mib must be at least 256") }
    }

    /// The runner for these options; says loudly when the child is not namespaced.
    /// `spareDirectory`: where the runner keeps its warm spare workers' slots (under the
    /// data directory, on the jobs' file system); it keeps one per job that can run at
    /// once (`concurrentJobs`, at most 8).
    func makeRunner(tags: [String], label: String, spareDirectory: String, concurrentJobs: Int = 1) throws -> any TranscodeRunner {
        let plugin = LibAVTranscoderPlugin()
        if sandbox == .off && pluginDir != nil {
            throw ValidationError("--plugin-dir needs a sandbox: plugins run only in the sandboxed worker")
        }
        if sandbox == .off {
            StandardError.write("\(label): WARNING: --sandbox off: transcodes run inside the engine's process, unconfined\n")
            return PluginRunner(plugin: plugin)
        }
        let report = ConfinementReport.probe(allowBubblewrap: sandbox != .direct)
        if sandbox == .bubblewrap && report.kind != .bubblewrap {
            throw ValidationError("--sandbox bubblewrap: \(report.bubblewrapReason ?? "unavailable")")
        }
        if report.kind == .direct {
            StandardError.write("\(label): WARNING: transcodes are NOT namespaced (\(report.bubblewrapReason ?? "bubblewrap unavailable")); they run under rlimits and the seccomp filter\(report.landlockABI != nil ? " and Landlock" : " only (no Landlock either)")\n")
        }
        var config = SandboxConfiguration(executable: SandboxConfiguration.thisExecutable(), confinement: report)
        config.spareDirectory = spareDirectory
        config.spares = min(8, max(1, concurrentJobs))
        config.limits.wallSeconds = Double(maxTranscodeSeconds)
        config.limits.cpuSeconds = Int64(maxTranscodeCpuSeconds)
        config.limits.addressSpaceBytes = Int64(maxTranscodeMemoryMib) << 20
        config.limits.memoryBytes = Int64(maxTranscodeMemoryMib) << 20
        let (cpus, gpu) = try parseAffinityTags(tags)
        config.cpus = cpus.map { Int32($0) }
        if let gpu { config.environment.append("CUDA_VISIBLE_DEVICES=\(gpu)") }
        if let pluginDir {
            // Checked here (ABI version, symbols, table, capabilities); each job's worker
            // loads its plugin again inside the sandbox.
            let (plugins, refused) = PluginLibrary.loadDirectory(pluginDir)
            for r in refused { StandardError.write("\(label): plugin refused: \(r.description)\n") }
            for p in plugins {
                StandardError.write("\(label): plugin \(p.name) loaded from \(p.path): \(p.capabilities.prefix(8).joined(separator: ", "))\(p.capabilities.count > 8 ? ", ..." : "")\n")
            }
            config.plugins = plugins.map { PluginInfo(name: $0.name, path: $0.path, capabilities: $0.capabilities, capabilitiesJSON: $0.capabilitiesJSON) }
        }
        return SandboxRunner(configuration: config, capabilitiesJSON: plugin.capabilities().jsonText)
    }
}

/// CPU_Set:A-B[,C] and GPU:N tags.
func parseAffinityTags(_ tags: [String]) throws -> (cpus: [Int], gpu: String?) {
    var cpus: [Int] = []
    var gpu: String?
    for tag in tags {
        if tag.hasPrefix("CPU_Set:") {
            for part in tag.dropFirst(8).split(separator: ",") {
                let ends = part.split(separator: "-").compactMap { Int($0) }
                guard (1...2).contains(ends.count), ends.allSatisfy({ (0..<1024).contains($0) }), ends.first! <= ends.last! else {
                    throw ValidationError("tag \(tag): CPU_Set takes CPU numbers and ranges, e.g. CPU_Set:0-3,6")
                }
                cpus += Array(ends.first!...ends.last!)
            }
        } else if tag.hasPrefix("GPU:") {
            let n = tag.dropFirst(4)
            guard !n.isEmpty, n.allSatisfy(\.isNumber) else { throw ValidationError("tag \(tag): GPU takes a device number, e.g. GPU:0") }
            gpu = String(n)
        }
    }
    return (cpus, gpu)
}
