"""tests/tools/imap_load.c (the IMAP benchmark's load generator) against
tailpost-mailbox on the real stores, briefly: fill, a short concurrent run
of the whole command mix, idle connections.  This checks the tool (its
counts and error reporting) and the server under concurrent sessions:
no NO/BAD/protocol errors, and afterwards every mailbox holds exactly
what was filled (each APPEND of the run was expunged again)."""
import imaplib
import json
import subprocess

import pytest

import harness
from mailbox_util import Mailbox, listener

USERS, MESSAGES, PASSWORD = 3, 5, "load-pw-1"


@pytest.fixture
def mbox(tmp_path, postgres_db):
    mb = Mailbox(tmp_path, postgres_db)
    mb.port = harness.free_port()
    mb.write_config(listener("imap", "imap", mb.port, "allow_plaintext_auth: true"))
    mb.migrate()
    assert mb.cli("domain", "add", "example.org").returncode == 0
    for i in range(USERS):
        r = mb.cli("account", "add", f"load{i}@example.org", input=PASSWORD + "\n")
        assert r.returncode == 0, r.stderr
    mb.start()
    yield mb
    assert mb.stop() == 0, mb.text()[-3000:]


def load(mb, cmd, *args, password=PASSWORD, timeout=120):
    exe = harness.tool_path("imap_load")
    assert exe.exists(), f"{exe} not built (make tools)"
    argv = [str(exe), cmd, "--target", f"127.0.0.1:{mb.port}", "--user-prefix", "load",
            "--user-suffix", "@example.org", "--password", password] + [str(a) for a in args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def inbox(mb, i):
    c = imaplib.IMAP4("127.0.0.1", mb.port, timeout=20)
    c.login(f"load{i}@example.org", PASSWORD)
    typ, data = c.select("INBOX")
    assert typ == "OK"
    n = int(data[0])
    deleted = c.search(None, "DELETED")[1][0].split()
    c.logout()
    return n, deleted


def test_fill_run_idle(mbox):
    r = load(mbox, "fill", "--users", USERS, "--messages", MESSAGES, "--threads", 2)
    assert r.returncode == 0, r.stdout + r.stderr
    f = json.loads(r.stdout)
    assert f["appended"] == USERS * MESSAGES and f["errors"] == 0, f

    r = load(mbox, "run", "--clients", USERS, "--seconds", 2)
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["errors"] == 0 and out["failed_clients"] == 0, out
    kinds = out["kinds"]
    assert kinds["login"]["count"] == USERS and kinds["select"]["count"] == USERS
    rounds = kinds["noop"]["count"]
    assert rounds >= USERS, out
    # every round runs the whole mix, so the counts line up
    for k, per_round in (("fetch_flags", 1), ("fetch_envelope", 1), ("fetch_body", 2),
                         ("fetch_all_flags", 1), ("store", 2), ("append", 1), ("expunge", 1)):
        assert kinds[k]["count"] == per_round * rounds, (k, out)
    assert out["commands"] == 10 * rounds
    assert out["rate"] > 0 and 0 < out["p50_us"] <= out["p99_us"]

    # the appended messages were all expunged: the mailboxes are as filled
    for i in range(USERS):
        n, deleted = inbox(mbox, i)
        assert n == MESSAGES and deleted == [], (i, n, deleted)

    exe = harness.tool_path("imap_load")
    p = subprocess.Popen([str(exe), "idle", "--target", f"127.0.0.1:{mbox.port}", "--user-prefix",
                          "load", "--user-suffix", "@example.org", "--password", PASSWORD,
                          "--count", "4", "--users", str(USERS)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready 4"
    finally:
        p.stdin.close()
        assert p.wait(timeout=30) == 0


def test_errors_are_reported(mbox):
    r = load(mbox, "run", "--clients", 2, "--seconds", 1, password="wrong-password")
    assert r.returncode == 1, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["failed_clients"] == 2 and out["kinds"]["login"]["errors"] == 2, out
    assert "LOGIN" in out["first_error"] and "NO" in out["first_error"], out
    assert out["commands"] == 0

    # a mailbox without messages: the run cannot pick any and says so
    r = load(mbox, "run", "--clients", 1, "--seconds", 1)
    assert r.returncode == 1
    assert "has no messages" in json.loads(r.stdout)["first_error"]

    r = load(mbox, "fill", "--users", 1)
    assert r.returncode == 2 and "--messages is required" in r.stderr
