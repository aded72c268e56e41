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

Everything is bounded in time; nothing touches a namespace the run did
not create.  The end-to-end tests of the real mailbox reuse this module.
"""
import json
import os
import pathlib
import secrets
import subprocess
import sys

import harness

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

    def spawn(self, host, argv, log_path):
        p = harness.spawn(self.argv(host, argv), log_path)
        self.procs.append(p)
        return p

    def run(self, host, argv, timeout=CMD_TIMEOUT, check=True):
        r = subprocess.run(self.argv(host, argv), capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise RuntimeError(f"{argv} in {host} failed ({r.returncode}): {r.stderr}")
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
