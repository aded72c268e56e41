"""tailpost-mailbox serve: reloads, the bind guard, systemd notifications,
draining, connection limits and timeouts, on real stores."""
import select
import socket
import time

import pytest

import harness
from mailbox_util import Conn, Mailbox, http, listener


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return False
    except ConnectionRefusedError:
        return True


@pytest.fixture
def mb(tmp_path, postgres_db):
    m = Mailbox(tmp_path, postgres_db)
    yield m
    m.stop()


def test_sighup_adds_removes_and_rebinds_listeners(mb):
    a, b, c, a2 = (harness.free_port() for _ in range(4))
    mb.write_config(listener("a", "test", a) + listener("b", "test", b))
    mb.migrate()
    mb.start()
    pid = mb.proc.pid
    sa = Conn(a)  # a session on a listener that stays
    sb = Conn(b)  # a session on a listener that goes away
    assert sa.line().startswith("220 ") and sb.line().startswith("220 ")

    # b removed, c added, a unchanged
    mb.write_config(listener("a", "test", a) + listener("c", "test", c))
    mb.reload()
    assert mb.proc.pid == pid and mb.proc.poll() is None
    assert refused(b)
    assert Conn(c).line().startswith("220 mail.test tailpost-test listener=c")
    # neither session was dropped: both still answer
    assert sa.cmd("NOOP") == "250 echo NOOP"
    assert sb.cmd("NOOP") == "250 echo NOOP"
    assert harness.owns_listener(pid, a) and harness.owns_listener(pid, c)

    # a rebound to another port; its open session survives
    mb.write_config(listener("a", "test", a2) + listener("c", "test", c))
    mb.reload()
    assert refused(a)
    assert Conn(a2).line().startswith("220 ")
    assert sa.cmd("NOOP") == "250 echo NOOP"
    assert [d for d in mb.lines() if d.get("msg") == "listener rebound" and d.get("listener") == "a"]
    sa.cmd("QUIT")
    sb.cmd("QUIT")


def test_invalid_reload_keeps_running(mb, tmp_path):
    a = harness.free_port()
    mb.write_config(listener("a", "test", a))
    mb.migrate()
    mb.start()
    good = mb.path.read_text()
    # a config error: rejected with FILE:LINE:COL, the old listeners stay
    mb.path.write_text(good.replace("hostname: mail.test\n", "hostname: mail.test\nbogus: 1\n"))
    mb.reload(expect="reload rejected")
    err = mb.wait_log(lambda d: d.get("msg") == "config error")[-1]["error"]
    assert f"{mb.path}:2:1: key 'bogus': unknown key" in err, err
    assert Conn(a).line().startswith("220 ")
    # a port another program holds: rejected at bind time, old one stays
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    bport = busy.getsockname()[1]
    try:
        mb.write_config(listener("a", "test", a) + listener("x", "test", bport))
        mb.reload(expect="reload rejected")
        assert Conn(a).line().startswith("220 ")
        assert "Address already in use" in mb.text()
    finally:
        busy.close()
    # the bind guard on reload
    mb.write_config(listener("a", "test", a) + listener("pub", "test", 2525, host="192.0.2.10"))
    mb.reload(expect="reload rejected")
    assert "refusing to bind '192.0.2.10:2525'" in mb.text()
    assert Conn(a).line().startswith("220 ")


def test_bind_guard_refuses_public_address(mb):
    mb.write_config(listener("mx", "test", 25, host="192.0.2.10"))
    r = mb.cli("check")
    assert r.returncode == 2
    assert "refusing to bind '192.0.2.10:25'" in r.stderr and "allow_public_bind" in r.stderr
    assert f"{mb.path}:5:5:" in r.stderr, r.stderr
    mb.start(wait=False)
    assert mb.wait_exit() == 2
    assert "refusing to bind '192.0.2.10:25'" in mb.text()
    # 0.0.0.0 too: it includes every public interface
    mb.write_config(listener("mx", "test", 25, host="0.0.0.0"))
    assert mb.cli("check").returncode == 2


def test_allow_public_bind_and_private_networks(mb):
    # 127.0.0.1 is always fine; allow_public_bind lets a wildcard through
    port = harness.free_port()
    mb.write_config(listener("any", "test", port, host="0.0.0.0"), extra="allow_public_bind: true\n")
    mb.migrate()
    mb.start()
    assert Conn(port).line().startswith("220 ")


