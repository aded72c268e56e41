"""IMAP APPEND and the blob store (store_pg.c op_append, schema 7
tp_append_begin).

APPEND reserves its blobs with the mailbox lookup, before the put, as SMTP
delivery does: the blob collector may be removing an unreferenced blob of
the same content at that very moment, and a put that finds the object
still there writes nothing.  The race is made deterministic here by
holding the blob row the way the collector does (FOR UPDATE), removing
the object and the row, then letting go: the message must still have its
bytes.  Small messages are spooled in memory and put from there (no
temporary file), large ones go through a file; both come back byte for
byte, and a MULTIAPPEND may carry the same message twice.
"""
import hashlib
import os
import re
import select
import subprocess
import time

import pytest

from mailbox_util import Mailbox, listener
import harness

USER, PASSWORD = "ava@example.org", "append-pw-4"


def start(tmp_path, postgres, postgres_db, spool):
    m = Mailbox(tmp_path, postgres_db, name="appendblobs", env={"TMPDIR": str(spool)})
    m.ports = {"imap": harness.free_port()}
    m.write_config(listener("imap", "imap", m.ports["imap"], "allow_plaintext_auth: true"))
    m.migrate()
    r = m.cli("account", "add", USER, input=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    m.start()
    m.spool = spool
    m.postgres = postgres
    m.pgdb = postgres_db
    m.sql = lambda q: postgres.psql(q, dbname=postgres_db.name).strip()
    return m


@pytest.fixture
def mb(tmp_path, postgres, postgres_db):
    spool = tmp_path / "tmpdir"
    spool.mkdir()
    m = start(tmp_path, postgres, postgres_db, spool)
    yield m
    assert m.stop() == 0, m.text()[-3000:]


class Conn:
    def __init__(self, mb):
        import socket
        self.s = socket.create_connection(("127.0.0.1", mb.ports["imap"]), timeout=30)
        self.buf = b""
        self.n = 0
        self.read_line()
        self.cmd(f'LOGIN "{USER}" "{PASSWORD}"')

    def read_line(self):
        while b"\r\n" not in self.buf:
            d = self.s.recv(1 << 20)
            assert d, "connection closed"
            self.buf += d
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_exact(self, n):
        while len(self.buf) < n:
            d = self.s.recv(1 << 20)
            assert d, "connection closed"
            self.buf += d
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, text, literals=()):
        """Send a command with LITERAL+ literals; its tag."""
        self.n += 1
        tag = f"t{self.n}"
        data = f"{tag} {text}".encode()
        for lit in literals:
            data += f" {{{len(lit)}+}}\r\n".encode() + lit
        self.s.sendall(data + b"\r\n")
        return tag

    def done(self, tag):
        """Read up to the tagged answer: (untagged lines, tagged line); a
        literal inside an untagged line is appended to it."""
        untagged = []
        while True:
            line = self.read_line()
            m = re.search(rb"\{(\d+)\}$", line)
            if m is not None:
                line += b"\r\n" + self.read_exact(int(m.group(1))) + self.read_line()
            if line.startswith(tag.encode() + b" "):
                return untagged, line
            untagged.append(line)

    def cmd(self, text, literals=()):
        untagged, line = self.done(self.send(text, literals))
        assert b" OK" in line, (text, line, untagged)
        return untagged, line


