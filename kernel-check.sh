#!/usr/bin/env bash
# kernel-check.sh: can Spool use io_uring on this machine, and if not, why and how to fix it.
#
# Prints the kernel version, kernel.io_uring_disabled, this process's seccomp mode, a real
# io_uring_setup probe, the opcodes Spool uses (with the kernel that introduced each), the
# setup flags in force, RLIMIT_MEMLOCK and the backend Spool would choose.
# Exit status: 0 io_uring fully usable; 77 usable but optional features missing;
#              1 unusable (Spool runs on its epoll fallback).
# The probe is `spool kernel-check` (built on demand); pass its flags through, e.g.
#   ./kernel-check.sh --start-loop          also start an event loop and show its backend
#   ./kernel-check.sh --simulate-seccomp    what Docker's default seccomp profile does
set -u
here=$(cd "$(dirname "$0")" && pwd)
bin="${SPOOL_BIN:-}"
if [ -z "$bin" ]; then
  for c in "$here/.build/release/spool" "$here/.build/debug/spool"; do
    if [ -x "$c" ]; then bin=$c; break; fi
  done
fi
if [ -z "$bin" ]; then
  if command -v swift >/dev/null 2>&1 && (cd "$here" && swift build --product spool >&2); then
    bin="$here/.build/debug/spool"
  else
    # No binary and no toolchain: report what the shell alone can see.
    echo "Spool kernel check (shell only: spool could not be built, so no io_uring_setup probe)"
    echo "  kernel:                   $(uname -r)"
    echo "  kernel.io_uring_disabled: $(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || echo 'not present')"
    echo "  seccomp mode:             $(awk '/^Seccomp:/{print $2}' /proc/self/status)"
    echo "  RLIMIT_MEMLOCK:           $(ulimit -l) KiB"
    echo "  install Swift and liburing-dev (make deps), then run this again"
    exit 1
  fi
fi
exec "$bin" kernel-check "$@"
