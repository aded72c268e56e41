"""IMAP server pieces around the protocol core, on the real stores:
master-user login (LOGIN "user*master" and SASL PLAIN authzid), the
connections-per-account limit, the per-session command rate limit, the
local body cache, MOVE/COPY into the selected mailbox, and DELETE of a
mailbox with children.  Real clients: Python imaplib and raw sockets.

Plaintext listeners on loopback (allow_plaintext_auth) keep the tests
about the features, not TLS; test_imap_clients.py covers TLS."""
import imaplib
import os
import re
import socket
import time

import pytest

import harness
from mailbox_util import Conn, Mailbox, listener, pp_v2

ALICE, ALICE_PW = "alice@example.org", "alice-pw-1"
BOB, BOB_PW = "bob@example.org", "bob-pw-1"
GATEWAY, GATEWAY_PW = "gateway", "gateway-pw-1"
EDGE = "127.0.0.2"

MSG = (b"From: Bob <bob@example.net>\r\n"
       b"To: Alice <alice@example.org>\r\n"
       b"Subject: limits\r\n"
       b"Message-ID: <limits@example.net>\r\n"
       b"\r\n"
       b"body line\r\n")


def start(tmp_path, db, imap_yaml="", extra="", name="mailbox", accounts=True):
    mb = Mailbox(tmp_path, db, name=name)
    mb.port = harness.free_port()
    mb.pport = harness.free_port()
    mb.write_config(
        listener("imap", "imap", mb.port, "allow_plaintext_auth: true") +
        listener("imapp", "imap", mb.pport,
                 f'allow_plaintext_auth: true\nproxy: {{ trusted: ["{EDGE}/32"] }}'),
        extra=extra + (("imap:\n" + imap_yaml) if imap_yaml else ""))
    mb.migrate()
    for login, pw in ((ALICE, ALICE_PW), (BOB, BOB_PW), (GATEWAY, GATEWAY_PW)):
        if not accounts:
            break
        r = mb.cli("account", "add", login, input=pw + "\n")
        assert r.returncode == 0, r.stderr
    mb.start()
    return mb


@pytest.fixture
def stop_all():
    started = []
    yield started
    for mb in started:
        assert mb.stop() == 0, mb.text()[-3000:]


def client(mb):
    return imaplib.IMAP4("127.0.0.1", mb.port, timeout=20)


def login(mb, user, pw):
    c = client(mb)
    c.login(user, pw)
    return c


def plain(c, authzid, authcid, pw):
    """AUTHENTICATE PLAIN (RFC 4616: authzid NUL authcid NUL password);
    "OK", or "NO " and the server's text."""
    try:
        typ, _ = c.authenticate("PLAIN", lambda _: f"{authzid}\0{authcid}\0{pw}".encode())
        return typ
    except imaplib.IMAP4.error as e:
        return "NO " + str(e)


def append(c, mailbox="INBOX", msg=MSG):
    typ, data = c.append(mailbox, None, None, msg)
    assert typ == "OK", data
    return int(re.search(rb"APPENDUID \d+ (\d+)", data[0]).group(1))


# --- master users ----------------------------------------------------------

MASTER_YAML = '  master_users: [Gateway]\n  master_separator: "*"\n'


def test_master_login_opens_the_users_mailbox(tmp_path, postgres_db, stop_all):
    mb = start(tmp_path, postgres_db, MASTER_YAML)
    stop_all.append(mb)
    a = login(mb, ALICE, ALICE_PW)
    append(a, msg=MSG.replace(b"limits", b"for alice"))
    a.logout()

    # LOGIN "user*master" with the master's password
    c = login(mb, f"{ALICE}*{GATEWAY}", GATEWAY_PW)
    typ, data = c.select("INBOX")
    assert typ == "OK" and data == [b"1"]
    typ, data = c.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"for alice" in data[0][1]
    c.logout()
    mb.wait_log(lambda d: d.get("msg") == "imap login" and d.get("result") == "ok" and
                d.get("account") == ALICE and d.get("master") == GATEWAY)

    # AUTHENTICATE PLAIN with authzid = user, authcid = master (an address
    # of the master would do too; the check is on the canonical login)
    c = client(mb)
    assert plain(c, BOB, GATEWAY, GATEWAY_PW) == "OK"
    typ, data = c.select("INBOX")
    assert typ == "OK" and data == [b"0"]  # bob's, empty
    c.logout()
    mb.wait_log(lambda d: d.get("msg") == "imap login" and d.get("account") == BOB and
                d.get("master") == GATEWAY)

    # the master alone is an ordinary login to its own mailbox
    c = login(mb, GATEWAY, GATEWAY_PW)
    assert c.select("INBOX")[1] == [b"0"]
    c.logout()


