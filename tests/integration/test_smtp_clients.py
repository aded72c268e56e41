"""SMTP on a real tailpost-mailbox with real clients: swaks, Python's
smtplib, curl smtp:// and smtps://, and a byte-exact socket client for BDAT
and pipelining by hand.  Every accepted message is checked in Postgres
(rows, envelope, body structure, header fields) and in the blob store,
byte for byte: Return-Path first, our Received: next, then the message
with CRLF line ends and dot-stuffing undone.

One daemon serves the module (mx, submission with STARTTLS, submission
without TLS, submissions) on a database of its own; each test uses its
own subject line or recipient to find what it sent.
"""
import shutil
import smtplib
import socket
import subprocess

import pytest

import harness
import store_util as su
from mailbox_util import http
from smtp_util import Raw, SmtpMailbox, check_stored, plain_auth

SWAKS = shutil.which("swaks") or "/usr/bin/swaks"
CURL = shutil.which("curl") or "/usr/bin/curl"


@pytest.fixture(scope="module")
def sm(tmp_path_factory, postgres, redis):
    tmp = tmp_path_factory.mktemp("smtp_clients")
    db = postgres.create_database()
    box = SmtpMailbox(tmp, postgres, db, redis=redis, smtp_extra="max_message_size: 256KB")
    box.setup_directory()
    # dave logs in by name or by address (directory: login + address)
    cfg = su.stores_yaml(tmp / "stores.yaml", pg=db)
    su.run(cfg, "account-add", "dave", "user", stdin="dave-pw\n")
    su.run(cfg, "address-add", "dave@example.org", "dave")
    box.start()
    yield box
    rc = box.stop()
    postgres.drop_database(db.name)
    assert rc == 0, box.mb.text()[-3000:]


def by_subject(sm, subject, login=None, count=1):
    def find():
        got = [m for m in sm.messages(login) if m["hdr_subject"] == subject]
        return got if len(got) >= count else None
    return harness.wait_for(find, timeout=10, what=f"message {subject!r}")


def swaks(*args, timeout=60):
    r = subprocess.run([SWAKS, "--helo", "client.example", "--timeout", "20"] + list(args),
                       capture_output=True, text=True, timeout=timeout)
    return r


# --- MX: local delivery ------------------------------------------------------


def test_smtplib_mx_local_delivery_byte_exact(sm):
    body = (b"From: Sender <x@remote.example>\r\nTo: alice@example.org\r\n"
            b"Subject: smtplib exact\r\nDate: Fri, 27 Nov 2026 03:40:00 +0000\r\n"
            b"Message-ID: <exact@remote.example>\r\n\r\nhello\r\n.leading dot\r\n..two\r\n")
    with smtplib.SMTP("127.0.0.1", sm.ports["mx"], timeout=10) as s:
        s.ehlo("client.example")
        assert s.has_extn("pipelining") and s.has_extn("chunking") and s.has_extn("smtputf8")
        assert s.has_extn("starttls") and not s.has_extn("auth")
        code, resp = s.mail("x@remote.example")
        assert code == 250
        assert s.rcpt("alice@example.org")[0] == 250
        code, resp = s.data(body)
        assert code == 250 and resp.startswith(b"2.0.0 Ok: queued as ")
    m = by_subject(sm, "smtplib exact")[0]
    data = check_stored(sm, m, body, "alice@example.org")
    # smtplib dot-stuffs; the store has the lines as the client meant them
    assert data.endswith(b"\r\nhello\r\n.leading dot\r\n..two\r\n")
    assert data.startswith(b"Return-Path: <x@remote.example>\r\nReceived: from client.example "
                           b"([127.0.0.1])\r\n\tby mail.test (tailpost listener mx) with ESMTP id ")
    assert m["hdr_message_id"] == "<exact@remote.example>"
    assert m["envelope"].startswith('("Fri, 27 Nov 2026 03:40:00 +0000" "smtplib exact" '
                                    '(("Sender" NIL "x" "remote.example"))')
    assert m["bodystructure"].startswith('("text" "plain"')
    assert "hello" in m["search_text"]
    # parts: the root and part 1 with offsets into the stored blob
    root, one = m["parts"]
    assert root["section"] == "" and root["body_end"] == len(data)
    assert data[one["body_start"]:one["body_end"]] == b"hello\r\n.leading dot\r\n..two\r\n"


