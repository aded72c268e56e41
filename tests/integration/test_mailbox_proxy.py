"""The per-listener PROXY trust matrix on a real tailpost-mailbox listener.

The `test` role (mailbox/server/echo.c) greets first, like SMTP, and its
CLIENT command reports the client and socket peer the connection layer
decided on, so each case shows both what the client saw (greeting or not,
closed or not) and what the daemon believes.  Loopback aliases stand in
for the tailnet: 127.0.0.2 is the trusted edge, 127.0.0.1 an untrusted
peer.  HAProxy's `send-proxy-v2` is the real sender in one case.
"""
import os
import shutil
import socket
import subprocess
import time

import pytest

import harness
from mailbox_util import Conn, Mailbox, http, listener, parse_line, pp_v1, pp_v2

EDGE = "127.0.0.2"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


@pytest.fixture
def mbox(tmp_path, postgres_db):
    ports = {n: harness.free_port() for n in ("refuse", "direct", "plain", "admin", "padmin")}
    mb = Mailbox(tmp_path, postgres_db)
    proxy_refuse = f'proxy: {{ trusted: ["{EDGE}/32"], header_timeout: 1s, untrusted: refuse }}'
    proxy_direct = f'proxy: {{ trusted: ["{EDGE}/32"], header_timeout: 1s, untrusted: direct }}'
    mb.write_config(listener("refuse", "test", ports["refuse"], proxy_refuse) +
                    listener("direct", "test", ports["direct"], proxy_direct) +
                    listener("plain", "test", ports["plain"]) +
                    listener("admin", "http", ports["admin"]) +
                    listener("padmin", "http", ports["padmin"], proxy_refuse))
    mb.migrate()
    mb.start()
    mb.ports = ports
    yield mb
    assert mb.stop() == 0, mb.text()[-3000:]


def metric(mb, name, **labels):
    st, _, body = http(mb.ports["admin"], "GET", "/metrics")
    assert st == 200
    want = name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    for line in body.decode().splitlines():
        if line.startswith(want + " "):
            return int(line.split()[-1])
    raise AssertionError(f"{want} not in /metrics")


def conn_line(mb, cid_pred):
    return mb.wait_log(lambda d: d.get("msg") == "connection" and cid_pred(d), what="connection")


def test_trusted_with_v2_header(mbox):
    port = mbox.ports["refuse"]
    hdr = pp_v2(("203.0.113.7", 40000), ("100.64.0.2", 25))
    # the client's first command in the same segment as the header
    c = Conn(port, header=hdr, source=(EDGE, 0))
    assert c.line().startswith("220 mail.test tailpost-test listener=refuse client=203.0.113.7")
    reply = c.cmd("CLIENT")
    assert "client=203.0.113.7:40000" in reply and f"peer={EDGE}:" in reply
    assert "proxied=yes" in reply
    c.cmd("QUIT")
    c.close()
    # the log line names listener, socket peer and the proxied client
    line = conn_line(mbox, lambda d: d.get("client") == "203.0.113.7:40000")[0]
    assert line["listener"] == "refuse" and line["peer"].startswith(EDGE + ":")
    assert line["proxy"] == "v2"


def test_trusted_with_v1_header_and_data_behind_it(mbox):
    hdr = pp_v1(("198.51.100.20", 5555), ("100.64.0.2", 25))
    c = Conn(mbox.ports["refuse"], header=hdr + b"CLIENT\r\n", source=(EDGE, 0))
    assert "client=198.51.100.20" in c.line()
    assert "client=198.51.100.20:5555" in c.line()
    c.close()


def test_trusted_header_in_pieces(mbox):
    hdr = pp_v2(("203.0.113.8", 1234), ("100.64.0.2", 25))
    c = Conn(mbox.ports["refuse"], source=(EDGE, 0))
    for i in range(0, len(hdr), 5):
        c.send(hdr[i:i + 5])
        time.sleep(0.05)
    assert "client=203.0.113.8" in c.line()
    c.close()


def test_trusted_without_header_is_dropped_after_timeout(mbox):
    before = metric(mbox, "tailpost_mailbox_proxy_header_errors_total", listener="refuse",
                    reason="timeout")
    c = Conn(mbox.ports["refuse"], source=(EDGE, 0))
    t0 = time.monotonic()
    # nothing is sent to a trusted peer before its header: no greeting
    assert c.closed(timeout=5), "not closed after the header timeout"
    took = time.monotonic() - t0
    assert 0.8 < took < 3.0, took
    c.close()
    mbox.wait_log(lambda d: d.get("msg", "").startswith("no PROXY header from a trusted peer"))
    assert metric(mbox, "tailpost_mailbox_proxy_header_errors_total", listener="refuse",
                  reason="timeout") == before + 1


@pytest.mark.parametrize("bad,reason", [
    (b"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c" + b"\x00" * 12, "version"),
    (b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x04" + b"\x00" * 4, "length"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 25\r\n", "v1_address"),
    (b"EHLO client.example\r\n", "signature"),
])
def test_trusted_with_malformed_header(mbox, bad, reason):
    before = metric(mbox, "tailpost_mailbox_proxy_header_errors_total", listener="refuse",
                    reason=reason)
    c = Conn(mbox.ports["refuse"], header=bad, source=(EDGE, 0))
    assert c.closed(timeout=5)
    c.close()
    mbox.wait_log(lambda d: d.get("msg", "").startswith("malformed PROXY header")
                  and d.get("reason") == reason)
    assert metric(mbox, "tailpost_mailbox_proxy_header_errors_total", listener="refuse",
                  reason=reason) == before + 1


