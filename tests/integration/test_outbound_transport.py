"""The outbound transport (mailbox/outbound/transport.c) against a real
Postfix, driven by tests/tools/outbound_send.

A private Postfix in smarthost mode (postfix_util.start_smarthost: SMTP
AUTH through a private Dovecot auth socket, STARTTLS on one port, implicit
TLS on another, a plain MX port, every recipient into one Maildir) and a
private dnsmasq (our own process, on a free loopback port) for the MX
tests.  What is checked:

  - relay with STARTTLS + AUTH and with implicit TLS + AUTH: the message
    lands byte-identical apart from the header fields Postfix adds, and the
    certificate was verified against the test CA;
  - a wrong password, a refused connection, an unverifiable certificate:
    temporary failures;
  - a 5xx to one RCPT fails that recipient only, permanently;
  - MX routing: MX found in DNS, fallback from a dead MX host to a live one,
    implicit MX (no MX, an A record), null MX (RFC 7505) and NXDOMAIN
    permanent (5.1.2);
  - connection reuse (two messages, one connection) and
    max_per_destination (parallel sends wait for the one connection);
  - opportunistic STARTTLS whose handshake fails (a scripted server that
    offers STARTTLS, then answers the ClientHello with garbage or closes):
    the same address again in plain text, and the next message straight in
    plain text (the address is remembered); STARTTLS refused with 454: on
    in plain text in the same session; with tls starttls (verified or not)
    or implicit the same failure is temporary and nothing goes out in clear.
"""
import os
import re
import shutil
import subprocess

import pytest

import harness
import mailbox_util
import postfix_util

DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
USER, PASSWORD = "relayuser", "s3cret-relay"

MESSAGE = (b"From: Alice <alice@example.org>\r\n"
           b"To: Bob <bob@y.test>\r\n"
           b"Subject: outbound transport test\r\n"
           b"Date: Fri, 27 Nov 2026 07:00:00 +0000\r\n"
           b"Message-ID: <outbound-1@example.org>\r\n"
           b"MIME-Version: 1.0\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\n"
           b"\r\n"
           b"Hello over the transport.\r\n"
           b".leading dot must survive dot-stuffing\r\n"
           b"\r\n"
           b"-- \r\n"
           b"Alice\r\n")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return mailbox_util.Certs(tmp_path_factory.mktemp("outbound_certs"))


@pytest.fixture(scope="module")
def smarthost(certs):
    cert, key = certs.issue("smarthost")
    pf = postfix_util.start_smarthost("outbound-smarthost", cert, key,
                                      users={USER: PASSWORD}, reject=("nobody",))
    yield pf
    postfix_util.stop_postfix(pf)


@pytest.fixture(scope="module")
def dns(tmp_path_factory, smarthost):
    """dnsmasq answering for *.test from the command line only."""
    if not os.access(DNSMASQ, os.X_OK):
        pytest.fail("dnsmasq not installed: install dnsmasq-base (deploy/deps.sh --test)")
    d = tmp_path_factory.mktemp("outbound_dns")
    port = harness.free_port()
    log = d / "dnsmasq.log"
    argv = [DNSMASQ, "--no-daemon", f"--port={port}", "--listen-address=127.0.0.1",
            "--bind-interfaces", "--no-resolv", "--no-hosts", "--pid-file=", "--user=root",
            "--log-queries", "--local=/test/",
            # mx.test: one MX
            "--mx-host=mx.test,mail.mx.test,10",
            "--host-record=mail.mx.test,127.0.0.1",
            # fallback.test: a dead MX (nothing listens on 127.0.0.2) before a live one
            "--mx-host=fallback.test,dead.fallback.test,10",
            "--mx-host=fallback.test,live.fallback.test,20",
            "--host-record=dead.fallback.test,127.0.0.2",
            "--host-record=live.fallback.test,127.0.0.1",
            # implicit.test: no MX, an address (RFC 5321 5.1 implicit MX)
            "--host-record=implicit.test,127.0.0.1",
            # nullmx.test: "0 ." (RFC 7505): preference 0, the root name
            "--dns-rr=nullmx.test,15,000000",
            "--host-record=nullmx.test,127.0.0.1",
            # dual.test: its MX host has AAAA ::1 (nothing listens there) and A
            "--mx-host=dual.test,mail.dual.test,10",
            "--host-record=mail.dual.test,127.0.0.1,::1",
            # noaddr.test: exists (a TXT record), no MX, no address
            "--txt-record=noaddr.test,no mail here",
            # busy.test: the first MX greets with 421, the second is Postfix
            "--mx-host=busy.test,busy.busy.test,10",
            "--mx-host=busy.test,live.busy.test,20",
            "--host-record=busy.busy.test,127.0.0.3",
            "--host-record=live.busy.test,127.0.0.1",
            ]
    proc = harness.spawn(argv, log)
    harness.watch_log("dnsmasq", log)
    try:
        harness.wait_for(lambda: "started" in log.read_text(errors="replace")
                         or proc.poll() is not None, timeout=10, what="dnsmasq start")
        assert proc.poll() is None, log.read_text(errors="replace")
    except BaseException:
        harness.stop(proc)
        harness.unwatch_log("dnsmasq")
        raise
    yield {"port": port, "log": log}
    harness.stop(proc)
    harness.unwatch_log("dnsmasq")


