"""Helpers for the tailpost-edge integration tests.

Edge      tailpost-edge with a private config in a temp dir: start, reload
          (SIGHUP), stop, its log lines parsed as key=value dicts, /metrics.
Upstream  a PROXY-protocol-aware TCP server in Python, like the mailbox or
          Postfix: it reads the header FIRST (v2, v1 or none), records it,
          then speaks first (a banner) and runs a small behaviour (echo,
          hold the socket for the test, sink).  Health-check connections
          (v2 LOCAL / v1 UNKNOWN) are counted apart.

Everything binds loopback addresses on free ports; every thread and
process is bounded in time and stopped by the test's teardown.
"""
import os
import pathlib
import queue
import re
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.request

import json

import pytest

import harness

PP2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
TIMEOUT = 10.0


def hostport(host, port):
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def free_port(host="127.0.0.1"):
    return harness.free_port(family(host))


# ---------------------------------------------------------------------------
# PROXY header reading (server side)


class Header:
    def __init__(self, version, local, src=None, dst=None, tlvs=None):
        self.version = version
        self.local = local
        self.src = src  # (ip, port)
        self.dst = dst
        self.tlvs = tlvs or {}

    def __repr__(self):
        return f"<PP v{self.version} local={self.local} src={self.src} dst={self.dst} tlvs={self.tlvs}>"


def _recv_exact(s, n):
    out = b""
    while len(out) < n:
        d = s.recv(n - len(out))
        if not d:
            raise EOFError(f"EOF after {len(out)} of {n} header bytes")
        out += d
    return out


def read_header(s, expect):
    """Read a PROXY header of kind expect ("v2", "v1") from socket s."""
    if expect == "v2":
        head = _recv_exact(s, 16)
        if head[:12] != PP2_SIG:
            raise ValueError(f"not a v2 header: {head!r}")
        ver_cmd, fam, length = head[12], head[13], struct.unpack("!H", head[14:16])[0]
        body = _recv_exact(s, length)
        if ver_cmd >> 4 != 2:
            raise ValueError("bad version")
        if ver_cmd & 0xF == 0:
            return Header(2, True)
        tlv_off = 0
        if fam == 0x11:
            src = (socket.inet_ntop(socket.AF_INET, body[0:4]), struct.unpack("!H", body[8:10])[0])
            dst = (socket.inet_ntop(socket.AF_INET, body[4:8]), struct.unpack("!H", body[10:12])[0])
            tlv_off = 12
        elif fam == 0x21:
            src = (socket.inet_ntop(socket.AF_INET6, body[0:16]), struct.unpack("!H", body[32:34])[0])
            dst = (socket.inet_ntop(socket.AF_INET6, body[16:32]), struct.unpack("!H", body[34:36])[0])
            tlv_off = 36
        else:
            raise ValueError(f"unexpected family byte {fam:#x}")
        tlvs = {}
        rest = body[tlv_off:]
        while rest:
            t, ln = rest[0], struct.unpack("!H", rest[1:3])[0]
            tlvs[t] = rest[3:3 + ln]
            rest = rest[3 + ln:]
        return Header(2, False, src, dst, tlvs)
    if expect == "v1":
        line = b""
        while not line.endswith(b"\r\n"):
            c = s.recv(1)
            if not c:
                raise EOFError("EOF in v1 header")
            line += c
            if len(line) > 107:
                raise ValueError("v1 line too long")
        parts = line.decode().split()
        if parts[1] == "UNKNOWN":
            return Header(1, True)
        return Header(1, False, (parts[2], int(parts[4])), (parts[3], int(parts[5])))
    return Header(0, False)


class UpConn:
    """One accepted, non-health-check connection, with its header."""

    def __init__(self, sock, header, peer):
        self.sock = sock
        self.header = header
        self.peer = peer


