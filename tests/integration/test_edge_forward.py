"""tailpost-edge data path against Python upstreams that act like Postfix:
they read the PROXY header first and only then send their banner, so a
banner reaching a silent client proves the header went out at once.

Covers: the v2 header (IPv4 and IPv6 clients, IPv4 and IPv6 upstreams,
real client address and port, the address the client reached, UNIQUE_ID
matching the id in our log), v1 and off, the AUTHORITY TLV from a real TLS
ClientHello's SNI (and its absence), half-close in both directions, bulk
integrity with splice and with the read/write fallback, the idle timeout,
and the per-connection log line.
"""
import hashlib
import os
import socket
import ssl
import threading
import time

import pytest

import harness
from edge_util import (BANNER, edge_yaml, edges, ups,  # noqa: F401 (fixtures)
                       connect, free_port, hostport, metrics, recv_all,
                       recv_until)


def test_header_v2_first_banner_and_log(tmp_path, ups, edges):
    up4 = ups(mode="hold")
    up6 = ups(host="::1", mode="hold")
    p4, p6, p4b = free_port(), free_port("::1"), free_port()
    e = edges(tmp_path, edge_yaml([
        {"name": "smtp", "bind": [f"127.0.0.1:{p4}", f"[::1]:{p6}"], "upstreams": [up4.addr],
         "tlv_unique_id": True},
        {"name": "smtp6", "bind": [f"127.0.0.1:{p4b}"], "upstreams": [up6.addr]},
    ]))
    cases = [("127.0.0.1", p4, "127.0.0.2", up4), ("::1", p6, "::1", up4),
             ("127.0.0.1", p4b, "127.0.0.3", up6)]
    for host, port, src, up in cases:
        c = connect(host, port, src=src)
        me = c.getsockname()[:2]
        # the client sends nothing: the banner can only come if the header
        # was sent without waiting for it
        assert recv_until(c, b"\r\n") == BANNER
        u = up.take()
        h = u.header
        assert h.version == 2 and not h.local
        assert h.src == (src, me[1]), f"header src {h.src}, client is {me}"
        assert h.dst == (host, port)
        # bytes both ways, then a clean close from the client
        c.sendall(b"EHLO client.example\r\n")
        assert recv_until(u.sock, b"\r\n") == b"EHLO client.example\r\n"
        u.sock.sendall(b"250 ok\r\n")
        assert recv_until(c, b"\r\n") == b"250 ok\r\n"
        c.close()
        assert u.sock.recv(10) == b""
        u.sock.close()
        line = e.wait_line("conn.close", client=hostport(src, me[1]))
        assert line["reason"] == "eof"
        assert line["listener"] == ("smtp6" if up is up6 else "smtp")
        assert line["upstream"] == up.addr
        assert int(line["bytes_c2u"]) == len(b"EHLO client.example\r\n")
        assert int(line["bytes_u2c"]) == len(BANNER) + len(b"250 ok\r\n")
        if port != p4b:
            # UNIQUE_ID is the id of our log line
            assert h.tlvs.get(5, b"").decode() == line["id"]
        else:
            assert 5 not in h.tlvs
        assert 0x20 not in h.tlvs  # never PP2_TYPE_SSL


def test_header_v1_and_off(tmp_path, ups, edges):
    up1 = ups(expect="v1", mode="hold")
    up0 = ups(expect="none", mode="hold")
    p1, p0 = free_port(), free_port()
    edges(tmp_path, edge_yaml([
        {"name": "v1", "bind": [f"127.0.0.1:{p1}"], "upstreams": [up1.addr], "proxy_protocol": "v1"},
        {"name": "off", "bind": [f"127.0.0.1:{p0}"], "upstreams": [up0.addr], "proxy_protocol": "off"},
    ]))
    c = connect("127.0.0.1", p1, src="127.0.0.4")
    assert recv_until(c, b"\r\n") == BANNER
    u = up1.take()
    assert u.header.version == 1
    assert u.header.src == ("127.0.0.4", c.getsockname()[1])
    assert u.header.dst == ("127.0.0.1", p1)
    c.close()
    u.sock.close()
    c = connect("127.0.0.1", p0)
    assert recv_until(c, b"\r\n") == BANNER
    u = up0.take()
    c.sendall(b"raw")
    assert u.sock.recv(3) == b"raw"  # nothing in front of the client's bytes
    c.close()
    u.sock.close()


