// CProcessStart: the process's first act, before main and before any thread exists.
// A constructor (1) makes sure descriptors 0, 1 and 2 are open (on /dev/null if the
// parent closed them), so no file, socket or epoll descriptor Spool opens later can land
// on stdout and receive media or log lines; (2) catches SIGTERM, SIGINT and SIGHUP with a
// handler that only writes the signal's number into a pipe (a non-interactive shell
// starts background jobs with SIGINT ignored; the handler replaces that too); (3)
// ignores SIGPIPE, so a peer or reader that goes away is an EPIPE error, not a death.
// A signal caught before anyone reads the pipe waits there, so none is lost; the command
// either takes them with spool_signal_wait (one thread, in Lifecycle) or gives the
// process its original dispositions back (spool_process_restore), which re-raises what
// was caught meanwhile.
//
// Why not a blocked mask and sigwait: Swift's async main ends the main thread in
// libdispatch's dispatch_main, which waits in sigsuspend with an empty mask, so a blocked
// signal is delivered there with its default action after all (measured: exit 143).
#ifndef CPROCESSSTART_H
#define CPROCESSSTART_H

/// 1 once the constructor has run (always, in a binary that links this target).
int spool_process_started(void);
/// Gives back the dispositions of SIGTERM, SIGINT, SIGHUP and SIGPIPE the process was
/// started with. For commands that do not handle signals, and in a child before exec.
/// Signals caught since start are raised again here, with their original action.
void spool_process_restore(void);
/// Waits for one of SIGTERM, SIGINT, SIGHUP (caught since start) and returns its number.
/// Call it from one thread only. Never fails: EINTR is retried.
int spool_signal_wait(void);
/// Ends the process by `sig` with its default action (as if it had never been caught),
/// so the parent sees "killed by signal" where that is the honest answer.
void spool_signal_die(int sig) __attribute__((noreturn));
/// Pins thread `tid` (0: the caller) to the CPUs listed (count entries, each 0..1023).
/// Returns 0, or -1 with errno set. (sched_setaffinity needs _GNU_SOURCE, which Swift's
/// Glibc module does not define.)
int spool_set_affinity(int tid, const int *cpus, int count);
/// Which descriptors among 0..2 the constructor had to open on /dev/null (bit i = fd i).
int spool_process_reopened_std(void);

#endif