@pytest.mark.parametrize("how", [
    "wrong master password", "not a master", "unknown user", "plain not a master",
    "plain wrong password"])
def test_master_login_refusals(tmp_path, postgres_db, stop_all, how):
    mb = start(tmp_path, postgres_db, MASTER_YAML)
    stop_all.append(mb)
    c = client(mb)
    if how.startswith("plain"):
        authcid, pw = (BOB, BOB_PW) if how == "plain not a master" else (GATEWAY, "nope")
        r = plain(c, ALICE, authcid, pw)
        assert r.startswith("NO") and "AUTHENTICATIONFAILED" in r, r
    else:
        name, pw = {"wrong master password": (f"{ALICE}*{GATEWAY}", "nope"),
                    # bob's own password, but bob is no master
                    "not a master": (f"{ALICE}*{BOB}", BOB_PW),
                    "unknown user": (f"nobody@example.org*{GATEWAY}", GATEWAY_PW)}[how]
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            c.login(name, pw)
    c.shutdown()
    why = {"wrong master password": "bad password", "plain wrong password": "bad password",
           "not a master": "master login: not a master user",
           "plain not a master": "master login: not a master user",
           "unknown user": "master login: unknown user"}[how]
    mb.wait_log(lambda d: d.get("msg") == "imap login" and d.get("result") == "fail" and
                d.get("reason") == why)
    assert not [d for d in mb.lines() if d.get("msg") == "imap login" and
                d.get("result") == "ok"]


def test_master_login_without_master_users_is_refused(tmp_path, postgres_db, stop_all):
    mb = start(tmp_path, postgres_db, "")
    stop_all.append(mb)
    c = client(mb)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        c.login(f"{ALICE}*{GATEWAY}", GATEWAY_PW)
    c.shutdown()
    mb.wait_log(lambda d: d.get("msg") == "imap login" and
                "no master users" in d.get("reason", ""))


def imap_proxied(mb, src, cmd):
    """One tagged command on a PROXY v2 connection from client src; the
    tagged reply, or None when the connection is refused."""
    c = Conn(mb.pport, header=pp_v2((src, 40000), ("100.64.0.2", 143)), source=(EDGE, 0))
    try:
        greet = c.line()
        if not greet.startswith("* OK"):
            return None
        c.send(f"t1 {cmd}\r\n")
        while True:
            line = c.line()
            if not line or line.startswith("t1 "):
                return line
    finally:
        c.close()


def test_failed_master_logins_ban_the_client(tmp_path, postgres_db, stop_all):
    mb = start(tmp_path, postgres_db, MASTER_YAML, extra="abuse: { auth_failures: 2 }\n")
    stop_all.append(mb)
    src = "203.0.113.45"
    for _ in range(2):
        r = imap_proxied(mb, src, f'LOGIN "{ALICE}*{GATEWAY}" "wrong"')
        assert r.startswith("t1 NO [AUTHENTICATIONFAILED]"), r
    mb.wait_log(lambda d: d.get("msg") == "client banned" and d.get("client") == src)
    # refused from now on, even with the right password; others are not
    assert imap_proxied(mb, src, f'LOGIN "{ALICE}*{GATEWAY}" "{GATEWAY_PW}"') is None
    r = imap_proxied(mb, "203.0.113.46", f'LOGIN "{ALICE}*{GATEWAY}" "{GATEWAY_PW}"')
    assert r.startswith("t1 OK"), r


# --- connections per account -------------------------------------------------


