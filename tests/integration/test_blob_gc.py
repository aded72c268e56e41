"""Collection of unreferenced blobs (mailbox/store/blob_gc, the `gc`
command and the periodic run inside `serve`), on real deliveries.

A message is delivered through SMTP, then expunged (tp_expunge, the IMAP
EXPUNGE path) or deleted with its account; after gc the object is gone
from the fs tree or from s3rver and its row from `blobs`, while the blob
of a live message and the blob of a message waiting in the outbound
queue stay.  `serve` does the same on its own timer, off the loop, and
counts it in /metrics.
"""
import re
import smtplib

import pytest

import harness
from mailbox_util import http
from smtp_util import SmtpMailbox


def send(sm, port, rcpts, subject, login=None, sender="x@remote.example"):
    body = (f"From: {sender}\r\nTo: {', '.join(rcpts)}\r\nSubject: {subject}\r\n\r\n"
            f"gc test {subject}\r\n").encode()
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("client.example")
        if login is not None:
            s.login(login, {"alice@example.org": "alice-pw"}[login])
        s.sendmail(sender, rcpts, body)


def blob_exists(sm, key):
    if sm.mb.s3 is None:
        return (sm.mb.blobs / key[:2] / key[2:4] / key).exists()
    st, body, _ = harness.s3_request(sm.mb.s3.endpoint, sm.mb.s3.region, sm.mb.s3.access_key,
                                     sm.mb.s3.secret_key, "HEAD", f"/{sm.mb.s3_bucket}/{key}")
    assert st in (200, 404), (st, body)
    return st == 200


def key_of(sm, subject):
    rows = sm.query("SELECT m.blob_key, m.size FROM messages m "
                    f"WHERE m.hdr_subject = '{subject}'")
    assert rows, subject
    return rows[0]["blob_key"], rows[0]["size"]


def blob_rows(sm):
    return sorted(r["key"] for r in sm.query("SELECT key FROM blobs"))


def sql(sm, stmt):
    return sm.postgres.psql(stmt, dbname=sm.db.name)


def expunge(sm, subject):
    """Flag \\Deleted and EXPUNGE through the function IMAP uses."""
    sql(sm, f"UPDATE messages SET flags = ARRAY['\\Deleted'] WHERE hdr_subject = '{subject}'")
    out = sql(sm, "SELECT e.uid FROM messages m, LATERAL tp_expunge(m.mailbox_id, NULL) e "
                  f"WHERE m.hdr_subject = '{subject}'")
    assert len(out.split()) == 1, out


@pytest.fixture(params=["fs", "s3"])
def sm(request, tmp_path, postgres, postgres_db, s3):
    kind = request.param
    box = SmtpMailbox(tmp_path, postgres, postgres_db, s3=s3 if kind == "s3" else None,
                      s3_bucket=s3.create_bucket() if kind == "s3" else None)
    box.setup_directory()
    yield box
    rc = box.stop()
    assert rc in (0, None), box.mb.text()[-3000:]


def deliver_four(sm):
    """expunged, deleted (with its account), live, queued: their keys."""
    send(sm, sm.ports["mx"], ["alice@example.org"], "gc expunged")
    send(sm, sm.ports["mx"], ["bob@example.org"], "gc deleted")
    send(sm, sm.ports["mx"], ["alice@example.org"], "gc live")
    send(sm, sm.ports["subplain"], ["ext@remote.example"], "gc queued",
         login="alice@example.org", sender="alice@example.org")
    sm.wait_stored(3)
    keys = {s: key_of(sm, f"gc {s}") for s in ("expunged", "deleted", "live")}
    q = harness.wait_for(lambda: sm.queue() or None, what="queued message")
    keys["queued"] = (q[0]["blob_key"], q[0]["size"])
    assert len({k for k, _ in keys.values()}) == 4, keys
    for k, _ in keys.values():
        assert blob_exists(sm, k)
    return keys


