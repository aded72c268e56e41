"""PROXY protocol interop with HAProxy (shared/pp.c through tests/tools/pp_peer).

Both directions, over IPv4 and IPv6 loopback:

  (a) HAProxy sends, we decode.  A Python client connects to HAProxy, whose
      servers use `send-proxy-v2` (with the crc32c and unique-id options)
      and `send-proxy` (v1) towards `pp_peer recv`; the decoded source must
      be the client's real address and port, the destination HAProxy's
      bind, the CRC32C verified and the UNIQUE_ID what HAProxy generated.
  (b) We encode, HAProxy decodes.  `pp_peer send` presents a chosen source
      to an `accept-proxy` bind; HAProxy's log must show that address (and
      the AUTHORITY/UNIQUE_ID TLVs we sent), HAProxy then relays it with
      send-proxy-v2 to `pp_peer recv`, and a corrupted CRC32C is refused.

HAProxy is the Debian package run in the foreground (-db) with a private
config in a temp dir, on free loopback ports, stopped by PID.  A missing
haproxy or pp_peer fails the test with a message; nothing is skipped.
"""
import os
import pathlib
import shutil
import socket
import subprocess

import pytest

import harness

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
TIMEOUT = 10.0


def _listening(pid, host, port):
    """Whether pid holds a socket listening on host:port (v4 or v6)."""
    if ":" not in host:
        return harness.owns_listener(pid, port, host)
    want = "%s:%04X" % ("".join("%08X" % int.from_bytes(socket.inet_pton(socket.AF_INET6, host)[i:i + 4], "little")
                                for i in range(0, 16, 4)), port)
    inodes = set()
    with open("/proc/net/tcp6") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[1] == want and parts[3] == "0A":
                inodes.add(parts[9])
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            return True
    return False


def _hostport(host, port):
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Peer:
    """`pp_peer recv` on 127.0.0.1; its lines parsed as key=value dicts."""

    def __init__(self, tmp):
        exe = harness.tool_path("pp_peer")
        if not exe.exists():
            pytest.fail(f"{exe} not built: run make BUILD={harness.BUILD.relative_to(harness.ROOT)} MODE=asan tools")
        self.port = harness.free_port()
        self.log = tmp / "pp_peer.log"
        self.proc = harness.spawn([exe, "recv", "--listen", f"127.0.0.1:{self.port}", "--chunk", "5"], self.log)
        harness.watch_log("pp_peer", self.log)
        try:
            harness.wait_for(lambda: self.proc.poll() is not None or "listening" in self.log.read_text(),
                             timeout=TIMEOUT, what="pp_peer to listen")
            assert self.proc.poll() is None, f"pp_peer exited:\n{harness.log_tail(self.log)}"
        except BaseException:
            self.close()
            raise

    def lines(self):
        out = []
        for line in self.log.read_text().splitlines():
            if line.startswith(("src=", "error=")):
                out.append(dict(kv.split("=", 1) for kv in line.split()))
        return out

    def line_for(self, src):
        """The decoded line whose src is `src` (waits for it)."""
        return harness.wait_for(lambda: next((d for d in self.lines() if d.get("src") == src), None),
                                timeout=TIMEOUT, what=f"pp_peer line with src={src}")

    def close(self):
        harness.stop(self.proc)
        harness.unwatch_log("pp_peer")