def test_untrusted_refused(mbox):
    before = metric(mbox, "tailpost_mailbox_proxy_header_errors_total", listener="refuse",
                    reason="refused_untrusted")
    # a header from an untrusted peer changes nothing: never parsed
    hdr = pp_v2(("203.0.113.7", 40000), ("100.64.0.2", 25))
    c = Conn(mbox.ports["refuse"], header=hdr, source=("127.0.0.1", 0))
    assert c.closed(timeout=5)
    c.close()
    c = Conn(mbox.ports["refuse"], source=("127.0.0.1", 0))
    assert c.closed(timeout=5)
    c.close()
    assert metric(mbox, "tailpost_mailbox_proxy_header_errors_total", listener="refuse",
                  reason="refused_untrusted") == before + 2
    lines = mbox.wait_log(lambda d: d.get("msg", "").startswith("peer not trusted"), count=2)
    assert all(d["client"].startswith("127.0.0.1:") for d in lines)


def test_untrusted_direct_served_as_itself(mbox):
    c = Conn(mbox.ports["direct"], source=("127.0.0.1", 0))
    assert "client=127.0.0.1" in c.line()
    reply = c.cmd("CLIENT")
    assert "proxied=no" in reply and "client=127.0.0.1:" in reply
    c.cmd("QUIT")
    c.close()


@pytest.mark.parametrize("hdr", [
    pp_v2(("203.0.113.7", 40000), ("100.64.0.2", 25)),
    pp_v1(("203.0.113.7", 40000), ("100.64.0.2", 25)),
])
def test_untrusted_direct_sending_header_is_a_spoof(mbox, hdr):
    before = metric(mbox, "tailpost_mailbox_proxy_header_errors_total", listener="direct",
                    reason="spoof")
    c = Conn(mbox.ports["direct"], source=("127.0.0.1", 0))
    assert c.line().startswith("220 ")  # served directly: greeted first
    c.send(hdr)
    assert c.closed(timeout=5)
    c.close()
    assert metric(mbox, "tailpost_mailbox_proxy_header_errors_total", listener="direct",
                  reason="spoof") == before + 1
    # the spoofed address never appears as a client
    assert not [d for d in mbox.lines() if d.get("client", "").startswith("203.0.113.7")
                and d.get("listener") == "direct"]


def test_plain_listener_spoof_and_plain_client(mbox):
    c = Conn(mbox.ports["plain"])
    assert c.line().startswith("220 ")
    assert "proxied=no" in c.cmd("CLIENT")
    # no certificate: STARTTLS is neither offered nor accepted
    c.send("EHLO x\r\n")
    ehlo = [c.line() for _ in range(2)]
    assert ehlo[-1] == "250 OK" and not any("STARTTLS" in l for l in ehlo), ehlo
    assert c.cmd("STARTTLS").startswith("454 ")
    c.close()
    c = Conn(mbox.ports["plain"])
    c.line()
    c.send(b"PROXY TCP4 203.0.113.1 100.64.0.2 1 25\r\n")
    assert c.closed(timeout=5)
    c.close()


def test_local_uses_socket_peer(mbox):
    c = Conn(mbox.ports["refuse"], header=pp_v2(None, None, local=True), source=(EDGE, 0))
    assert f"client={EDGE}" in c.line()
    reply = c.cmd("CLIENT")
    assert "local=yes" in reply and "proxied=no" in reply and f"client={EDGE}:" in reply
    c.close()
    conn_line(mbox, lambda d: d.get("proxy") == "local" and d.get("listener") == "refuse")


def test_http_role_behind_the_gate(mbox):
    hdr = pp_v2(("203.0.113.30", 4444), ("100.64.0.2", 8080))
    st, _, body = http(mbox.ports["padmin"], "GET", "/healthz", header=hdr, source=(EDGE, 0))
    assert st == 200 and body == b"ok\n"
    line = mbox.wait_log(lambda d: d.get("msg") == "http" and d.get("listener") == "padmin")[-1]
    assert line["client"] == "203.0.113.30"
    # without a header the trusted peer gets nothing (no response at all)
    s = socket.create_connection(("127.0.0.1", mbox.ports["padmin"]), timeout=5,
                                 source_address=(EDGE, 0))
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert s.recv(100) == b""
    s.close()


def test_haproxy_send_proxy_v2(tmp_path, mbox):
    if not os.access(HAPROXY, os.X_OK):
        pytest.fail("haproxy is not installed (deploy/deps.sh --test)")
    fport = harness.free_port()
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(f"""\
global
    log stdout format raw local0
    nbthread 1
    maxconn 32
defaults
    mode tcp
    log global
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend fe
    bind 127.0.0.1:{fport}
    default_backend be
backend be
    server mb 127.0.0.1:{mbox.ports['refuse']} send-proxy-v2 source {EDGE}
""")
    log = tmp_path / "haproxy.log"
    proc = harness.spawn([HAPROXY, "-db", "-f", cfg], log)
    harness.watch_log("haproxy", log)
    try:
        harness.wait_port("127.0.0.1", fport, proc=proc)
        client = ("127.0.0.3", 0)
        c = Conn(fport, source=client)
        greet = c.line()
        assert greet.startswith("220 ") and "client=127.0.0.3" in greet, greet
        local_port = c.s.getsockname()[1]
        reply = c.cmd("CLIENT")
        assert f"client=127.0.0.3:{local_port}" in reply, reply
        assert f"peer={EDGE}:" in reply and "proxied=yes" in reply
        c.cmd("QUIT")
        c.close()
        line = conn_line(mbox, lambda d: d.get("client") == f"127.0.0.3:{local_port}")[0]
        assert line["peer"].startswith(EDGE + ":") and line["proxy"] == "v2"
    finally:
        harness.stop(proc)
        harness.unwatch_log("haproxy")
