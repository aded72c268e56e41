"""The two-host topology (deploy/netns/topology.sh) from the tests' side.

Topology wraps one run of the script: up() builds it with a fresh run id
and parses the variables it prints, spawn() starts a program inside one
host's namespace (through `topology.sh exec`, which execs `ip netns exec`,
which execs the program, so the PID is the program's and harness.stop()
stops it by PID), run() runs a short command there with a time limit,
listening() reads a namespace's listening TCP sockets with ss, exchange()
and probe() open TCP connections from inside a namespace, and down()
tears the run down.  leftovers() lists anything of the run that survived
down(): namespaces (also ones already unlinked from /run/netns but still
held alive by a process or an open descriptor, found by inode), links
named after the run in the root namespace, wireguard-go control sockets,
state, and processes.

listeners() is listening() with the owning program and PID (ss -p).

For the end-to-end tests of the real mailbox (test_netns_mail.py):
NetnsPostgres and NetnsRedis are harness.PostgresServer and RedisServer
running on the loopback of one host's namespace (readiness proven through
/proc/PID/net/tcp, the started process's own namespace), and NetnsMailbox
is mailbox_util.Mailbox whose daemon and CLI run in a host's namespace.

Everything is bounded in time; nothing touches a namespace the run did
not create.
"""
import json
import os
import pathlib
import re
import secrets
import signal
import socket
import subprocess
import sys
import time

import harness
import mailbox_util

SCRIPT = harness.ROOT / "deploy" / "netns" / "topology.sh"
STATE_BASE = pathlib.Path(os.environ.get("TAILPOST_NETNS_STATE", "/run/tailpost-netns"))
WG_SOCK_DIR = pathlib.Path("/var/run/wireguard")
HOSTS = ("client", "edge", "mailbox", "relay")
CMD_TIMEOUT = 30.0


def netns_usable():
    """None if this process can create a network namespace, else the reason."""
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_SYS_ADMIN, CAP_NET_ADMIN)"
    name = f"tpprobe{secrets.token_hex(3)}"
    try:
        r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True,
                           timeout=10)
    except FileNotFoundError:
        return "ip (iproute2) is not installed"
    if r.returncode != 0:
        return f"cannot create a network namespace: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
    return None


# Runs inside a namespace: connect to each target in turn, read until the
# server closes, print [{target, local, reply | error}] as JSON.
_EXCHANGE = r"""
import json, socket, sys
out = []
for host, port in json.loads(sys.argv[1]):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    r = {"target": [host, port]}
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(float(sys.argv[2]))
    try:
        s.connect((host, port))
        r["local"] = list(s.getsockname()[:2])
        data = b""
        while len(data) < 65536:
            b = s.recv(4096)
            if not b:
                break
            data += b
        r["reply"] = data.decode("latin-1")
    except OSError as e:
        r["error"] = repr(e)
    finally:
        s.close()
    out.append(r)
print(json.dumps(out))
"""

# Runs inside a namespace: try every target at once, each with a timeout;
# print {"host:port": "connected" | "refused" | "timeout" | "unreachable" | ...}.
_PROBE = r"""
import errno, json, socket, sys, threading
res = {}
def one(host, port, t):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(t)
    key = f"{host}:{port}"
    try:
        s.connect((host, port))
        res[key] = "connected"
    except socket.timeout:
        res[key] = "timeout"
    except ConnectionRefusedError:
        res[key] = "refused"
    except OSError as e:
        unreach = e.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH)
        res[key] = "unreachable" if unreach else f"error:{e.errno}"
    finally:
        s.close()
ts = [threading.Thread(target=one, args=(h, p, float(sys.argv[2])))
      for h, p in json.loads(sys.argv[1])]
for t in ts: t.start()
for t in ts: t.join()
print(json.dumps(res))
"""


def split_hostport(s):
    """'1.2.3.4:25' or '[::1]:25' -> ('1.2.3.4', 25) / ('::1', 25)."""
    host, _, port = s.rpartition(":")
    return host.strip("[]"), int(port)