def write_config(d, routes, outbound_extra="", dns_port=None):
    d.mkdir(parents=True, exist_ok=True)
    path = d / "mailbox.yaml"
    dns = f'  dns: {{ servers: ["127.0.0.1:{dns_port}"] }}\n' if dns_port else ""
    if "connection_reuse" not in outbound_extra:
        # short, so outbound_send's wait for the idle connection's QUIT is too
        outbound_extra += "  connection_reuse: 1s\n"
    path.write_text(f"""\
hostname: client.example.org
log_level: debug
listeners:
  - name: mx
    role: mx
    bind: ["127.0.0.1:25"]
stores:
  data: {{ postgres: "postgres://tailpost@127.0.0.1:5432/tailpost" }}
  blob: {{ fs: {{ path: {d}/blobs }} }}
outbound:
  timeouts: {{ connect: 3s }}
{dns}{outbound_extra}  routes:
{routes}""")
    return path


def relay_route(port, tls="starttls", user=USER, password=PASSWORD, ca=None, verify=True,
                host="127.0.0.1"):
    r = f"""\
    - name: smarthost
      domains: ["*"]
      type: relay
      host: "{host}"
      port: {port}
      tls: {tls}
      verify: {"true" if verify else "false"}
"""
    if ca is not None:
        r += f"      ca_file: {ca}\n"
    if user is not None:
        r += f"      auth: {{ user: {user}, password: \"{password}\" }}\n"
    return r


def mx_route(port):
    return f"""\
    - name: mx-test
      domains: [".test"]
      type: mx
      port: {port}
      tls: opportunistic
"""


