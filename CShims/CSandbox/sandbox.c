// CSandbox: confined children (see include/CSandbox.h).
#define _GNU_SOURCE
#include "CSandbox.h"

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/landlock.h>
#include <linux/seccomp.h>

#if defined(__x86_64__)
#define SPOOL_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define SPOOL_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
#error "CSandbox: add this architecture's AUDIT_ARCH"
#endif

#ifndef CLONE_THREAD
#define CLONE_THREAD 0x00010000
#endif

// ---- The seccomp filter ------------------------------------------------------------------

#define MAX_INSNS 256
struct program { struct sock_filter insns[MAX_INSNS]; int length; };
static struct program strict, processes;

#define ARG_LO(i) (offsetof(struct seccomp_data, args) + (i) * 8)
#define ARG_HI(i) (offsetof(struct seccomp_data, args) + (i) * 8 + 4)
#define RET_ERRNO(e) BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((e) & SECCOMP_RET_DATA))

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#define CLONE_NAMESPACES (CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | \
                          CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWTIME)

// Calls a transcoder never makes: each answers EPERM.
static const int denied[] = {
    __NR_ptrace, __NR_process_vm_readv, __NR_process_vm_writev, __NR_kcmp,
    __NR_mount, __NR_umount2, __NR_pivot_root, __NR_chroot, __NR_unshare, __NR_setns,
#ifdef __NR_move_mount
    __NR_move_mount, __NR_open_tree, __NR_fsopen, __NR_fsconfig, __NR_fsmount, __NR_fspick,
#endif
#ifdef __NR_mount_setattr
    __NR_mount_setattr,
#endif
    __NR_keyctl, __NR_add_key, __NR_request_key, __NR_bpf, __NR_perf_event_open,
    __NR_init_module, __NR_finit_module, __NR_delete_module, __NR_kexec_load,
#ifdef __NR_kexec_file_load
    __NR_kexec_file_load,
#endif
    __NR_reboot, __NR_swapon, __NR_swapoff, __NR_settimeofday, __NR_clock_settime,
    __NR_clock_adjtime, __NR_adjtimex, __NR_sethostname, __NR_setdomainname, __NR_acct,
    __NR_quotactl, __NR_syslog, __NR_vhangup, __NR_name_to_handle_at, __NR_open_by_handle_at,
    __NR_io_uring_setup, __NR_io_uring_enter, __NR_io_uring_register, __NR_userfaultfd,
    __NR_personality, __NR_setrlimit,
#ifdef __NR_pidfd_getfd
    __NR_pidfd_getfd,
#endif
#ifdef __NR_memfd_secret
    __NR_memfd_secret,
#endif
#if defined(__x86_64__)
    __NR_iopl, __NR_ioperm, __NR_uselib, __NR_lookup_dcookie,
#endif
};

static void emit(struct program *p, struct sock_filter insn) {
    if (p->length < MAX_INSNS) p->insns[p->length++] = insn;
}

static void build_program(struct program *p, int allow_processes) {
    p->length = 0;
    emit(p, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)));
    emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SPOOL_AUDIT_ARCH, 1, 0));
    emit(p, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
    emit(p, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)));
#if defined(__x86_64__)
    // x32 calls share the architecture tag and carry bit 30.
    emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1));
    emit(p, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
#endif
    for (size_t i = 0; i < sizeof denied / sizeof denied[0]; i++) {
        emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)denied[i], 0, 1));
        emit(p, (struct sock_filter)RET_ERRNO(EPERM));
    }
#if defined(__x86_64__)
    if (!allow_processes) {
        emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_fork, 1, 0));
        emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_vfork, 0, 1));
        emit(p, (struct sock_filter)RET_ERRNO(EPERM));
    }