class Topology:
    def __init__(self, run_id=None):
        self.id = run_id or f"tp{secrets.token_hex(3)}"
        self.env = {}
        self.procs = []
        self.ns_inodes = {}
        self.is_up = False

    # -- life cycle
    def _script(self, *args, timeout=CMD_TIMEOUT):
        return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def up(self):
        r = self._script("up", "--id", self.id, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"topology.sh up failed ({r.returncode}):\n{r.stderr}{r.stdout}")
        self.is_up = True
        for line in r.stdout.splitlines():
            k, sep, v = line.partition("=")
            if sep:
                self.env[k] = v
        for h in HOSTS + ("sw",):
            try:
                self.ns_inodes[h] = os.stat(f"/run/netns/{self.ns(h)}").st_ino
            except OSError:
                pass
        return self

    def down(self):
        for p in self.procs:
            harness.stop(p, timeout=5)
        r = self._script("down", "--id", self.id, timeout=60)
        self.is_up = False
        if r.returncode != 0:
            raise RuntimeError(f"topology.sh down failed ({r.returncode}):\n{r.stderr}")
        return r

    def ns(self, host):
        return f"{self.id}-{host}"

    # -- processes and commands inside a host
    def argv(self, host, argv):
        return [str(SCRIPT), "exec", "--id", self.id, host] + [str(a) for a in argv]

    def spawn(self, host, argv, log_path, env=None, cwd=None):
        p = harness.spawn(self.argv(host, argv), log_path, env=env, cwd=cwd)
        self.procs.append(p)
        return p

    def run(self, host, argv, timeout=CMD_TIMEOUT, check=True, env=None, input=None):
        """argv in host's namespace; input (text) on stdin, else /dev/null."""
        kw = {"input": input} if input is not None else {"stdin": subprocess.DEVNULL}
        r = subprocess.run(self.argv(host, argv), capture_output=True, text=True,
                           timeout=timeout, env=env, **kw)
        if check and r.returncode != 0:
            raise RuntimeError(f"{argv} in {host} failed ({r.returncode}): {r.stderr}"
                               f"{r.stdout[-2000:]}")
        return r

    def listening(self, host):
        """{(ip, port)} of the TCP sockets listening in host's namespace."""
        out = self.run(host, ["ss", "-Hltn"]).stdout
        socks = set()
        for line in out.splitlines():
            f = line.split()
            if len(f) >= 4:
                socks.add(split_hostport(f[3]))
        return socks

    def listeners(self, host):
        """[(ip, port, program, pid)] of the listening TCP sockets in host's
        namespace, with their owning process (ss -p)."""
        out = self.run(host, ["ss", "-Hltnp"]).stdout
        socks = []
        for line in out.splitlines():
            f = line.split()
            if len(f) < 4:
                continue
            ip, port = split_hostport(f[3])
            for prog, pid in re.findall(r'\("([^"]*)",pid=(\d+)', line) or [("?", "0")]:
                socks.append((ip, port, prog, int(pid)))
        return socks

    def exchange(self, host, targets, timeout=5.0):
        """Connect from host to each (ip, port) in turn and read until EOF."""
        r = self.run(host, [sys.executable, "-c", _EXCHANGE, json.dumps(targets), str(timeout)],
                     timeout=timeout * (len(targets) + 1) + 10)
        return json.loads(r.stdout)

    def probe(self, host, targets, timeout=2.0):
        """Try to connect from host to every (ip, port) in parallel."""
        r = self.run(host, [sys.executable, "-c", _PROBE, json.dumps(targets), str(timeout)],
                     timeout=timeout + 15)
        return json.loads(r.stdout)

    # -- what a complete teardown leaves: nothing
    def leftovers(self):
        left = []
        r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
        left += [f"namespace {line.split()[0]}" for line in r.stdout.splitlines()
                 if line.startswith(self.id + "-")]
        r = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                           timeout=10)
        left += [f"root-namespace link {line.split(':')[1].strip()}"
                 for line in r.stdout.splitlines() if self.id in line]
        if WG_SOCK_DIR.is_dir():
            left += [f"socket {p}" for p in WG_SOCK_DIR.iterdir() if p.name.startswith(self.id)]
        if (STATE_BASE / self.id).exists():
            left.append(f"state {STATE_BASE / self.id}")
        for p in self.procs:
            if p.poll() is None:
                left.append(f"process {p.pid} {p.args}")
        inodes = {f"net:[{i}]" for i in self.ns_inodes.values()}
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                cmd = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                if self.id.encode() in cmd:
                    left.append(f"process {pid} {cmd.decode(errors='replace').strip()}")
                    continue
                if os.readlink(f"/proc/{pid}/ns/net") in inodes:
                    left.append(f"process {pid} in a namespace of the run: {cmd[:80]!r}")
                    continue
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                        left.append(f"process {pid} holds a namespace of the run open (fd {fd})")
                        break
            except OSError:
                continue
        return left


# ---------------------------------------------------------------------------
# Servers inside one host's namespace (the end-to-end tests of the real
# mailbox: Postgres, Redis and tailpost-mailbox in the mailbox namespace).
#
# The namespace is the run's own and starts empty, so the servers use fixed
# ports there (no collision is possible).  Readiness is proven as in
# harness.Service (the protocol answers AND the listening socket is the
# started process's), but the listening table is read from
# /proc/PID/net/tcp, which is the table of that process's namespace, not
# ours.  Each is spawned through `topology.sh exec` (exec all the way down:
# the PID is the server's) and stopped by PID; `down` would also stop it.