class HAProxy:
    """HAProxy in the foreground with a private config; log on stdout."""

    def __init__(self, tmp, peer_port):
        if not os.access(HAPROXY, os.X_OK):
            pytest.fail(f"haproxy not found at {HAPROXY}: install the Debian package haproxy "
                        "(deploy/deps.sh --test)")
        self.ports = {}
        for name, fam in [("v2_4", socket.AF_INET), ("v2_6", socket.AF_INET6), ("v1_4", socket.AF_INET),
                          ("v1_6", socket.AF_INET6), ("acc_4", socket.AF_INET), ("acc_6", socket.AF_INET6)]:
            self.ports[name] = harness.free_port(fam)
        p = self.ports
        cfg = tmp / "haproxy.cfg"
        cfg.write_text(f"""\
global
    log stdout format raw local0
    nbthread 1
    maxconn 64

defaults
    mode tcp
    log global
    timeout connect 5s
    timeout client 10s
    timeout server 10s

# (a) HAProxy as sender: v2 with CRC32C and UNIQUE_ID, and v1
frontend fe_v2
    bind 127.0.0.1:{p['v2_4']}
    bind [::1]:{p['v2_6']} v6only
    unique-id-format %ci:%cp
    log-format "fe_v2 client=%ci:%cp"
    default_backend be_v2
backend be_v2
    server peer 127.0.0.1:{peer_port} send-proxy-v2 proxy-v2-options crc32c,unique-id

frontend fe_v1
    bind 127.0.0.1:{p['v1_4']}
    bind [::1]:{p['v1_6']} v6only
    log-format "fe_v1 client=%ci:%cp"
    default_backend be_v1
backend be_v1
    server peer 127.0.0.1:{peer_port} send-proxy

# (b) HAProxy as receiver of our header, relaying it on with v2
frontend fe_accept
    bind 127.0.0.1:{p['acc_4']} accept-proxy
    bind [::1]:{p['acc_6']} v6only accept-proxy
    log-format "accepted client=%ci:%cp dst=%fi:%fp uid=%[fc_pp_unique_id] authority=%[fc_pp_authority]"
    default_backend be_relay
backend be_relay
    server peer 127.0.0.1:{peer_port} send-proxy-v2
""")
        check = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, f"haproxy -c failed:\n{check.stdout}{check.stderr}"
        self.log = tmp / "haproxy.log"
        self.proc = harness.spawn([HAPROXY, "-f", cfg, "-db"], self.log, cwd=tmp)
        harness.watch_log("haproxy", self.log)
        binds = [("127.0.0.1" if n.endswith("_4") else "::1", port) for n, port in p.items()]
        try:
            harness.wait_for(lambda: self.proc.poll() is not None or
                             all(_listening(self.proc.pid, h, port) for h, port in binds),
                             timeout=TIMEOUT, what="haproxy to listen")
            assert self.proc.poll() is None, f"haproxy exited:\n{harness.log_tail(self.log)}"
        except BaseException:
            self.close()
            raise

    def log_lines(self):
        return self.log.read_text(errors="replace").splitlines()

    def close(self):
        harness.stop(self.proc)
        harness.unwatch_log("haproxy")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pp_haproxy")
    if not socket.has_ipv6:
        pytest.fail("IPv6 is required for the ::1 cases of this test")
    peer = Peer(tmp)
    try:
        ha = HAProxy(tmp, peer.port)
    except BaseException:
        peer.close()
        raise
    yield peer, ha
    ha.close()
    peer.close()


FAMILIES = [pytest.param((socket.AF_INET, "127.0.0.1", "4"), id="ipv4"),
            pytest.param((socket.AF_INET6, "::1", "6"), id="ipv6")]


def _client_through(fam, host, port):
    """Connect from host to HAProxy; return our (ip, port) and the reply."""
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(TIMEOUT)
        s.bind((host, 0))
        s.connect((host, port))
        me = s.getsockname()[:2]
        reply = b""
        while True:
            chunk = s.recv(100)
            if not chunk:
                break
            reply += chunk
    return me, reply


@pytest.mark.parametrize("family", FAMILIES)
def test_haproxy_send_proxy_v2_decoded(setup, family):
    peer, ha = setup
    fam, host, suffix = family
    bind_port = ha.ports["v2_" + suffix]
    (ip, port), reply = _client_through(fam, host, bind_port)
    assert reply == b"OK\r\n", f"reply {reply!r}"
    got = peer.line_for(_hostport(ip, port))
    assert got["dst"] == _hostport(host, bind_port)
    assert got["version"] == "2" and got["local"] == "0"
    # HAProxy's CRC32C was present and verified by pp_decode
    assert got.get("crc32c") == "1", got
    # and its UNIQUE_ID TLV carries unique-id-format "%ci:%cp"
    assert bytes.fromhex(got["unique_id"]).decode() == f"{ip}:{port}"