#endif
    // clone3 hides its flags behind a pointer: ENOSYS sends the C library back to clone.
    emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone3, 0, 1));
    emit(p, (struct sock_filter)RET_ERRNO(ENOSYS));
    // clone (x86_64 and aarch64 both take the flags first): never a new namespace; without
    // allow_processes, threads only.
    emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, 0, 6));
    emit(p, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(0)));
    emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, CLONE_NAMESPACES, 0, 1));
    emit(p, (struct sock_filter)RET_ERRNO(EPERM));
    emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, allow_processes ? 0xffffffffu : CLONE_THREAD, 1, 0));
    emit(p, (struct sock_filter)RET_ERRNO(EPERM));
    emit(p, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
    // socket: AF_UNIX only (socketpair too).
    emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socket, 1, 0));
    emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socketpair, 0, 4));
    emit(p, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(0)));
    emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_UNIX, 1, 0));
    emit(p, (struct sock_filter)RET_ERRNO(EPERM));
    emit(p, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
    // prlimit64: reading limits is fine, setting them is not (new_limit must be NULL).
    emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_prlimit64, 0, 6));
    emit(p, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(2)));
    emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 3));
    emit(p, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_HI(2)));
    emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1));
    emit(p, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
    emit(p, (struct sock_filter)RET_ERRNO(EPERM));
    emit(p, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
}

static pthread_once_t programs_once = PTHREAD_ONCE_INIT;
static void build_programs(void) {
    build_program(&strict, 0);
    build_program(&processes, 1);
}

const void *spool_sandbox_filter(int *count) {
    pthread_once(&programs_once, build_programs);
    *count = strict.length;
    return strict.insns;
}

const void *spool_sandbox_filter_processes(int *count) {
    pthread_once(&programs_once, build_programs);
    *count = processes.length;
    return processes.insns;
}

static int install_filter(int allow_processes) {
    int count;
    const void *insns = allow_processes ? spool_sandbox_filter_processes(&count) : spool_sandbox_filter(&count);
    struct sock_fprog prog = { .len = (unsigned short)count, .filter = (struct sock_filter *)insns };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -errno;
    if (syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) return -errno;
    return 0;
}

int spool_sandbox_install_filter(void) { return install_filter(0); }

int spool_sandbox_filter_fd(int allow_processes) {
    int count;
    const void *insns = allow_processes ? spool_sandbox_filter_processes(&count) : spool_sandbox_filter(&count);
    int fd = memfd_create("spool-seccomp", MFD_CLOEXEC);
    if (fd < 0) return -errno;
    size_t bytes = (size_t)count * sizeof(struct sock_filter);
    ssize_t w = write(fd, insns, bytes);
    if (w != (ssize_t)bytes || lseek(fd, 0, SEEK_SET) != 0) {
        int e = w < 0 ? errno : EIO;
        close(fd);
        return -e;
    }
    return fd;
}

int spool_set_dumpable(int value) { return prctl(PR_SET_DUMPABLE, value, 0, 0, 0) == 0 ? 0 : -errno; }

int spool_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC) == 0 ? 0 : -errno; }

// ---- Landlock ----------------------------------------------------------------------------

#ifndef LANDLOCK_ACCESS_FS_REFER
#define LANDLOCK_ACCESS_FS_REFER (1ULL << 13)
#endif
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)
#endif

int spool_landlock_abi(void) {
    long v = syscall(__NR_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    return v < 0 ? -errno : (int)v;
}

static unsigned long long handled_for(int abi) {
    unsigned long long a = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE |
        LANDLOCK_ACCESS_FS_READ_DIR | LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE |
        LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG |
        LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_BLOCK |
        LANDLOCK_ACCESS_FS_MAKE_SYM;
    if (abi >= 2) a |= LANDLOCK_ACCESS_FS_REFER;
    if (abi >= 3) a |= LANDLOCK_ACCESS_FS_TRUNCATE;
    if (abi >= 5) a |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
    return a;
}

static int add_rule(int ruleset, const char *path, unsigned long long access) {
    int fd = open(path, O_PATH | O_CLOEXEC);
    if (fd < 0) return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0) { int e = errno; close(fd); return -e; }
    if (!S_ISDIR(st.st_mode)) {
        // A file rule may only carry the rights that apply to files.
        access &= LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE |
                  LANDLOCK_ACCESS_FS_TRUNCATE | LANDLOCK_ACCESS_FS_IOCTL_DEV;
    }
    struct landlock_path_beneath_attr rule = { .allowed_access = access, .parent_fd = fd };
    long r = syscall(__NR_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &rule, 0);
    int e = errno;
    close(fd);
    return r < 0 ? -e : 0;
}

int spool_landlock_ruleset(const char *const *read, int nread, const char *const *write, int nwrite, int *failed) {
    *failed = -1;
    int abi = spool_landlock_abi();
    if (abi < 0) return abi;
    unsigned long long handled = handled_for(abi);
    struct landlock_ruleset_attr attr = { .handled_access_fs = handled };
    int ruleset = (int)syscall(__NR_landlock_create_ruleset, &attr, sizeof attr, 0);
    if (ruleset < 0) return -errno;
    // Landlock rulesets are created close-on-exec already; set it anyway (older kernels).
    fcntl(ruleset, F_SETFD, FD_CLOEXEC);
    unsigned long long readable = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR;
    for (int i = 0; i < nread + nwrite; i++) {
        const char *path = i < nread ? read[i] : write[i - nread];
        int r = add_rule(ruleset, path, i < nread ? readable : handled);
        if (r < 0) { *failed = i; close(ruleset); return r; }
    }
    return ruleset;
}

// ---- Spawning ----------------------------------------------------------------------------

#define MAX_FDS 16

// Closes every descriptor >= from except keep1 and keep2 (either may be -1).
static void close_all_but(int from, int keep1, int keep2) {
    int a = keep1 < keep2 ? keep1 : keep2, b = keep1 < keep2 ? keep2 : keep1;
    int keep[2] = { a, b };
    unsigned next = (unsigned)from;
    for (int i = 0; i < 2; i++) {
        if (keep[i] < from) continue;
        if ((unsigned)keep[i] > next && syscall(__NR_close_range, next, (unsigned)keep[i] - 1, 0) != 0) {
            for (unsigned fd = next; fd < (unsigned)keep[i]; fd++) close((int)fd);
        }
        next = (unsigned)keep[i] + 1;
    }
    if (syscall(__NR_close_range, next, ~0U, 0) != 0) {
        for (unsigned fd = next; fd < 65536; fd++) close((int)fd);
    }
}

