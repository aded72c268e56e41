"""The whole mail flow over the two-host topology (deploy/netns, issue #9).

One run of deploy/netns/topology.sh for the module, with real parts in it:

  mailbox  a private PostgreSQL cluster (initdb'd as `nobody`) and
           redis-server on the namespace's loopback, the fs blob store, and
           tailpost-mailbox bound ONLY to its tailnet address (mx,
           submission, submissions, imap, imaps with a test CA's
           certificate; PROXY trusted from the edge's tailnet address only,
           anyone else refused), migrated, with the domain example.test and
           the account demo@example.test, and an outbound relay route to
           the relay's tailnet address (STARTTLS, AUTH, no verification);
  edge     tailpost-edge on the public addresses (IPv4 and IPv6) forwarding
           25, 465, 587, 143 and 993 over the tunnel with PROXY v2;
  relay    a private Postfix smarthost on its tunnel address, port 587:
           TLS required, SASL (a private Dovecot as the auth service, no
           protocols), delivering example.net into a Maildir;
  client   swaks (smtplib for IPv6) and Python's imaplib, on the "public"
           network.

Checks: mail sent by the client to port 25 on the edge (IPv4 and IPv6) is
stored with the client's public address in our Received: field, and reads
back byte for byte over IMAPS through the edge (certificate verified); a
submission on 587 through the edge (STARTTLS + AUTH) to an external
address leaves the mailbox through the queue and the relay route, over the
tunnel, authenticated and encrypted, and lands in the relay's Maildir with
the body intact; the client cannot reach the mailbox or the relay; an
untrusted tunnel peer gets no SMTP greeting; the mailbox daemon listens
only on its tunnel address (its stores only on loopback); and after the
module nothing of the run is left (namespace, link, socket, process).

Root is needed; the module is skipped only if this machine cannot create a
network namespace.  The submission test needs outbound delivery (issue #7:
the `outbound:` section and the delivery workers); while tailpost-mailbox
refuses that section the fixture runs without it and that test fails
saying so, and without workers it fails showing the queue.
"""
import base64
import json
import os
import pathlib
import pwd
import re
import shutil
import sys
import tempfile

import pytest

import harness
import netns_util
import postfix_util
from mailbox_util import Certs, pp_v2

_why = netns_util.netns_usable()
pytestmark = pytest.mark.skipif(_why is not None, reason=f"network namespaces unavailable: {_why}")

# edge listener name -> port (edge.example.yaml); the mailbox listener and
# role behind each
PORTS = {"smtp": 25, "submissions": 465, "submission": 587, "imap": 143, "imaps": 993}
ROLES = {25: ("mx", "mx"), 465: ("submissions", "submissions"),
         587: ("submission", "submission"), 143: ("imap", "imap"), 993: ("imaps", "imaps")}
PG_PORT, REDIS_PORT = 5432, 6379  # on the mailbox namespace's own loopback
RELAY_PORT = 587
DOMAIN = "example.test"
USER = f"demo@{DOMAIN}"
PASSWORD = "demo-pw-4711"
EXT_DOMAIN = "example.net"
EXT_RCPT = f"bob@{EXT_DOMAIN}"
CONTROL_RCPT = f"carol@{EXT_DOMAIN}"  # the relay's own checks deliver here
RELAY_USER, RELAY_PASSWORD = "relayuser", "relay-pw-0815"
SWAKS = shutil.which("swaks") or "/usr/bin/swaks"
DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
OUTBOUND_WAIT = 60.0  # seconds for a submitted message to reach the relay's Maildir


def issue_cert(certs, name, sans):
    """A leaf from the test CA with these subjectAltNames ("DNS:x", "IP:y")."""
    key, csr = certs.dir / f"{name}.key", certs.dir / f"{name}.csr"
    leaf, cert, ext = (certs.dir / f"{name}.leaf.pem", certs.dir / f"{name}.pem",
                       certs.dir / f"{name}.ext")
    ext.write_text("subjectAltName=" + ",".join(sans) + "\n")
    certs._run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
               "-keyout", key, "-out", csr, "-subj", f"/CN={sans[0].split(':', 1)[1]}")
    certs._run("x509", "-req", "-in", csr, "-CA", certs.ca, "-CAkey", certs.ca_key,
               "-CAcreateserial", "-out", leaf, "-days", "2", "-extfile", ext)
    cert.write_bytes(leaf.read_bytes() + certs.ca.read_bytes())
    return cert, key


