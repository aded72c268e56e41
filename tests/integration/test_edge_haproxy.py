"""tailpost-edge in front of a real HAProxy with `accept-proxy`.

HAProxy (the Debian package, run in the foreground with a private config)
decodes the PROXY v2 header the edge sends and answers each HTTP request
with the client address it believes in (`%ci:%cp`), and logs it.  Through
the edge, that must be the real client's address and port, for IPv4 and
IPv6 clients and IPv4 and IPv6 upstreams (four combinations).  The client
binds a source address different from the one the edge uses towards
HAProxy (127.0.0.2 vs 127.0.0.1; ::1 over an IPv4 upstream), so a header
that was ignored or wrong could not pass by accident.  The edge's health
probes (v2 LOCAL) run against the same HAProxy and must not disturb it.
"""
import json
import os
import shutil
import socket
import subprocess

import pytest

import harness
from edge_util import Edge, connect, free_port, metrics, recv_all

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


@pytest.fixture(scope="module")
def haproxy(tmp_path_factory):
    if not os.access(HAPROXY, os.X_OK):
        pytest.fail(f"haproxy not found at {HAPROXY}: install the Debian package haproxy")
    tmp = tmp_path_factory.mktemp("edge_haproxy")
    h4, h6 = free_port(), free_port("::1")
    cfg = tmp / "haproxy.cfg"
    cfg.write_text(f"""\
global
    log stdout format raw local0
    nbthread 1
    maxconn 256

defaults
    mode http
    log global
    option dontlognull
    timeout connect 5s
    timeout client 10s
    timeout server 10s

frontend fe
    bind 127.0.0.1:{h4} accept-proxy
    bind [::1]:{h6} v6only accept-proxy
    log-format "haproxy-saw client=%ci:%cp dst=%fi:%fp"
    http-request return status 200 content-type text/plain lf-string "client=%ci:%cp dst=%fi:%fp\\n"
""")
    check = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, f"haproxy -c failed:\n{check.stdout}{check.stderr}"
    log = tmp / "haproxy.log"
    proc = harness.spawn([HAPROXY, "-f", cfg, "-db"], log, cwd=tmp)
    harness.watch_log("haproxy", log)
    try:
        harness.wait_port("127.0.0.1", h4, timeout=10, proc=proc)
        harness.wait_port("::1", h6, timeout=10, proc=proc)
    except BaseException:
        harness.stop(proc)
        raise
    yield {"h4": h4, "h6": h6, "log": log, "proc": proc}
    harness.stop(proc)
    harness.unwatch_log("haproxy")


@pytest.fixture(scope="module")
def edge(haproxy, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("edge_haproxy_edge")
    ports = {k: free_port("::1" if k.endswith("6") else "127.0.0.1") for k in ("a4", "a6", "b4", "b6")}
    admin = f"127.0.0.1:{free_port()}"
    cfg = {"workers": 2, "admin": {"bind": admin}, "listeners": [
        {"name": "to_v4", "bind": [f"127.0.0.1:{ports['a4']}", f"[::1]:{ports['a6']}"],
         "upstreams": [f"127.0.0.1:{haproxy['h4']}"],
         "health_check": {"interval": "300ms", "timeout": "200ms"}},
        {"name": "to_v6", "bind": [f"127.0.0.1:{ports['b4']}", f"[::1]:{ports['b6']}"],
         "upstreams": [f"[::1]:{haproxy['h6']}"],
         "health_check": {"interval": "300ms", "timeout": "200ms"}},
    ]}
    e = Edge(tmp, json.dumps(cfg))
    ports["admin"] = admin
    yield e, ports
    e.stop()
    assert e.asan_clean(), e.text()[-4000:]


CASES = [
    pytest.param("127.0.0.1", "a4", "127.0.0.2", "h4", id="v4client-v4upstream"),
    pytest.param("::1", "a6", "::1", "h4", id="v6client-v4upstream"),
    pytest.param("127.0.0.1", "b4", "127.0.0.2", "h6", id="v4client-v6upstream"),
    pytest.param("::1", "b6", "::1", "h6", id="v6client-v6upstream"),
]


@pytest.mark.parametrize("host,port_key,src,up_key", CASES)
def test_haproxy_sees_real_client(haproxy, edge, host, port_key, src, up_key):
    e, ports = edge
    port = ports[port_key]
    c = connect(host, port, src=src)
    me = c.getsockname()[:2]
    c.sendall(b"GET / HTTP/1.1\r\nHost: edge.test\r\nConnection: close\r\n\r\n")
    reply = recv_all(c).decode(errors="replace")
    c.close()
    assert reply.startswith("HTTP/1.1 200"), reply
    body = reply.split("\r\n\r\n", 1)[1]
    # HAProxy prints IPv6 without brackets: client=::1:PORT
    assert body.strip().startswith(f"client={me[0]}:{me[1]} "), (body, me)
    assert f"dst={host}:{port}" in body, body
    line = harness.wait_for(
        lambda: next((l for l in haproxy["log"].read_text().splitlines()
                      if f"client={me[0]}:{me[1]} " in l + " "), None),
        timeout=10, what="haproxy log line for the client")
    assert "haproxy-saw" in line


def test_probes_do_not_disturb_haproxy(haproxy, edge):
    e, ports = edge
    # the probes (a v2 LOCAL header, then a clean close) pass against
    # HAProxy, none fails, and HAProxy logs none of them as a client
    key = 'tailpost_edge_upstream_checks_total{{listener="{}",upstream="{}",result="{}"}}'
    up4, up6 = f"127.0.0.1:{haproxy['h4']}", f"[::1]:{haproxy['h6']}"
    harness.wait_for(lambda: metrics(ports["admin"])[key.format("to_v4", up4, "ok")] >= 3 and
                     metrics(ports["admin"])[key.format("to_v6", up6, "ok")] >= 3,
                     what="three good probes per upstream")
    m = metrics(ports["admin"])
    assert m[key.format("to_v4", up4, "failed")] == 0
    assert m[key.format("to_v6", up6, "failed")] == 0
    assert not e.find("upstream.down")
    assert haproxy["proc"].poll() is None
    assert all("haproxy-saw" not in l or "client=127.0.0.1:" not in l
               for l in haproxy["log"].read_text().splitlines())
