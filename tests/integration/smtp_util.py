"""Helpers for the SMTP integration tests (mailbox/smtp, mailbox/delivery).

SmtpMailbox  a tailpost-mailbox (mailbox_util.Mailbox) with SMTP listeners
             on free loopback ports, a spool dir, certificates, and a small
             directory: domain example.org; accounts alice@example.org,
             bob@example.org (users), root@example.org (admin); the alias
             team@example.org -> alice, bob, ext@remote.example.  Every
             listener role is there: mx (STARTTLS), mx behind a trusted
             PROXY peer (proxy_peer, 127.0.0.2 by default; "mxp"),
             submission (STARTTLS), submission
             without TLS (allow_plaintext_auth), submissions (implicit TLS).
Stored       what Postgres holds for delivered messages, and their blobs
             from the fs dir or S3, to compare byte for byte.
Raw          a socket SMTP client for what no packaged client does (BDAT,
             exact bytes, pipelining by hand, stopping mid-DATA).

All waits are bounded; processes are stopped by PID by their owners.
"""
import json
import pathlib
import socket
import ssl
import time

import harness
from mailbox_util import Certs, Mailbox, listener

DOMAIN = "example.org"
PASSWORDS = {"alice@example.org": "alice-pw", "bob@example.org": "bob-pw",
             "root@example.org": "root-pw"}
EDGE_IP = "127.0.0.2"
TIMEOUT = 10.0


def sql_literal(s):
    return "'" + str(s).replace("'", "''") + "'"


class SmtpMailbox:
    """tailpost-mailbox with all SMTP roles; see the module docstring."""

    def __init__(self, tmp, postgres, db, *, redis=None, s3=None, s3_bucket=None,
                 smtp_extra="", extra="", name="mailbox", proxy_peer=EDGE_IP,
                 proxy_untrusted="direct", env=None, mx_extra=""):
        self.tmp = pathlib.Path(tmp)
        self.postgres = postgres
        self.db = db
        self.certs = Certs(self.tmp / f"{name}-certs")
        self.cert, self.key = self.certs.issue("mail")
        self.mb = Mailbox(self.tmp, db, name=name, redis=redis, s3=s3, s3_bucket=s3_bucket,
                          env=env)
        self.spool = self.mb.dir / "spool"
        self.ports = {n: harness.free_port() for n in
                      ("mx", "mxp", "sub", "subplain", "subs", "admin")}
        tls = f'tls: {{ cert: "{self.cert}", key: "{self.key}" }}'
        proxy = (f'proxy: {{ trusted: ["{proxy_peer}/32"], header_timeout: 2s, '
                 f'untrusted: {proxy_untrusted} }}')
        self.listeners = (listener("mx", "mx", self.ports["mx"], tls + "\n" + mx_extra) +
                          listener("mxp", "mx", self.ports["mxp"], tls + "\n" + proxy) +
                          listener("sub", "submission", self.ports["sub"], tls) +
                          listener("subplain", "submission", self.ports["subplain"],
                                   "allow_plaintext_auth: true") +
                          listener("subs", "submissions", self.ports["subs"], tls) +
                          listener("admin", "http", self.ports["admin"]))
        self.smtp_extra = smtp_extra
        self.extra = extra
        self.write_config()

    def write_config(self, smtp_extra=None):
        if smtp_extra is not None:
            self.smtp_extra = smtp_extra
        smtp = f'smtp:\n  spool_dir: "{self.spool}"\n' + "".join(
            "  " + l + "\n" for l in self.smtp_extra.strip("\n").splitlines() if l)
        # the queue engine stays off unless a test configures outbound:
        # SMTP tests look at the queue rows that submission wrote
        outbound = "" if "outbound" in self.extra else "outbound: { enabled: false }\n"
        self.mb.write_config(self.listeners, extra=self.extra + outbound + smtp)

    def setup_directory(self):
        self.mb.migrate()
        self.cli("domain", "add", DOMAIN)
        for login, pw in PASSWORDS.items():
            role = ["--role", "admin"] if login.startswith("root") else []
            self.cli("account", "add", login, *role, input=pw + "\n")
        self.cli("alias", "add", f"team@{DOMAIN}", f"alice@{DOMAIN}", f"bob@{DOMAIN}",
                 "ext@remote.example")
        self.cli("alias", "add", f"postmaster@{DOMAIN}", f"root@{DOMAIN}")
        # a bare <Postmaster> is postmaster@<hostname> (RFC 5321 4.5.1)
        self.cli("domain", "add", "mail.test")
        self.cli("alias", "add", "postmaster@mail.test", f"root@{DOMAIN}")
        return self

    def cli(self, *args, input=None):
        r = self.mb.cli(*args, input=input)
        assert r.returncode == 0, f"{args}: {r.stdout}{r.stderr}"
        return r.stdout

    def start(self):
        """Start (or restart after a kill) and wait for this process's own
        "ready" line (the log is appended to across restarts)."""
        n = len([d for d in self.mb.lines() if d.get("msg") == "ready"])
        self.mb.start(wait=False)
        self.mb.wait_log(lambda d: d.get("msg") == "ready", count=n + 1, what="ready")
        return self

    def peak_rss_kb(self):
        """VmHWM of the running daemon (peak resident set), in KiB."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        raise AssertionError("no VmHWM")

    def last_log(self, msg):
        """The newest log line with this msg."""
        return self.mb.wait_log(lambda d: d.get("msg") == msg, what=msg)[-1]

    def stop(self):
        return self.mb.stop()

    @property
    def proc(self):
        return self.mb.proc

    def client_context(self):
        ctx = self.certs.client_context()
        return ctx

    # -- what is stored
    def query(self, sql):
        """Rows of sql as a list of dicts (through json_agg)."""
        out = self.postgres.psql(f"SELECT coalesce(json_agg(t), '[]') FROM ({sql}) t",
                                 dbname=self.db.name).strip()
        return json.loads(out)

    def messages(self, login=None):
        """Stored messages (newest last), optionally of one account's INBOX."""
        where = ""
        if login is not None:
            where = f"WHERE a.login = {sql_literal(login)}"
        return self.query(
            "SELECT m.id, m.uid, m.modseq, m.size, m.blob_key, m.envelope, m.bodystructure,"
            " m.hdr_from, m.hdr_to, m.hdr_subject, m.hdr_message_id, m.parts, m.search_text,"
            " mb.name AS mailbox, a.login"
            " FROM messages m JOIN mailboxes mb ON mb.id = m.mailbox_id"
            f" JOIN accounts a ON a.id = mb.account_id {where} ORDER BY m.id")

    def queue(self):
        return self.query(
            "SELECT q.id, q.sender, q.blob_key, q.size, q.dsn_ret, q.dsn_envid, q.account_id,"
            " r.rcpt, r.status, r.dsn_notify, r.dsn_orcpt"
            " FROM queue_messages q JOIN queue_rcpts r ON r.message_id = q.id ORDER BY r.id")

    def blob(self, key):
        """A stored blob's bytes (fs dir or S3)."""
        if self.mb.s3 is None:
            return (self.mb.blobs / key[:2] / key[2:4] / key).read_bytes()
        st, body, _ = harness.s3_request(self.mb.s3.endpoint, self.mb.s3.region,
                                         self.mb.s3.access_key, self.mb.s3.secret_key, "GET",
                                         f"/{self.mb.s3_bucket}/{key}")
        assert st == 200, (st, body[:200])
        return body

    def spool_files(self):
        return sorted(p.name for p in self.spool.iterdir()) if self.spool.exists() else []

    def wait_stored(self, count, login=None, timeout=TIMEOUT):
        return harness.wait_for(lambda: (lambda m: m if len(m) >= count else None)(
            self.messages(login)), timeout=timeout, what=f"{count} stored messages")