@pytest.mark.parametrize("family", FAMILIES)
def test_haproxy_send_proxy_v1_decoded(setup, family):
    peer, ha = setup
    fam, host, suffix = family
    bind_port = ha.ports["v1_" + suffix]
    (ip, port), reply = _client_through(fam, host, bind_port)
    assert reply == b"OK\r\n", f"reply {reply!r}"
    got = peer.line_for(_hostport(ip, port))
    assert got["dst"] == _hostport(host, bind_port)
    assert got["version"] == "1" and got["local"] == "0"
    assert "crc32c" not in got and "unique_id" not in got


def _send(ha, suffix, src, dst, *extra):
    host = "127.0.0.1" if suffix == "4" else "::1"
    argv = [str(harness.tool_path("pp_peer")), "send", "--connect", _hostport(host, ha.ports["acc_" + suffix]),
            "--src", src, "--dst", dst, "--data", "EHLO client.example\r\n", *extra]
    # bytes, not text: universal newlines would hide a missing CR
    return subprocess.run(argv, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)


# (src, dst, family suffix, HAProxy's %ci:%cp / %fi:%fp rendering)
ACCEPT_CASES = [
    pytest.param("192.0.2.10:40000", "198.51.100.7:25", "4", "192.0.2.10:40000", "198.51.100.7:25", id="ipv4"),
    pytest.param("[2001:db8::10]:40001", "[2001:db8::25]:587", "6", "2001:db8::10:40001", "2001:db8::25:587",
                 id="ipv6"),
]


@pytest.mark.parametrize("version", ["v2", "v1"])
@pytest.mark.parametrize("src,dst,suffix,ha_src,ha_dst", ACCEPT_CASES)
def test_haproxy_accepts_our_header(setup, version, src, dst, suffix, ha_src, ha_dst):
    peer, ha = setup
    # a distinct client port per case, so log lines cannot be confused
    bump = 10 if version == "v1" else 0
    host, port = src.rsplit(":", 1)
    src = f"{host}:{int(port) + bump}"
    ha_src = ha_src.rsplit(":", 1)[0] + f":{int(port) + bump}"
    extra = ["--v1"] if version == "v1" else ["--crc", "--unique-id", f"uid-{suffix}-{bump}",
                                               "--authority", "mx.example.org"]
    r = _send(ha, suffix, src, dst, *extra)
    assert r.returncode == 0, f"pp_peer send failed: {r.stderr!r}"
    # HAProxy accepted the header and relayed the connection to pp_peer recv
    assert r.stdout == b"OK\r\n", f"answer {r.stdout!r} stderr {r.stderr!r}"
    line = harness.wait_for(lambda: next((l for l in ha.log_lines()
                                          if l.startswith(f"accepted client={ha_src} ")), None),
                            timeout=TIMEOUT, what=f"haproxy log line for {ha_src}")
    assert f" dst={ha_dst} " in line, line
    if version == "v2":
        assert f" uid=uid-{suffix}-{bump} " in line, line
        assert line.endswith(" authority=mx.example.org"), line
    # HAProxy passed our address on in its own v2 header to pp_peer
    relayed = peer.line_for(src)
    assert relayed["dst"] == dst and relayed["version"] == "2"


@pytest.mark.parametrize("suffix", ["4", "6"])
def test_haproxy_rejects_corrupted_crc(setup, suffix):
    """A control for the CRC cases above: HAProxy does check the CRC32C we
    compute, so a flipped bit is refused and the client never reaches the
    backend."""
    peer, ha = setup
    src = "192.0.2.99:41000" if suffix == "4" else "[2001:db8::99]:41000"
    dst = "198.51.100.7:25" if suffix == "4" else "[2001:db8::25]:25"
    r = _send(ha, suffix, src, dst, "--corrupt-crc")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"", f"corrupted header was answered: {r.stdout!r}"
    ha_src = "192.0.2.99:41000" if suffix == "4" else "2001:db8::99:41000"
    # HAProxy names the (unverified) source in its error line
    harness.wait_for(lambda: any(l.startswith(ha_src + " ") and "invalid PROXY protocol header" in l
                                 for l in ha.log_lines()),
                     timeout=TIMEOUT, what=f"haproxy to log the invalid header from {ha_src}")
    assert not any(l.startswith(f"accepted client={ha_src} ") for l in ha.log_lines())
    assert not any(d.get("src") == src for d in peer.lines())
