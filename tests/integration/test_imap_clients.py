"""IMAP on the real stores (mailbox/imap/server.c + store_pg.c), driven by
real clients: Python imaplib (login, list, select, append, fetch, store,
search, expunge, idle), curl imap:// and imaps://, and two daemon
instances on one Postgres + Redis where an IDLE session on one sees the
APPEND, STORE and EXPUNGE made through the other."""
import imaplib
import re
import socket
import subprocess
import time

import pytest

import harness
from mailbox_util import Certs, Mailbox, listener

USER, PASSWORD = "alice@example.org", "secret-pw-1"

MSG = (b"From: Bob <bob@example.net>\r\n"
       b"To: Alice <alice@example.org>\r\n"
       b"Subject: hello there\r\n"
       b"Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n"
       b"Message-ID: <m1@example.net>\r\n"
       b"MIME-Version: 1.0\r\n"
       b"Content-Type: multipart/mixed; boundary=XX\r\n"
       b"\r\n"
       b"--XX\r\n"
       b"Content-Type: text/plain; charset=utf-8\r\n"
       b"\r\n"
       b"the quick brown fox\r\n"
       b"--XX\r\n"
       b"Content-Type: application/octet-stream\r\n"
       b"Content-Transfer-Encoding: base64\r\n"
       b"\r\n"
       b"AAECAwQFBgcICQ==\r\n"
       b"--XX--\r\n")


def make_mailbox(tmp_path, db, name, certs, redis=None):
    cert, key = certs.issue(name, cn="localhost")
    tls = f'tls: {{ cert: "{cert}", key: "{key}" }}'
    mb = Mailbox(tmp_path, db, name=name, redis=redis)
    mb.ports = {"imap": harness.free_port(), "imaps": harness.free_port()}
    mb.write_config(listener("imap", "imap", mb.ports["imap"], tls) +
                    listener("imaps", "imaps", mb.ports["imaps"], tls))
    return mb


@pytest.fixture
def certs(tmp_path):
    return Certs(tmp_path / "certs")