def _tls_client_hello_then_close(port, sni):
    """Start a TLS handshake through the edge; the upstream never answers
    TLS, so the handshake is abandoned once the upstream closes."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = connect("127.0.0.1", port)
    try:
        s = ctx.wrap_socket(raw, server_hostname=sni, do_handshake_on_connect=False)
        try:
            s.do_handshake()
        except (ssl.SSLError, OSError):
            pass
    finally:
        raw.close()


def test_sni_authority(tmp_path, ups, edges):
    up = ups(mode="hold", banner=b"")
    port = free_port()
    admin = f"127.0.0.1:{free_port()}"
    edges(tmp_path, edge_yaml([
        {"name": "imaps", "bind": [f"127.0.0.1:{port}"], "upstreams": [up.addr],
         "tlv_authority_from_sni": True, "sni_timeout": "500ms"},
    ], admin={"bind": admin}))
    t = threading.Thread(target=_tls_client_hello_then_close, args=(port, "Mail.Example.ORG"))
    t.start()
    u = up.take()
    assert u.header.tlvs.get(2) == b"mail.example.org"
    # the ClientHello itself follows the header untouched (peeked, not read)
    rec = u.sock.recv(5)
    assert rec[0] == 22 and rec[1] == 3
    u.sock.close()
    t.join(10)
    # a client that sends nothing: after sni_timeout, a header without it
    c = connect("127.0.0.1", port)
    t0 = time.monotonic()
    u = up.take()
    waited = time.monotonic() - t0
    assert 2 not in u.header.tlvs
    assert 0.3 < waited < 5, waited
    u.sock.sendall(b"* OK\r\n")
    assert recv_until(c, b"\r\n") == b"* OK\r\n"
    c.close()
    u.sock.close()
    # a client that speaks plain text: no authority, no delay beyond the peek
    c = connect("127.0.0.1", port)
    c.sendall(b"a001 CAPABILITY\r\n")
    u = up.take()
    assert 2 not in u.header.tlvs
    assert recv_until(u.sock, b"\r\n") == b"a001 CAPABILITY\r\n"
    c.close()
    u.sock.close()
    # a ClientHello arriving in pieces (SO_RCVLOWAT path): still found
    hello = _client_hello("split.example.net")
    c = connect("127.0.0.1", port)
    c.sendall(hello[:3])
    time.sleep(0.1)
    c.sendall(hello[3:60])
    time.sleep(0.15)
    c.sendall(hello[60:])
    u = up.take()
    assert u.header.tlvs.get(2) == b"split.example.net"
    got = b""
    while len(got) < len(hello):
        got += u.sock.recv(65536)
    assert got == hello  # every peeked byte still reaches the upstream
    c.close()
    u.sock.close()
    m = metrics(admin)
    assert m['tailpost_edge_sni_total{listener="imaps",result="found"}'] == 2
    assert m['tailpost_edge_sni_total{listener="imaps",result="absent"}'] == 2


def _client_hello(sni):
    """The bytes of a real ClientHello (OpenSSL via memory BIOs)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def test_half_close_both_ways(tmp_path, ups, edges):
    up = ups(mode="hold")
    port = free_port()
    e = edges(tmp_path, edge_yaml([
        {"name": "hc", "bind": [f"127.0.0.1:{port}"], "upstreams": [up.addr]}]))
    # client -> upstream: the client finishes sending, still reads the answer
    c = connect("127.0.0.1", port)
    assert recv_until(c, b"\r\n") == BANNER
    u = up.take()
    c.sendall(b"request body")
    c.shutdown(socket.SHUT_WR)
    assert recv_all(u.sock) == b"request body"  # EOF reached the upstream
    time.sleep(0.2)
    u.sock.sendall(b"answer after the client's FIN")
    assert c.recv(100) == b"answer after the client's FIN"
    u.sock.close()
    assert c.recv(100) == b""
    c.close()
    e.wait_line("conn.close", reason="eof")
    # upstream -> client: the upstream finishes, still reads the client
    c = connect("127.0.0.1", port)
    u = up.take()
    u.sock.sendall(b"bye")
    u.sock.shutdown(socket.SHUT_WR)
    assert recv_all(c) == BANNER + b"bye"
    time.sleep(0.2)
    c.sendall(b"late client bytes")
    assert recv_until(u.sock, b"bytes") == b"late client bytes"
    c.close()
    assert u.sock.recv(10) == b""
    u.sock.close()
    harness.wait_for(lambda: len(e.lines("conn.close")) >= 2, what="second close line")
    assert all(d["reason"] == "eof" for d in e.lines("conn.close"))


