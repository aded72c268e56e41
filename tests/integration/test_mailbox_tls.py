"""TLS on tailpost-mailbox listeners, checked with `openssl s_client`.

Implicit TLS on the http role (and behind a PROXY header), STARTTLS on the
`test` role (which speaks enough SMTP for `s_client -starttls smtp`),
plaintext injected after STARTTLS discarded, TLS 1.1 refused while 1.2
and 1.3 work, a certificate replaced on disk picked up by the periodic
check and by SIGHUP without dropping an established session, and the
handshake timeout.
"""
import os
import socket
import ssl
import subprocess
import time

import pytest

import harness
from mailbox_util import Certs, Conn, Mailbox, cert_cn, http, listener, pp_v2

EDGE = "127.0.0.2"


def s_client(port, *args, stdin=b"", timeout=30, ign_eof=True):
    """s_client with stdin; with ign_eof it waits for the server to close
    (after Connection: close or QUIT), otherwise it quits at stdin's end."""
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost"]
    argv += (["-ign_eof"] if ign_eof else []) + list(args)
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout)


@pytest.fixture
def tls_mbox(tmp_path, postgres_db):
    certs = Certs(tmp_path / "certs")
    cert, key = certs.issue("first", cn="first.test")
    live_cert, live_key = tmp_path / "live.pem", tmp_path / "live.key"
    live_cert.write_bytes(cert.read_bytes())
    live_key.write_bytes(key.read_bytes())
    ports = {n: harness.free_port() for n in ("https", "starttls", "phttps", "admin")}
    tls = f"tls: {{ cert: \"{live_cert}\", key: \"{live_key}\" }}"
    mb = Mailbox(tmp_path, postgres_db)
    mb.write_config(
        listener("https", "http", ports["https"], tls + "\ntimeouts: { handshake: 1s }") +
        listener("starttls", "test", ports["starttls"], tls) +
        listener("phttps", "http", ports["phttps"],
                 tls + f'\nproxy: {{ trusted: ["{EDGE}/32"] }}') +
        listener("admin", "http", ports["admin"]),
        extra="tls_check_interval: 1s\n")
    mb.migrate()
    mb.start()
    mb.ports, mb.certs, mb.live = ports, certs, (live_cert, live_key)
    yield mb
    assert mb.stop() == 0, mb.text()[-3000:]


