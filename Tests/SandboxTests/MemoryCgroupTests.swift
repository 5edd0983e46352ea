// The memory cgroup per worker: where it is made (parsed from /proc/self/cgroup and
// mountinfo as cgroup v1, v2 and a container's view of them), its control files, and, on a
// machine where this process may make one, a worker that touches more memory than its
// limit: killed by the kernel inside its cgroup, the job failed as out_of_memory, nothing
// left behind (the cgroup included), and the next real job completes.
import EngineRuntime
import Foundation
@testable import Sandbox
import SpoolTestSupport
import XCTest

final class MemoryCgroupTests: XCTestCase {
    let hybridMounts = """
        25 30 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
        26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
        29 25 0:26 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,memory
        30 25 0:27 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,pids
        """

    func testTheMountsAndThisProcesssPathsAreFoundInEachLayout() {
        let mounts = CgroupMounts(hybridMounts)
        XCTAssertEqual(mounts.v2?.mountPoint, "/sys/fs/cgroup/unified")
        XCTAssertEqual(mounts.v1Memory?.mountPoint, "/sys/fs/cgroup/memory")
        let procCgroup = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/abc\n0::/\n"
        let v1 = MemoryCgroups.ownPath(procCgroup) { $0.controllers.contains("memory") }
        XCTAssertEqual(v1, "/process_api/abc")
        XCTAssertEqual(mounts.v1Memory?.directory(for: v1!), "/sys/fs/cgroup/memory/process_api/abc")
        XCTAssertEqual(MemoryCgroups.ownPath(procCgroup) { $0.id == "0" && $0.controllers.isEmpty }, "/")
        // The named systemd hierarchy is not a controller.
        XCTAssertNil(MemoryCgroups.ownPath("1:name=systemd:/x\n") { !$0.controllers.isEmpty })

        // A container sees part of the hierarchy: the mount's root is its own cgroup.
        let container = CgroupMounts("35 30 0:29 /kubepods/pod1 /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n")
        XCTAssertEqual(container.v2?.directory(for: "/kubepods/pod1"), "/sys/fs/cgroup")
        XCTAssertEqual(container.v2?.directory(for: "/kubepods/pod1/engine"), "/sys/fs/cgroup/engine")
        XCTAssertNil(container.v1Memory)
        // Escaped spaces in a mount point.
        XCTAssertEqual(CgroupMounts("1 0 0:1 / /a\\040b rw - cgroup2 none rw\n").v2?.mountPoint, "/a b")
        // A parent directory stays within the mount.
        XCTAssertEqual(MemoryCgroups.parentDirectory("/sys/fs/cgroup/a/b", within: "/sys/fs/cgroup"), "/sys/fs/cgroup/a")
        XCTAssertNil(MemoryCgroups.parentDirectory("/sys/fs/cgroup", within: "/sys/fs/cgroup"))
    }

    func testNoHierarchyIsAReasonNotACrash() {
        guard case .failure(let why) = MemoryCgroups.probe(procCgroup: "0::/\n", mountInfo: "1 0 0:1 / / rw - ext4 /dev/vda rw\n") else {
            return XCTFail("a machine without cgroup mounts has no memory cgroups")
        }
        XCTAssertTrue(why.reason.contains("no cgroup hierarchy"), why.reason)
        guard case .failure = MemoryCgroups.probe(procCgroup: nil, mountInfo: nil) else { return XCTFail("unreadable /proc") }
    }

    func testControlFilesAreWrittenAndReadAsTheKernelLaysThemOut() throws {
        let dir = NSTemporaryDirectory() + "spool-cgroup-files-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for f in ["memory.max", "memory.swap.max", "cgroup.procs"] { FileManager.default.createFile(atPath: dir + "/" + f, contents: Data()) }
        try "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\n".write(toFile: dir + "/memory.events", atomically: false, encoding: .utf8)
        let group = JobCgroup(version: .v2, path: dir)
        try group.setLimit(bytes: 64 << 20)
        XCTAssertEqual(try String(contentsOfFile: dir + "/memory.max", encoding: .utf8), String(64 << 20))
        XCTAssertEqual(try String(contentsOfFile: dir + "/memory.swap.max", encoding: .utf8), "0")
        XCTAssertEqual(group.limitBytes, 64 << 20)
        XCTAssertEqual(group.oomKills, 1)
        let v1 = JobCgroup(version: .v1, path: dir)
        try "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n".write(toFile: dir + "/memory.oom_control", atomically: false, encoding: .utf8)
        XCTAssertEqual(v1.oomKills, 3)
        XCTAssertThrowsError(try v1.setLimit(bytes: 1 << 20), "memory.limit_in_bytes is not there")
    }
}

extension SandboxTests {
    /// On a machine where this process may make memory cgroups: a worker over its memory
    /// limit (but well within its address space) is killed inside its cgroup.
    func testAWorkerOverItsMemoryLimitIsKilledAndTheJobFailsAsOutOfMemory() async throws {
        let report = ConfinementReport.probe()
        guard let groups = report.memoryCgroups else {
            throw XCTSkip("no memory cgroup per worker here: \(report.cgroupReason ?? "?")")
        }
        var limits = SandboxLimits()
        limits.addressSpaceBytes = 2 << 30
        limits.memoryBytes = 64 << 20
        let ours = { try FileManager.default.contentsOfDirectory(atPath: groups.parent).filter { $0.hasPrefix("spool-worker-\(getpid())-") } }
        let before = Set(try ours())   // other tests' spare workers wait in theirs
        for c in [ConfinementReport.probe(allowBubblewrap: false), report] {
            let j = try job()
            let r = await outcome(try runner(c, ["touch", "512"], limits: limits), j)
            guard case .failure(let f) = r else { return XCTFail("\(c.kind): the job completed") }
            XCTAssertEqual(f.code, "out_of_memory", "\(c.kind): \(f.code): \(f.message)")
            XCTAssertTrue(f.message.contains("64 MiB"), f.message)
            XCTAssertFalse(FileManager.default.fileExists(atPath: j.outputDirectory))
            XCTAssertFalse(FileManager.default.fileExists(atPath: j.outputDirectory + ".sandbox"))
            // Within the limit, the same worker is not touched.
            let small = await outcome(try runner(c, ["touch", "16"], limits: limits), try job())
            guard case .failure(let g) = small else { return XCTFail("the hostile worker reports, it never completes") }
            XCTAssertEqual(g.code, "escaped", "\(c.kind): 16 MiB under a 64 MiB limit: \(g.code): \(g.message)")
            try await assertRealJobCompletes(c)
        }
        // Every worker's cgroup is gone with it.
        XCTAssertEqual(Set(try ours()).subtracting(before), [], "cgroups left behind in \(groups.parent)")
    }
}