def test_connections_per_account_limit(tmp_path, postgres_db, stop_all):
    mb = start(tmp_path, postgres_db, MASTER_YAML + "  max_connections_per_account: 3\n")
    stop_all.append(mb)
    held = [login(mb, ALICE, ALICE_PW) for _ in range(2)]
    # a master login counts for the account it opens
    held.append(login(mb, f"{ALICE}*{GATEWAY}", GATEWAY_PW))
    c = client(mb)
    with pytest.raises(imaplib.IMAP4.error, match=r"\[LIMIT\]"):
        c.login(ALICE, ALICE_PW)
    mb.wait_log(lambda d: d.get("msg") == "imap login" and d.get("result") == "limit" and
                d.get("account") == ALICE)
    # the limit is per account: bob is fine; a failed LOGIN is no ban reason
    b = login(mb, BOB, BOB_PW)
    # a slot comes back when a session ends; the refused session may retry
    held.pop().logout()
    deadline = time.time() + 10
    while True:
        try:
            c.login(ALICE, ALICE_PW)
            break
        except imaplib.IMAP4.error:
            assert time.time() < deadline, "slot not released"
            time.sleep(0.2)
    assert c.select("INBOX")[0] == "OK"
    # a dropped connection (no LOGOUT) gives its slot back too
    held.pop().sock.close()
    deadline = time.time() + 10
    while True:
        d = client(mb)
        try:
            d.login(ALICE, ALICE_PW)
            d.logout()
            break
        except imaplib.IMAP4.error:
            d.shutdown()
            assert time.time() < deadline, "slot of a dropped connection not released"
            time.sleep(0.2)
    for x in held + [b, c]:
        x.logout()
    assert not [d for d in mb.lines() if d.get("msg") == "client banned"]


# --- command rate ------------------------------------------------------------


def pipelined_noops(port, n, user=ALICE, pw=ALICE_PW):
    """Log in, send n NOOPs at once, return (seconds until all answered,
    the tagged replies)."""
    c = Conn(port)
    assert c.line().startswith("* OK")
    assert c.cmd(f'a LOGIN "{user}" "{pw}"').startswith("a OK")
    t0 = time.time()
    c.send("".join(f"n{i} NOOP\r\n" for i in range(n)))
    replies = []
    while len(replies) < n:
        line = c.line()
        assert line, "connection closed"
        if line.startswith("n"):
            replies.append(line)
    took = time.time() - t0
    c.cmd("z LOGOUT")
    c.close()
    return took, replies


def test_command_rate_delays_commands(tmp_path, postgres_db, stop_all):
    slow = start(tmp_path, postgres_db, "  command_rate: 20\n  command_burst: 10\n",
                 name="slow")
    stop_all.append(slow)
    # 10 at once, the other 50 at 20/s: at least 2.5 s, every one answered OK
    took, replies = pipelined_noops(slow.port, 60)
    assert all(r.split()[1] == "OK" for r in replies), replies
    assert took >= 2.3, took
    slow.wait_log(lambda d: d.get("msg") == "imap command rate limit" and
                  d.get("account") == ALICE)
    # the defaults do not slow a client down
    fast = start(tmp_path, postgres_db, "", name="fast", accounts=False)
    stop_all.append(fast)
    took, replies = pipelined_noops(fast.port, 60)
    assert all(r.split()[1] == "OK" for r in replies)
    assert took < 2.0, took
    assert not [d for d in fast.lines() if d.get("msg") == "imap command rate limit"]


def test_idle_is_not_rate_limited(tmp_path, postgres_db, stop_all):
    mb = start(tmp_path, postgres_db, "  command_rate: 1\n  command_burst: 3\n")
    stop_all.append(mb)
    c = Conn(mb.port)
    assert c.line().startswith("* OK")
    assert c.cmd(f'a LOGIN "{ALICE}" "{ALICE_PW}"').startswith("a OK")
    c.send("b SELECT INBOX\r\n")
    while not c.line().startswith("b "):
        pass
    c.send("i IDLE\r\n")
    assert c.line().startswith("+ ")
    # the bucket (3, then 1/s) is empty now; new mail during IDLE still
    # arrives at once: no command is involved.  The APPEND comes from
    # another session (its own bucket).
    w = login(mb, ALICE, ALICE_PW)
    t0 = time.time()
    append(w)
    w.logout()
    line = c.line()
    assert re.match(r"\* 1 EXISTS", line), line
    assert time.time() - t0 < 2
    c.send("DONE\r\n")
    assert c.line().startswith("i OK")
    c.close()


# --- body cache ----------------------------------------------------------------


def big_message():
    body = b"".join(b"line %06d of a message larger than one read chunk\r\n" % i
                    for i in range(6000))
    return MSG.replace(b"body line\r\n", body)


def blob_files(mb):
    return [os.path.join(d, f) for d, _, fs in os.walk(mb.blobs) for f in fs]