def test_sd_notify_ready_reloading_stopping(mb, tmp_path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(20)
    try:
        a = harness.free_port()
        mb.write_config(listener("a", "test", a))
        mb.migrate()
        mb.start(env={"NOTIFY_SOCKET": str(path)})
        msgs = []

        def until(word):
            while True:
                m = sock.recv(4096).decode()
                msgs.append(m)
                if word in m:
                    return m
        until("READY=1")
        mb.proc.send_signal(1)
        m = until("RELOADING=1")
        assert "MONOTONIC_USEC=" in m
        until("READY=1")
        mb.proc.send_signal(15)
        until("STOPPING=1")
        assert mb.wait_exit() == 0
    finally:
        sock.close()


def test_sigterm_drains_sessions(mb):
    a, h = harness.free_port(), harness.free_port()
    mb.write_config(listener("a", "test", a) + listener("h", "http", h))
    mb.migrate()
    mb.start()
    s = Conn(a)
    assert s.line().startswith("220 ")
    mb.proc.send_signal(15)
    # the protocol says goodbye, then the connection closes
    assert s.line().startswith("421 4.3.2 mail.test shutting down")
    assert s.closed(timeout=5)
    assert mb.wait_exit() == 0
    assert mb.wait_log(lambda d: d.get("msg") == "drain finished")[0]["reason"] == "all_closed"


def test_max_connections(mb):
    a = harness.free_port()
    mb.write_config(listener("a", "test", a, "max_connections: 2"))
    mb.migrate()
    mb.start()
    c1, c2 = Conn(a), Conn(a)
    assert c1.line().startswith("220 ") and c2.line().startswith("220 ")
    c3 = Conn(a)
    assert c3.closed(timeout=5)
    mb.wait_log(lambda d: d.get("msg", "").startswith("max_connections reached"))
    c1.cmd("QUIT")
    c1.close()
    time.sleep(0.3)
    assert Conn(a).line().startswith("220 ")


def test_idle_and_command_timeouts(mb):
    a = harness.free_port()
    mb.write_config(listener("a", "test", a, "timeouts: { idle: 1s, command: 2s }"))
    mb.migrate()
    mb.start()
    c = Conn(a)
    assert c.line().startswith("220 ")
    t0 = time.monotonic()
    assert c.line().startswith("421 4.4.2 mail.test timeout")
    assert 0.8 < time.monotonic() - t0 < 3
    assert c.closed(timeout=5)
    # a partial command trickled in byte by byte still ends at the command
    # timeout, however often bytes arrive (slowloris)
    c = Conn(a)
    c.line()
    t0 = time.monotonic()
    for ch in b"NOOPNOOPNOOPNOOPNOOPNOOPNOOPNOOPNOOP":
        c.send(bytes([ch]))
        # a byte every 0.2 s keeps the idle timer (1 s) happy, not the
        # command timer (2 s from the first byte)
        if select.select([c.s], [], [], 0.2)[0]:
            break
    took = time.monotonic() - t0
    assert c.line().startswith("421 4.4.2")
    assert 1.5 < took < 3.5, took
    mb.wait_log(lambda d: d.get("msg") == "command timeout")


def test_input_bound(mb):
    a = harness.free_port()
    mb.write_config(listener("a", "test", a), extra="limits: { input_buffer: 8KB, http_max_header: 4KB }\n")
    mb.migrate()
    mb.start()
    c = Conn(a)
    c.line()
    # a line longer than the test protocol allows is refused by it
    c.send(b"x" * 2000)
    assert c.line().startswith("500 5.5.2")
    assert c.closed(timeout=5)


def test_back_pressure_bounds_memory_and_loses_nothing(mb):
    """A client that pipelines commands and never reads: the daemon stops
    taking input once its bounded output is half full, the kernel buffers
    fill, the client's send blocks; once it reads, every reply arrives."""
    a = harness.free_port()
    mb.write_config(listener("a", "test", a),
                    extra="limits: { input_buffer: 16KB, output_buffer: 64KB, "
                          "http_max_header: 4KB }\n")
    mb.migrate()
    mb.start()
    c = Conn(a)
    assert c.line().startswith("220 ")
    c.s.setblocking(False)
    cmd = b"NOOP\r\n"
    chunk = cmd * 2048
    sent = 0
    stalled_since = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and sent < 64 * 1024 * 1024:
        try:
            sent += c.s.send(chunk[sent % len(cmd):] if sent % len(cmd) else chunk)
            stalled_since = None
        except BlockingIOError:
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since > 1.0:
                break
            time.sleep(0.05)
    assert stalled_since is not None, f"never blocked after {sent} bytes"
    # finish the last partial command, then read every reply
    rest = (len(cmd) - sent % len(cmd)) % len(cmd)
    c.s.setblocking(True)
    c.s.settimeout(20)
    if rest:
        c.s.sendall(cmd[-rest:])
    n = (sent + rest) // len(cmd)
    want = n * len(b"250 echo NOOP\r\n")
    got = 0
    while got < want:
        d = c.s.recv(1 << 20)
        assert d, f"closed after {got} of {want} reply bytes"
        got += len(d)
    assert got == want
    assert c.cmd("QUIT").startswith("221")
    assert not [d for d in mb.lines() if d.get("reason") == "overflow"]


def test_http_slow_request_gets_408(mb):
    """The HTTP parser copies what it reads, so the connection layer learns
    of the partial request through conn_set_partial: a request trickled in
    slower than timeouts.command is answered 408 and closed."""
    h = harness.free_port()
    mb.write_config(listener("h", "http", h, "timeouts: { idle: 5s, command: 1s }"))
    mb.migrate()
    mb.start()
    c = Conn(h)
    c.send(b"GET /healthz HTTP/1.1\r\n")
    t0 = time.monotonic()
    reply = ""
    for ch in b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa":
        c.send(bytes([ch]))
        if select.select([c.s], [], [], 0.3)[0]:
            reply = c.line()
            break
    assert reply.startswith("HTTP/1.1 408 "), reply
    assert 0.8 < time.monotonic() - t0 < 3