def send(cfg, tos, msg_path, *extra, sender="alice@example.org", timeout=60):
    argv = [str(harness.tool_path("outbound_send")), "-c", str(cfg), "--from", sender]
    for t in tos:
        argv += ["--to", t]
    argv += [str(a) for a in extra] + [str(msg_path)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    results = []
    stats = {}
    for line in r.stdout.splitlines():
        m = re.match(r"result (\d+) (\S+) (\S+) (-?\d+) (\S+) host=(\S+) ?(.*)$", line)
        if m:
            results.append({"msg": int(m.group(1)), "rcpt": m.group(2),
                            "outcome": m.group(3), "code": int(m.group(4)),
                            "esc": m.group(5), "host": m.group(6), "text": m.group(7)})
        elif line.startswith("stats "):
            stats = {k: int(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
    assert stats, f"no stats from outbound_send (rc {r.returncode}):\n{r.stdout}\n{r.stderr}"
    # ASan/UBSan findings (leaks included) fail every test, not just the
    # ones that expect exit status 0
    assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr
    assert stats["active"] == 0, stats
    return r, results, stats


@pytest.fixture
def msg_file(tmp_path):
    p = tmp_path / "msg.eml"
    p.write_bytes(MESSAGE)
    return p


def delivered_copy(pf, rcpt, count=1):
    harness.wait_for(lambda: len(postfix_util.smarthost_messages(pf, rcpt)) >= count,
                     timeout=20, what=f"{count} message(s) for {rcpt} in the Maildir")
    return postfix_util.smarthost_messages(pf, rcpt)


def expected_stored(raw=MESSAGE):
    # the Maildir holds LF line ends
    return raw.replace(b"\r\n", b"\n")


def test_relay_starttls_auth(tmp_path, smarthost, certs, msg_file):
    cfg = write_config(tmp_path, relay_route(smarthost["port"], ca=certs.ca))
    r, res, stats = send(cfg, ["bob@y.test"], msg_file)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [(x["rcpt"], x["outcome"]) for x in res] == [("bob@y.test", "delivered")]
    assert res[0]["host"] == "127.0.0.1" and res[0]["code"] == 250  # the relay answered
    assert stats["tls"] == 1 and stats["connections"] == 1
    assert re.search(r'msg="outbound tls" dest=127\.0\.0\.1 .* verified=yes', r.stderr), r.stderr
    stored = delivered_copy(smarthost, "bob@y.test")[-1]
    assert postfix_util.strip_postfix_headers(stored) == expected_stored()
    # Postfix saw AUTH over TLS
    assert re.search(r"with ESMTPSA", stored.decode()), stored.decode()
    assert f"sasl_username={USER}" in postfix_util.postfix_log(smarthost)


def test_relay_implicit_tls_auth_with_prefix(tmp_path, smarthost, certs, msg_file):
    cfg = write_config(tmp_path, relay_route(smarthost["tls_port"], tls="implicit", ca=certs.ca))
    prefix = "X-Prefix-Test: added by the transport\r\n"
    r, res, stats = send(cfg, ["carol@y.test"], msg_file, "--prefix", prefix)
    assert r.returncode == 0, r.stdout + r.stderr
    assert res[0]["outcome"] == "delivered"
    assert stats["tls"] == 1
    stored = delivered_copy(smarthost, "carol@y.test")[-1]
    assert postfix_util.strip_postfix_headers(stored) == expected_stored(prefix.encode() + MESSAGE)


def test_wrong_password_is_tempfail(tmp_path, smarthost, certs, msg_file):
    cfg = write_config(tmp_path, relay_route(smarthost["port"], ca=certs.ca, password="wrong"))
    r, res, stats = send(cfg, ["dave@y.test"], msg_file)
    assert r.returncode == 1
    assert res[0]["outcome"] == "tempfail", res
    assert res[0]["code"] == 535, res
    assert stats["tempfail"] == 1 and stats["delivered"] == 0


def test_refused_connection_is_tempfail(tmp_path, certs, msg_file):
    port = harness.free_port()
    cfg = write_config(tmp_path, relay_route(port, ca=certs.ca))
    r, res, stats = send(cfg, ["erin@y.test"], msg_file)
    assert r.returncode == 1
    assert res[0]["outcome"] == "tempfail", res
    assert "refused" in res[0]["text"].lower(), res
    assert res[0]["host"] == "-" and res[0]["esc"] == "4.4.1", res  # nobody answered
    assert stats["connections"] == 0


def test_unverifiable_certificate_is_tempfail(tmp_path, smarthost, msg_file):
    # verify against the system store: the test CA is not in it
    cfg = write_config(tmp_path, relay_route(smarthost["port"]))
    r, res, stats = send(cfg, ["frank@y.test"], msg_file)
    assert r.returncode == 1
    assert res[0]["outcome"] == "tempfail", res
    assert "certificate" in (r.stderr + res[0]["text"]).lower(), r.stderr
    assert postfix_util.smarthost_messages(smarthost, "frank@y.test") == []


def test_rcpt_5xx_fails_that_recipient_only(tmp_path, smarthost, certs, msg_file):
    cfg = write_config(tmp_path, relay_route(smarthost["port"], ca=certs.ca))
    r, res, stats = send(cfg, ["gina@y.test", "nobody@y.test", "hank@y.test"], msg_file)
    assert r.returncode == 1
    got = {x["rcpt"]: x for x in res}
    assert got["gina@y.test"]["outcome"] == "delivered"
    assert got["hank@y.test"]["outcome"] == "delivered"
    assert got["nobody@y.test"]["outcome"] == "permfail"
    assert got["nobody@y.test"]["code"] == 550 and got["nobody@y.test"]["esc"] == "5.1.1"
    delivered_copy(smarthost, "gina@y.test")
    delivered_copy(smarthost, "hank@y.test")
    assert postfix_util.smarthost_messages(smarthost, "nobody@y.test") == []


def test_connection_reuse(tmp_path, smarthost, certs, msg_file):
    cfg = write_config(tmp_path, relay_route(smarthost["port"], ca=certs.ca),
                       outbound_extra="  connection_reuse: 2s\n")
    before = postfix_util.postfix_log(smarthost).count("sasl_method=PLAIN")
    r, res, stats = send(cfg, ["ivan@y.test"], msg_file, "--repeat", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert [x["outcome"] for x in res] == ["delivered", "delivered"]
    assert stats["connections"] == 1 and stats["reused"] == 1, stats
    assert len(delivered_copy(smarthost, "ivan@y.test", 2)) == 2
    # Postfix: one session, two transactions ("mail=2" on its disconnect line)
    harness.wait_for(lambda: re.search(r"disconnect from \S+ ehlo=2 starttls=1 auth=1 mail=2 "
                                       r"rcpt=2 data=2 quit=1",
                                       postfix_util.postfix_log(smarthost)),
                     timeout=10, what="Postfix's disconnect line for the reused session")
    # one more authenticated client= line per message, both in one session
    assert postfix_util.postfix_log(smarthost).count("sasl_method=PLAIN") - before == 2


def test_no_reuse_when_zero(tmp_path, smarthost, certs, msg_file):
    cfg = write_config(tmp_path, relay_route(smarthost["port"], ca=certs.ca),
                       outbound_extra="  connection_reuse: 0\n")
    r, res, stats = send(cfg, ["judy@y.test"], msg_file, "--repeat", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert stats["connections"] == 2 and stats["reused"] == 0, stats


def test_max_per_destination_queues_parallel_sends(tmp_path, smarthost, certs, msg_file):
    cfg = write_config(tmp_path, relay_route(smarthost["port"], ca=certs.ca),
                       outbound_extra="  max_per_destination: 1\n  connection_reuse: 2s\n")
    r, res, stats = send(cfg, ["kate@y.test"], msg_file, "--repeat", "3", "--parallel")
    assert r.returncode == 0, r.stdout + r.stderr
    assert [x["outcome"] for x in res] == ["delivered"] * 3
    assert stats["connections"] == 1 and stats["reused"] == 2, stats


def test_mx_lookup(tmp_path, smarthost, dns, msg_file):
    cfg = write_config(tmp_path, mx_route(smarthost["mx_port"]), dns_port=dns["port"])
    r, res, stats = send(cfg, ["liam@mx.test"], msg_file)
    assert r.returncode == 0, r.stdout + r.stderr
    assert res[0]["outcome"] == "delivered" and res[0]["host"] == "mail.mx.test", res
    assert stats["tls"] == 1  # opportunistic STARTTLS, offered by Postfix
    stored = delivered_copy(smarthost, "liam@mx.test")[-1]
    assert postfix_util.strip_postfix_headers(stored) == expected_stored()


def test_mx_fallback_from_dead_host(tmp_path, smarthost, dns, msg_file):
    cfg = write_config(tmp_path, mx_route(smarthost["mx_port"]), dns_port=dns["port"])
    r, res, stats = send(cfg, ["mia@fallback.test"], msg_file)
    assert r.returncode == 0, r.stdout + r.stderr
    assert res[0]["outcome"] == "delivered" and res[0]["host"] == "live.fallback.test", res
    assert "dead.fallback.test[127.0.0.2]" in r.stderr  # tried first, refused
    delivered_copy(smarthost, "mia@fallback.test")


def test_implicit_mx(tmp_path, smarthost, dns, msg_file):
    cfg = write_config(tmp_path, mx_route(smarthost["mx_port"]), dns_port=dns["port"])
    r, res, stats = send(cfg, ["noah@implicit.test"], msg_file)
    assert r.returncode == 0, r.stdout + r.stderr
    assert res[0]["host"] == "implicit.test"
    delivered_copy(smarthost, "noah@implicit.test")


@pytest.mark.parametrize("domain", ["nullmx.test", "nxdomain.test", "noaddr.test"])
def test_null_mx_and_nxdomain_are_permanent(tmp_path, smarthost, dns, msg_file, domain):
    cfg = write_config(tmp_path, mx_route(smarthost["mx_port"]), dns_port=dns["port"])
    r, res, stats = send(cfg, [f"olga@{domain}", f"pete@{domain}"], msg_file)
    assert r.returncode == 1
    assert [x["outcome"] for x in res] == ["permfail", "permfail"], res
    assert all(x["esc"] == "5.1.2" for x in res), res
    assert stats["connections"] == 0
    want = {"nullmx.test": "null MX", "nxdomain.test": "NXDOMAIN",
            "noaddr.test": "no mail host for noaddr.test"}[domain]
    assert want in res[0]["text"], res


def test_dns_server_down_is_tempfail(tmp_path, smarthost, msg_file):
    port = harness.free_port()  # nothing answers DNS there
    cfg = write_config(tmp_path, mx_route(smarthost["mx_port"]), dns_port=port)
    r, res, stats = send(cfg, ["quinn@mx.test"], msg_file)
    assert r.returncode == 1
    assert res[0]["outcome"] == "tempfail", res
    assert res[0]["esc"] == "4.4.3", res


class FakeSmtp:
    """A TCP server on host:port that greets with `greeting` (None: never
    says anything) and counts its connections."""

    def __init__(self, host, port, greeting):
        import socket
        import threading
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(8)
        self.greeting = greeting
        self.connections = 0
        self.conns = []
        self.stopped = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self.conns.append(c)
            if self.greeting is not None:
                try:
                    c.sendall(self.greeting)
                except OSError:
                    pass

    def close(self):
        self.stopped = True
        self.sock.close()
        for c in self.conns:
            c.close()


def test_mx_fallback_on_4xx_greeting(tmp_path, smarthost, dns, msg_file):
    fake = FakeSmtp("127.0.0.3", smarthost["mx_port"], b"421 4.3.2 busy, try later\r\n")
    try:
        cfg = write_config(tmp_path, mx_route(smarthost["mx_port"]), dns_port=dns["port"])
        r, res, stats = send(cfg, ["rosa@busy.test"], msg_file)
    finally:
        fake.close()
    assert r.returncode == 0, r.stdout + r.stderr
    assert fake.connections == 1
    assert res[0]["outcome"] == "delivered" and res[0]["host"] == "live.busy.test", res
    assert stats["connections"] == 2
    delivered_copy(smarthost, "rosa@busy.test")


def test_cancel_while_waiting_for_the_greeting(tmp_path, msg_file):
    port = harness.free_port()
    fake = FakeSmtp("127.0.0.1", port, None)
    try:
        cfg = write_config(tmp_path, relay_route(port, tls="none", user=None, verify=False))
        r, res, stats = send(cfg, ["sam@y.test"], msg_file, "--cancel-after-ms", "300",
                             "--no-linger")
    finally:
        fake.close()
    assert "cancelled" in r.stdout.splitlines(), r.stdout
    assert res == []
    assert fake.connections == 1
    assert stats["connections"] == 1 and stats["active"] == 0


def test_config_errors_are_reported(tmp_path, msg_file):
    cfg = write_config(tmp_path, """\
    - name: broken
      domains: ["*"]
      type: relay
      host: relay.example
      tls: opportunistic
      auth: { user: u, password: p }
""")
    r = subprocess.run([str(harness.tool_path("outbound_send")), "-c", str(cfg), "--from",
                        "a@b.test", "--to", "c@d.test", str(msg_file)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert re.search(r"mailbox\.yaml:\d+:\d+: key 'outbound\.routes\[0\]': auth with tls "
                     r"opportunistic", r.stderr), r.stderr


class ScriptedSmtp:
    """A minimal SMTP server: EHLO, MAIL, RCPT, DATA, RSET, QUIT.  On
    connection 1 the second MAIL gets `421 4.4.2 idle timeout` and the
    connection is closed (a server dropping a reused connection); every
    other transaction is accepted.  Messages received are kept."""

    def __init__(self, port):
        import socket
        import threading
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(8)
        self.connections = 0
        self.messages = []
        self.threading = threading
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self.threading.Thread(target=self._serve, args=(c, self.connections),
                                  daemon=True).start()

    def _serve(self, c, n):
        f = c.makefile("rb")
        mails = 0
        try:
            c.sendall(b"220 scripted ESMTP\r\n")
            while True:
                line = f.readline()
                if not line:
                    return
                cmd = line[:4].upper()
                if cmd == b"EHLO":
                    c.sendall(b"250-scripted\r\n250 8BITMIME\r\n")
                elif cmd == b"MAIL":
                    mails += 1
                    if n == 1 and mails == 2:
                        c.sendall(b"421 4.4.2 idle timeout\r\n")
                        return
                    c.sendall(b"250 2.1.0 ok\r\n")
                elif cmd == b"RCPT":
                    c.sendall(b"250 2.1.5 ok\r\n")
                elif cmd == b"DATA":
                    c.sendall(b"354 go\r\n")
                    body = b""
                    while True:
                        dl = f.readline()
                        if not dl or dl == b".\r\n":
                            break
                        body += dl
                    self.messages.append((n, body))
                    c.sendall(b"250 2.0.0 queued\r\n")
                elif cmd == b"QUIT":
                    c.sendall(b"221 2.0.0 bye\r\n")
                    return
                else:
                    c.sendall(b"250 2.0.0 ok\r\n")
        except OSError:
            return
        finally:
            f.close()
            c.close()

    def close(self):
        self.sock.close()


def test_reused_connection_dropped_by_server_is_retried_fresh(tmp_path, msg_file):
    port = harness.free_port()
    srv = ScriptedSmtp(port)
    try:
        cfg = write_config(tmp_path, relay_route(port, tls="none", user=None, verify=False),
                           outbound_extra="  connection_reuse: 2s\n")
        r, res, stats = send(cfg, ["tom@y.test"], msg_file, "--repeat", "2")
    finally:
        srv.close()
    assert r.returncode == 0, r.stdout + r.stderr
    assert [x["outcome"] for x in res] == ["delivered", "delivered"], res
    assert srv.connections == 2
    assert [n for n, _ in srv.messages] == [1, 2]
    assert stats["connections"] == 2 and stats["reused"] == 1, stats
    assert srv.messages[0][1] == MESSAGE.replace(b"\r\n.leading", b"\r\n..leading")


def test_reconfigure_closes_idle_connections(tmp_path, smarthost, certs, msg_file):
    cfg = write_config(tmp_path, relay_route(smarthost["port"], ca=certs.ca),
                       outbound_extra="  connection_reuse: 5s\n")
    r, res, stats = send(cfg, ["uma@y.test"], msg_file, "--repeat", "2", "--reconfigure")
    assert r.returncode == 0, r.stdout + r.stderr
    assert [x["outcome"] for x in res] == ["delivered", "delivered"]
    assert stats["connections"] == 2 and stats["reused"] == 0, stats


def test_mx_host_aaaa_first_then_a(tmp_path, smarthost, dns, msg_file):
    cfg = write_config(tmp_path, mx_route(smarthost["mx_port"]), dns_port=dns["port"])
    r, res, stats = send(cfg, ["vera@dual.test"], msg_file)
    assert r.returncode == 0, r.stdout + r.stderr
    assert res[0]["outcome"] == "delivered" and res[0]["host"] == "mail.dual.test", res
    # the IPv6 address was tried first and failed, then the IPv4 one worked
    tried = re.findall(r'msg="outbound attempt failed" dest=dual\.test error="connect to '
                       r'mail\.dual\.test\[([^\]]+)\]', r.stderr)
    assert tried == ["::1"], r.stderr
    assert re.search(r'msg="outbound connected" dest=dual\.test host=mail\.dual\.test '
                     r'addr=127\.0\.0\.1', r.stderr), r.stderr


def test_starttls_required_but_not_offered_is_tempfail(tmp_path, msg_file):
    port = harness.free_port()
    srv = ScriptedSmtp(port)  # its EHLO offers no STARTTLS
    try:
        cfg = write_config(tmp_path, relay_route(port, tls="starttls", user=None))
        r, res, stats = send(cfg, ["walt@y.test"], msg_file)
    finally:
        srv.close()
    assert r.returncode == 1
    assert res[0]["outcome"] == "tempfail", res
    assert "STARTTLS" in res[0]["text"] or "starttls" in res[0]["text"].lower(), res
    assert srv.messages == []  # nothing went out in clear


def test_relay_by_name_from_the_hosts_file(tmp_path, smarthost, certs, msg_file):
    # "localhost" comes from /etc/hosts (no DNS server is configured that
    # knows it); the certificate must name it (DNS:localhost) to verify
    if "localhost" not in open("/etc/hosts").read():
        pytest.fail("/etc/hosts has no localhost entry")
    cfg = write_config(tmp_path, relay_route(smarthost["port"], ca=certs.ca, host="localhost"),
                       dns_port=harness.free_port())
    r, res, stats = send(cfg, ["xena@y.test"], msg_file)
    assert r.returncode == 0, r.stdout + r.stderr
    assert res[0]["host"] == "localhost"
    assert re.search(r'msg="outbound tls" dest=localhost .* verified=yes', r.stderr), r.stderr
    delivered_copy(smarthost, "xena@y.test")


class BrokenTlsSmtp:
    """An SMTP server whose EHLO offers STARTTLS but whose TLS is broken.
    STARTTLS is answered per `mode`:
      "garbage": 220, then (after the client's first handshake bytes) a
                 plain-text line instead of a ServerHello, then close;
      "close":   220, then (after the client's first handshake bytes) close;
      "454":     454 4.7.0 TLS not available (the session goes on).
    Every other command as ScriptedSmtp (every transaction accepted).  Kept
    per connection: whether STARTTLS was asked for and what was received."""

    def __init__(self, port, mode):
        import socket
        import threading
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(8)
        self.mode = mode
        self.connections = 0
        self.starttls = []    # connection numbers that sent STARTTLS
        self.handshakes = []  # (connection, first bytes after our 220 to STARTTLS)
        self.messages = []    # (connection, body)
        self.lock = threading.Lock()
        self.threading = threading
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                n = self.connections
            self.threading.Thread(target=self._serve, args=(c, n), daemon=True).start()

    def _serve(self, c, n):
        f = c.makefile("rb")
        c.settimeout(20)
        try:
            c.sendall(b"220 broken-tls ESMTP\r\n")
            while True:
                line = f.readline()
                if not line:
                    return
                cmd = line[:4].upper()
                if cmd == b"EHLO":
                    c.sendall(b"250-broken-tls\r\n250-STARTTLS\r\n250 8BITMIME\r\n")
                elif line.strip().upper() == b"STARTTLS":
                    self.starttls.append(n)
                    if self.mode == "454":
                        c.sendall(b"454 4.7.0 TLS not available due to local problem\r\n")
                        continue
                    c.sendall(b"220 2.0.0 ready to start TLS\r\n")
                    # wait for the ClientHello (deterministic: nothing of
                    # ours arrives together with the 220)
                    hello = c.recv(4096)
                    self.handshakes.append((n, hello[:3]))
                    if self.mode == "garbage":
                        c.sendall(b"this is not TLS at all, sorry\r\n" * 4)
                    return
                elif cmd == b"MAIL" or cmd == b"RCPT":
                    c.sendall(b"250 2.1.0 ok\r\n")
                elif cmd == b"DATA":
                    c.sendall(b"354 go\r\n")
                    body = b""
                    while True:
                        dl = f.readline()
                        if not dl or dl == b".\r\n":
                            break
                        body += dl
                    self.messages.append((n, body))
                    c.sendall(b"250 2.0.0 queued\r\n")
                elif cmd == b"QUIT":
                    c.sendall(b"221 2.0.0 bye\r\n")
                    return
                else:
                    c.sendall(b"250 2.0.0 ok\r\n")
        except OSError:
            return
        finally:
            f.close()
            c.close()

    def close(self):
        self.sock.close()


STUFFED = MESSAGE.replace(b"\r\n.leading", b"\r\n..leading")


@pytest.mark.parametrize("mode", ["garbage", "close"])
def test_opportunistic_tls_handshake_failure_falls_back_to_plain(tmp_path, dns, msg_file, mode):
    # mx.test's MX host is 127.0.0.1; the mx route is opportunistic (the mx default)
    port = harness.free_port()
    srv = BrokenTlsSmtp(port, mode)
    try:
        cfg = write_config(tmp_path, mx_route(port), dns_port=dns["port"],
                           outbound_extra="  connection_reuse: 0s\n")
        r, res, stats = send(cfg, ["yann@mx.test"], msg_file, "--repeat", "2")
    finally:
        srv.close()
    assert r.returncode == 0, r.stdout + r.stderr
    assert [x["outcome"] for x in res] == ["delivered", "delivered"], res
    # 1: STARTTLS, the handshake fails; 2: the same address again without
    # STARTTLS, message 1; 3: message 2 goes straight to plain text (the
    # address is remembered as "TLS broken")
    assert srv.connections == 3, (srv.connections, r.stderr)
    assert srv.starttls == [1], srv.starttls
    assert [(n, b[:1]) for n, b in srv.handshakes] == [(1, b"\x16")]  # a TLS record came
    assert [n for n, _ in srv.messages] == [2, 3]
    assert all(body == STUFFED for _, body in srv.messages)
    assert stats["connections"] == 3 and stats["tls"] == 0 and stats["delivered"] == 2, stats
    assert re.search(r'msg="outbound tls failed, falling back to plain text" dest=mx\.test '
                     r'host=mail\.mx\.test addr=127\.0\.0\.1 port=%d error=.* plain_for=3600s '
                     r'retry_now=yes' % port, r.stderr), r.stderr
    assert len(re.findall(r'msg="outbound tls failed', r.stderr)) == 1, r.stderr
    skipped = re.findall(r'msg="outbound tls skipped" dest=mx\.test host=mail\.mx\.test '
                         r'addr=127\.0\.0\.1 port=%d reason="STARTTLS handshake failed '
                         r'recently" tls_again_in=(\d+)s' % port, r.stderr)
    assert len(skipped) == 2 and all(3500 < int(s) <= 3600 for s in skipped), r.stderr


def test_opportunistic_starttls_refused_goes_on_in_plain(tmp_path, msg_file):
    # a relay with tls: opportunistic; STARTTLS answered 454: the same
    # session goes on without TLS (no new connection, nothing remembered)
    port = harness.free_port()
    srv = BrokenTlsSmtp(port, "454")
    try:
        cfg = write_config(tmp_path, relay_route(port, tls="opportunistic", user=None,
                                                 verify=False))
        r, res, stats = send(cfg, ["zoe@y.test"], msg_file)
    finally:
        srv.close()
    assert r.returncode == 0, r.stdout + r.stderr
    assert res[0]["outcome"] == "delivered", res
    assert srv.connections == 1 and srv.starttls == [1]
    assert srv.messages == [(1, STUFFED)]
    assert "falling back to plain text" not in r.stderr, r.stderr


@pytest.mark.parametrize("tls,verify", [("starttls", False), ("starttls", True),
                                        ("implicit", False)])
def test_required_tls_handshake_failure_never_plain(tmp_path, certs, msg_file, tls, verify):
    port = harness.free_port()
    srv = BrokenTlsSmtp(port, "garbage")
    try:
        cfg = write_config(tmp_path, relay_route(port, tls=tls, user=None, verify=verify,
                                                 ca=certs.ca if verify else None),
                           outbound_extra="  connection_reuse: 0s\n")
        r, res, stats = send(cfg, ["abe@y.test"], msg_file, "--repeat", "2")
    finally:
        srv.close()
    assert r.returncode == 1, r.stdout + r.stderr
    assert [x["outcome"] for x in res] == ["tempfail", "tempfail"], res
    assert all("TLS" in x["text"] or "tls" in x["text"] for x in res), res
    # one connection per message, each trying TLS; nothing in clear
    assert srv.connections == 2, (srv.connections, r.stderr)
    assert srv.messages == []
    if tls == "starttls":
        assert srv.starttls == [1, 2], srv.starttls
    else:
        assert srv.starttls == []  # our greeting was the handshake's garbage
    assert stats["connections"] == 2 and stats["tls"] == 0, stats
    assert "falling back to plain text" not in r.stderr, r.stderr
    assert "outbound tls skipped" not in r.stderr, r.stderr