class Upstream:
    """A threaded upstream server.

    mode "echo": send banner, echo until EOF, close.
         "hold": send banner, queue the connection for the test (UpConn).
         "sink": send banner, read to EOF, reply "got N sha=..." and close.
    """

    def __init__(self, host="127.0.0.1", port=None, expect="v2", banner=b"220 upstream ready\r\n",
                 mode="echo", name="up"):
        self.host, self.expect, self.banner, self.mode, self.name = host, expect, banner, mode, name
        self.headers = []
        self.local_checks = 0
        self.errors = []
        self.held = queue.Queue()
        self.lock = threading.Lock()
        self.stopping = False
        self.sock = socket.socket(family(host), socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port or 0))
        self.port = self.sock.getsockname()[1]
        self.sock.listen(512)
        self.sock.settimeout(0.2)
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    @property
    def addr(self):
        return hostport(self.host, self.port)

    def _accept_loop(self):
        while not self.stopping:
            try:
                c, peer = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(c, peer), daemon=True).start()

    def _handle(self, c, peer):
        try:
            c.settimeout(TIMEOUT)
            h = read_header(c, self.expect)
            if h.local:
                with self.lock:
                    self.local_checks += 1
                # a probe half-closes; answer like a server would, then close
                try:
                    c.sendall(self.banner)
                    while c.recv(4096):
                        pass
                except OSError:
                    pass
                c.close()
                return
            with self.lock:
                self.headers.append(h)
            if self.banner:
                c.sendall(self.banner)
            if self.mode == "hold":
                self.held.put(UpConn(c, h, peer))
                return
            if self.mode == "echo":
                while True:
                    d = c.recv(65536)
                    if not d:
                        break
                    c.sendall(d)
                c.close()
                return
            if self.mode == "sink":
                import hashlib
                sha, n = hashlib.sha256(), 0
                while True:
                    d = c.recv(262144)
                    if not d:
                        break
                    sha.update(d)
                    n += len(d)
                c.sendall(f"got {n} sha={sha.hexdigest()}\r\n".encode())
                c.close()
                return
        except Exception as e:  # recorded; tests assert on errors where it matters
            with self.lock:
                self.errors.append(repr(e))
            try:
                c.close()
            except OSError:
                pass

    def take(self, timeout=TIMEOUT):
        """The next held connection."""
        return self.held.get(timeout=timeout)

    def count(self):
        with self.lock:
            return len(self.headers)

    def close(self):
        self.stopping = True
        try:
            self.sock.close()
        except OSError:
            pass
        self.thread.join(timeout=2)
        while not self.held.empty():
            try:
                self.held.get_nowait().sock.close()
            except Exception:
                pass


# ---------------------------------------------------------------------------
# the edge