@pytest.fixture
def mbox(tmp_path, postgres_db, certs):
    mb = make_mailbox(tmp_path, postgres_db, "mailbox", certs)
    mb.migrate()
    r = mb.cli("account", "add", USER, input=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    mb.start()
    mb.certs = certs
    yield mb
    assert mb.stop() == 0, mb.text()[-3000:]


def client(mb, tls="starttls"):
    ctx = mb.certs.client_context()
    if tls == "implicit":
        c = imaplib.IMAP4_SSL("127.0.0.1", mb.ports["imaps"], ssl_context=ctx, timeout=20)
    else:
        c = imaplib.IMAP4("127.0.0.1", mb.ports["imap"], timeout=20)
        c.starttls(ssl_context=ctx)
    return c


def test_imaplib_basic_flow(mbox):
    c = client(mbox)
    typ, _ = c.login(USER, PASSWORD)
    assert typ == "OK"
    typ, lines = c.list()
    assert typ == "OK"
    text = b"\n".join(lines).decode()
    for name, use in (("INBOX", None), ("Drafts", "\\Drafts"), ("Sent", "\\Sent"),
                      ("Trash", "\\Trash"), ("Junk", "\\Junk"), ("Archive", "\\Archive")):
        line = [l for l in text.split("\n") if l.endswith(f' "{name}"') or l.endswith(f" {name}")]
        assert line, (name, text)
        if use:
            assert use in line[0], line
    typ, data = c.append("INBOX", "(\\Flagged)", imaplib.Time2Internaldate(1764150000), MSG)
    assert typ == "OK", data
    assert b"APPENDUID" in data[0], data
    typ, data = c.select("INBOX")
    assert typ == "OK" and data[0] == b"1"
    # byte for byte
    typ, data = c.fetch("1", "(BODY.PEEK[] RFC822.SIZE FLAGS)")
    assert typ == "OK"
    assert data[0][1] == MSG
    rest = data[0][0] + b"".join(x for x in data[1:] if isinstance(x, bytes))
    assert f"RFC822.SIZE {len(MSG)}".encode() in rest, data
    assert b"\\Flagged" in rest, data
    typ, data = c.fetch("1", "(BODY[1] BODY[2]<2.5> ENVELOPE BODYSTRUCTURE)")
    assert typ == "OK"
    joined = b"".join(x if isinstance(x, bytes) else b"".join(x) for x in data)
    assert b"the quick brown fox" in joined
    assert b"hello there" in joined and b'"MIXED"' in joined.upper()
    # reading BODY[] set \Seen
    typ, data = c.fetch("1", "FLAGS")
    assert b"\\Seen" in data[0]
    # search
    assert c.search(None, "SUBJECT", "hello")[1] == [b"1"]
    assert c.search(None, "BODY", '"brown fox"')[1] == [b"1"]
    assert c.search(None, "SUBJECT", "nothing-like-this")[1] == [b""]
    assert c.uid("SEARCH", None, "FLAGGED")[1] == [b"1"]
    # store + expunge
    typ, data = c.store("1", "+FLAGS", "(\\Deleted)")
    assert typ == "OK" and b"\\Deleted" in data[0]
    typ, data = c.expunge()
    assert typ == "OK" and data == [b"1"]
    typ, data = c.select("INBOX")
    assert data[0] == b"0"
    c.logout()


def test_imaplib_copy_move_create_status(mbox):
    c = client(mbox, tls="implicit")
    c.login(USER, PASSWORD)
    assert c.create("Work/Projects")[0] == "OK"
    assert c.append("INBOX", None, None, MSG)[0] == "OK"
    c.select("INBOX")
    typ, data = c.copy("1", "Work/Projects")
    assert typ == "OK", data
    typ, data = c.copy("1", "INBOX")
    assert typ == "OK", data
    assert c.status("INBOX", "(MESSAGES UIDNEXT)")[1][0].endswith(b"(MESSAGES 2 UIDNEXT 3)")
    assert c.status("Work/Projects", "(MESSAGES)")[1][0].endswith(b"(MESSAGES 1)")
    typ, data = c.uid("MOVE", "2", "Archive")
    assert typ == "OK", data
    assert c.status("Archive", "(MESSAGES)")[1][0].endswith(b"(MESSAGES 1)")
    assert c.copy("1", "Nope")[0] == "NO"
    assert c.rename("Work", "Play")[0] == "OK"
    assert c.status("Play/Projects", "(MESSAGES)")[1][0].endswith(b"(MESSAGES 1)")
    assert c.delete("Play/Projects")[0] == "OK"
    assert c.delete("INBOX")[0] == "NO"
    # RFC 3501 6.3.5: renaming INBOX moves its messages and leaves it empty
    assert c.rename("INBOX", "OldInbox")[0] == "OK"
    assert c.status("OldInbox", "(MESSAGES)")[1][0].endswith(b"(MESSAGES 1)")
    assert c.status("INBOX", "(MESSAGES)")[1][0].endswith(b"(MESSAGES 0)")
    assert c.rename("INBOX", "OldInbox")[0] == "NO"
    c.logout()


def test_login_refused_without_tls_and_bad_password(mbox):
    c = imaplib.IMAP4("127.0.0.1", mbox.ports["imap"], timeout=20)
    assert "LOGINDISABLED" in c.capabilities
    with pytest.raises(imaplib.IMAP4.error):
        c.login(USER, PASSWORD)
    c.logout()
    c = client(mbox)
    with pytest.raises(imaplib.IMAP4.error):
        c.login(USER, "wrong")
    c.logout()
    mbox.wait_log(lambda d: d.get("msg") == "imap login" and d.get("result") == "fail")
    c = client(mbox)
    c.login(USER, PASSWORD)
    c.logout()
    mbox.wait_log(lambda d: d.get("msg") == "imap login" and d.get("result") == "ok" and
                  d.get("account") == USER)


def curl(*args, input=None):
    return subprocess.run(["curl", "-sS", "--max-time", "20"] + list(args), input=input,
                          capture_output=True, timeout=30)


def test_curl_imap_and_imaps(mbox):
    c = client(mbox)
    c.login(USER, PASSWORD)
    assert c.append("INBOX", None, None, MSG)[0] == "OK"
    c.logout()
    cafile = str(mbox.certs.ca)
    # imap:// with STARTTLS required (--ssl-reqd), fetch message 1 of INBOX
    r = curl("--ssl-reqd", "--cacert", cafile, "--user", f"{USER}:{PASSWORD}",
             f"imap://localhost:{mbox.ports['imap']}/INBOX;UID=1")
    assert r.returncode == 0, r.stderr
    assert r.stdout == MSG
    # imaps://: list the mailboxes, then fetch the same message
    r = curl("--cacert", cafile, "--user", f"{USER}:{PASSWORD}",
             f"imaps://localhost:{mbox.ports['imaps']}/")
    assert r.returncode == 0, r.stderr
    for name in (b"INBOX", b"Sent", b"Trash"):
        assert name in r.stdout
    r = curl("--cacert", cafile, "--user", f"{USER}:{PASSWORD}",
             f"imaps://localhost:{mbox.ports['imaps']}/INBOX;UID=1")
    assert r.returncode == 0 and r.stdout == MSG, r.stderr
    # a wrong password is refused
    r = curl("--cacert", cafile, "--user", f"{USER}:nope",
             f"imaps://localhost:{mbox.ports['imaps']}/INBOX;UID=1")
    assert r.returncode != 0


def read_until(sock, marker, limit=1 << 20):
    data = b""
    while marker not in data and len(data) < limit:
        d = sock.recv(65536)
        if not d:
            break
        data += d
    return data


def test_starttls_command_injection_refused(mbox):
    s = socket.create_connection(("127.0.0.1", mbox.ports["imap"]), timeout=20)
    assert read_until(s, b"\r\n").startswith(b"* OK")
    # the injected command travels in the same segment as STARTTLS
    s.sendall(b"a STARTTLS\r\nb CAPABILITY\r\n")
    got = read_until(s, b"a OK")
    assert b"a OK" in got and b"b " not in got, got
    ts = mbox.certs.client_context().wrap_socket(s, server_hostname="localhost")
    ts.sendall(b"c NOOP\r\n")
    got = read_until(ts, b"c OK")
    # the plaintext "b CAPABILITY" was never executed, before or after TLS
    assert b"b OK" not in got and b"b BAD" not in got and b"c OK" in got, got
    ts.sendall(b"d LOGOUT\r\n")
    read_until(ts, b"d OK")
    ts.close()


def idle_collect(c, tag, want, timeout=20):
    """Read untagged responses during IDLE until every byte string in want
    was seen (in any order); returns the text.  A socket timeout fails the
    test (a file object cannot be read again after one)."""
    seen = b""
    c.sock.settimeout(timeout)
    while not all(w in seen for w in want):
        line = c.readline()
        if not line:
            break
        seen += line
    return seen


def test_idle_sees_changes_from_another_instance(tmp_path, postgres_db, certs, redis_clean):
    a = make_mailbox(tmp_path, postgres_db, "one", certs, redis=redis_clean)
    b = make_mailbox(tmp_path, postgres_db, "two", certs, redis=redis_clean)
    a.certs = b.certs = certs
    a.migrate()
    r = a.cli("account", "add", USER, input=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    a.start()
    b.start()
    try:
        watcher = client(a, tls="implicit")
        watcher.login(USER, PASSWORD)
        assert watcher.select("INBOX")[1] == [b"0"]
        tag = watcher._new_tag()
        watcher.send(tag + b" IDLE\r\n")
        assert watcher.readline().startswith(b"+")

        other = client(b, tls="implicit")
        other.login(USER, PASSWORD)
        assert other.append("INBOX", None, None, MSG)[0] == "OK"
        got = idle_collect(watcher, tag, [b"* 1 EXISTS"])
        assert b"* 1 EXISTS" in got, got

        other.select("INBOX")
        assert other.store("1", "+FLAGS", "(\\Flagged)")[0] == "OK"
        got = idle_collect(watcher, tag, [b"FETCH"])
        assert b"* 1 FETCH" in got and b"\\Flagged" in got, got

        assert other.store("1", "+FLAGS", "(\\Deleted)")[0] == "OK"
        assert other.expunge()[0] == "OK"
        got = idle_collect(watcher, tag, [b"* 1 EXPUNGE"])
        assert b"* 1 EXPUNGE" in got, got

        watcher.send(b"DONE\r\n")
        watcher.sock.settimeout(20)
        line = watcher.readline()
        while not line.startswith(tag):
            line = watcher.readline()
        assert line.startswith(tag + b" OK"), line
        other.logout()
        watcher.logout()
    finally:
        assert a.stop() == 0, a.text()[-3000:]
        assert b.stop() == 0, b.text()[-3000:]


def maildir_files(root):
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.parent.name in ("cur", "new"):
            out[str(p.relative_to(root))] = p.read_bytes()
    return out


def test_mbsync_two_way(tmp_path, mbox):
    c = client(mbox)
    c.login(USER, PASSWORD)
    assert c.create("Lists/Tech")[0] == "OK"
    assert c.append("INBOX", None, None, MSG)[0] == "OK"
    assert c.append("INBOX", "(\\Seen)", None, MSG.replace(b"hello there", b"second"))[0] == "OK"
    assert c.append("Lists/Tech", None, None, MSG.replace(b"hello there", b"tech"))[0] == "OK"
    c.logout()

    local = tmp_path / "maildir"
    local.mkdir()
    rc = tmp_path / "mbsyncrc"
    rc.write_text(f"""IMAPAccount t
Host localhost
Port {mbox.ports['imaps']}
User {USER}
Pass {PASSWORD}
SSLType IMAPS
CertificateFile {mbox.certs.ca}
AuthMechs LOGIN PLAIN

IMAPStore remote
Account t

MaildirStore local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel c
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
Remove None
SyncState *
""")

    def sync():
        r = subprocess.run(["mbsync", "-c", str(rc), "-V", "-a"], capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        return r

    sync()
    files = maildir_files(local)
    inbox = [k for k in files if k.startswith("INBOX/")]
    tech = [k for k in files if k.startswith("Lists/Tech/")]
    assert len(inbox) == 2 and len(tech) == 1, files.keys()
    # mbsync stores Maildir files with LF line ends and its own X-TUID
    # header; the rest is the message as appended
    untuid = [b"".join(l for l in v.splitlines(True) if not l.startswith(b"X-TUID:"))
              for v in files.values()]
    assert MSG.replace(b"\r\n", b"\n") in untuid
    for name in ("Sent", "Trash", "Drafts", "Junk", "Archive"):
        assert (local / name / "cur").is_dir(), name

    # local changes: flag one message as deleted, add a new local message
    seen_one = [k for k in inbox if k.split(":2,")[-1].find("S") >= 0][0]
    p = local / seen_one
    p.rename(p.with_name(p.name + "T"))  # T: trashed -> \Deleted, expunged
    new = local / "Lists" / "Tech" / "new" / "123.local.x"
    new.write_bytes(MSG.replace(b"hello there", b"from local"))
    sync()

    c = client(mbox)
    c.login(USER, PASSWORD)
    assert c.select("INBOX")[1] == [b"1"]
    assert c.select("Lists/Tech")[1] == [b"2"]
    assert c.search(None, "SUBJECT", '"from local"')[1] != [b""]
    # a remote change: flag the INBOX message
    c.select("INBOX")
    assert c.store("1", "+FLAGS", "(\\Flagged)")[0] == "OK"
    c.logout()
    sync()
    inbox = [k for k in maildir_files(local) if k.startswith("INBOX/")]
    assert len(inbox) == 1 and "F" in inbox[0].split(":2,")[-1], inbox

    # a second sync changes nothing
    before = maildir_files(local)
    r = sync()
    assert maildir_files(local) == before


def test_smtp_delivery_reaches_idle_and_fetches_intact(tmp_path, postgres_db, certs):
    import smtplib
    cert, key = certs.issue("mx", cn="localhost")
    tls = f'tls: {{ cert: "{cert}", key: "{key}" }}'
    mb = Mailbox(tmp_path, postgres_db, name="mx")
    mb.certs = certs
    mb.ports = {"imaps": harness.free_port(), "mx": harness.free_port(),
                "imap": harness.free_port()}
    spool = mb.dir / "spool"
    mb.write_config(listener("imaps", "imaps", mb.ports["imaps"], tls) +
                    listener("mx", "mx", mb.ports["mx"], tls),
                    extra=f'smtp:\n  spool_dir: "{spool}"\n')
    mb.migrate()
    assert mb.cli("domain", "add", "example.org").returncode == 0
    assert mb.cli("account", "add", USER, input=PASSWORD + "\n").returncode == 0
    mb.start()
    try:
        watcher = client(mb, tls="implicit")
        watcher.login(USER, PASSWORD)
        watcher.select("INBOX")
        tag = watcher._new_tag()
        watcher.send(tag + b" IDLE\r\n")
        assert watcher.readline().startswith(b"+")
        with smtplib.SMTP("127.0.0.1", mb.ports["mx"], timeout=20) as s:
            s.sendmail("bob@example.net", [USER], MSG)
        got = idle_collect(watcher, tag, [b"* 1 EXISTS"])
        assert b"* 1 EXISTS" in got, got
        watcher.send(b"DONE\r\n")
        watcher.sock.settimeout(20)
        line = watcher.readline()
        while not line.startswith(tag):
            line = watcher.readline()
        typ, data = watcher.fetch("1", "(BODY.PEEK[] BODY.PEEK[TEXT])")
        assert typ == "OK", data
        whole, text = data[0][1], data[1][1]
        # trace fields are prepended (RFC 5321 4.4); the rest is what was sent
        assert whole.endswith(MSG), whole
        assert whole.startswith(b"Received:") or whole.startswith(b"Return-Path:"), whole
        assert MSG.endswith(text)
        watcher.logout()
    finally:
        assert mb.stop() == 0, mb.text()[-3000:]


def test_neomutt_reads_message(tmp_path, mbox):
    c = client(mbox)
    c.login(USER, PASSWORD)
    assert c.append("INBOX", None, None, MSG)[0] == "OK"
    c.logout()
    out = tmp_path / "piped.eml"
    home = tmp_path / "home"
    home.mkdir()
    rc = tmp_path / "muttrc"
    rc.write_text(f"""set folder = "imaps://localhost:{mbox.ports['imaps']}/"
set spoolfile = "+INBOX"
set imap_user = "{USER}"
set imap_pass = "{PASSWORD}"
set ssl_ca_certificates_file = "{mbox.certs.ca}"
set certificate_file = "{tmp_path}/certs-seen"
set header_cache = ""
set message_cachedir = ""
set mail_check_stats = no
set wait_key = no
set pipe_decode = no
set confirmappend = no
set quit = yes
set timeout = 1
push "<pipe-message>cat > {out}<enter><imap-fetch-mail><quit>"
""")
    env = {"HOME": str(home), "TERM": "xterm", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    r = subprocess.run(["script", "-qec", f"neomutt -n -F {rc}", "/dev/null"],
                       capture_output=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
    assert out.exists(), r.stdout[-2000:]
    # neomutt pipes the raw message (LF line ends)
    assert out.read_bytes().replace(b"\r\n", b"\n") == MSG.replace(b"\r\n", b"\n")
    mbox.wait_log(lambda d: d.get("msg") == "imap login" and d.get("result") == "ok")


def test_large_message_round_trip(mbox):
    # several read chunks and more than the connection's output high-water
    body = b"".join(b"line %07d of a large message, padded to some length........\r\n" % i
                    for i in range(60000))
    big = (b"From: a@example.net\r\nTo: " + USER.encode() + b"\r\nSubject: big\r\n\r\n" + body)
    assert len(big) > 3_000_000
    c = client(mbox)
    c.login(USER, PASSWORD)
    typ, data = c.append("INBOX", None, None, big)
    assert typ == "OK", data
    c.select("INBOX")
    typ, data = c.fetch("1", "(BODY.PEEK[])")
    assert typ == "OK" and data[0][1] == big
    typ, data = c.fetch("1", "(BODY.PEEK[]<1000000.300000>)")
    assert typ == "OK" and data[0][1] == big[1000000:1300000]
    typ, data = c.fetch("1", "(BODY.PEEK[TEXT]<5.10>)")
    assert typ == "OK" and data[0][1] == body[5:15]
    c.logout()


def test_quota_enforced_on_append(tmp_path, postgres_db, certs):
    mb = make_mailbox(tmp_path, postgres_db, "quota", certs)
    mb.certs = certs
    mb.migrate()
    r = mb.cli("account", "add", USER, "--quota", "1000", input=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    mb.start()
    try:
        # MULTIAPPEND (RFC 3502) is all or none: three copies do not fit
        ctx = certs.client_context()
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", mb.ports["imaps"]),
                                                     timeout=20), server_hostname="localhost")
        read_until(s, b"\r\n")
        s.sendall(f'a LOGIN "{USER}" "{PASSWORD}"\r\n'.encode())
        assert b"a OK" in read_until(s, b"a ")
        lit = b"{%d+}\r\n" % len(MSG) + MSG
        s.sendall(b"b APPEND INBOX " + lit + b" (\\Seen) " + lit + b" " + lit + b"\r\n")
        got = read_until(s, b"b ")
        assert b"b NO" in got and b"OVERQUOTA" in got, got
        s.sendall(b"c STATUS INBOX (MESSAGES)\r\n")
        assert b"(MESSAGES 0)" in read_until(s, b"c OK")
        s.sendall(b"d APPEND INBOX " + lit + b" (\\Seen) " + lit + b"\r\n")
        got = read_until(s, b"d ")
        assert re.search(rb"d OK \[APPENDUID \d+ 1:2\]", got), got
        s.sendall(b"e SELECT INBOX\r\nf FETCH 1:2 (UID FLAGS)\r\n")
        got = read_until(s, b"f OK")
        assert b"* 2 EXISTS" in got and re.search(rb"\* 2 FETCH \(UID 2 FLAGS \(\\Seen", got), got
        s.sendall(b"g LOGOUT\r\n")
        read_until(s, b"g OK")
        s.close()

        c = client(mb, tls="implicit")
        c.login(USER, PASSWORD)
        c.select("INBOX")
        c.store("1:2", "+FLAGS", "(\\Deleted)")
        c.expunge()
        assert c.append("INBOX", None, None, MSG)[0] == "OK"
        assert c.append("Sent", None, None, MSG)[0] == "OK"
        typ, data = c.append("INBOX", None, None, MSG)
        assert typ == "NO" and b"OVERQUOTA" in data[0], data
        typ, data = c.getquotaroot("INBOX")
        assert typ == "OK"
        text = b" ".join(x for x in data[1] if isinstance(x, bytes))
        m = re.search(rb"STORAGE (\d+) (\d+)", text)
        # two copies of MSG in use (RFC 9208: units of 1024 octets)
        assert m and int(m.group(1)) >= 1, data
        c.logout()
    finally:
        assert mb.stop() == 0, mb.text()[-3000:]


def test_pipelining_around_idle(mbox):
    ctx = mbox.certs.client_context()
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", mbox.ports["imaps"]), timeout=20),
                        server_hostname="localhost")
    assert read_until(s, b"\r\n").startswith(b"* OK")
    # Apple Mail style: commands written back to back, IDLE and the
    # commands after DONE in one segment
    s.sendall(f'a LOGIN "{USER}" "{PASSWORD}"\r\nb SELECT INBOX\r\nc IDLE\r\n'.encode())
    got = read_until(s, b"\r\n+ ")
    assert b"a OK" in got and b"b OK" in got, got
    s.sendall(b"DONE\r\nd NOOP\r\ne STATUS INBOX (MESSAGES)\r\nf LOGOUT\r\n")
    got = read_until(s, b"f OK")
    for t in (b"c OK", b"d OK", b"e OK", b"f OK"):
        assert t in got, got
    assert got.index(b"c OK") < got.index(b"d OK") < got.index(b"e OK") < got.index(b"f OK")
    s.close()


class SourcedIMAP4_SSL(imaplib.IMAP4_SSL):
    """IMAP4_SSL from a chosen loopback source address."""

    def __init__(self, source, *a, **kw):
        self._source = source
        super().__init__(*a, **kw)

    def _create_socket(self, timeout):
        s = socket.create_connection((self.host, self.port), timeout,
                                     source_address=(self._source, 0))
        return self.ssl_context.wrap_socket(s, server_hostname="localhost")


def test_through_the_edge_with_proxy_v2(tmp_path, postgres_db, certs):
    import json
    from edge_util import Edge, free_port
    cert, key = certs.issue("edge-mb", cn="localhost")
    tls = f'tls: {{ cert: "{cert}", key: "{key}" }}'
    mb = Mailbox(tmp_path, postgres_db, name="behind-edge")
    mb.certs = certs
    mb.ports = {"imaps": harness.free_port(), "imap": harness.free_port()}
    mb.write_config(listener("imaps", "imaps", mb.ports["imaps"],
                             tls + '\nproxy: { trusted: ["127.0.0.1/32"], header_timeout: 2s, '
                                   'untrusted: direct }'))
    mb.migrate()
    assert mb.cli("account", "add", USER, input=PASSWORD + "\n").returncode == 0
    mb.start()
    ep = free_port()
    cfg = {"workers": 1, "listeners": [{
        "name": "imaps", "bind": [f"127.0.0.1:{ep}"],
        "upstreams": [f"127.0.0.1:{mb.ports['imaps']}"],
        "idle_timeout": "10m", "health_check": {"enabled": False}}]}
    edge = Edge(tmp_path, json.dumps(cfg))
    try:
        c = SourcedIMAP4_SSL("127.0.0.3", "127.0.0.1", ep, ssl_context=certs.client_context(),
                             timeout=20)
        c.login(USER, PASSWORD)
        assert c.append("INBOX", None, None, MSG)[0] == "OK"
        c.select("INBOX")
        assert c.fetch("1", "(BODY.PEEK[])")[1][0][1] == MSG
        c.logout()
        # the session is logged with the real client, not the edge
        mb.wait_log(lambda d: d.get("msg") == "imap login" and d.get("result") == "ok" and
                    d.get("client") == "127.0.0.3")
    finally:
        edge.stop()
        assert mb.stop() == 0, mb.text()[-3000:]


def test_tcp_keepalive_on_imap_connections(mbox):
    c = client(mbox, tls="implicit")
    c.login(USER, PASSWORD)
    port = mbox.ports["imaps"]

    def timer():
        r = subprocess.run(["ss", "-tnoH", "state", "established", f"( sport = :{port} )"],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, r.stderr
        # once the socket is idle, its timer is the keepalive one
        return "timer:(keepalive" in r.stdout and r.stdout

    assert harness.wait_for(timer, timeout=10, what="keepalive timer")
    c.logout()


def test_idle_keepalive(mbox):
    """RFC 2177: the server sends something during IDLE well before any
    NAT or client timeout; ours every IMAP_SERVER_TICK_MS (60 s)."""
    c = client(mbox, tls="implicit")
    c.login(USER, PASSWORD)
    c.select("INBOX")
    tag = c._new_tag()
    c.send(tag + b" IDLE\r\n")
    assert c.readline().startswith(b"+")
    t0 = time.monotonic()
    got = idle_collect(c, tag, [b"* OK"], timeout=75)
    assert b"* OK" in got, got
    assert 50 < time.monotonic() - t0 < 75
    c.send(b"DONE\r\n")
    c.sock.settimeout(20)
    line = c.readline()
    while not line.startswith(tag):
        line = c.readline()
    assert line.startswith(tag + b" OK"), line
    c.logout()