@pytest.mark.parametrize("cache", ["8MB", "0"])
def test_body_fetch_cache(tmp_path, postgres_db, stop_all, cache):
    mb = start(tmp_path, postgres_db, f"  blob_cache_size: {cache}\n")
    stop_all.append(mb)
    msg = big_message()
    assert len(msg) > 2 * 128 * 1024  # several read chunks
    c = login(mb, ALICE, ALICE_PW)
    append(c, msg=msg)
    c.select("INBOX")
    typ, data = c.fetch("1", "(BODY.PEEK[])")
    assert typ == "OK" and data[0][1] == msg
    # take the blob store away: only the cache can answer now
    files = blob_files(mb)
    assert files
    for f in files:
        os.rename(f, f + ".away")
    try:
        if cache == "0":
            # no cache: the read fails and the session ends (the literal's
            # size is on the wire already)
            with pytest.raises((imaplib.IMAP4.abort, imaplib.IMAP4.error, OSError)):
                c.fetch("1", "(BODY.PEEK[])")
            return
        for _ in range(3):
            typ, data = c.fetch("1", "(BODY.PEEK[])")
            assert typ == "OK" and data[0][1] == msg
        # a part of it (a different range) was never read: a miss
        with pytest.raises((imaplib.IMAP4.abort, imaplib.IMAP4.error, OSError)):
            c.fetch("1", "(BODY.PEEK[TEXT]<7.100>)")
    finally:
        for f in files:
            os.rename(f + ".away", f)
    c2 = login(mb, ALICE, ALICE_PW)
    c2.select("INBOX")
    typ, data = c2.fetch("1", "(BODY.PEEK[TEXT]<7.100>)")
    assert typ == "OK" and data[0][1] == msg[msg.index(b"\r\n\r\n") + 4:][7:107]
    c2.logout()


def test_many_small_cached_messages_in_one_fetch(tmp_path, postgres_db, stop_all):
    """Cache hits are answered from the loop, so a FETCH of many cached
    messages does not nest one call per message."""
    mb = start(tmp_path, postgres_db)
    stop_all.append(mb)
    c = login(mb, ALICE, ALICE_PW)
    msgs = [MSG.replace(b"body line", b"small %d" % i) for i in range(300)]
    for m in msgs:
        append(c, msg=m)
    c.select("INBOX")
    for _ in range(2):  # the second round comes from the cache
        typ, data = c.fetch("1:*", "(BODY.PEEK[])")
        assert typ == "OK"
        got = [d[1] for d in data if isinstance(d, tuple)]
        assert got == msgs
    c.logout()


# --- MOVE / COPY into the selected mailbox, DELETE with children -------------


def run(c, tag, cmd):
    """Send one command on a raw Conn; (untagged lines, tagged line)."""
    c.send(f"{tag} {cmd}\r\n")
    lines = []
    deadline = time.time() + 20
    while time.time() < deadline:
        line = c.line()  # "" is an empty line of a literal, or EOF
        if line.startswith(tag + " "):
            return lines, line
        lines.append(line)
    raise AssertionError(f"no tagged reply to {cmd}: {lines[-20:]}")


def uids_of(c, tag):
    lines, done = run(c, tag, "UID SEARCH ALL")
    assert done.startswith(tag + " OK")
    return [int(x) for x in lines[0].split()[2:]]


