"""freeport: loopback ports for services a test or benchmark starts (standard library only).

A port from bind(("127.0.0.1", 0)) comes from the kernel's ephemeral range, so any outgoing
connection made before the service binds it can take it (make test once failed so, with
EADDRINUSE). These ports come from below that range, as ProcFS.ListenPorts picks them for
the Swift side: free when checked, each handed out once per process.

    python3 Tests/External/freeport.py [COUNT]   prints COUNT ports (default 1), space-separated
"""
import random
import socket
import sys

_handed_out = set()


def free_port():
    """A loopback port free now and below the kernel's ephemeral range."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 0
    for _ in range(500 if low > 11000 else 0):
        port = random.randint(10000, low - 1)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    # No range below the ephemeral one to pick from: the kernel's choice, as before.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    if not 1 <= count <= 64:
        sys.exit("usage: freeport.py [COUNT]  (COUNT 1..64)")
    print(" ".join(str(free_port()) for _ in range(count)))
