# spoolproc.py: starts and stops the real `spool serve` for the external tests (api_flow.py,
# crash_kill.py, bad_input.py, schemathesis.sh): a free loopback port, a data directory, an
# admin key in SPOOL_ADMIN_KEY, readiness by polling /api/v1/health, the log kept in a file.
# Also the small checks every script shares (the standard error envelope).
import json
import shutil
import os
import signal
import socket
import subprocess
import sys
import time

import requests

from freeport import free_port  # noqa: F401  (ports below the ephemeral range; callers import it from here)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
DEFAULT_BINARY = os.path.join(ROOT, ".build", "debug", "spool")


def stop_gracefully(proc, what, timeout=20.0):
    """SIGTERM to a child started with Popen (if it still runs) and its exit status; one that
    outlives `timeout` is killed and raises."""
    if not proc:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise RuntimeError("%s did not stop within %.0f s of SIGTERM" % (what, timeout))
    return proc.returncode


class SpoolServer:
    """One `spool serve` process on 127.0.0.1; restartable on the same port and data directory."""

    def __init__(self, data_dir, admin_key="spool-external-test-admin-key-0123456789abcdef", binary=None, port=None, log_path=None, env=None):
        self.binary = binary or os.environ.get("SPOOL", DEFAULT_BINARY)
        self.data_dir = data_dir
        self.admin_key = admin_key
        self.port = port or free_port()
        self.log_path = log_path or os.path.join(os.path.dirname(data_dir.rstrip("/")), "spool-serve.log")
        self.extra_env = env or {}
        self.proc = None
        self.base = f"http://127.0.0.1:{self.port}"

    def url(self, path):
        return self.base + path

    def start(self, timeout=30.0):
        if not os.access(self.binary, os.X_OK):
            sys.exit(f"no spool binary at {self.binary} (build it: swift build --product spool)")
        env = dict(os.environ)
        env["SPOOL_ADMIN_KEY"] = self.admin_key
        env.update(self.extra_env)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.binary, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.data_dir],
                                     stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"spool serve exited with {self.proc.returncode} at start; log:\n{self.log_tail()}")
            try:
                if requests.get(self.url("/api/v1/health"), timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"spool serve did not answer /api/v1/health within {timeout} s; log:\n{self.log_tail()}")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """SIGKILL: no chance to flush or clean up."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc:
            self.proc.wait()

    def stop(self, timeout=20.0):
        """SIGTERM and a graceful stop; returns the exit status."""
        return stop_gracefully(self.proc, "spool serve", timeout)

    def log_tail(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode("utf-8", "replace")
        except OSError:
            return "(no log)"

    def session(self, key=None):
        s = requests.Session()
        s.headers["Authorization"] = "Bearer " + (key or self.admin_key)
        return s

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if self.alive():
            self.stop()


def error_envelope_problem(status, headers, body):
    """None when `body` is the standard error {"error":{"code","message","details"}}, else what is wrong."""
    if not body:
        return None  # HEAD answers and 304s carry no body.
    ctype = headers.get("Content-Type", "") if hasattr(headers, "get") else ""
    if not ctype.startswith("application/json"):
        return f"status {status}: Content-Type {ctype!r}, not application/json"
    try:
        doc = json.loads(body)
    except ValueError as e:
        return f"status {status}: body is not JSON ({e}): {body[:200]!r}"
    if not isinstance(doc, dict) or set(doc) != {"error"}:
        return f"status {status}: top level is not {{\"error\":...}}: {body[:200]!r}"
    err = doc["error"]
    if not isinstance(err, dict) or set(err) != {"code", "message", "details"}:
        return f"status {status}: error members are not code/message/details: {body[:200]!r}"
    if not isinstance(err["code"], str) or not isinstance(err["message"], str) or not isinstance(err["details"], dict):
        return f"status {status}: wrong member types: {body[:200]!r}"
    return None


class RedisServer:
    """A real redis-server on a free loopback port in its own directory (no persistence
    unless asked), for the scripts that run the dispatcher's queue on Redis Streams."""

    def __init__(self, directory, append_only=False):
        self.directory = directory
        self.append_only = append_only
        self.port = free_port()
        self.proc = None
        os.makedirs(directory, exist_ok=True)

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def start(self, timeout=10.0):
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen([exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.directory,
                                      "--save", "", "--appendonly", "yes" if self.append_only else "no",
                                      "--logfile", os.path.join(self.directory, "redis.log")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.command("PING") == b"+PONG":
                    return self
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer PING")

    def command(self, *args):
        """Sends one command; returns the first line of the reply (enough for PING, FLUSHALL, DBSIZE)."""
        payload = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(payload.encode())
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
        return reply.split(b"\r\n")[0]

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        self.proc = None

    def restart(self):
        self.stop()
        return self.start()


class PostgresServer:
    """A real PostgreSQL server (Debian's packages) on a free loopback port: initdb into its
    own directory (user `spool`, trust on loopback, fsync off: tests, not durability),
    pg_ctl start; as root it runs as the postgres user. `replica()` clones it with
    pg_basebackup -R and starts a hot standby that follows it on a port of its own."""

    def __init__(self, directory, primary=None):
        self.directory = directory
        self.port = free_port()
        self.primary = primary
        versions = sorted((int(v) for v in os.listdir("/usr/lib/postgresql") if v.isdigit()), reverse=True) \
            if os.path.isdir("/usr/lib/postgresql") else []
        self.bin = next((f"/usr/lib/postgresql/{v}/bin" for v in versions if os.access(f"/usr/lib/postgresql/{v}/bin/pg_ctl", os.X_OK)), None)
        if not self.bin:
            raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
        self.as_postgres = os.getuid() == 0
        self.data = os.path.join(directory, "data")

    def _run(self, argv, env=None):
        full = (["/usr/sbin/runuser", "-u", "postgres", "--"] + argv) if self.as_postgres else argv
        r = subprocess.run(full, capture_output=True, text=True, env=env)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}): {r.stdout}{r.stderr}")
        return r

    def _own(self):
        os.makedirs(self.directory, exist_ok=True)
        if self.as_postgres:
            import pwd
            pw = pwd.getpwnam("postgres")
            os.chown(self.directory, pw.pw_uid, pw.pw_gid)
        os.chmod(self.directory, 0o700)

    def start(self):
        if not os.path.exists(os.path.join(self.data, "PG_VERSION")):
            self._own()
            if self.primary is None:
                self._run([self.bin + "/initdb", "-D", self.data, "-U", "spool", "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions"])
            else:
                self._run([self.bin + "/pg_basebackup", "-h", "127.0.0.1", "-p", str(self.primary.port), "-U", "spool",
                           "-D", self.data, "-X", "stream", "-R", "--no-sync", "-c", "fast"])
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.directory} "
                   "-c fsync=off -c max_connections=300")
        self._run([self.bin + "/pg_ctl", "-D", self.data, "-l", os.path.join(self.directory, "server.log"), "-w", "-t", "60",
                   "-o", options, "start"])
        return self

    def replica(self):
        return PostgresServer(self.directory + "-replica", primary=self).start()

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def url(self, database):
        return f"postgres://spool@127.0.0.1:{self.port}/{database}"

    def create_database(self, name):
        subprocess.run([self.bin + "/psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "spool", "-d", "postgres",
                        "-v", "ON_ERROR_STOP=1", "-q", "-c", f"CREATE DATABASE {name}"], check=True, capture_output=True)
        return self.url(name)

    def stop(self):
        try:
            self._run([self.bin + "/pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop"])
        except RuntimeError:
            pass
        shutil.rmtree(self.directory, ignore_errors=True)


def start_s3(bucket):
    """moto's S3 server (PyPI) on a free loopback port with `bucket` made; returns (url, server)."""
    import logging
    from moto.server import ThreadedMotoServer
    import boto3
    logging.getLogger("werkzeug").setLevel(logging.ERROR)   # not a line per request
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="e2e",
                 aws_secret_access_key="e2e-secret").create_bucket(Bucket=bucket)
    return url, server