def _listener_inodes_of(pid, port, host="127.0.0.1"):
    six = ":" in host
    raw = socket.inet_pton(socket.AF_INET6 if six else socket.AF_INET, host)
    words = "".join("%08X" % int.from_bytes(raw[i:i + 4], "little") for i in range(0, len(raw), 4))
    want = f"{words}:{port:04X}"
    inodes = set()
    try:
        with open(f"/proc/{pid}/net/tcp{'6' if six else ''}") as f:
            next(f)
            for line in f:
                parts = line.split()
                if parts[1] == want and parts[3] == "0A":  # TCP_LISTEN
                    inodes.add(parts[9])
    except OSError:
        pass
    return inodes


def owns_listener_in_ns(pid, port, host="127.0.0.1"):
    """Whether pid holds the socket listening on host:port in its own
    network namespace."""
    inodes = _listener_inodes_of(pid, port, host)
    if not inodes:
        return False
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            return True
    return False


class _InNamespace:
    """Mixin for a harness.Service: the server runs in topo's HOST namespace."""

    def __init__(self, topo, host, *args, **kw):
        self.topo, self.ns_host = topo, host
        super().__init__(*args, **kw)

    def _ns_argv(self, argv):
        return self.topo.argv(self.ns_host, argv)

    def _wait_ready(self, port, timeout, mark):
        deadline = time.monotonic() + timeout
        last = None
        while True:
            if self.proc.poll() is not None:
                raise self._fail(f"exited with status {self.proc.returncode} before becoming "
                                 f"ready in namespace {self.topo.ns(self.ns_host)}")
            try:
                if self._ready(port) and owns_listener_in_ns(self.proc.pid, port, self.host):
                    return
            except Exception as e:  # not up yet; keep the reason for the timeout
                last = e
            if time.monotonic() >= deadline:
                raise self._fail(f"not ready on {self.host}:{port} in namespace "
                                 f"{self.topo.ns(self.ns_host)} after {timeout}s (last: {last})")
            time.sleep(0.1)


class NetnsPostgres(_InNamespace, harness.PostgresServer):
    """harness.PostgresServer on 127.0.0.1 inside a host's namespace.

    initdb runs as the unprivileged user as usual; the server is started as
    root through `ip netns exec` (which needs root) and drops to that user
    with setpriv, which also sets the parent-death signal again (a uid
    change clears it).  psql and pg_isready use the unix socket in the temp
    dir, which any namespace reaches."""

    def _prepare(self):
        super()._prepare()
        # From here on spawn() must not switch users itself: see _argv.
        self._server_user, self.run_as = self.run_as, None

    def _argv(self, port):
        argv = super()._argv(port)
        u = self._server_user
        if u is not None:
            argv = [harness._SETPRIV, f"--reuid={u.pw_uid}", f"--regid={u.pw_gid}",
                    "--clear-groups", "--pdeathsig", signal.Signals(self.deathsig).name[3:],
                    "--"] + argv
        return self._ns_argv(argv)


class NetnsRedis(_InNamespace, harness.RedisServer):
    """harness.RedisServer on 127.0.0.1 inside a host's namespace."""

    def _argv(self, port):
        return self._ns_argv(super()._argv(port))

    def _ready(self, port):
        return self.command("PING", port=port, timeout=2.0) == "PONG"

    def command(self, *args, port=None, timeout=5.0):
        """One command through redis-cli inside the namespace (raw reply text)."""
        r = subprocess.run(["ip", "netns", "exec", self.topo.ns(self.ns_host), "redis-cli",
                            "-h", self.host, "-p", str(port or self.port)] + [str(a) for a in args],
                           capture_output=True, text=True, timeout=timeout + 5,
                           stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise harness.RedisError(r.stderr.strip() or r.stdout.strip())
        return r.stdout.strip()


class NetnsMailbox(mailbox_util.Mailbox):
    """mailbox_util.Mailbox whose daemon and CLI run in a host's namespace."""

    def __init__(self, topo, host, tmp, db, **kw):
        self.topo, self.ns_host = topo, host
        super().__init__(tmp, db, **kw)

    def cli(self, *args, input=None, env=None, timeout=60):
        e = self.env()
        if env:
            e.update(env)
        argv = self.topo.argv(self.ns_host, [self.exe, *args, "-c", self.path])
        kw = {"input": input} if input is not None else {"stdin": subprocess.DEVNULL}
        return subprocess.run(argv, capture_output=True, text=True, env=e, timeout=timeout, **kw)

    def start(self, wait=True, env=None):
        e = self.env()
        if env:
            e.update(env)
        self._mark = self.log.stat().st_size
        self.proc = harness.spawn(self.topo.argv(self.ns_host, [self.exe, "serve", "-c",
                                                                self.path]),
                                  self.log, env=e, cwd=self.dir)
        harness.watch_log(f"mailbox:{self.name}", self.log)
        if wait:
            self.wait_log(lambda d: d.get("msg") == "ready", what="ready")
        return self