# --- the relay: Postfix + Dovecot SASL in the relay namespace ----------------


def start_relay(t, tmp, certs):
    """A private Postfix smarthost on the relay's tunnel address: TLS
    required, AUTH through a private Dovecot auth service, example.net
    delivered into a Maildir.  Returns a dict (paths, log); its processes
    are in t.procs (stopped by PID in t.down())."""
    if not os.access(postfix_util.POSTFIX, os.X_OK):
        pytest.fail("postfix not installed (deploy/deps.sh --test)")
    if not os.access(DOVECOT, os.X_OK):
        pytest.fail("dovecot not installed: the relay's SASL service (deploy/deps.sh --test)")
    ip = t.env["TAILPOST_NETNS_RELAY_TAILNET_IP"]
    pf = pwd.getpwnam("postfix")
    # Postfix and Dovecot open files here as their own users: a directory
    # they can traverse (pytest's tmp dir is private to root).
    base = pathlib.Path(tempfile.mkdtemp(prefix="tailpost-relay-", dir=harness._tmp_base()))
    conf, queue, data, mail, dv = (base / d for d in ("conf", "queue", "data", "mail",
                                                      "dovecot"))
    t.relay_base = base  # removed by the fixture's teardown
    os.chmod(base, 0o755)
    for d in (conf, queue, data, mail, dv, dv / "run", dv / "state", base / "tls"):
        d.mkdir(mode=0o755)
        os.chmod(d, 0o755)
    for d in (data, mail):
        os.chown(d, pf.pw_uid, pf.pw_gid)
    cert, key = issue_cert(certs, "relay", ["DNS:relay.test", f"IP:{ip}"])
    cert, key = (pathlib.Path(shutil.copy(p, base / "tls")) for p in (cert, key))
    (conf / "vmailbox").write_text(f"{EXT_RCPT} {EXT_DOMAIN}/bob/\n"
                                   f"{CONTROL_RCPT} {EXT_DOMAIN}/carol/\n")
    (conf / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
command_directory = /usr/sbin
daemon_directory = {postfix_util.DAEMON_DIR}
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = {ip}
inet_protocols = ipv4
maillog_file = /dev/stdout
syslog_name = relay-{t.id}
myhostname = relay.test
mydestination =
mynetworks = 127.0.0.0/8
local_recipient_maps =
alias_maps =
alias_database =
biff = no
virtual_mailbox_domains = {EXT_DOMAIN}
virtual_mailbox_base = {mail}
virtual_mailbox_maps = texthash:{conf}/vmailbox
virtual_minimum_uid = {pf.pw_uid}
virtual_uid_maps = static:{pf.pw_uid}
virtual_gid_maps = static:{pf.pw_gid}
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_security_level = encrypt
smtpd_tls_auth_only = yes
smtpd_tls_received_header = yes
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = private/auth
smtpd_sasl_authenticated_header = yes
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_recipient_restrictions = permit_sasl_authenticated, reject
""")
    (conf / "master.cf").write_text(f"{ip}:{RELAY_PORT} inet n - n - - smtpd\n" +
                                    postfix_util._SERVICES +
                                    "virtual   unix  -       n       n       -       -       "
                                    "virtual\n")
    env = harness._clean_env({"MAIL_CONFIG": str(conf)})
    # creates the queue directories (private/ for the auth socket) in place
    t.run("relay", [postfix_util.POSTFIX, "-c", conf, "check"], env=env, timeout=60)

    (dv / "passwd").write_text(f"{RELAY_USER}:{{PLAIN}}{RELAY_PASSWORD}::::::\n")
    (dv / "dovecot.conf").write_text(f"""\
base_dir = {dv}/run
state_dir = {dv}/state
instance_name = tailpost-relay-{t.id}
log_path = /dev/stderr
protocols =
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {dv}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}}
service auth {{
  unix_listener {queue}/private/auth {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
""")
    relay = {"base": base, "mail": mail, "log": base / "postfix.log",
             "dovecot_log": base / "dovecot.log", "ip": ip}
    harness.watch_log("relay-dovecot", relay["dovecot_log"])
    dvp = t.spawn("relay", [DOVECOT, "-F", "-c", dv / "dovecot.conf"], relay["dovecot_log"],
                  cwd=base)
    auth_sock = queue / "private" / "auth"

    def dovecot_ready():
        if dvp.poll() is not None:
            raise RuntimeError(f"dovecot exited ({dvp.returncode}):\n"
                               f"{harness.log_tail(relay['dovecot_log'])}")
        return auth_sock.is_socket()

    harness.wait_for(dovecot_ready, timeout=20, what="the relay's dovecot auth socket")
    harness.watch_log("relay-postfix", relay["log"])
    mp = t.spawn("relay", [f"{postfix_util.DAEMON_DIR}/master", "-c", conf, "-s"], relay["log"],
                 env=env, cwd=base)

    def postfix_ready():
        if mp.poll() is not None:
            raise RuntimeError(f"postfix master exited ({mp.returncode}):\n"
                               f"{harness.log_tail(relay['log'])}")
        return (ip, RELAY_PORT) in t.listening("relay")

    harness.wait_for(postfix_ready, timeout=30, what="the relay's Postfix on its tunnel address")
    return relay


def relay_maildir(relay, user="bob"):
    return relay["mail"] / EXT_DOMAIN / user / "new"


# --- the mailbox and the edge --------------------------------------------------


def listeners_yaml(env, cert, key):
    mbox, edge = env["TAILPOST_NETNS_MAILBOX_TAILNET_IP"], env["TAILPOST_NETNS_EDGE_TAILNET_IP"]
    out = ""
    for port, (name, role) in ROLES.items():
        out += (f"  - name: {name}\n    role: {role}\n    bind: [\"{mbox}:{port}\"]\n"
                f"    tls: {{ cert: \"{cert}\", key: \"{key}\" }}\n"
                f"    proxy: {{ trusted: [\"{edge}/32\"], header_timeout: 3s, "
                f"untrusted: refuse }}\n")
    return out


def outbound_yaml(env):
    relay = env["TAILPOST_NETNS_RELAY_TAILNET_IP"]
    return f"""\
outbound:
  poll: 1s
  retry: "5s"
  routes:
    - name: tailnet-relay
      domains: ["*"]
      type: relay
      host: "{relay}"
      port: {RELAY_PORT}
      tls: starttls
      verify: false
      auth: {{ user: {RELAY_USER}, password: "${{TAILPOST_RELAY_PASSWORD}}" }}
"""


def edge_config(env):
    pub4, pub6 = env["TAILPOST_NETNS_EDGE_PUBLIC_IP"], env["TAILPOST_NETNS_EDGE_PUBLIC_IP6"]
    mbox = env["TAILPOST_NETNS_MAILBOX_TAILNET_IP"]
    lines = ["# generated by tests/integration/test_netns_mail.py", "workers: 1",
             "shutdown_grace: 1s", "listeners:"]
    for name, port in PORTS.items():
        lines += [f"  - name: {name}",
                  f'    bind: ["{pub4}:{port}", "[{pub6}]:{port}"]',
                  f'    upstreams: ["{mbox}:{port}"]',
                  "    proxy_protocol: v2",
                  "    connect_timeout: 5s",
                  "    health_check: { enabled: false }"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    for p in (harness.bin_path("tailpost-edge"), harness.bin_path("tailpost-mailbox")):
        if not p.exists():
            pytest.fail(f"{p} is not built (make BUILD=... all tools)")
    if not os.access(SWAKS, os.X_OK):
        pytest.fail("swaks not installed (deploy/deps.sh --test)")
    tmp = tmp_path_factory.mktemp("netns_mail")
    t = netns_util.Topology()
    pg = redis = mb = None
    mb_rc = None
    try:
        t.up()
        env = t.env
        t.tmp = tmp
        t.certs = Certs(tmp / "certs")
        t.cert, t.key = issue_cert(t.certs, "mail", [
            "DNS:mail.test", f"IP:{env['TAILPOST_NETNS_EDGE_PUBLIC_IP']}",
            f"IP:{env['TAILPOST_NETNS_EDGE_PUBLIC_IP6']}",
            f"IP:{env['TAILPOST_NETNS_MAILBOX_TAILNET_IP']}"])

        pg = netns_util.NetnsPostgres(t, "mailbox")
        pg.start(port=PG_PORT)
        redis = netns_util.NetnsRedis(t, "mailbox")
        redis.start(port=REDIS_PORT)
        t.relay = start_relay(t, tmp, t.certs)

        mb = netns_util.NetnsMailbox(t, "mailbox", tmp, pg.db, redis=redis,
                                     env={"TAILPOST_RELAY_PASSWORD": RELAY_PASSWORD})
        t.mb, t.pg = mb, pg
        spool = mb.dir / "spool"
        listeners = listeners_yaml(env, t.cert, t.key)
        smtp = f'smtp: {{ spool_dir: "{spool}" }}\n'
        # Outbound delivery (issue #7) may not be built yet: then the daemon
        # runs without the section and only the submission test fails.
        mb.write_config(listeners, extra=smtp + outbound_yaml(env))
        r = mb.cli("migrate")
        t.outbound_error = None
        if r.returncode != 0:
            out = r.stdout + r.stderr
            if "outbound" not in out:
                pytest.fail(f"tailpost-mailbox migrate failed:\n{out}")
            t.outbound_error = ("outbound delivery is not built: " if
                                "key 'outbound': unknown key" in out else
                                "the outbound: section of this test is refused: ") + out.strip()
            mb.write_config(listeners, extra=smtp)
            mb.migrate()
        r = mb.cli("check")
        assert r.returncode == 0, f"tailpost-mailbox check failed:\n{r.stdout}{r.stderr}"
        for args, inp in ((("domain", "add", DOMAIN), None),
                          (("account", "add", USER), PASSWORD + "\n")):
            r = mb.cli(*args, input=inp)
            assert r.returncode == 0, f"{args}: {r.stdout}{r.stderr}"
        mb.start()

        cfg = tmp / "edge.yaml"
        cfg.write_text(edge_config(env))
        t.edge_log = tmp / "edge.log"
        harness.watch_log("edge", t.edge_log)
        t.edge = t.spawn("edge", [harness.bin_path("tailpost-edge"), "-c", cfg], t.edge_log)
        want_edge = {(a, p) for p in PORTS.values()
                     for a in (env["TAILPOST_NETNS_EDGE_PUBLIC_IP"],
                               env["TAILPOST_NETNS_EDGE_PUBLIC_IP6"])}

        def edge_ready():
            if t.edge.poll() is not None:
                raise RuntimeError(f"tailpost-edge exited ({t.edge.returncode}):\n"
                                   f"{harness.log_tail(t.edge_log)}")
            return want_edge <= t.listening("edge")

        harness.wait_for(edge_ready, timeout=20, what="tailpost-edge listening")
        yield t
    finally:
        harness.unwatch_log("edge")
        harness.unwatch_log("relay-postfix")
        harness.unwatch_log("relay-dovecot")
        if mb is not None and mb.proc is not None:
            mb_rc = mb.stop()
        for svc in (redis, pg):
            if svc is not None:
                svc.close()
        if t.is_up:
            t.down()
        if getattr(t, "relay_base", None) is not None and not harness._keep_tmp():
            shutil.rmtree(t.relay_base, ignore_errors=True)
        left = t.leftovers()
        assert not left, f"topology run {t.id} left behind: {left}"
        if mb is not None and mb.proc is not None:
            assert mb_rc == 0, (f"tailpost-mailbox exited with {mb_rc}:\n"
                                f"{harness.log_tail(mb.log, 40)}")


# --- clients in the client namespace -------------------------------------------


def swaks(t, *args, timeout=90):
    return t.run("client", [SWAKS, "--helo", "client.example", "--timeout", "30"] + list(args),
                 timeout=timeout, check=False)


def message(subject, to, frm, body):
    head = (f"From: <{frm}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
            f"Date: Fri, 27 Nov 2026 08:00:00 +0000\r\n"
            f"Message-ID: <{subject.replace(' ', '-')}@client.example>\r\n\r\n")
    return head.encode() + body


def data_file(t, name, msg):
    """A file for swaks --data @FILE that makes swaks send exactly msg:
    swaks ends DATA with CRLF . CRLF after the file's content, so the
    message's own last CRLF is left out."""
    assert msg.endswith(b"\r\n")
    f = t.tmp / name
    f.write_bytes(msg[:-2])
    return f


# Runs in the client namespace: send one message (bytes, base64 in argv)
# with smtplib, print the final reply to DATA.
_SMTPLIB_SEND = r"""
import base64, smtplib, sys
host, port, frm, to, data = sys.argv[1:6]
with smtplib.SMTP(host, int(port), local_hostname="client.example", timeout=30) as s:
    s.ehlo()
    s.mail(frm)
    code, text = s.rcpt(to)
    assert code == 250, (code, text)
    code, text = s.data(base64.b64decode(data))
    print(code, text.decode())
"""


def smtplib_send(t, host, port, frm, to, msg):
    r = t.run("client", [sys.executable, "-c", _SMTPLIB_SEND, host, str(port), frm, to,
                         base64.b64encode(msg).decode()], timeout=60, check=False)
    assert r.returncode == 0, f"smtplib in the client namespace failed:\n{r.stderr}"
    return r.stdout.strip()


# Runs in the client namespace: IMAPS with certificate verification, find the
# message by subject, print BODY[] and BODY[TEXT] (base64) as JSON.
_IMAP_FETCH = r"""
import base64, imaplib, json, ssl, sys
host, port, ca, user, pw, subject = sys.argv[1:7]
ctx = ssl.create_default_context(cafile=ca)
m = imaplib.IMAP4_SSL(host, int(port), ssl_context=ctx, timeout=20)
m.login(user, pw)
typ, _ = m.select("INBOX", readonly=True)
assert typ == "OK", typ
typ, data = m.uid("SEARCH", None, "SUBJECT", '"' + subject + '"')
uids = data[0].split()
out = {"uids": [u.decode() for u in uids], "tls": m.sock.version()}
if uids:
    typ, data = m.uid("FETCH", uids[-1], "(BODY.PEEK[] BODY.PEEK[TEXT])")
    parts = {}
    for item in data:
        if isinstance(item, tuple):
            key = b"TEXT" if b"BODY[TEXT]" in item[0] else b"FULL"
            parts[key.decode()] = base64.b64encode(item[1]).decode()
    out.update(parts)
m.logout()
print(json.dumps(out))
"""


def imap_fetch(t, subject, host=None):
    host = host or t.env["TAILPOST_NETNS_EDGE_PUBLIC_IP"]
    r = t.run("client", [sys.executable, "-c", _IMAP_FETCH, host, "993", t.certs.ca, USER,
                         PASSWORD, subject], timeout=60, check=False)
    assert r.returncode == 0, f"imaplib in the client namespace failed:\n{r.stderr}"
    out = json.loads(r.stdout)
    for k in ("FULL", "TEXT"):
        if k in out:
            out[k] = base64.b64decode(out[k])
    return out


def received_fields(data):
    """The Received: fields of a message's header, unfolded, in order."""
    head = data.split(b"\r\n\r\n", 1)[0].replace(b"\r\n\t", b" ").replace(b"\r\n ", b" ")
    return [line.decode(errors="replace") for line in head.split(b"\r\n")
            if line.lower().startswith(b"received:")]


# --- the tests -----------------------------------------------------------------


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_mx_through_edge_stored_with_client_address(stack, family):
    t = stack
    env = t.env
    if family == "ipv4":
        server, client_ip = env["TAILPOST_NETNS_EDGE_PUBLIC_IP"], env["TAILPOST_NETNS_CLIENT_IP"]
    else:
        server, client_ip = env["TAILPOST_NETNS_EDGE_PUBLIC_IP6"], env["TAILPOST_NETNS_CLIENT_IP6"]
    subject = f"netns mx {family}"
    body = (b"Hello over the edge and the tunnel.\r\n"
            b"A second line with trailing spaces   \r\n\r\n"
            + b"x" * 990 + b"\r\nend " + family.encode() + b"\r\n")
    msg = message(subject, USER, "alice@example.net", body)
    if family == "ipv4":
        s = swaks(t, "--server", server, "--port", "25", "--from", "alice@example.net",
                  "--to", USER, "--data", f"@{data_file(t, f'mx-{family}.eml', msg)}")
        assert s.returncode == 0, s.stdout + s.stderr
        assert re.search(r"<[-~] +250 2\.0\.0", s.stdout), s.stdout
    else:
        # Debian's swaks needs IO::Socket::INET6 for IPv6 (not a dependency
        # of ours): Python's smtplib sends this one.
        reply = smtplib_send(t, server, 25, "alice@example.net", USER, msg)
        assert reply.startswith("250 2.0.0"), reply

    got = harness.wait_for(lambda: (lambda o: o if o["uids"] else None)(imap_fetch(t, subject)),
                           timeout=20, what=f"{subject!r} in INBOX over IMAPS")
    assert got["tls"] in ("TLSv1.2", "TLSv1.3")
    full, text = got["FULL"], got["TEXT"]
    # the stored message is our trace fields followed by exactly what was sent
    assert full.endswith(msg), (full[-400:], msg[-400:])
    assert text == body
    trace = full[:len(full) - len(msg)]
    assert trace.startswith(b"Return-Path: <alice@example.net>\r\n"), trace
    rec = received_fields(full)
    assert len(rec) == 1, rec
    # The client's public address, decoded from the edge's PROXY v2 header,
    # not the edge's tunnel address.
    ip_text = client_ip if family == "ipv4" else f"IPv6:{client_ip}"
    assert f"from client.example ([{ip_text}])" in rec[0], rec[0]
    assert "by mail.test (tailpost listener mx)" in rec[0], rec[0]
    assert env["TAILPOST_NETNS_EDGE_TAILNET_IP"] not in rec[0]

    # The same message read through the IPv6 address of the edge too.
    if family == "ipv6":
        again = imap_fetch(t, subject, host=env["TAILPOST_NETNS_EDGE_PUBLIC_IP6"])
        assert again["FULL"] == full


def test_submission_leaves_via_relay_over_tunnel(stack):
    t = stack
    env = t.env
    subject = "netns submission"
    body = b"Leaving through the smarthost.\r\n\r\nSecond paragraph, line two.\r\n"
    msg = message(subject, EXT_RCPT, USER, body)
    f = data_file(t, "submission.eml", msg)
    s = swaks(t, "--server", env["TAILPOST_NETNS_EDGE_PUBLIC_IP"], "--port", "587", "-tls",
              "--tls-verify", "--tls-ca-path", t.certs.ca,
              "--auth", "PLAIN", "--auth-user", USER, "--auth-password", PASSWORD,
              "--from", USER, "--to", EXT_RCPT, "--data", f"@{f}")
    assert s.returncode == 0, s.stdout + s.stderr
    assert re.search(r"<~ +235 ", s.stdout) and re.search(r"<[-~] +250 2\.0\.0", s.stdout), s.stdout
    if t.outbound_error is not None:
        pytest.fail("submission through the edge was accepted, but the mailbox runs without "
                    f"outbound delivery (issue #7): {t.outbound_error}")

    new = relay_maildir(t.relay)

    def delivered():
        files = sorted(new.iterdir()) if new.is_dir() else []
        return files or None

    try:
        files = harness.wait_for(delivered, timeout=OUTBOUND_WAIT, interval=0.5,
                                 what=f"the submitted message in the relay's Maildir {new}")
    except TimeoutError:
        pytest.fail(f"not delivered to the relay within {OUTBOUND_WAIT}s; the mailbox's queue:\n"
                    + t.pg.psql("SELECT r.rcpt, r.status, r.attempts, r.last_error FROM "
                                "queue_rcpts r ORDER BY r.id", check=False)
                    + "\nrelay log:\n" + harness.log_tail(t.relay["log"], 30))
    assert len(files) == 1, files
    data = files[0].read_bytes()  # Postfix writes Maildir files with LF line ends
    head, sep, got_body = data.partition(b"\n\n")
    assert sep and got_body == body.replace(b"\r\n", b"\n"), (got_body, body)
    assert b"\nSubject: netns submission\n" in head
    unfolded = head.replace(b"\n\t", b" ").replace(b"\n ", b" ").decode(errors="replace")
    rec = [line for line in unfolded.split("\n") if line.lower().startswith("received:")]
    assert rec, head
    # The relay's own trace field (the newest): the mailbox came over the
    # tunnel from its tailnet address, encrypted and authenticated.
    mbox = env["TAILPOST_NETNS_MAILBOX_TAILNET_IP"]
    assert f"[{mbox}]" in rec[0], rec[0]
    assert "using TLS" in rec[0], rec[0]
    assert f"(Authenticated sender: {RELAY_USER})" in rec[0], rec[0]
    assert "by relay.test (Postfix) with ESMTPSA" in rec[0], rec[0]
    assert "Delivered-To: " + EXT_RCPT in unfolded
    # ... and the submission's own trace field below it names the client.
    assert any(f"[{env['TAILPOST_NETNS_CLIENT_IP']}]" in r for r in rec[1:]), rec
    # Postfix logged the same transaction (its queue id is in the field).
    qid = re.search(r"with ESMTPSA id (\w+)", rec[0]).group(1)
    log = pathlib.Path(t.relay["log"]).read_text(errors="replace")
    assert re.search(rf"{qid}: client=\S*\[{re.escape(mbox)}\], sasl_method=\w+, "
                     rf"sasl_username={RELAY_USER}\b", log), log[-3000:]


def test_relay_requires_tls_and_auth(stack):
    """The stand-in smarthost itself, from the mailbox's namespace: mail
    without TLS or without AUTH is refused, with both it is delivered (so
    what the submission test sees in the relay's Received: field means
    something)."""
    t = stack
    relay = t.env["TAILPOST_NETNS_RELAY_TAILNET_IP"]
    msg = message("relay control", CONTROL_RCPT, "demo@example.test", b"control\r\n")
    f = data_file(t, "control.eml", msg)
    base = [SWAKS, "--helo", "mail.test", "--timeout", "20", "--server", relay, "--port",
            str(RELAY_PORT), "--from", USER, "--to", CONTROL_RCPT, "--data", f"@{f}"]
    auth = ["--auth", "PLAIN", "--auth-user", RELAY_USER, "--auth-password", RELAY_PASSWORD]
    r = t.run("mailbox", base + auth[:1] + ["--auth-optional"], timeout=60, check=False)
    assert r.returncode != 0 and re.search(r"<\*\* +530 ", r.stdout), r.stdout
    r = t.run("mailbox", base + ["-tls"], timeout=60, check=False)
    assert r.returncode != 0 and re.search(r"<~\* +554 5\.7\.1 ", r.stdout), r.stdout
    r = t.run("mailbox", base + ["-tls", "--auth", "PLAIN", "--auth-user", RELAY_USER,
                                 "--auth-password", "wrong"], timeout=60, check=False)
    assert r.returncode != 0 and re.search(r"<~\* +535 ", r.stdout), r.stdout
    assert not relay_maildir(t.relay, "carol").exists()
    r = t.run("mailbox", base + ["-tls"] + auth, timeout=60, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    files = harness.wait_for(lambda: (lambda d: sorted(d.iterdir()) if d.is_dir() else None)(
        relay_maildir(t.relay, "carol")), timeout=20, what="the control message in the Maildir")
    data = files[0].read_bytes()
    assert data.endswith(b"\n\ncontrol\n") and b"(Authenticated sender: relayuser)" in data, data


def test_client_cannot_reach_mailbox_or_relay(stack):
    t = stack
    env = t.env
    mbox, relay = env["TAILPOST_NETNS_MAILBOX_TAILNET_IP"], env["TAILPOST_NETNS_RELAY_TAILNET_IP"]
    # Positive controls: over the tunnel the mailbox reaches the relay, and
    # the edge reaches the mailbox.
    assert t.probe("mailbox", [[relay, RELAY_PORT]]) == {f"{relay}:{RELAY_PORT}": "connected"}
    assert t.probe("edge", [[mbox, 993]]) == {f"{mbox}:993": "connected"}
    targets = [[mbox, p] for p in ROLES] + [
        [env["TAILPOST_NETNS_MAILBOX_TAILNET_IP6"], 25],
        [env["TAILPOST_NETNS_MAILBOX_UNDERLAY_IP"], 25], [mbox, PG_PORT], [mbox, REDIS_PORT],
        [relay, RELAY_PORT], [env["TAILPOST_NETNS_RELAY_TAILNET_IP6"], RELAY_PORT],
        [env["TAILPOST_NETNS_RELAY_UNDERLAY_IP"], RELAY_PORT]]
    res = t.probe("client", targets, timeout=2.0)
    reached = {k: v for k, v in res.items() if v not in ("timeout", "unreachable")}
    assert not reached, f"the client reached hosts behind the edge: {reached}"
    pub = env["TAILPOST_NETNS_EDGE_PUBLIC_IP"]
    res = t.probe("client", [[pub, p] for p in PORTS.values()])
    assert set(res.values()) == {"connected"}, res


# Runs in a namespace: connect, send the given bytes (hex), print the first line.
_GREETING = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.sendall(bytes.fromhex(sys.argv[3]))
print(s.makefile("rb").readline().decode(errors="replace"), end="")
s.sendall(b"QUIT\r\n")
s.close()
"""


def test_untrusted_tunnel_peer_gets_no_greeting(stack):
    """PROXY is trusted from the edge's tunnel address only: the relay, also
    on the tunnel, is refused before any SMTP greeting."""
    t = stack
    mbox = t.env["TAILPOST_NETNS_MAILBOX_TAILNET_IP"]
    res = t.exchange("relay", [[mbox, 25], [mbox, 993]], timeout=8.0)
    for r in res:
        # closed at once, without a byte (a timeout would not be a refusal)
        assert r.get("reply") == "" or "ConnectionResetError" in r.get("error", ""), r
    # Positive control: from the edge's tunnel address the same header-first
    # connection is served.
    hdr = pp_v2((t.env["TAILPOST_NETNS_CLIENT_IP"], 40000), (mbox, 25))
    r = t.run("edge", [sys.executable, "-c", _GREETING, mbox, "25", hdr.hex()], timeout=30)
    assert r.stdout.startswith("220 mail.test "), r.stdout + r.stderr


def test_mailbox_binds_only_tunnel_address(stack):
    t = stack
    env = t.env
    mbox = env["TAILPOST_NETNS_MAILBOX_TAILNET_IP"]
    socks = t.listeners("mailbox")
    daemon = {(ip, port) for ip, port, _, pid in socks if pid == t.mb.proc.pid}
    assert daemon == {(mbox, p) for p in ROLES}, socks
    # the stores listen on the namespace's loopback only; nothing else listens
    others = {(ip, port) for ip, port, _, pid in socks if pid != t.mb.proc.pid}
    assert others == {("127.0.0.1", PG_PORT), ("127.0.0.1", REDIS_PORT)}, socks
    # the relay: Postfix on its tunnel address only
    relay = {(ip, port) for ip, port, _, _ in t.listeners("relay")}
    assert relay == {(env["TAILPOST_NETNS_RELAY_TAILNET_IP"], RELAY_PORT)}, relay
