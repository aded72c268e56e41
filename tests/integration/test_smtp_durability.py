"""DESIGN.md "Nothing accepted is lost", tested by force on the real
daemon and stores:

  - SIGKILL in the middle of DATA: the client never got a 250, and after
    a restart no part of the message is visible (no row; the spool file
    left behind is swept at start-up);
  - SIGKILL right after the 250: the message is there after a restart,
    blob and rows, byte for byte;
  - a store outage during DATA (Postgres stopped, the fs blob directory
    broken, the S3 server stopped): 451 4.3.0 and nothing visible, then
    250 once the store is back.

Each test runs its own daemon; the outage tests run their own private
Postgres or S3 server so that stopping it disturbs nobody else.
"""
import hashlib
import shutil
import signal
import time

import pytest

import harness
from smtp_util import Raw, SmtpMailbox, check_stored


def start_data(port, subject, rcpt="alice@example.org"):
    c = Raw(port)
    assert c.reply()[0] == 220
    assert c.cmd("EHLO crash.example")[0] == 250
    assert c.cmd("MAIL FROM:<x@remote.example>")[0] == 250
    assert c.cmd(f"RCPT TO:<{rcpt}>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(f"From: x@remote.example\r\nTo: {rcpt}\r\nSubject: {subject}\r\n\r\n".encode())
    return c


def kill(sm):
    sm.proc.send_signal(signal.SIGKILL)
    sm.proc.wait(timeout=10)


def subjects(sm):
    return [m["hdr_subject"] for m in sm.messages()]


@pytest.fixture
def sm(tmp_path, postgres, postgres_db):
    box = SmtpMailbox(tmp_path, postgres, postgres_db)
    box.setup_directory().start()
    yield box
    box.stop()


def test_sigkill_in_the_middle_of_data(sm):
    c = start_data(sm.ports["mx"], "killed in data")
    # more than the spool buffer, so the file really has content
    chunk = b"x" * 998 + b"\r\n"
    c.send(chunk * 200)
    harness.wait_for(lambda: any((sm.spool / f).stat().st_size > 0 for f in sm.spool_files()),
                     timeout=10, what="a spool file with content")
    kill(sm)
    # the client gets no reply at all, certainly no 250
    assert c.line() == ""
    c.close()
    leftover = sm.spool_files()
    assert len(leftover) == 1
    sm.start()
    line = sm.last_log("spool ok")
    assert line["leftovers_removed"] == "1"
    assert sm.spool_files() == []
    assert "killed in data" not in subjects(sm)
    assert sm.query("SELECT count(*) AS n FROM messages")[0]["n"] == 0
    # the restarted daemon takes the retry
    c = start_data(sm.ports["mx"], "killed in data")
    c.send(b"second try\r\n.\r\n")
    assert c.reply()[0] == 250
    c.close()
    assert subjects(sm) == ["killed in data"]


def test_sigkill_right_after_250(sm):
    sent = []
    for i in range(3):
        subject = f"kept {i}"
        body = f"line {i}\r\n".encode() * (1000 * (i + 1))
        c = start_data(sm.ports["mx"], subject, rcpt="bob@example.org")
        c.send(body + b".\r\n")
        code, text = c.reply()
        assert code == 250, text
        kill(sm)  # at once: no drain, no goodbye
        c.close()
        sent.append((subject, body))
        sm.start()
    msgs = {m["hdr_subject"]: m for m in sm.messages("bob@example.org")}
    for subject, body in sent:
        m = msgs[subject]
        check_stored(sm, m, body, "bob@example.org")
    assert sm.spool_files() == []


def test_postgres_outage_during_data(tmp_path):
    pg = harness.PostgresServer()
    pg.start()
    try:
        db = pg.create_database()
        sm = SmtpMailbox(tmp_path, pg, db)
        sm.setup_directory().start()
        c = start_data(sm.ports["mx"], "pg outage")
        c.send(b"part one\r\n")
        port = pg.port
        pg.stop()
        c.send(b"part two\r\n.\r\n")
        code, text = c.reply()
        assert (code, text[0][:5]) == (451, "4.3.0"), text
        assert c.cmd("QUIT")[0] == 221
        c.close()
        sm.mb.wait_log(lambda d: d.get("msg", "").startswith("smtp message not stored")
                       and d.get("step") == "reserve", what="451 logged")
        pg.start(port=port)

        def attempt():
            try:
                c = start_data(sm.ports["mx"], "pg outage")
            except AssertionError:
                return False  # a lookup still tempfails while the pool reconnects
            c.send(b"part one\r\npart two\r\n.\r\n")
            code = c.reply()[0]
            c.close()
            return code == 250
        harness.wait_for(attempt, timeout=30, interval=0.5, what="250 once Postgres is back")
        msgs = sm.messages()
        assert [m["hdr_subject"] for m in msgs] == ["pg outage"]
        check_stored(sm, msgs[0], b"\r\n\r\npart one\r\npart two\r\n", "alice@example.org")
        assert sm.spool_files() == []
        assert sm.stop() == 0
    finally:
        pg.close()


def test_fs_blob_store_outage_during_data(sm):
    c = start_data(sm.ports["mx"], "fs outage")
    c.send(b"body\r\n")
    blobs = sm.mb.blobs
    away = blobs.with_name("blobs.away")
    blobs.rename(away)
    blobs.write_text("not a directory\n")  # root ignores modes: break the path instead
    try:
        c.send(b".\r\n")
        code, text = c.reply()
        assert (code, text[0][:5]) == (451, "4.3.0"), text
    finally:
        blobs.unlink()
        away.rename(blobs)
    sm.mb.wait_log(lambda d: d.get("msg", "").startswith("smtp message not stored")
                   and d.get("step") == "blob", what="451 logged")
    assert subjects(sm) == []
    # same session, store back: the retry is accepted
    assert c.cmd("MAIL FROM:<x@remote.example>")[0] == 250
    assert c.cmd("RCPT TO:<alice@example.org>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(b"Subject: fs outage\r\n\r\nbody\r\n.\r\n")
    assert c.reply()[0] == 250
    c.close()
    m = sm.messages()[0]
    check_stored(sm, m, b"Subject: fs outage\r\n\r\nbody\r\n", "alice@example.org")


def test_s3_outage_during_data(tmp_path, postgres, postgres_db):
    s3 = harness.S3Server()
    s3.start()
    try:
        bucket = s3.create_bucket()
        sm = SmtpMailbox(tmp_path, postgres, postgres_db, s3=s3, s3_bucket=bucket)
        sm.setup_directory().start()
        c = start_data(sm.ports["mx"], "s3 outage")
        c.send(b"over s3\r\n")
        port = s3.port
        s3.stop()
        c.send(b".\r\n")
        code, text = c.reply()
        assert (code, text[0][:5]) == (451, "4.3.0"), text
        sm.mb.wait_log(lambda d: d.get("msg", "").startswith("smtp message not stored")
                       and d.get("step") == "blob", what="451 logged")
        assert subjects(sm) == []
        s3.start(port=port)

        def attempt():
            assert c.cmd("MAIL FROM:<x@remote.example>")[0] == 250
            assert c.cmd("RCPT TO:<alice@example.org>")[0] == 250
            assert c.cmd("DATA")[0] == 354
            c.send(b"Subject: s3 outage\r\n\r\nover s3\r\n.\r\n")
            return c.reply()[0] == 250
        harness.wait_for(attempt, timeout=30, interval=0.5, what="250 once S3 is back")
        c.close()
        m = sm.messages()[0]
        data = check_stored(sm, m, b"Subject: s3 outage\r\n\r\nover s3\r\n", "alice@example.org")
        assert hashlib.sha256(data).hexdigest() == m["blob_key"]
        assert sm.stop() == 0
    finally:
        s3.close()


def test_sigterm_says_goodbye(sm):
    c = Raw(sm.ports["mx"])
    c.reply()
    c.cmd("EHLO bye.example")
    sm.proc.send_signal(signal.SIGTERM)
    assert c.line() == "421 4.3.2 mail.test Service shutting down"
    assert c.closed()
    c.close()
    assert sm.proc.wait(timeout=20) == 0


def test_timeouts_idle_and_data(tmp_path, postgres, postgres_db):
    """RFC 5321 4.5.3.2: the idle limit waiting for a command, the longer
    command limit while message content trickles in."""
    box = SmtpMailbox(tmp_path, postgres, postgres_db,
                      mx_extra="timeouts: { idle: 1s, command: 3s }")
    box.setup_directory().start()
    try:
        c = Raw(box.ports["mx"])
        c.reply()
        t0 = time.monotonic()
        assert c.line() == "421 4.4.2 mail.test Error: timeout exceeded"
        assert 0.8 < time.monotonic() - t0 < 2.5
        c.close()
        # a sender pausing 1.5 s between blocks of DATA is not cut off
        c = start_data(box.ports["mx"], "slow data")
        for i in range(3):
            time.sleep(1.5)
            c.send(b"block %d\r\n" % i)
        c.send(b".\r\n")
        assert c.reply()[0] == 250
        # but silence in DATA longer than the command limit is
        assert c.cmd("MAIL FROM:<x@remote.example>")[0] == 250
        assert c.cmd("RCPT TO:<alice@example.org>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        t0 = time.monotonic()
        assert c.line() == "421 4.4.2 mail.test Error: timeout exceeded"
        assert 2.5 < time.monotonic() - t0 < 5
        c.close()
        assert [m["hdr_subject"] for m in box.messages()] == ["slow data"]
        assert box.spool_files() == []
        assert box.stop() == 0
    finally:
        box.stop()