def parse_line(line):
    """key=value pairs of one log line (values may be "quoted")."""
    out = {}
    for m in re.finditer(r'(\w[\w.]*)=("(?:[^"\\]|\\.)*"|\S*)', line):
        v = m.group(2)
        if v.startswith('"'):
            v = v[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        out[m.group(1)] = v
    return out


class Edge:
    """tailpost-edge on a private config file; stopped by PID."""

    def __init__(self, tmp, yaml_text, name="edge", expect_start=True, env_extra=None,
                 hosts_file=None, wrap=None):
        self.tmp = pathlib.Path(tmp)
        self.cfg = self.tmp / f"{name}.yaml"
        self.cfg.write_text(yaml_text)
        self.log = self.tmp / f"{name}.log"
        self.log.write_text("")
        self.name = name
        exe = harness.bin_path("tailpost-edge")
        if not exe.exists():
            raise RuntimeError(f"{exe} not built: make BUILD={harness.BUILD.relative_to(harness.ROOT)} MODE=asan")
        extra = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
                 "UBSAN_OPTIONS": "print_stacktrace=1"}
        extra.update(env_extra or {})
        env = harness._clean_env(extra)
        argv = [exe, "-c", self.cfg]
        if hosts_file is not None:
            # a private /etc/hosts, in a mount namespace of the edge's own
            # (the machine's file is untouched); sh execs the edge, so the
            # PID stays the edge's
            argv = ["unshare", "-m", "sh", "-c",
                    f'mount --bind "{hosts_file}" /etc/hosts && exec "$0" "$@"'] + argv
        if wrap:
            argv = list(wrap) + argv
        self.proc = harness.spawn(argv, self.log, cwd=self.tmp, env=env)
        harness.watch_log(name, self.log)
        if expect_start:
            try:
                harness.wait_for(lambda: self.proc.poll() is not None or self.find("started"),
                                 timeout=TIMEOUT, what="edge to start")
                assert self.proc.poll() is None, f"edge exited:\n{self.text()}"
            except BaseException:
                self.stop()
                raise

    def text(self):
        return self.log.read_text(errors="replace")

    def lines(self, msg=None):
        out = []
        for line in self.text().splitlines():
            d = parse_line(line)
            if msg is None or d.get("msg") == msg:
                out.append(d)
        return out

    def find(self, msg, **kw):
        for d in self.lines(msg):
            if all(d.get(k) == str(v) for k, v in kw.items()):
                return d
        return None

    def wait_line(self, msg, timeout=TIMEOUT, **kw):
        return harness.wait_for(lambda: self.find(msg, **kw), timeout=timeout,
                                what=f"edge log msg={msg} {kw}")

    def reload(self, yaml_text=None, expect="reload.done", timeout=TIMEOUT):
        """Rewrite the config (if given), SIGHUP, wait for the outcome line."""
        before = len(self.lines(expect))
        if yaml_text is not None:
            self.cfg.write_text(yaml_text)
        self.proc.send_signal(signal.SIGHUP)
        harness.wait_for(lambda: len(self.lines(expect)) > before, timeout=timeout,
                         what=f"edge {expect}")

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        harness.stop(self.proc, timeout=timeout, sig=sig)
        harness.unwatch_log(self.name)
        return self.proc.returncode

    def asan_clean(self):
        t = self.text()
        return "ERROR: AddressSanitizer" not in t and "runtime error:" not in t and \
            "LeakSanitizer" not in t


def metrics(admin):
    """The /metrics page as {'name{labels}': float}."""
    with urllib.request.urlopen(f"http://{admin}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        k, v = line.rsplit(" ", 1)
        out[k] = float(v)
    return out


def connect(host, port, src=None, timeout=TIMEOUT):
    """A client socket to host:port, bound to src (an IP) if given."""
    s = socket.socket(family(host), socket.SOCK_STREAM)
    s.settimeout(timeout)
    if src is not None:
        s.bind((src, 0))
    s.connect((host, port))
    return s


def recv_until(s, marker, limit=1 << 20):
    data = b""
    while marker not in data:
        d = s.recv(65536)
        if not d:
            break
        data += d
        if len(data) > limit:
            break
    return data


def recv_all(s):
    data = b""
    while True:
        d = s.recv(65536)
        if not d:
            return data
        data += d


def refused_quickly(host, port, src=None):
    """True if the connection is closed by the peer without a byte."""
    try:
        s = connect(host, port, src=src, timeout=5)
    except ConnectionRefusedError:
        return True
    try:
        return s.recv(100) == b""
    except ConnectionResetError:
        return True
    finally:
        s.close()


# --- shared by the edge test modules: config text and fixtures ----------

BANNER = b"220 upstream ready\r\n"


def edge_yaml(listeners, **glob):
    cfg = {"workers": 2, "log_level": "debug"}
    cfg.update(glob)
    cfg["listeners"] = listeners
    return json.dumps(cfg, indent=1)


@pytest.fixture
def ups():
    made = []

    def make(**kw):
        u = Upstream(**kw)
        made.append(u)
        return u
    yield make
    for u in made:
        u.close()


@pytest.fixture
def edges():
    made = []

    def make(tmp, text, **kw):
        e = Edge(tmp, text, **kw)
        made.append(e)
        return e
    yield make
    for e in made:
        e.stop()
        assert e.asan_clean(), f"sanitizer report in the edge log:\n{e.text()[-4000:]}"