@pytest.mark.parametrize("splice", [True, False], ids=["splice", "readwrite"])
def test_bulk_integrity(tmp_path, ups, edges, splice):
    size = 24 << 20
    sink = ups(mode="sink", banner=b"")
    src = ups(mode="hold", banner=b"")
    p1, p2 = free_port(), free_port()
    edges(tmp_path, edge_yaml([
        {"name": "up", "bind": [f"127.0.0.1:{p1}"], "upstreams": [sink.addr]},
        {"name": "down", "bind": [f"127.0.0.1:{p2}"], "upstreams": [src.addr]},
    ], splice=splice, pipe_size="64KB"))
    data = os.urandom(1 << 20) * (size >> 20)
    want = hashlib.sha256(data).hexdigest()
    # client -> upstream
    c = connect("127.0.0.1", p1, timeout=60)
    c.sendall(data)
    c.shutdown(socket.SHUT_WR)
    assert recv_all(c).decode().strip() == f"got {size} sha={want}"
    c.close()
    # upstream -> client, with a slow reader for a while (back pressure)
    c = connect("127.0.0.1", p2, timeout=60)
    u = src.take()
    t = threading.Thread(target=lambda: (u.sock.sendall(data), u.sock.close()))
    t.start()
    sha, n = hashlib.sha256(), 0
    while True:
        d = c.recv(65536)
        if not d:
            break
        if n < (1 << 20):
            time.sleep(0.01)
        sha.update(d)
        n += len(d)
    t.join(60)
    c.close()
    assert n == size and sha.hexdigest() == want


def test_idle_timeout(tmp_path, ups, edges):
    up = ups(mode="hold")
    port = free_port()
    e = edges(tmp_path, edge_yaml([
        {"name": "idle", "bind": [f"127.0.0.1:{port}"], "upstreams": [up.addr],
         "idle_timeout": "1s"}]))
    c = connect("127.0.0.1", port)
    u = up.take()
    assert recv_until(c, b"\r\n") == BANNER
    # activity every 0.4 s keeps it open past the timeout
    t0 = time.monotonic()
    for _ in range(5):
        time.sleep(0.4)
        c.sendall(b"x")
        assert u.sock.recv(1) == b"x"
    assert time.monotonic() - t0 > 1.5
    # then silence: closed after about a second, both sides
    t1 = time.monotonic()
    assert c.recv(10) == b""
    assert 0.8 < time.monotonic() - t1 < 3.0
    assert u.sock.recv(10) == b""
    c.close()
    u.sock.close()
    e.wait_line("conn.close", reason="idle_timeout")


def test_upstream_closes_first_and_resets(tmp_path, ups, edges):
    up = ups(mode="hold")
    port = free_port()
    e = edges(tmp_path, edge_yaml([
        {"name": "r", "bind": [f"127.0.0.1:{port}"], "upstreams": [up.addr]}]))
    # an upstream reset reaches the client as a close, logged as a reset
    c = connect("127.0.0.1", port)
    u = up.take()
    recv_until(c, b"\r\n")
    u.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    u.sock.close()
    try:
        assert c.recv(10) == b""
    except ConnectionResetError:
        pass
    c.close()
    e.wait_line("conn.close", reason="upstream_reset")
    # a client reset likewise
    c = connect("127.0.0.1", port)
    u = up.take()
    recv_until(c, b"\r\n")
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    c.close()
    u.sock.settimeout(5)
    try:
        assert u.sock.recv(10) == b""
    except ConnectionResetError:
        pass
    u.sock.close()
    e.wait_line("conn.close", reason="client_reset")