def test_gc_command_removes_expunged_and_deleted_keeps_live_and_queued(sm):
    sm.start()
    keys = deliver_four(sm)
    # stop the daemon: nothing may drain the queue or deliver meanwhile
    assert sm.stop() == 0
    expunge(sm, "gc expunged")
    r = sm.mb.cli("account", "del", "bob@example.org")
    assert r.returncode == 0, r.stdout + r.stderr
    # with the default grace (1d) nothing is old enough
    r = sm.mb.cli("gc")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == "examined 0 deleted 0 failed 0 bytes 0"
    r = sm.mb.cli("gc", "--grace", "0", "--batch", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    gone = keys["expunged"][1] + keys["deleted"][1]
    assert r.stdout.strip() == f"examined 2 deleted 2 failed 0 bytes {gone}"
    assert "grace shorter than 10m" in r.stderr
    assert not blob_exists(sm, keys["expunged"][0])
    assert not blob_exists(sm, keys["deleted"][0])
    assert blob_exists(sm, keys["live"][0])
    assert blob_exists(sm, keys["queued"][0])
    assert blob_rows(sm) == sorted([keys["live"][0], keys["queued"][0]])
    # the live message is still readable; a second run finds nothing
    assert sm.blob(keys["live"][0]).endswith(b"gc test gc live\r\n")
    r = sm.mb.cli("gc", "--grace=0", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert '"deleted": 0' in r.stdout and '"ok": true' in r.stdout


def test_gc_command_errors(sm):
    r = sm.mb.cli("gc", "--grace", "soon")
    assert r.returncode == 2 and "--grace 'soon'" in r.stderr, r.stderr
    r = sm.mb.cli("gc", "--batch", "0")
    assert r.returncode == 2 and "--batch '0'" in r.stderr, r.stderr
    r = sm.mb.cli("gc", "extra")
    assert r.returncode == 2 and "gc takes no arguments" in r.stderr, r.stderr
    # another command's option value "gc" is not the gc command
    r = sm.mb.cli("--quota", "gc", "account", "list")
    assert "gc takes" not in r.stderr


def metric(sm, name):
    st, _, body = http(sm.ports["admin"], "GET", "/metrics")
    assert st == 200
    m = re.search(rf"^{re.escape(name)} (\S+)$", body.decode(), re.M)
    assert m, (name, body[-2000:])
    return float(m.group(1))


def test_serve_collects_on_its_timer(sm):
    text = sm.mb.path.read_text()
    line = next(l for l in text.splitlines() if l.startswith("  blob: "))
    assert line.endswith(" }")
    text = text.replace(line, line[:-2] + ", gc: { interval: 1s, grace: 10m, batch: 2 } }")
    sm.mb.path.write_text(text)
    sm.start()
    sm.mb.wait_log(lambda d: d.get("msg") == "blob gc scheduled" and d.get("interval_ms") ==
                   "1000", what="gc scheduled")
    keys = deliver_four(sm)
    expunge(sm, "gc expunged")
    r = sm.mb.cli("account", "del", "bob@example.org")
    assert r.returncode == 0, r.stdout + r.stderr
    # younger than the grace: ticks pass and nothing goes
    n0 = metric(sm, 'tailpost_mailbox_blob_gc_runs_total{result="ok"}')
    harness.wait_for(lambda: metric(sm, 'tailpost_mailbox_blob_gc_runs_total{result="ok"}')
                     >= n0 + 2, timeout=10, what="two gc runs")
    assert metric(sm, "tailpost_mailbox_blob_gc_deleted_total") == 0
    assert blob_exists(sm, keys["expunged"][0])
    # age every row past the grace: the timer removes exactly the two
    sql(sm, "UPDATE blobs SET last_used = now() - interval '2 hours'")
    harness.wait_for(lambda: metric(sm, "tailpost_mailbox_blob_gc_deleted_total") >= 2,
                     timeout=10, what="gc to delete two blobs")
    assert not blob_exists(sm, keys["expunged"][0])
    assert not blob_exists(sm, keys["deleted"][0])
    assert blob_exists(sm, keys["live"][0])
    assert blob_exists(sm, keys["queued"][0])
    assert blob_rows(sm) == sorted([keys["live"][0], keys["queued"][0]])
    assert metric(sm, "tailpost_mailbox_blob_gc_deleted_total") == 2
    assert metric(sm, "tailpost_mailbox_blob_gc_deleted_bytes_total") == \
        keys["expunged"][1] + keys["deleted"][1]
    assert metric(sm, 'tailpost_mailbox_blob_gc_runs_total{result="error"}') == 0
    line = sm.mb.wait_log(lambda d: d.get("msg") == "blob gc", what="blob gc log")[-1]
    assert (line["examined"], line["deleted"], line["failed"]) == ("2", "2", "0"), line
    # the loop kept serving meanwhile: a new delivery after gc works
    send(sm, sm.ports["mx"], ["alice@example.org"], "gc after")
    harness.wait_for(lambda: sm.query("SELECT 1 FROM messages WHERE hdr_subject = 'gc after'")
                     or None, what="delivery after gc")
    assert sm.stop() == 0


def test_two_collectors_at_once(tmp_path, postgres, postgres_db):
    """FOR UPDATE SKIP LOCKED: concurrent runs skip each other's locked rows
    instead of waiting or failing; together they drop every unreferenced row
    exactly once (objects already missing count as deleted)."""
    import subprocess
    box = SmtpMailbox(tmp_path, postgres, postgres_db)
    box.mb.migrate()
    sql(box, "INSERT INTO blobs(key, size) SELECT encode(sha256(i::text::bytea), 'hex'), 10 "
             "FROM generate_series(1, 400) i")
    procs = [subprocess.Popen([str(box.mb.exe), "gc", "--grace", "0", "--batch", "7",
                               "-c", str(box.mb.path)], env=box.mb.env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    counts = [re.fullmatch(r"examined (\d+) deleted (\d+) failed 0 bytes (\d+)\n", o[0])
              for o in outs]
    assert all(counts), outs
    assert sum(int(m.group(2)) for m in counts) == 400, outs
    assert sum(int(m.group(3)) for m in counts) == 4000, outs
    assert sql(box, "SELECT count(*) FROM blobs").strip() == "0"
