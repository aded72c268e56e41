"""A session's own STORE / APPEND / EXPUNGE need no sync query when nothing
else changed (store_pg.c reports the HIGHESTMODSEQ before and after the
write; sync.c imap_sync_own_write), but whatever anyone else changed must
still reach the client: through pub/sub, and also when no notification
arrives at all (changes written straight into Postgres here, as a lost
pub/sub message would leave them): a NOOP trusts the subscription for
imap.sync_interval, then asks Postgres, and asks at once when the
subscription connection (Redis) was lost meanwhile.  Also: the
per-mailbox used_bytes that quota reads stays equal to the sum over the
messages."""
import re
import socket
import time

import pytest

from mailbox_util import Certs, Mailbox, listener
import harness

USER, PASSWORD = "owen@example.org", "secret-pw-9"
MSG = (b"From: a@example.net\r\nTo: owen@example.org\r\nSubject: s\r\n"
       b"Message-ID: <o1@example.net>\r\n\r\nbody text\r\n")


def start_mailbox(tmp_path, postgres, postgres_db, sync_interval, redis=None):
    certs = Certs(tmp_path / "certs")
    cert, key = certs.issue("own", cn="localhost")
    m = Mailbox(tmp_path, postgres_db, name="own", redis=redis)
    m.ports = {"imap": harness.free_port()}
    m.write_config(listener("imap", "imap", m.ports["imap"],
                            f'tls: {{ cert: "{cert}", key: "{key}" }}'),
                   extra=f"imap: {{ sync_interval: {sync_interval} }}\n")
    m.migrate()
    r = m.cli("account", "add", USER, "--quota", "100000", input=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    m.start()
    m.certs = certs
    m.sql = lambda q: postgres.psql(q, dbname=postgres_db.name).strip()
    return m


@pytest.fixture
def mb(tmp_path, postgres, postgres_db):
    m = start_mailbox(tmp_path, postgres, postgres_db, "2s")
    yield m
    assert m.stop() == 0, m.text()[-3000:]


class Conn:
    def __init__(self, mb):
        ctx = mb.certs.client_context()
        raw = socket.create_connection(("127.0.0.1", mb.ports["imap"]), timeout=20)
        self.s = raw
        self.buf = b""
        self.read_line()
        self.n = 0
        self.cmd("STARTTLS")
        self.s = ctx.wrap_socket(raw, server_hostname="localhost")
        self.cmd(f'LOGIN "{USER}" "{PASSWORD}"')

    def read_line(self):
        while b"\r\n" not in self.buf:
            d = self.s.recv(65536)
            assert d, "connection closed"
            self.buf += d
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def cmd(self, text, literal=None, ok=True):
        self.n += 1
        tag = f"t{self.n}"
        if literal is not None:
            self.s.sendall(f"{tag} {text} {{{len(literal)}+}}\r\n".encode() + literal + b"\r\n")
        else:
            self.s.sendall(f"{tag} {text}\r\n".encode())
        untagged = []
        while True:
            line = self.read_line()
            if line.startswith(tag.encode() + b" "):
                if ok:
                    assert line.startswith(tag.encode() + b" OK"), (text, line, untagged)
                return untagged, line
            untagged.append(line)


def fetches(untagged):
    return [u for u in untagged if re.match(rb"\* \d+ FETCH", u)]


LATER = ("WITH mb AS (UPDATE mailboxes SET highestmodseq = highestmodseq + 1 "
         "WHERE name = 'INBOX' RETURNING id, highestmodseq) "
         "UPDATE messages m SET flags = ARRAY['$Later'], modseq = mb.highestmodseq "
         "FROM mb WHERE m.mailbox_id = mb.id AND m.uid = 1")


def test_noop_trusts_the_subscription_until_redis_goes_away(tmp_path, postgres, postgres_db):
    redis = harness.RedisServer()
    redis.start()
    m = start_mailbox(tmp_path, postgres, postgres_db, "60s", redis=redis)
    try:
        a, b = Conn(m), Conn(m)
        for _ in range(2):
            a.cmd("APPEND INBOX", MSG)
        a.cmd("SELECT INBOX")
        b.cmd("SELECT INBOX")
        # the first NOOP asks (nothing vouched for yet); by the second the
        # subscription is confirmed and that look is the baseline
        a.cmd("NOOP")
        time.sleep(0.5)
        a.cmd("NOOP")
        # an announced change (b's STORE, through Redis) shows at once
        b.cmd("UID STORE 2 +FLAGS (\\Flagged)")
        deadline = time.monotonic() + 5
        while True:
            u, _ = a.cmd("NOOP")
            if any(b"\\Flagged" in x for x in fetches(u)):
                break
            assert time.monotonic() < deadline, "b's change never reached a"
            time.sleep(0.05)
        # an unannounced one does not, within the interval ...
        m.sql(LATER)
        u, _ = a.cmd("NOOP")
        assert not any(b"$Later" in x for x in fetches(u)), u
        # ... until the subscription connection is lost: then NOOP asks
        redis.restart()
        u, _ = a.cmd("NOOP")
        assert any(b"UID 1 " in x and b"$Later" in x for x in fetches(u)), u
    finally:
        rc = m.stop()
        redis.close()
    assert rc == 0, m.text()[-3000:]


def test_own_writes_skip_the_sync_but_others_are_seen(mb):
    a, b = Conn(mb), Conn(mb)
    for _ in range(3):
        a.cmd("APPEND INBOX (\\Seen)", MSG)
    u, _ = a.cmd("SELECT INBOX")
    assert b"* 3 EXISTS" in u
    b.cmd("SELECT INBOX")
    a.cmd("ENABLE CONDSTORE")

    # own STORE: the FETCH once, and not again at the next NOOP
    u, _ = a.cmd("UID STORE 1 +FLAGS (\\Flagged)")
    assert len(fetches(u)) == 1, u
    u, _ = a.cmd("NOOP")
    assert fetches(u) == [], u
    # the other session hears of it through pub/sub
    u, _ = b.cmd("NOOP")
    assert any(b"\\Flagged" in x for x in fetches(u)), u

    # own APPEND into the selected mailbox: EXISTS before the tagged OK
    u, line = a.cmd("APPEND INBOX (\\Deleted)", MSG)
    assert b"* 4 EXISTS" in u, u
    uid = int(re.search(rb"APPENDUID \d+ (\d+)", line).group(1))
    u, _ = b.cmd("NOOP")
    assert b"* 4 EXISTS" in u, u

    # own EXPUNGE: EXPUNGE, and HIGHESTMODSEQ equal to the database's
    u, line = a.cmd(f"UID EXPUNGE {uid}")
    assert b"* 4 EXPUNGE" in u, u
    hms = int(re.search(rb"HIGHESTMODSEQ (\d+)", line).group(1))
    assert str(hms) == mb.sql("SELECT highestmodseq FROM mailboxes WHERE name = 'INBOX'").strip()
    u, _ = b.cmd("NOOP")
    assert b"* 4 EXPUNGE" in u, u
    u, _ = a.cmd("NOOP")
    assert not [x for x in u if b"EXPUNGE" in x or b"EXISTS" in x or b"FETCH" in x], u

    # a change nobody announced (written straight into Postgres, like a
    # lost notification): a's next own write must not hide it
    mb.sql("WITH mb AS (UPDATE mailboxes SET highestmodseq = highestmodseq + 1 "
               "WHERE name = 'INBOX' RETURNING id, highestmodseq) "
               "UPDATE messages m SET flags = ARRAY['$Hidden'], modseq = mb.highestmodseq "
               "FROM mb WHERE m.mailbox_id = mb.id AND m.uid = 2")
    u, _ = a.cmd("UID STORE 3 +FLAGS (\\Answered)")
    u2, _ = a.cmd("NOOP")
    seen = fetches(u) + fetches(u2)
    assert any(b"UID 2 " in x and b"$Hidden" in x for x in seen), (u, u2)
    assert any(b"UID 3 " in x and b"\\Answered" in x for x in seen), (u, u2)

    # and one written right after a's write, unannounced too: NOOP trusts
    # the subscription for imap.sync_interval (2 s here), then asks
    t0 = time.monotonic()
    mb.sql(LATER)
    while True:
        u, _ = a.cmd("NOOP")
        if any(b"UID 1 " in x and b"$Later" in x for x in fetches(u)):
            break
        assert time.monotonic() - t0 < 8, "an unannounced change never showed"
        time.sleep(0.2)

    # used_bytes (what quota reads) is the sum over the live messages
    assert mb.sql("SELECT count(*) FROM mailboxes mb WHERE used_bytes <> (SELECT "
                      "coalesce(sum(size), 0) FROM messages m WHERE m.mailbox_id = mb.id "
                      "AND NOT m.expunged)") == "0"
    u, _ = a.cmd("GETQUOTAROOT INBOX")
    m = re.search(rb"STORAGE (\d+) 97", b" ".join(u))
    assert m and int(m.group(1)) == (3 * len(MSG) + 1023) // 1024, u
    # COPY into the selected mailbox itself and MOVE out keep it right
    a.cmd("UID COPY 1 INBOX")
    a.cmd("UID MOVE 2 Archive")
    assert mb.sql("SELECT count(*) FROM mailboxes mb WHERE used_bytes <> (SELECT "
                      "coalesce(sum(size), 0) FROM messages m WHERE m.mailbox_id = mb.id "
                      "AND NOT m.expunged)") == "0"
    assert mb.sql("SELECT sum(used_bytes) FROM mailboxes") == str(4 * len(MSG))
    # every copy has its word index row (tp_copy, and the plain insert of
    # a COPY into the mailbox itself)
    assert mb.sql("SELECT count(*) FROM messages") == "6"
    assert mb.sql("SELECT count(*) FROM messages m WHERE NOT m.expunged AND NOT EXISTS "
                  "(SELECT 1 FROM message_words w WHERE w.message_id = m.id)") == "0"
    # and an expunged one (the MOVE's source) has none, nor its headers
    assert mb.sql("SELECT count(*) FROM messages m WHERE m.expunged AND (EXISTS (SELECT 1 "
                  "FROM message_words w WHERE w.message_id = m.id) OR m.envelope IS NOT NULL "
                  "OR m.search_text IS NOT NULL)") == "0"
    assert mb.sql("SELECT count(*) FROM messages WHERE expunged") == "2"
    assert mb.sql("SELECT count(DISTINCT m.id) FROM messages m JOIN message_words w ON "
                  "w.message_id = m.id WHERE NOT m.expunged AND w.search_tsv @@ "
                  "to_tsquery('simple', 'body')") == "4"