def message(subject, body_len):
    head = (f"From: a@example.net\r\nTo: {USER}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@example.net>\r\n\r\n").encode()
    line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvw\r\n"
    return head + (line * (body_len // len(line) + 1))[:body_len]


def body_of(c, uid):
    untagged, _ = c.cmd(f"UID FETCH {uid} (BODY.PEEK[])")
    for u in untagged:
        m = re.match(rb"\* \d+ FETCH .*BODY\[\] \{(\d+)\}\r\n", u, re.S)
        if m is not None:
            start = m.end()
            return u[start:start + int(m.group(1))]
    raise AssertionError(untagged)


def appenduid(line):
    m = re.search(rb"\[APPENDUID \d+ ([\d,:]+)\]", line)
    assert m is not None, line
    return m.group(1).decode()


def blob_path(mb, key):
    return mb.blobs / key[:2] / key[2:4] / key


def test_small_and_large_messages_round_trip_without_temporary_files(mb):
    c = Conn(mb)
    small = message("small", 2000)
    large = message("large", 700 * 1024)  # past the in-memory spool: a file
    _, line = c.cmd("APPEND INBOX (\\Seen)", [small])
    uid_small = appenduid(line)
    _, line = c.cmd("APPEND INBOX", [large])
    uid_large = appenduid(line)
    # the same message twice in one MULTIAPPEND: one blob, two messages
    _, line = c.cmd("APPEND INBOX", [small, small])
    uids = appenduid(line)
    assert re.fullmatch(r"\d+:\d+", uids), uids
    c.cmd("SELECT INBOX")
    assert body_of(c, uid_small) == small
    assert body_of(c, uid_large) == large
    for u in uids.split(":"):
        assert body_of(c, u) == small
    for data in (small, large):
        key = hashlib.sha256(data).hexdigest()
        assert blob_path(mb, key).read_bytes() == data
        assert mb.sql(f"SELECT size FROM blobs WHERE key = '{key}'") == str(len(data))
    assert mb.sql("SELECT count(*) FROM messages WHERE NOT expunged") == "4"
    # every spool is gone, the file of the large one included
    assert os.listdir(mb.spool) == []


def test_small_messages_need_no_temporary_file(tmp_path, postgres, postgres_db):
    """With TMPDIR missing no spool file can be made: a small message is
    stored all the same (from memory), a large one is refused with
    [UNAVAILABLE] and nothing of it is kept."""
    m = start(tmp_path, postgres, postgres_db, tmp_path / "no-such-dir")
    try:
        c = Conn(m)
        small = message("mem", 30 * 1024)
        _, line = c.cmd("APPEND INBOX", [small])
        uid = appenduid(line)
        c.cmd("SELECT INBOX")
        assert body_of(c, uid) == small
        large = message("file", 400 * 1024)
        _, line = c.done(c.send("APPEND INBOX", [large]))
        assert b" NO [UNAVAILABLE]" in line, line
        assert not blob_path(m, hashlib.sha256(large).hexdigest()).exists()
        assert m.sql("SELECT count(*) FROM messages") == "1"
        c.cmd("NOOP")
    finally:
        rc = m.stop()
    assert rc == 0, m.text()[-3000:]


class HeldRow:
    """A psql session holding a blobs row as the collector does."""

    def __init__(self, mb, key):
        pg = mb.postgres
        self.p = subprocess.Popen(
            [str(pg.bindir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h",
             str(pg.socket_dir), "-p", str(pg.port), "-U", pg.admin_user, "-d", mb.pgdb.name],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.run("BEGIN;\n"
                 f"SELECT 'locked' FROM blobs WHERE key = '{key}' FOR UPDATE;\n")
        assert self.wait_for(b"locked"), "psql did not lock the row"

    def run(self, text):
        self.p.stdin.write(text.encode())
        self.p.stdin.flush()

    def wait_for(self, what, timeout=20):
        out, deadline = b"", time.monotonic() + timeout
        while what not in out and time.monotonic() < deadline:
            r, _, _ = select.select([self.p.stdout], [], [], 0.2)
            if r:
                d = os.read(self.p.stdout.fileno(), 4096)
                if not d:
                    break
                out += d
        return what in out

    def finish(self, text):
        self.p.stdin.write(text.encode())
        self.p.stdin.close()
        assert self.p.wait(timeout=20) == 0, self.p.stdout.read()


def wait_blocked_on_blobs(mb, timeout=20):
    """True once a backend waits for a row lock (ours on the blobs row)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = mb.sql("SELECT count(*) FROM pg_stat_activity "
                   "WHERE wait_event_type = 'Lock' AND backend_type = 'client backend'")
        if n != "0":
            return True
        time.sleep(0.05)
    return False


def test_append_of_a_blob_being_collected_keeps_its_bytes(mb):
    c = Conn(mb)
    data = message("again", 3000)
    key = hashlib.sha256(data).hexdigest()
    # the blob exists, unreferenced and older than any grace: collectable
    _, line = c.cmd("APPEND INBOX (\\Deleted)", [data])
    c.cmd("SELECT INBOX")
    c.cmd("EXPUNGE")
    mb.sql(f"UPDATE blobs SET last_used = now() - interval '2 days' WHERE key = '{key}'")
    assert blob_path(mb, key).exists()
    # the collector has chosen it (row locked) when the same message comes
    held = HeldRow(mb, key)
    tag = c.send("APPEND INBOX", [data])
    assert wait_blocked_on_blobs(mb), "the APPEND never waited for the blob row"
    # ... and removes the object, then the row, and commits
    blob_path(mb, key).unlink()
    held.finish(f"DELETE FROM blobs WHERE key = '{key}';\nCOMMIT;\n")
    _, line = c.done(tag)
    assert b" OK" in line, line
    uid = appenduid(line)
    # the APPEND reserved the blob again, then put it: bytes and row there
    assert blob_path(mb, key).read_bytes() == data
    assert mb.sql(f"SELECT count(*) FROM blobs WHERE key = '{key}' "
                  "AND last_used > now() - interval '1 minute'") == "1"
    assert body_of(c, uid) == data
    # and the collector leaves it alone now that a message references it
    r = mb.cli("gc", "--grace", "10m")
    assert r.returncode == 0, r.stderr
    assert blob_path(mb, key).exists()


def test_append_reservation_of_a_missing_mailbox_or_account(mb):
    c = Conn(mb)
    data = message("nowhere", 500)
    key = hashlib.sha256(data).hexdigest()
    _, line = c.done(c.send("APPEND Nowhere", [data]))
    assert b" NO [TRYCREATE]" in line, line
    # nothing reserved, nothing stored
    assert mb.sql(f"SELECT count(*) FROM blobs WHERE key = '{key}'") == "0"
    assert not blob_path(mb, key).exists()
    assert mb.sql("SELECT count(*) FROM tp_append_begin(-1, 'INBOX', ARRAY['" + key +
                  "'], ARRAY[1::bigint])") == "0"
    assert mb.sql(f"SELECT count(*) FROM blobs WHERE key = '{key}'") == "0"