def test_bare_lf_and_lone_dot_lines_are_stored_with_crlf(sm):
    c = Raw(sm.ports["mx"])
    assert c.reply()[0] == 220
    assert c.cmd("EHLO raw.example")[0] == 250
    assert c.cmd("MAIL FROM:<x@remote.example>")[0] == 250
    assert c.cmd("RCPT TO:<bob@example.org>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    # bare LF line ends and a "." line ended by a bare LF: neither ends DATA
    c.send(b"Subject: bare lf\nX: 1\n\nline one\n.\nafter\r\n..dot\r\n.\r\n")
    code, text = c.reply()
    assert code == 250, text
    c.cmd("QUIT")
    c.close()
    m = by_subject(sm, "bare lf")[0]
    data = check_stored(sm, m, b"Subject: bare lf\r\nX: 1\r\n\r\nline one\r\n.\r\nafter\r\n.dot\r\n",
                        "bob@example.org")
    assert b"\n" not in data.replace(b"\r\n", b"")


def test_unknown_recipient_and_relay_denied(sm):
    with smtplib.SMTP("127.0.0.1", sm.ports["mx"], timeout=10) as s:
        s.ehlo("client.example")
        s.mail("x@remote.example")
        code, text = s.rcpt("nobody@example.org")
        assert (code, text[:5]) == (550, b"5.1.1")
        code, text = s.rcpt("someone@elsewhere.example")
        assert (code, text[:5]) == (554, b"5.7.1")
        # user+tag and the alias are fine
        assert s.rcpt("alice+news@example.org")[0] == 250
        assert s.rcpt("<Postmaster>")[0] == 250
        s.rset()


def test_swaks_pipelining_several_local_recipients_one_blob(sm):
    r = swaks("--server", "127.0.0.1", "--port", str(sm.ports["mx"]), "--pipeline",
              "--from", "list@remote.example", "--to",
              "alice@example.org,bob@example.org,alice+x@example.org",
              "--header", "Subject: swaks pipeline")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "<** " not in r.stdout
    msgs = by_subject(sm, "swaks pipeline", count=2)
    assert sorted(m["login"] for m in msgs) == ["alice@example.org", "bob@example.org"]
    # one blob, shared; alice got it once although named twice
    assert msgs[0]["blob_key"] == msgs[1]["blob_key"]
    rows = sm.query(f"SELECT count(*) AS n FROM blobs WHERE key = '{msgs[0]['blob_key']}'")
    assert rows[0]["n"] == 1


def test_swaks_starttls_received_names_tls(sm):
    r = swaks("--server", "127.0.0.1", "--port", str(sm.ports["mx"]), "-tls",
              "--from", "x@remote.example", "--to", "bob@example.org",
              "--header", "Subject: swaks starttls")
    assert r.returncode == 0, r.stdout + r.stderr
    m = by_subject(sm, "swaks starttls")[0]
    data = sm.blob(m["blob_key"])
    head = data[:data.index(b"\r\n\r\n")].decode()
    assert "with ESMTPS id" in head and "(using TLSv1." in head, head


def test_starttls_discards_pipelined_plaintext(sm):
    # CVE-2011-0411: a command sent in clear behind STARTTLS must not run
    c = Raw(sm.ports["mx"])
    c.reply()
    c.cmd("EHLO raw.example")
    c.send("STARTTLS\r\nMAIL FROM:<injected@remote.example>\r\n")
    assert c.reply()[0] == 220
    c.s = sm.client_context().wrap_socket(c.s, server_hostname="localhost")
    assert c.cmd("EHLO raw.example")[0] == 250
    # no transaction was started by the injected MAIL
    assert c.cmd("RCPT TO:<bob@example.org>")[0] == 503
    c.cmd("QUIT")
    c.close()


def test_eight_bit_body_and_utf8_addresses(sm):
    body = ("From: Jösé <jösé@remote.example>\r\nTo: bob@example.org\r\nSubject: utf8 smtplib\r\n"
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            "grüße aus Köln\r\n").encode()
    with smtplib.SMTP("127.0.0.1", sm.ports["mx"], timeout=10) as s:
        s.ehlo("client.example")
        code, _ = s.mail("jösé@remote.example", ["SMTPUTF8", "BODY=8BITMIME"])
        assert code == 250
        assert s.rcpt("bob@example.org")[0] == 250
        assert s.data(body)[0] == 250
    m = by_subject(sm, "utf8 smtplib")[0]
    data = check_stored(sm, m, body, "bob@example.org")
    assert data.startswith("Return-Path: <jösé@remote.example>\r\n".encode())
    assert b"with UTF8SMTP id" in data
    assert "grüße" in m["search_text"]
    # without SMTPUTF8 a UTF-8 address is refused (RFC 6531 3.5): swaks has no SMTPUTF8
    r = swaks("--server", "127.0.0.1", "--port", str(sm.ports["mx"]), "--from",
              "jösé@remote.example", "--to", "bob@example.org")
    assert r.returncode != 0 and "553 5.6.7" in r.stdout, r.stdout
    # 8-bit content from swaks (no BODY= at all) is taken as it is
    r = swaks("--server", "127.0.0.1", "--port", str(sm.ports["mx"]), "--from",
              "x@remote.example", "--to", "bob@example.org", "--header", "Subject: swaks 8bit",
              "--body", "caf\u00e9 cr\u00e8me")
    assert r.returncode == 0, r.stdout + r.stderr
    m = by_subject(sm, "swaks 8bit")[0]
    assert "café crème".encode() in sm.blob(m["blob_key"])


def test_oversize_declared_and_actual(sm):
    big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 300  # ~300 KB > 256 KB
    with smtplib.SMTP("127.0.0.1", sm.ports["mx"], timeout=10) as s:
        s.ehlo("client.example")
        assert s.esmtp_features["size"] == str(256 * 1024)
        code, text = s.mail("x@remote.example", [f"SIZE={len(big)}"])
        assert (code, text[:5]) == (552, b"5.3.4")
        # undeclared: refused after the data, nothing stored
        s.mail("x@remote.example")
        s.rcpt("bob@example.org")
        code, text = s.data(big)
        assert (code, text[:5]) == (552, b"5.3.4")
        # the session goes on
        assert s.noop()[0] == 250
    body_file = sm.tmp / "big-body.txt"
    body_file.write_text(("y" * 900 + "\n") * 330)
    r = swaks("--server", "127.0.0.1", "--port", str(sm.ports["mx"]), "--from",
              "x@remote.example", "--to", "bob@example.org", "--header", "Subject: swaks big",
              "--body", f"@{body_file}")
    assert r.returncode != 0 and "552 5.3.4" in r.stdout
    assert not [m for m in sm.messages() if m["hdr_subject"] in ("big", "swaks big")]
    assert sm.spool_files() == []


def test_bdat_chunks(sm):
    part1 = b"Subject: bdat chunks\r\nTo: bob@example.org\r\n\r\nfirst "
    part2 = b"chunk\r\n.not stuffed\r\nend\r\n"
    c = Raw(sm.ports["mx"])
    c.reply()
    feats = c.cmd("EHLO raw.example")[1]
    assert "CHUNKING" in feats
    # pipelined: MAIL, RCPT and the first chunk in one write (RFC 3030 4.2)
    c.send(b"MAIL FROM:<x@remote.example>\r\nRCPT TO:<bob@example.org>\r\n" +
           b"BDAT %d\r\n" % len(part1) + part1)
    assert c.reply()[0] == 250
    assert c.reply()[0] == 250
    code, text = c.reply()
    assert code == 250 and text[0].endswith(f"{len(part1)} octets received")
    c.send(b"BDAT %d LAST\r\n" % len(part2) + part2)
    code, text = c.reply()
    assert code == 250 and "queued as" in text[0]
    c.cmd("QUIT")
    c.close()
    m = by_subject(sm, "bdat chunks")[0]
    check_stored(sm, m, part1 + part2, "bob@example.org")


def test_curl_smtp_upload(sm, tmp_path):
    msg = tmp_path / "m.eml"
    msg.write_bytes(b"From: c@remote.example\r\nTo: alice@example.org\r\nSubject: curl mx\r\n\r\n"
                    b"sent by curl\r\n")
    r = subprocess.run([CURL, "-sS", f"smtp://127.0.0.1:{sm.ports['mx']}/client.example",
                        "--mail-from", "c@remote.example", "--mail-rcpt", "alice@example.org",
                        "-T", str(msg)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    m = by_subject(sm, "curl mx")[0]
    check_stored(sm, m, msg.read_bytes(), "alice@example.org")


# --- submission ---------------------------------------------------------------


def test_submission_needs_starttls_then_auth(sm):
    c = Raw(sm.ports["sub"])
    c.reply()
    code, feats = c.cmd("EHLO raw.example")
    assert "STARTTLS" in feats and not any(f.startswith("AUTH") for f in feats)
    assert c.cmd("MAIL FROM:<alice@example.org>")[1][0].startswith("5.7.0 Must issue a STARTTLS")
    c.starttls(sm.client_context())
    code, feats = c.cmd("EHLO raw.example")
    assert "AUTH PLAIN LOGIN" in feats and "STARTTLS" not in feats
    code, text = c.cmd("MAIL FROM:<alice@example.org>")
    assert code == 530 and text[0].startswith("5.7.0 Authentication required")
    assert c.cmd("AUTH PLAIN " + plain_auth("alice@example.org", "wrong"))[0] == 535
    assert c.cmd("AUTH PLAIN " + plain_auth("alice@example.org", "alice-pw"))[0] == 235
    c.cmd("QUIT")
    c.close()
    harness.wait_for(lambda: sm.mb.listener_line("smtp auth", result="fail"), timeout=5,
                     what="auth failure logged")


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_swaks_submission_auth_relay_and_queue(sm, tmp_path, mech):
    subject = f"swaks submission {mech}"
    data = tmp_path / "msg.eml"
    # no Date:, no Message-ID: the submission server adds them (RFC 6409 8)
    data.write_bytes(f"From: alice@example.org\r\nTo: friend@remote.example\r\n"
                     f"Subject: {subject}\r\n\r\nqueued and local\r\n".encode())
    r = swaks("--server", "127.0.0.1", "--port", str(sm.ports["sub"]), "-tls",
              "--auth", mech, "--auth-user", "alice@example.org", "--auth-password", "alice-pw",
              "--from", "alice@example.org", "--to", "friend@remote.example,bob@example.org",
              "--data", f"@{data}")
    assert r.returncode == 0, r.stdout + r.stderr
    m = by_subject(sm, subject)[0]
    blob = sm.blob(m["blob_key"])
    head = blob[:blob.index(b"\r\n\r\n") + 2].decode()
    assert "with ESMTPSA id" in head
    assert "\r\nDate: " in head and "\r\nMessage-ID: <" in head and "@mail.test>" in head
    assert m["hdr_message_id"] and m["hdr_message_id"].endswith("@mail.test>")
    q = [r for r in sm.queue() if r["blob_key"] == m["blob_key"]]
    assert len(q) == 1 and q[0]["rcpt"] == "friend@remote.example"
    assert q[0]["sender"] == "alice@example.org" and q[0]["status"] == "pending"
    assert q[0]["account_id"] is not None


def test_submission_sender_must_be_owned(sm):
    ctx = sm.client_context()
    with smtplib.SMTP("127.0.0.1", sm.ports["sub"], timeout=10) as s:
        s.starttls(context=ctx)
        s.login("bob@example.org", "bob-pw")
        code, text = s.mail("alice@example.org")
        assert (code, text[:5]) == (553, b"5.7.1")
        # sub-addressing of one's own address, and <> are fine
        assert s.mail("bob+lists@example.org")[0] == 250
        s.rset()
        assert s.mail("")[0] == 250
        s.rset()
    # an admin may use any sender
    with smtplib.SMTP("127.0.0.1", sm.ports["sub"], timeout=10) as s:
        s.starttls(context=ctx)
        s.login("root@example.org", "root-pw")
        assert s.mail("anyone@elsewhere.example")[0] == 250


def test_login_by_name_or_address(sm):
    ctx = sm.client_context()
    for user in ("dave", "dave@example.org", "DAVE@Example.org"):
        with smtplib.SMTP_SSL("127.0.0.1", sm.ports["subs"], timeout=10, context=ctx) as s:
            code, _ = s.login(user, "dave-pw")
            assert code == 235
            # the sender check knows the account whatever the login was
            assert s.mail("dave@example.org")[0] == 250


def test_submission_keeps_existing_date_and_message_id(sm):
    body = (b"From: alice@example.org\r\nTo: bob@example.org\r\nSubject: keep ids\r\n"
            b"DATE: Fri, 27 Nov 2026 03:40:00 +0000\r\nmessage-id: <mine@example.org>\r\n\r\nx\r\n")
    with smtplib.SMTP("127.0.0.1", sm.ports["subplain"], timeout=10) as s:
        s.login("alice@example.org", "alice-pw")
        assert s.sendmail("alice@example.org", ["bob@example.org"], body) == {}
    m = by_subject(sm, "keep ids")[0]
    blob = sm.blob(m["blob_key"])
    assert blob.count(b"Message-ID:") + blob.count(b"message-id:") == 1
    assert blob.count(b"Date:") + blob.count(b"DATE:") == 1
    check_stored(sm, m, body, "bob@example.org")


def test_submission_header_less_message_gets_a_header(sm):
    c = Raw(sm.ports["subplain"])
    c.reply()
    c.cmd("EHLO raw.example")
    assert c.cmd("AUTH PLAIN " + plain_auth("alice@example.org", "alice-pw"))[0] == 235
    c.cmd("MAIL FROM:<alice@example.org>")
    c.cmd("RCPT TO:<alice@example.org>")
    c.cmd("DATA")
    c.send(b"just a line, no header\r\n.\r\n")
    assert c.reply()[0] == 250
    c.cmd("QUIT")
    c.close()
    msgs = [m for m in sm.messages("alice@example.org") if m["hdr_subject"] is None]
    blob = sm.blob(msgs[-1]["blob_key"])
    # Date and Message-ID, then the empty line the message lacked
    assert blob.endswith(b"\r\n\r\njust a line, no header\r\n")
    head = blob[:blob.index(b"\r\n\r\n")]
    assert b"\r\nDate: " in head and b"\r\nMessage-ID: <" in head


def test_curl_smtps_submission(sm, tmp_path):
    msg = tmp_path / "m.eml"
    msg.write_bytes(b"From: alice@example.org\r\nTo: bob@example.org\r\nSubject: curl smtps\r\n\r\n"
                    b"over implicit TLS\r\n")
    r = subprocess.run([CURL, "-sS", f"smtps://127.0.0.1:{sm.ports['subs']}/client.example",
                        "--cacert", str(sm.certs.ca), "--user", "alice@example.org:alice-pw",
                        "--mail-from", "alice@example.org", "--mail-rcpt", "bob@example.org",
                        "-T", str(msg)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    m = by_subject(sm, "curl smtps")[0]
    # submission added Date: and Message-ID: at the end of the header
    blob = check_stored(sm, m, b"\r\n\r\nover implicit TLS\r\n", "bob@example.org")
    assert b"with ESMTPSA id" in blob
    assert b"\r\nFrom: alice@example.org\r\nTo: bob@example.org\r\nSubject: curl smtps\r\n" \
        b"Date: " in blob


def test_dsn_parameters_and_alias_forward_are_queued(sm):
    c = Raw(sm.ports["subplain"])
    c.reply()
    c.cmd("EHLO raw.example")
    assert c.cmd("AUTH PLAIN " + plain_auth("alice@example.org", "alice-pw"))[0] == 235
    assert c.cmd("MAIL FROM:<alice@example.org> RET=HDRS ENVID=env+2Bid42")[0] == 250
    assert c.cmd("RCPT TO:<far@remote.example> NOTIFY=SUCCESS,FAILURE "
                 "ORCPT=rfc822;far@remote.example")[0] == 250
    assert c.cmd("RCPT TO:<team@example.org> NOTIFY=NEVER")[0] == 250
    c.cmd("DATA")
    c.send(b"Subject: dsn params\r\n\r\nx\r\n.\r\n")
    assert c.reply()[0] == 250
    c.cmd("QUIT")
    c.close()
    msgs = by_subject(sm, "dsn params", count=2)
    assert sorted(m["login"] for m in msgs) == ["alice@example.org", "bob@example.org"]
    key = msgs[0]["blob_key"]
    q = {r["rcpt"]: r for r in sm.queue() if r["blob_key"] == key}
    assert set(q) == {"far@remote.example", "ext@remote.example"}
    far, ext = q["far@remote.example"], q["ext@remote.example"]
    assert far["dsn_notify"] == "SUCCESS,FAILURE" and far["dsn_orcpt"] == "rfc822;far@remote.example"
    assert far["dsn_ret"] == "HDRS" and far["dsn_envid"] == "env+2Bid42"
    # the alias's forward keeps the original recipient
    assert ext["dsn_notify"] == "NEVER" and ext["dsn_orcpt"] == "rfc822;team@example.org"
    # one queue message for both
    assert far["id"] == ext["id"]


def test_delivery_publishes_exists(sm, redis):
    """IMAP sessions learn about new mail over Redis pub/sub."""
    mbox = sm.query("SELECT mb.id FROM mailboxes mb JOIN accounts a ON a.id = mb.account_id"
                    " WHERE a.login = 'bob@example.org' AND mb.name = 'INBOX'")[0]["id"]
    chan = f"tailpost:mailbox:{mbox}".encode()
    s = socket.create_connection((redis.host, redis.port), timeout=10)
    s.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(chan), chan))
    f = s.makefile("rb")
    assert harness._resp_read(f)[0] == b"subscribe"
    with smtplib.SMTP("127.0.0.1", sm.ports["mx"], timeout=10) as c:
        c.sendmail("x@remote.example", ["bob@example.org"], b"Subject: pubsub\r\n\r\nx\r\n")
    msg = harness._resp_read(f)
    s.close()
    m = by_subject(sm, "pubsub", login="bob@example.org")[0]
    assert msg[0] == b"message" and msg[1] == chan
    assert msg[2] == f"EXISTS {m['uid']} {m['modseq']}".encode()


def auth_failures_metric(sm, listener):
    body = http(sm.ports["admin"], "GET", "/metrics")[2].decode()
    want = f'tailpost_mailbox_auth_failures_total{{listener="{listener}"}} '
    for line in body.splitlines():
        if line.startswith(want):
            return int(line.split()[-1])
    return 0


def test_auth_failures_are_counted_and_logged(sm):
    before = auth_failures_metric(sm, "subs")
    c = Raw(sm.ports["subs"], tls_ctx=sm.client_context())
    c.reply()
    c.cmd("EHLO raw.example")
    code, text = c.cmd("AUTH PLAIN " + plain_auth("alice@example.org", "nope-secret"))
    assert (code, text[0][:5]) == (535, "5.7.8")
    c.cmd("QUIT")
    c.close()
    lines = harness.wait_for(lambda: [d for d in sm.mb.lines() if d.get("msg") == "smtp auth"
                                      and d.get("result") == "fail" and d.get("listener") == "subs"],
                             timeout=5, what="auth failure line")
    assert lines[-1]["reason"] == "bad password"
    assert "nope-secret" not in sm.mb.text()
    assert auth_failures_metric(sm, "subs") == before + 1


def test_pipelined_flood_without_reading_loses_nothing(sm):
    """A client that pipelines thousands of commands and reads nothing: the
    session stops at its reply high-water mark, the connection stops
    reading, the client's send blocks; once it reads, every reply arrives
    in order and the session goes on."""
    import select
    import time
    c = Raw(sm.ports["mx"], timeout=30)
    c.reply()
    c.cmd("EHLO flood.example")
    c.s.setblocking(False)
    cmd = b"NOOP\r\n"
    chunk = cmd * 4096
    sent, stalled_since = 0, None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and sent < 32 * 1024 * 1024:
        try:
            off = sent % len(chunk)
            sent += c.s.send(chunk[off:])
            stalled_since = None
        except BlockingIOError:
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since > 1.0:
                break
            time.sleep(0.05)
    assert stalled_since is not None, f"never blocked after {sent} bytes"
    rest = (len(cmd) - sent % len(cmd)) % len(cmd)
    n = (sent + rest) // len(cmd)
    # finish the last command and QUIT while reading (both sides are full)
    tail = cmd[len(cmd) - rest:] + b"QUIT\r\n" if rest else b"QUIT\r\n"
    want = b"250 2.0.0 Ok\r\n" * n + b"221 2.0.0 Bye\r\n"
    got = bytearray(c.buf)
    deadline = time.monotonic() + 60
    while len(got) < len(want) and time.monotonic() < deadline:
        r, w, _ = select.select([c.s], [c.s] if tail else [], [], 1.0)
        if w:
            tail = tail[c.s.send(tail):]
        if r:
            d = c.s.recv(1 << 20)
            if not d:
                break
            got += d
    c.close()
    assert len(got) == len(want) and bytes(got) == want, (len(got), len(want), bytes(got[-100:]))