def test_copy_and_move_into_the_selected_mailbox(tmp_path, postgres_db, stop_all):
    mb = start(tmp_path, postgres_db)
    stop_all.append(mb)
    a = login(mb, ALICE, ALICE_PW)
    u1 = append(a, msg=MSG.replace(b"limits", b"one"))
    u2 = append(a, msg=MSG.replace(b"limits", b"two"))
    a.logout()
    c = Conn(mb.port)
    assert c.line().startswith("* OK")
    assert run(c, "a", f'LOGIN "{ALICE}" "{ALICE_PW}"')[1].startswith("a OK")
    assert run(c, "b", "SELECT INBOX")[1].startswith("b OK")
    assert run(c, "c", "STORE 1 +FLAGS (\\Flagged)")[1].startswith("c OK")
    # COPY to itself: new UIDs at the end, the originals stay
    lines, done = run(c, "d", f"UID COPY {u1}:{u2} INBOX")
    assert done.startswith(f"d OK [COPYUID ") and \
        f" {u1}:{u2} {u2 + 1}:{u2 + 2}]" in done, done
    assert "* 4 EXISTS" in lines, lines
    assert uids_of(c, "e") == [u1, u2, u2 + 1, u2 + 2]
    lines, _ = run(c, "f", f"UID FETCH {u2 + 1} (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert "\\Flagged" in lines[0]
    # MOVE to itself, as Dovecot does: re-numbered (COPYUID), the original
    # expunged, the copy announced with EXISTS
    lines, done = run(c, "g", f"UID MOVE {u1} INBOX")
    assert done.startswith("g OK"), done
    assert f"* OK [COPYUID " in lines[0] and f" {u1} {u2 + 3}]" in lines[0], lines
    assert "* 1 EXPUNGE" in lines and "* 4 EXISTS" in lines, lines
    assert lines.index("* 1 EXPUNGE") < lines.index("* 4 EXISTS")
    assert uids_of(c, "h") == [u2, u2 + 1, u2 + 2, u2 + 3]
    lines, _ = run(c, "i", f"UID FETCH {u2 + 3} (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert "\\Flagged" in lines[0] and "one" in "".join(lines)
    # MOVE of several, by sequence number
    lines, done = run(c, "j", "MOVE 1:2 INBOX")
    assert done.startswith("j OK"), done
    assert sorted(x for x in lines if x.endswith(" EXPUNGE")) in (
        ["* 1 EXPUNGE", "* 1 EXPUNGE"], ["* 1 EXPUNGE", "* 2 EXPUNGE"]), lines
    assert f" {u2}:{u2 + 1} {u2 + 4}:{u2 + 5}]" in lines[0], lines
    assert uids_of(c, "k") == [u2 + 2, u2 + 3, u2 + 4, u2 + 5]
    run(c, "z", "LOGOUT")
    c.close()
    # another session sees the same mailbox
    o = login(mb, ALICE, ALICE_PW)
    assert o.select("INBOX")[1] == [b"4"]
    typ, data = o.uid("SEARCH", "ALL")
    assert [int(x) for x in data[0].split()] == [u2 + 2, u2 + 3, u2 + 4, u2 + 5]
    o.logout()


def test_delete_mailbox_with_children(tmp_path, postgres_db, stop_all):
    mb = start(tmp_path, postgres_db)
    stop_all.append(mb)
    c = login(mb, ALICE, ALICE_PW)
    for name in ("Work", "Work/2026", "Work/2026/Q4"):
        assert c.create(name)[0] == "OK"
    append(c, "Work")
    append(c, "Work/2026/Q4")
    # RFC 3501 6.3.4: deleting a parent removes its messages; the name
    # stays as \Noselect while it has children
    typ, data = c.delete("Work")
    assert typ == "OK", data
    typ, data = c.list('""', "Work*")
    lines = {re.search(rb'"([^"]+)"$|(\S+)$', x).group(0).strip(b'"'): x for x in data}
    assert b"\\Noselect" in lines[b"Work"] and b"\\HasChildren" in lines[b"Work"]
    assert b"Work/2026" in lines and b"Work/2026/Q4" in lines
    typ, data = c.select("Work")
    assert typ == "NO"
    assert c.status("Work/2026/Q4", "(MESSAGES)")[1][0].endswith(b"(MESSAGES 1)")
    # a \Noselect name with children cannot be deleted
    typ, data = c.delete("Work")
    assert typ == "NO" and b"[HASCHILDREN]" in data[0], data
    # once the children are gone, so is the name
    assert c.delete("Work/2026/Q4")[0] == "OK"
    assert c.delete("Work/2026")[0] == "OK"
    typ, data = c.list('""', "Work*")
    assert data == [None]
    typ, data = c.delete("Work")
    assert typ == "NO" and b"[NONEXISTENT]" in data[0], data
    # re-creating the parent gives a fresh, selectable mailbox
    assert c.create("Work")[0] == "OK"
    assert c.select("Work")[1] == [b"0"]
    c.logout()


def test_delete_selected_mailbox_elsewhere_ends_that_view(tmp_path, postgres_db, stop_all):
    mb = start(tmp_path, postgres_db)
    stop_all.append(mb)
    a = login(mb, ALICE, ALICE_PW)
    a.create("Old")
    append(a, "Old")
    a.select("Old")
    b = login(mb, ALICE, ALICE_PW)
    assert b.delete("Old")[0] == "OK"
    b.logout()
    # the session that had it selected is told (BYE: its UIDVALIDITY is gone)
    deadline = time.time() + 10
    with pytest.raises(imaplib.IMAP4.abort, match="Selected mailbox was deleted"):
        while time.time() < deadline:
            typ, _ = a.noop()
            assert typ == "OK"
            time.sleep(0.2)