def test_implicit_tls_with_s_client(tls_mbox):
    r = s_client(tls_mbox.ports["https"], "-CAfile", str(tls_mbox.certs.ca),
                 "-verify_return_error",
                 stdin=b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    out = r.stdout.decode(errors="replace")
    assert "Verify return code: 0 (ok)" in out, out + r.stderr.decode()
    assert "HTTP/1.1 200 OK" in out and "\nok" in out
    line = tls_mbox.wait_log(lambda d: d.get("msg") == "tls established" and
                             d.get("listener") == "https")[-1]
    assert line["starttls"] == "no" and line["version"].startswith("TLSv1.")


def test_implicit_tls_behind_proxy_header(tls_mbox):
    hdr = pp_v2(("203.0.113.44", 999), ("100.64.0.2", 443))
    st, _, body = http(tls_mbox.ports["phttps"], "GET", "/healthz", header=hdr,
                       tls_ctx=tls_mbox.certs.client_context(), source=(EDGE, 0))
    assert st == 200 and body == b"ok\n"
    tls_mbox.wait_log(lambda d: d.get("msg") == "http" and d.get("client") == "203.0.113.44")


def test_starttls_with_s_client(tls_mbox):
    r = s_client(tls_mbox.ports["starttls"], "-starttls", "smtp", "-CAfile",
                 str(tls_mbox.certs.ca), "-verify_return_error", stdin=b"CLIENT\r\nQUIT\r\n")
    out = r.stdout.decode(errors="replace")
    assert "Verify return code: 0 (ok)" in out, out + r.stderr.decode()
    assert "250 client=127.0.0.1:" in out and "tls=TLSv1.3" in out, out
    assert "221 2.0.0 bye" in out
    tls_mbox.wait_log(lambda d: d.get("msg") == "tls established" and d.get("starttls") == "yes")


def test_starttls_discards_injected_plaintext(tls_mbox):
    c = Conn(tls_mbox.ports["starttls"])
    assert c.line().startswith("220 ")
    # RFC 3207 6: a command pipelined after STARTTLS must not run under TLS
    c.send(b"STARTTLS\r\nCLIENT\r\n")
    assert c.line().startswith("220 2.0.0 ready")
    ts = tls_mbox.certs.client_context().wrap_socket(c.s, server_hostname="localhost")
    ts.settimeout(5)
    ts.sendall(b"NOOP\r\n")
    first = ts.recv(4096).decode()
    assert first.startswith("250 echo NOOP"), first  # not the CLIENT answer
    ts.close()
    tls_mbox.wait_log(lambda d: d.get("msg") == "discarded plaintext after STARTTLS"
                      and d.get("bytes") == "8")


def test_tls11_refused_tls12_and_13_accepted(tls_mbox):
    port = tls_mbox.ports["https"]
    before = len(tls_mbox.listener_line("tls handshake failed"))
    r = s_client(port, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0",
                 stdin=b"GET /healthz HTTP/1.0\r\n\r\n")
    out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    assert r.returncode != 0 and "200 OK" not in out, out
    tls_mbox.wait_log(lambda d: d.get("msg") == "tls handshake failed", count=before + 1)
    for flag, want in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
        r = s_client(port, flag, "-CAfile", str(tls_mbox.certs.ca),
                     stdin=b"GET /healthz HTTP/1.0\r\n\r\n")
        out = r.stdout.decode(errors="replace")
        assert "HTTP/1.1 200 OK" in out and want in out, out


def _served_cn(port, ca):
    r = s_client(port, "-CAfile", str(ca), "-showcerts", stdin=b"", ign_eof=False)
    out = r.stdout
    start = out.find(b"-----BEGIN CERTIFICATE-----")
    end = out.find(b"-----END CERTIFICATE-----")
    assert start >= 0, out.decode(errors="replace")
    return cert_cn(out[start:end + len(b"-----END CERTIFICATE-----")] + b"\n")


def _replace(live, new_cert, new_key):
    """Swap the files the way certbot-like tools do: write aside, rename."""
    live_cert, live_key = live
    tmpc, tmpk = live_cert.with_suffix(".new"), live_key.with_suffix(".knew")
    tmpk.write_bytes(new_key.read_bytes())
    tmpc.write_bytes(new_cert.read_bytes())
    os.rename(tmpk, live_key)
    os.rename(tmpc, live_cert)


def test_certificate_replaced_on_disk_is_picked_up(tls_mbox):
    port = tls_mbox.ports["https"]
    assert _served_cn(port, tls_mbox.certs.ca) == "first.test"
    # a keep-alive session established with the old certificate
    ctx = tls_mbox.certs.client_context()
    old = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                          server_hostname="localhost")
    old.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"200 OK" in old.recv(4096)
    cert, key = tls_mbox.certs.issue("second", cn="second.test")
    _replace(tls_mbox.live, cert, key)
    tls_mbox.wait_log(lambda d: d.get("msg") == "certificate loaded", timeout=10)
    assert _served_cn(port, tls_mbox.certs.ca) == "second.test"
    # the old session is still alive and answers
    old.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert b"200 OK" in old.recv(4096)
    old.close()


def test_certificate_reloaded_on_sighup(tmp_path, postgres_db):
    certs = Certs(tmp_path / "certs")
    cert, key = certs.issue("first", cn="first.test")
    live = (tmp_path / "live.pem", tmp_path / "live.key")
    live[0].write_bytes(cert.read_bytes())
    live[1].write_bytes(key.read_bytes())
    port = harness.free_port()
    mb = Mailbox(tmp_path, postgres_db)
    mb.write_config(listener("https", "http", port,
                             f'tls: {{ cert: "{live[0]}", key: "{live[1]}" }}'),
                    extra="tls_check_interval: 0\n")
    mb.migrate()
    mb.start()
    try:
        assert _served_cn(port, certs.ca) == "first.test"
        cert2, key2 = certs.issue("second", cn="second.test")
        _replace(live, cert2, key2)
        time.sleep(1.5)
        assert _served_cn(port, certs.ca) == "first.test"  # no periodic check configured
        mb.reload()
        assert _served_cn(port, certs.ca) == "second.test"
        # a broken replacement is refused and the good one stays
        live[1].write_text("not a key\n")
        mb.reload()
        mb.wait_log(lambda d: d.get("msg", "").startswith("certificate reload failed"))
        assert _served_cn(port, certs.ca) == "second.test"
    finally:
        assert mb.stop() == 0


def test_handshake_timeout(tls_mbox):
    c = Conn(tls_mbox.ports["https"])
    t0 = time.monotonic()
    assert c.closed(timeout=5)
    assert time.monotonic() - t0 < 4
    c.close()
    tls_mbox.wait_log(lambda d: d.get("msg") == "tls handshake timed out")
