"""tailpost-edge operations: --check, limits, access lists, failover and
health checks, reload under traffic, graceful drain, metrics, privileges.

Upstreams are the PROXY-aware Python servers of edge_util; clients use
distinct loopback source addresses (127.0.0.x) where a test needs to tell
sources apart.
"""
import os
import pwd
import signal
import socket
import subprocess
import threading
import time

import pytest

import harness
from edge_util import (BANNER, edge_yaml, edges, ups,  # noqa: F401 (fixtures)
                       Edge, connect, free_port, metrics, recv_until,
                       refused_quickly)


def banner_ok(port, src=None):
    """Connect, expect the banner; returns the socket."""
    c = connect("127.0.0.1", port, src=src)
    assert recv_until(c, b"\r\n") == BANNER
    return c


# --- --check and --version ---------------------------------------------------

def test_check_good_and_bad(tmp_path):
    exe = str(harness.bin_path("tailpost-edge"))
    good = tmp_path / "good.yaml"
    good.write_text('workers: auto\nadmin: { bind: "127.0.0.1:9100" }\nlisteners:\n'
                    '  - name: smtp\n    bind: ["0.0.0.0:25", "[::]:25"]\n'
                    '    upstreams: ["100.64.0.2:25"]\n    proxy_protocol: v2\n'
                    '    idle_timeout: 10m\n')
    r = subprocess.run([exe, "-c", good, "--check"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    # the effective config: every key, defaults included
    assert "idle_timeout: 10m" in r.stdout and "connect_timeout: 5s" in r.stdout
    assert "health_check:" in r.stdout and "balance: \"round-robin\"" in r.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text('listeners:\n  - name: smtp\n    bind: ["0.0.0.0:25"]\n'
                   '    upstreams: ["100.64.0.2:25"]\n    idle_timeout: 10x\n    colour: blue\n')
    r = subprocess.run([exe, "-c", bad, "--check"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert f"{bad}:5:19: key 'listeners[0].idle_timeout'" in r.stderr, r.stderr
    assert f"{bad}:6:5: key 'listeners[0].colour': unknown key" in r.stderr, r.stderr
    r = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith("tailpost-edge ")
    r = subprocess.run([exe, "-c", tmp_path / "missing.yaml", "--check"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1 and "missing.yaml" in r.stderr


# --- limits and access lists ------------------------------------------------

def test_max_connections(tmp_path, ups, edges):
    up = ups(mode="echo")
    port, admin = free_port(), f"127.0.0.1:{free_port()}"
    e = edges(tmp_path, edge_yaml([{"name": "m", "bind": [f"127.0.0.1:{port}"],
                                   "upstreams": [up.addr], "max_connections": 2}],
                                 admin={"bind": admin}))
    a, b = banner_ok(port), banner_ok(port)
    assert refused_quickly("127.0.0.1", port)
    e.wait_line("conn.refused", reason="max_connections")
    a.close()
    harness.wait_for(lambda: metrics(admin)['tailpost_edge_connections_active{listener="m"}'] == 1,
                     what="a slot to free up")
    c = banner_ok(port)
    m = metrics(admin)
    assert m['tailpost_edge_connections_refused_total{listener="m",reason="max_connections"}'] == 1
    b.close()
    c.close()


def test_per_source_connections(tmp_path, ups, edges):
    up = ups(mode="echo")
    port = free_port()
    e = edges(tmp_path, edge_yaml([{"name": "ps", "bind": [f"127.0.0.1:{port}"],
                                   "upstreams": [up.addr], "per_source_max_connections": 2}]))
    a, b = banner_ok(port, "127.0.0.5"), banner_ok(port, "127.0.0.5")
    assert refused_quickly("127.0.0.1", port, src="127.0.0.5")
    # another source is not affected
    c = banner_ok(port, "127.0.0.6")
    line = e.wait_line("conn.refused", reason="per_source_connections")
    assert line["client"].startswith("127.0.0.5:")
    b.close()
    harness.wait_for(lambda: len(e.lines("conn.close")) >= 1, what="close")
    d = banner_ok(port, "127.0.0.5")
    for s in (a, c, d):
        s.close()


def test_per_source_rate(tmp_path, ups, edges):
    up = ups(mode="echo")
    port = free_port()
    e = edges(tmp_path, edge_yaml([{"name": "pr", "bind": [f"127.0.0.1:{port}"],
                                   "upstreams": [up.addr], "per_source_rate": 2,
                                   "per_source_burst": 3}]))
    ok = refused = 0
    for _ in range(6):  # well within one second: 3 of burst, maybe 1 refill
        if refused_quickly("127.0.0.1", port, src="127.0.0.7"):
            refused += 1
        else:
            ok += 1
    assert 3 <= ok <= 4 and refused >= 2, (ok, refused)
    assert e.find("conn.refused", reason="per_source_rate")
    # other sources have their own bucket; and the bucket refills
    banner_ok(port, "127.0.0.8").close()
    time.sleep(1.1)
    banner_ok(port, "127.0.0.7").close()


def test_deny_and_allow(tmp_path, ups, edges):
    up = ups(mode="echo")
    p1, p2 = free_port(), free_port()
    e = edges(tmp_path, edge_yaml([
        {"name": "deny", "bind": [f"127.0.0.1:{p1}"], "upstreams": [up.addr],
         "deny": ["127.0.0.9/32", "127.0.1.0/24"]},
        {"name": "allow", "bind": [f"127.0.0.1:{p2}"], "upstreams": [up.addr],
         "allow": ["127.0.0.10/32"]},
    ]))
    assert refused_quickly("127.0.0.1", p1, src="127.0.0.9")
    assert refused_quickly("127.0.0.1", p1, src="127.0.1.77")
    banner_ok(p1, "127.0.0.11").close()
    banner_ok(p2, "127.0.0.10").close()
    assert refused_quickly("127.0.0.1", p2, src="127.0.0.11")
    refusals = e.lines("conn.refused")
    assert sum(1 for d in refusals if d["reason"] == "deny") == 3
    assert up.count() == 2  # refused clients never reached the upstream


# --- failover and health checks ---------------------------------------------

def test_failover_and_health_checks(tmp_path, ups, edges):
    up1 = ups(mode="echo", name="up1")
    up2 = ups(mode="echo", name="up2")
    port, admin = free_port(), f"127.0.0.1:{free_port()}"
    port1 = up1.port
    e = edges(tmp_path, edge_yaml([{
        "name": "fo", "bind": [f"127.0.0.1:{port}"], "upstreams": [up1.addr, up2.addr],
        "balance": "first-available",
        "health_check": {"interval": "200ms", "timeout": "150ms", "rise": 2, "fall": 2}}],
        admin={"bind": admin}))
    for _ in range(3):
        banner_ok(port).close()
    assert up1.count() == 3 and up2.count() == 0
    # health probes send a v2 LOCAL header, never counted as a client
    harness.wait_for(lambda: up1.local_checks >= 2 and up2.local_checks >= 2, what="probes")
    assert up1.count() == 3
    # stop upstream 1: a new connection fails over to 2 at once
    up1.close()
    banner_ok(port).close()
    assert up2.count() == 1
    assert e.find("conn.upstream_failed", upstream=up1.addr)
    # ... and the probes mark it down; then nothing is even attempted on it
    e.wait_line("upstream.down", upstream=up1.addr)
    failures = len(e.lines("conn.upstream_failed"))
    for _ in range(3):
        banner_ok(port).close()
    assert up2.count() == 4
    assert len(e.lines("conn.upstream_failed")) == failures
    m = metrics(admin)
    assert m[f'tailpost_edge_upstream_up{{listener="fo",upstream="{up1.addr}"}}'] == 0
    assert m[f'tailpost_edge_upstream_up{{listener="fo",upstream="{up2.addr}"}}'] == 1
    # bring it back on the same port: after `rise` probes it takes traffic again
    up1b = ups(mode="echo", port=port1)
    e.wait_line("upstream.up", upstream=up1b.addr)
    banner_ok(port).close()
    assert up1b.count() == 1 and up2.count() == 4


def test_round_robin(tmp_path, ups, edges):
    a, b = ups(mode="echo"), ups(mode="echo")
    port = free_port()
    edges(tmp_path, edge_yaml([{"name": "rr", "bind": [f"127.0.0.1:{port}"],
                               "upstreams": [a.addr, b.addr]}]))
    for _ in range(10):
        banner_ok(port).close()
    assert a.count() == 5 and b.count() == 5


def test_all_upstreams_down(tmp_path, edges):
    dead1, dead2 = free_port(), free_port()
    port, admin = free_port(), f"127.0.0.1:{free_port()}"
    e = edges(tmp_path, edge_yaml([{
        "name": "dead", "bind": [f"127.0.0.1:{port}"],
        "upstreams": [f"127.0.0.1:{dead1}", f"127.0.0.1:{dead2}"],
        "health_check": {"interval": "1s", "timeout": "500ms", "fall": 2}}],
        admin={"bind": admin}))
    # before the probes notice: both attempts fail, the client is closed
    c = connect("127.0.0.1", port)
    assert c.recv(10) == b""
    c.close()
    line = e.wait_line("conn.refused", reason="upstream_unreachable")
    assert "2 attempt" in line["detail"] and "refused" in line["detail"].lower()
    # once they are marked down: refused without trying
    e.wait_line("upstream.down", upstream=f"127.0.0.1:{dead2}")
    harness.wait_for(lambda: e.find("upstream.down", upstream=f"127.0.0.1:{dead1}"), what="down")
    assert refused_quickly("127.0.0.1", port)
    e.wait_line("conn.refused", reason="no_upstream")


def test_connect_timeout_budget(tmp_path, ups, edges):
    """A black-holed first upstream gets only its share of the budget."""
    good = ups(mode="echo")
    # a listener with a full backlog and no accept: SYNs to it are dropped
    bh = socket.socket()
    bh.bind(("127.0.0.1", 0))
    bh.listen(0)
    fillers = []
    for _ in range(4):
        f = socket.socket()
        f.setblocking(False)
        try:
            f.connect(bh.getsockname())
        except BlockingIOError:
            pass
        fillers.append(f)
    time.sleep(0.2)
    port = free_port()
    e = edges(tmp_path, edge_yaml([{
        "name": "bh", "bind": [f"127.0.0.1:{port}"],
        "upstreams": [f"127.0.0.1:{bh.getsockname()[1]}", good.addr],
        "balance": "first-available", "connect_timeout": "2s",
        "health_check": {"enabled": False}}]))
    t0 = time.monotonic()
    c = banner_ok(port)
    elapsed = time.monotonic() - t0
    c.close()
    assert 0.5 < elapsed < 1.8, elapsed
    assert e.find("conn.upstream_failed", upstream=f"127.0.0.1:{bh.getsockname()[1]}")
    for f in fillers:
        f.close()
    bh.close()


# --- reload --------------------------------------------------------------------

def test_reload_under_traffic(tmp_path, ups, edges):
    old_up = ups(mode="hold", name="old")
    new_up = ups(mode="hold", name="new")
    p_keep, p_drop, p_add = free_port(), free_port(), free_port()
    admin = f"127.0.0.1:{free_port()}"
    first = edge_yaml([
        {"name": "keep", "bind": [f"127.0.0.1:{p_keep}"], "upstreams": [old_up.addr]},
        {"name": "drop", "bind": [f"127.0.0.1:{p_drop}"], "upstreams": [old_up.addr]},
    ], admin={"bind": admin})
    e = edges(tmp_path, first)
    # established connections with traffic flowing during the reload
    live = []
    for port in (p_keep, p_keep, p_drop):
        c = banner_ok(port)
        live.append((c, old_up.take()))
    stop = threading.Event()
    errors = []

    def pump(c, u):
        try:
            i = 0
            while not stop.is_set():
                msg = b"ping %d\n" % i
                c.sendall(msg)
                if recv_until(u.sock, b"\n") != msg:
                    errors.append("bad echo c2u")
                u.sock.sendall(msg)
                if recv_until(c, b"\n") != msg:
                    errors.append("bad echo u2c")
                i += 1
                time.sleep(0.01)
        except OSError as ex:
            errors.append(repr(ex))
    threads = [threading.Thread(target=pump, args=cu) for cu in live]
    for t in threads:
        t.start()
    time.sleep(0.3)
    # an invalid config is refused and the old one keeps running
    e.reload("listeners:\n  - name: keep\n    bind: nonsense\n", expect="reload.failed")
    assert e.find("reload.failed", reason="invalid configuration, keeping the running one")
    banner_ok(p_keep).close()
    old_up.take().sock.close()
    # a valid one: upstream changed, a listener dropped, one added
    e.reload(edge_yaml([
        {"name": "keep", "bind": [f"127.0.0.1:{p_keep}"], "upstreams": [new_up.addr]},
        {"name": "add", "bind": [f"127.0.0.1:{p_add}"], "upstreams": [new_up.addr]},
    ], admin={"bind": admin}))
    time.sleep(0.3)
    # new connections follow the new config
    banner_ok(p_keep).close()
    assert new_up.take().header.src[0] == "127.0.0.1"
    banner_ok(p_add).close()
    new_up.take().sock.close()
    with pytest.raises(ConnectionRefusedError):
        connect("127.0.0.1", p_drop, timeout=3)
    # the established ones, even on the removed listener, never noticed
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join(10)
    assert not errors, errors
    for c, u in live:
        c.sendall(b"still here\n")
        assert recv_until(u.sock, b"\n") == b"still here\n"
        c.close()
        u.sock.close()
    m = metrics(admin)
    assert m['tailpost_edge_reloads_total{result="ok"}'] == 1
    assert m['tailpost_edge_reloads_total{result="failed"}'] == 1
    assert m["tailpost_edge_config_generation"] == 2
    harness.wait_for(lambda: len(e.lines("conn.close")) >= 6, what="close lines")
    assert not [d for d in e.lines("conn.close") if d["reason"] != "eof"]


# --- drain ---------------------------------------------------------------------

def test_graceful_drain(tmp_path, ups, edges):
    up = ups(mode="hold")
    port, admin = free_port(), f"127.0.0.1:{free_port()}"
    e = edges(tmp_path, edge_yaml([{"name": "d", "bind": [f"127.0.0.1:{port}"],
                                   "upstreams": [up.addr]}],
                                 admin={"bind": admin}, shutdown_grace="20s"))
    c = banner_ok(port)
    u = up.take()
    e.proc.send_signal(signal.SIGTERM)
    e.wait_line("drain.listeners_closed")
    # no new connections; /healthz says so
    with pytest.raises(ConnectionRefusedError):
        connect("127.0.0.1", port, timeout=3)
    try:
        import urllib.request
        urllib.request.urlopen(f"http://{admin}/healthz", timeout=3)
        assert False, "healthz should be 503 while draining"
    except urllib.error.HTTPError as ex:
        assert ex.code == 503
    # the established connection still works
    c.sendall(b"QUIT\r\n")
    assert recv_until(u.sock, b"\r\n") == b"QUIT\r\n"
    u.sock.sendall(b"221 bye\r\n")
    assert recv_until(c, b"\r\n") == b"221 bye\r\n"
    assert e.proc.poll() is None
    t0 = time.monotonic()
    u.sock.close()
    c.close()
    e.proc.wait(timeout=10)
    assert e.proc.returncode == 0
    assert time.monotonic() - t0 < 3
    assert e.find("drain.done") and e.find("conn.close", reason="eof")


def test_drain_grace_expires(tmp_path, ups, edges):
    up = ups(mode="hold")
    port = free_port()
    e = edges(tmp_path, edge_yaml([{"name": "g", "bind": [f"127.0.0.1:{port}"],
                                   "upstreams": [up.addr]}], shutdown_grace="1s"))
    c = banner_ok(port)
    u = up.take()
    t0 = time.monotonic()
    e.proc.send_signal(signal.SIGTERM)
    e.proc.wait(timeout=10)
    assert e.proc.returncode == 0
    assert 0.9 < time.monotonic() - t0 < 4
    assert c.recv(10) == b""
    assert e.find("drain.grace_expired") and e.find("conn.close", reason="shutdown")
    c.close()
    u.sock.close()


# --- metrics and privileges ---------------------------------------------------

def test_metrics_and_healthz(tmp_path, ups, edges):
    up = ups(mode="echo")
    port, admin = free_port(), f"127.0.0.1:{free_port()}"
    edges(tmp_path, edge_yaml([{"name": "mx", "bind": [f"127.0.0.1:{port}"],
                               "upstreams": [up.addr]}], admin={"bind": admin}))
    c = banner_ok(port)
    c.sendall(b"12345")
    assert c.recv(5) == b"12345"
    c.close()
    harness.wait_for(lambda: metrics(admin)['tailpost_edge_connections_closed_total{listener="mx",reason="eof"}'] == 1,
                     what="close counted")
    m = metrics(admin)
    assert m['tailpost_edge_connections_accepted_total{listener="mx"}'] == 1
    assert m['tailpost_edge_connections_forwarded_total{listener="mx"}'] == 1
    assert m['tailpost_edge_bytes_total{listener="mx",direction="client_to_upstream"}'] == 5
    assert m['tailpost_edge_bytes_total{listener="mx",direction="upstream_to_client"}'] == len(BANNER) + 5
    assert m['tailpost_edge_workers'] == 2
    assert m['process_resident_memory_bytes'] > 0
    import urllib.request
    with urllib.request.urlopen(f"http://{admin}/healthz", timeout=3) as r:
        assert r.status == 200 and r.read() == b"ok\n"
    with socket.create_connection(("127.0.0.1", int(admin.split(":")[1])), timeout=3) as s:
        s.sendall(b"GET /nope HTTP/1.1\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 404")


def _free_low_port():
    for p in range(900, 1000):
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", p))
                return p
        except OSError:
            continue
    pytest.fail("no free port below 1024")


@pytest.fixture
def public_tmp():
    """A temp dir the unprivileged user can read (pytest's tmp is 0700).
    Requested before `edges`, so it is removed after the edge stopped."""
    import shutil
    import tempfile
    tmp = tempfile.mkdtemp(prefix="tailpost-edge-privs-", dir=harness._tmp_base())
    os.chmod(tmp, 0o755)
    yield tmp
    shutil.rmtree(tmp, ignore_errors=True)


def test_privilege_drop_keeps_bind(public_tmp, ups, edges):
    if os.geteuid() != 0:
        pytest.fail("this test needs root (it checks the switch to an unprivileged user)")
    user = os.environ.get("TAILPOST_TEST_USER", "nobody")
    pw = pwd.getpwnam(user)
    up = ups(mode="echo")
    port = free_port()
    # the config must stay readable after the switch
    e = edges(public_tmp, edge_yaml([{"name": "p", "bind": [f"127.0.0.1:{port}"],
                                   "upstreams": [up.addr]}], user=user))
    status = open(f"/proc/{e.proc.pid}/status").read()
    uids = [l for l in status.splitlines() if l.startswith("Uid:")][0].split()[1:]
    assert all(int(u) == pw.pw_uid for u in uids), status
    capeff = int([l for l in status.splitlines() if l.startswith("CapEff:")][0].split()[1], 16)
    assert capeff == 1 << 10  # CAP_NET_BIND_SERVICE only
    banner_ok(port).close()
    # a reload can still bind a port below 1024
    low = _free_low_port()
    e.reload(edge_yaml([{"name": "p", "bind": [f"127.0.0.1:{port}"], "upstreams": [up.addr]},
                        {"name": "low", "bind": [f"127.0.0.1:{low}"], "upstreams": [up.addr]}],
                       user=user))
    banner_ok(low).close()


def test_sd_notify(tmp_path, ups, edges):
    """READY=1 once listening, RELOADING=1/READY=1 around a reload,
    STOPPING=1 on SIGTERM, on $NOTIFY_SOCKET (sd_notify(3))."""
    up = ups(mode="echo")
    sock_path = str(tmp_path / "notify.sock")
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(sock_path)
    ns.settimeout(10)
    port = free_port()
    text = edge_yaml([{"name": "n", "bind": [f"127.0.0.1:{port}"], "upstreams": [up.addr]}])
    e = edges(tmp_path, text, env_extra={"NOTIFY_SOCKET": sock_path})
    got = []

    def until(word):
        while True:
            msg = ns.recv(4096).decode()
            got.append(msg)
            if word in msg:
                return msg
    until("READY=1")
    e.proc.send_signal(signal.SIGHUP)
    assert "MONOTONIC_USEC=" in until("RELOADING=1")
    until("READY=1")
    e.proc.send_signal(signal.SIGTERM)
    until("STOPPING=1")
    e.proc.wait(timeout=10)
    ns.close()
    assert e.proc.returncode == 0, got


def test_hostname_upstream_all_addresses(tmp_path, ups, edges):
    """A host name resolves to all its addresses (A and AAAA), each a
    separate upstream tried in turn: with the upstream listening on
    127.0.0.1 only, a name for ::1 and 127.0.0.1 still always works.  The
    name lives in a private /etc/hosts (mount namespace of the edge)."""
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n::1 dual.tailpost.test\n127.0.0.1 dual.tailpost.test\n")
    up = ups(mode="echo")
    port = free_port()
    e = edges(tmp_path, edge_yaml([{"name": "h", "bind": [f"127.0.0.1:{port}"],
                                   "upstreams": [f"dual.tailpost.test:{up.port}"],
                                   "health_check": {"enabled": False}}]), hosts_file=hosts)
    ready = e.find("listener.ready", listener="h")
    assert ready["upstreams"] == f"[::1]:{up.port},127.0.0.1:{up.port}", ready
    for _ in range(4):
        banner_ok(port).close()
    assert up.count() == 4
    # the IPv6 address was tried and refused along the way, never fatal
    assert e.find("conn.upstream_failed", upstream=f"[::1]:{up.port}")
    # an unknown name fails the start with a message naming it
    bad = Edge(tmp_path, edge_yaml([{"name": "x", "bind": [f"127.0.0.1:{free_port()}"],
                                    "upstreams": ["nowhere.tailpost.test:25"]}]),
               name="bad", expect_start=False, hosts_file=hosts)
    bad.proc.wait(timeout=30)
    bad.stop()
    assert bad.proc.returncode == 1
    assert "nowhere.tailpost.test" in bad.find("start.failed")["error"]


def test_out_of_file_descriptors(tmp_path, ups, edges):
    """With a tiny fd limit the edge refuses (reason=resources) or pauses
    accepting instead of failing, and serves again once fds are free."""
    up = ups(mode="hold")
    port, admin = free_port(), f"127.0.0.1:{free_port()}"
    e = edges(tmp_path, edge_yaml([{"name": "fd", "bind": [f"127.0.0.1:{port}"],
                                   "upstreams": [up.addr], "health_check": {"enabled": False}}],
                                 workers=1, admin={"bind": admin}),
              wrap=["prlimit", "--nofile=40:40", "--"])
    clients, served = [], []
    for _ in range(30):
        try:
            clients.append(connect("127.0.0.1", port, timeout=3))
        except OSError:
            pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            served.append(up.take(timeout=0.5))
        except Exception:
            break
    assert 0 < len(served) < 30, len(served)
    harness.wait_for(lambda: e.find("conn.refused", reason="resources") or e.find("accept.paused"),
                     what="a refusal or an accept pause")
    for c in clients:
        c.close()
    for u in served:
        u.sock.close()
    # connections accepted after the pause reach the upstream late: close
    # those too, then every fd is free again
    while True:
        try:
            up.take(timeout=1.5).sock.close()
        except Exception:
            break
    harness.wait_for(lambda: metrics(admin)["tailpost_edge_worker_connections"] == 0,
                     timeout=10, what="all connections closed")
    # fds are back: a new client is served normally
    c = connect("127.0.0.1", port)
    assert recv_until(c, b"\r\n") == BANNER
    up.take().sock.close()
    c.close()
    assert e.proc.poll() is None