static void child_fail(int pipe_fd, int error) {
    ssize_t w;
    do w = write(pipe_fd, &error, sizeof error); while (w < 0 && errno == EINTR);
    _exit(127);
}

static int set_limit(int resource, long long soft, long long hard) {
    if (soft <= 0) return 0;
    struct rlimit r = { .rlim_cur = (rlim_t)soft, .rlim_max = (rlim_t)hard };
    return setrlimit(resource, &r);
}

// Between fork and exec: only async-signal-safe calls (plain system calls).
static void child(const struct spool_spawn *s, int report, int landlock) {
    sigset_t none;
    sigemptyset(&none);
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_DFL;
        sigaction(sig, &sa, NULL);
    }
    sigprocmask(SIG_SETMASK, &none, NULL);
    // The job's cgroup first, before anything of the child's is charged elsewhere: every
    // process it starts (bubblewrap's payload, a plugin's programs) is born inside it.
    if (s->cgroup_procs_fd >= 0) {
        ssize_t w;
        do w = write(s->cgroup_procs_fd, "0", 1); while (w < 0 && errno == EINTR);
        if (w != 1) child_fail(report, w < 0 ? errno : EIO);
    }
    if (setpgid(0, 0) != 0) child_fail(report, errno);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) child_fail(report, errno);

    // The report pipe and the ruleset move above the range the dup2s below write into.
    if (report < 64) {
        int high = fcntl(report, F_DUPFD_CLOEXEC, 64);
        if (high < 0) _exit(127);
        report = high;
    }
    if (landlock >= 0 && landlock < 64) {
        int high = fcntl(landlock, F_DUPFD_CLOEXEC, 64);
        if (high < 0) child_fail(report, errno);
        landlock = high;
    }
    int moved[MAX_FDS];
    for (int i = 0; i < s->nfds; i++) {
        moved[i] = fcntl(s->fds[i], F_DUPFD_CLOEXEC, 64);
        if (moved[i] < 0) child_fail(report, errno);
    }
    for (int i = 0; i < s->nfds; i++) {
        if (dup2(moved[i], i) < 0) child_fail(report, errno);
    }
    // Everything else is closed now, not at exec: the exec itself needs a free descriptor
    // below the RLIMIT_NOFILE set next, and a busy parent's inherited ones could fill that
    // range (seen: EMFILE from execve with 455 inherited and a limit of 256). Only the
    // report pipe and the Landlock ruleset stay, both close-on-exec.
    close_all_but(s->nfds, report, landlock);

    if (s->ncpus > 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        for (int i = 0; i < s->ncpus; i++) {
            if (s->cpus[i] >= 0 && s->cpus[i] < CPU_SETSIZE) CPU_SET(s->cpus[i], &set);
        }
        if (sched_setaffinity(0, sizeof set, &set) != 0) child_fail(report, errno);
    }

    const struct spool_limits *l = &s->limits;
    if (set_limit(RLIMIT_CPU, l->cpu_seconds, l->cpu_seconds + 1) != 0 ||
        set_limit(RLIMIT_AS, l->address_space, l->address_space) != 0 ||
        set_limit(RLIMIT_FSIZE, l->file_size, l->file_size) != 0 ||
        set_limit(RLIMIT_NOFILE, l->open_files, l->open_files) != 0 ||
        set_limit(RLIMIT_NPROC, l->processes, l->processes) != 0) child_fail(report, errno);
    if (s->drop_capabilities) {
        // A root child would get every capability back at exec; with an empty bounding set
        // it gets none (and no ambient ones either).
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
        for (int cap = 0; cap <= 63; cap++) {
            if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL && errno != EPERM) child_fail(report, errno);
        }
    }
    // No set-uid gains from here on (required by Landlock and seccomp without privileges).
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) child_fail(report, errno);
    if (landlock >= 0 && syscall(__NR_landlock_restrict_self, landlock, 0) != 0) child_fail(report, errno);
    if (s->install_seccomp) {
        int r = install_filter(s->allow_processes);
        if (r < 0) child_fail(report, -r);
    }
    execve(s->path, s->argv, s->envp);
    child_fail(report, errno);
}

int spool_spawn_confined(const struct spool_spawn *s, pid_t *pid_out) {
    if (s->nfds < 0 || s->nfds > MAX_FDS) return -EINVAL;
    int count;
    (void)spool_sandbox_filter(&count);  // built before fork: the child only reads it
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) return -errno;
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(report[0]); close(report[1]);
        return -e;
    }
    if (pid == 0) {
        close(report[0]);
        child(s, report[1], s->landlock_fd);
    }
    close(report[1]);
    int error = 0;
    ssize_t r;
    do r = read(report[0], &error, sizeof error); while (r < 0 && errno == EINTR);
    close(report[0]);
    if (r == (ssize_t)sizeof error) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        return -error;
    }
    *pid_out = pid;
    return 0;
}