def check_stored(sm, msg, body_sent, login):
    """The stored blob is exactly Return-Path, our Received:, then the
    message with CRLF line ends; returns the blob."""
    data = sm.blob(msg["blob_key"])
    assert len(data) == msg["size"]
    import hashlib
    assert hashlib.sha256(data).hexdigest() == msg["blob_key"]
    assert data.startswith(b"Return-Path: <"), data[:200]
    assert b"\r\nReceived: from " in data[:400], data[:400]
    assert data.endswith(body_sent), (data[-300:], body_sent[-300:])
    assert msg["login"] == login
    return data


class Raw:
    """A byte-exact SMTP client on a socket (optionally TLS, PROXY header)."""

    def __init__(self, port, host="127.0.0.1", header=b"", timeout=TIMEOUT, source=None,
                 tls_ctx=None):
        self.s = socket.create_connection((host, port), timeout=timeout, source_address=source)
        if header:
            self.s.sendall(header)
        if tls_ctx is not None:
            self.s = tls_ctx.wrap_socket(self.s, server_hostname="localhost")
        self.buf = b""

    def send(self, data):
        self.s.sendall(data if isinstance(data, bytes) else data.encode())

    def line(self):
        while b"\n" not in self.buf:
            try:
                d = self.s.recv(65536)
            except (ConnectionResetError, socket.timeout, ssl.SSLError):
                d = b""
            if not d:
                out, self.buf = self.buf, b""
                return out.decode(errors="replace")
            self.buf += d
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r").decode(errors="replace")

    def reply(self):
        """A complete (multi-line) reply: (code, [texts])."""
        texts = []
        while True:
            l = self.line()
            if len(l) < 4:
                return (int(l[:3]) if l[:3].isdigit() else 0), texts + [l]
            texts.append(l[4:])
            if l[3] != "-":
                return int(l[:3]), texts

    def cmd(self, text):
        self.send(text + "\r\n")
        return self.reply()

    def starttls(self, ctx):
        code, _ = self.cmd("STARTTLS")
        assert code == 220
        self.s = ctx.wrap_socket(self.s, server_hostname="localhost")

    def closed(self, timeout=5):
        self.s.settimeout(timeout)
        try:
            return self.s.recv(1) == b""
        except (ConnectionResetError, ssl.SSLError):
            return True
        except socket.timeout:
            return False

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def plain_auth(user, pw):
    import base64
    return base64.b64encode(f"\0{user}\0{pw}".encode()).decode()


def wait_no_spool(sm, timeout=TIMEOUT):
    harness.wait_for(lambda: sm.spool_files() == [], timeout=timeout, what="spool to be empty")


def sleep_until(pred, timeout=TIMEOUT, what="condition"):
    return harness.wait_for(pred, timeout=timeout, what=what)


__all__ = ["SmtpMailbox", "Raw", "check_stored", "plain_auth", "wait_no_spool", "DOMAIN",
           "PASSWORDS", "EDGE_IP", "sleep_until", "time"]
