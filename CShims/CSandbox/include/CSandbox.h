// CSandbox: the only door to confined child processes. Starting a child between fork and
// exec (rlimits, a process group, death with the parent, descriptors, affinity, no new
// privileges, a Landlock ruleset, the seccomp filter), the seccomp filter itself as a
// classic BPF program (installed here, or handed to bubblewrap with --seccomp FD), and the
// Landlock ruleset builder. Only the Sandbox module imports it.
#ifndef CSANDBOX_H
#define CSANDBOX_H

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Resource limits for the child; a value <= 0 leaves that limit as inherited.
struct spool_limits {
    long long cpu_seconds;        // RLIMIT_CPU (SIGXCPU at the soft limit, SIGKILL 1 s later)
    long long address_space;      // RLIMIT_AS, bytes
    long long file_size;          // RLIMIT_FSIZE, bytes
    long long open_files;         // RLIMIT_NOFILE
    long long processes;          // RLIMIT_NPROC (per user: a second line behind the filter)
};

struct spool_spawn {
    const char *path;             // executable (absolute)
    char *const *argv;            // NULL-terminated
    char *const *envp;            // NULL-terminated
    const int *fds;               // fds[i] becomes descriptor i in the child; all others close
    int nfds;
    struct spool_limits limits;
    int install_seccomp;          // 1: install the seccomp filter before exec
    int allow_processes;          // 1: the filter lets the child start programs (plugin jobs)
    int landlock_fd;              // >= 0: restrict the child to this Landlock ruleset
    int drop_capabilities;        // 1: empty the bounding and ambient sets (root execs get none)
    const int *cpus;              // CPUs to pin the child to (ncpus 0: inherited)
    int ncpus;
    int cgroup_procs_fd;          // >= 0: an open cgroup.procs the child joins first (writes "0")
};

/// Forks, confines the child as described, and execs it. Returns 0 with *pid set, or
/// -errno: of fork, or of the child's failed step (reported over a close-on-exec pipe), in
/// which case the child has already been reaped. The child is the leader of a new process
/// group (kill(-pid, sig) reaches everything it started), gets SIGKILL when the calling
/// thread's process dies, and starts with default signal dispositions and an empty mask.
int spool_spawn_confined(const struct spool_spawn *spawn, pid_t *pid);

/// The seccomp filter (a denylist of what a transcoder never needs) as a BPF program:
/// *count instructions of 8 bytes each, in static storage. Refused with EPERM: ptrace,
/// process_vm_readv/writev, mount and the other file-system and namespace calls, keyctl,
/// bpf, perf_event_open, module and kexec calls, reboot, swap, clock setting, io_uring,
/// userfaultfd, personality, setrlimit/prlimit64 (setting), socket families other than
/// AF_UNIX, fork/vfork and clone without CLONE_THREAD (threads only); clone3 answers ENOSYS
/// so the C library falls back to clone, whose flags the filter can read. Any other
/// architecture than the build's (x32 included) is killed.
const void *spool_sandbox_filter(int *count);
/// The same filter, except that new processes (fork, vfork, clone without namespace flags)
/// are allowed: for plugin jobs that run a program (HandBrakeCLI). Namespaces stay refused.
const void *spool_sandbox_filter_processes(int *count);

/// The filter's program in a close-on-exec memfd at offset 0 (for bubblewrap's --seccomp
/// FD), or -errno.
int spool_sandbox_filter_fd(int allow_processes);

/// Installs the filter in the calling thread (with no_new_privs): for tests.
int spool_sandbox_install_filter(void);

/// prctl(PR_SET_DUMPABLE, value) (prctl is variadic: Swift cannot call it).
int spool_set_dumpable(int value);

/// pipe2(fds, O_CLOEXEC) (Swift's Glibc module leaves pipe2 out). 0 or -errno.
int spool_pipe_cloexec(int fds[2]);

/// The Landlock ABI version the kernel offers, or -errno (ENOSYS, EOPNOTSUPP: disabled).
int spool_landlock_abi(void);
/// A ruleset handling every file-system access this ABI knows: paths in `read` may be read
/// and executed beneath, paths in `write` may also be written, created and removed beneath.
/// Returns the ruleset descriptor (close-on-exec; pass it as landlock_fd), or -errno
/// (of the path that failed to open, with *failed set to its index in read then write).
int spool_landlock_ruleset(const char *const *read, int nread, const char *const *write, int nwrite, int *failed);

#ifdef __cplusplus
}
#endif
#endif
