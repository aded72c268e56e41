"""The data store (mailbox/store/pg.c, schema.c) on a real PostgreSQL:
migrations, the version check, UID/MODSEQ allocation under concurrency
from two processes, the plpgsql operations, the search-text bound, the
start-up failure messages and the pool's reconnect after an outage."""
import os
import signal
import subprocess
import threading
import time

import pytest

import harness
import store_util as su

LOCK_KEY = 8387236824261703540  # schema.c SCHEMA_LOCK_KEY


@pytest.fixture
def cfg(tmp_path, postgres_db):
    c = su.stores_yaml(tmp_path / "s.yaml", pg=postgres_db)
    return c


@pytest.fixture
def migrated(cfg):
    su.run(cfg, "migrate")
    return cfg


def sql(cfg, q, *params):
    return su.run(cfg, "pg-query", q, *params).stdout.strip()


def test_migrations_apply_and_are_idempotent(cfg, postgres, postgres_db):
    r = su.run(cfg, "schema-check", check=False)
    assert r.returncode == 1
    assert su.last_line(r.stderr) == ("database schema is version 0, this build needs 7: "
                                      "run 'tailpost-mailbox migrate'")
    assert su.run(cfg, "migrate").stdout.strip() == "migrated from 0 to 7"
    assert su.run(cfg, "migrate").stdout.strip() == "migrated from 7 to 7"
    assert su.run(cfg, "schema-check").stdout.strip() == "ok"
    tables = postgres.psql("SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables"
                           " WHERE schemaname = 'public'", dbname=postgres_db.name).strip()
    for t in ("accounts", "addresses", "api_tokens", "blobs", "dkim_keys", "domains",
              "mailboxes", "messages", "queue_messages", "queue_rcpts", "schema_version"):
        assert t in tables.split(","), tables
    assert postgres.psql("SELECT count(*) FROM schema_version",
                         dbname=postgres_db.name).strip() == "7"
    # a database newer than the build is refused both ways
    postgres.psql("INSERT INTO schema_version(version, name) VALUES (99, 'future')",
                  dbname=postgres_db.name)
    r = su.run(cfg, "schema-check", check=False)
    assert "database schema is version 99, newer than this build (7)" in r.stderr
    r = su.run(cfg, "migrate", check=False)
    assert r.returncode == 1 and "newer than this build" in r.stderr


def test_concurrent_migrators_serialise_on_the_advisory_lock(cfg, postgres, postgres_db,
                                                             tmp_path):
    # Hold the migration lock in another session; both migrators must wait.
    argv = [str(postgres.bindir / "psql"), "-X", "-q", "-A", "-t", "-h", str(postgres.socket_dir), "-p",
            str(postgres.port), "-U", postgres.admin_user, "-d", postgres_db.name]
    holder = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    procs = []
    try:
        holder.stdin.write(f"SELECT pg_advisory_lock({LOCK_KEY});\n\\echo locked\n")
        holder.stdin.flush()
        for _ in range(5):
            if holder.stdout.readline().strip() == "locked":
                break
        else:
            raise AssertionError("psql did not take the lock")
        procs = [su.spawn(cfg, "migrate", log_path=tmp_path / f"m{i}.log") for i in range(2)]
        time.sleep(1.5)
        assert all(p.poll() is None for p in procs), "a migrator did not wait for the lock"
        holder.stdin.write(f"SELECT pg_advisory_unlock({LOCK_KEY});\n\\q\n")
        holder.stdin.flush()
        outs = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    finally:
        for p in procs:
            harness.stop(p)
        harness.stop(holder)
    assert [p.returncode for p in procs] == [0, 0]
    assert outs == ["migrated from 0 to 7", "migrated from 7 to 7"]
    assert postgres.psql("SELECT count(*) FROM schema_version",
                         dbname=postgres_db.name).strip() == "7"


def new_mailbox(cfg, login="u"):
    acc = sql(cfg, "INSERT INTO accounts(login, password_hash) VALUES ($1, 'x') RETURNING id",
              login)
    return sql(cfg, "SELECT tp_mailbox_create($1, 'INBOX', NULL)", acc)


def test_deliver_allocates_distinct_ascending_uids_from_two_processes(migrated, tmp_path):
    mb = new_mailbox(migrated)
    per, inflight = 150, 4
    procs = [su.spawn(migrated, "deliver", mb, per, inflight, log_path=tmp_path / f"d{i}.log")
             for i in range(2)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [(tmp_path / f"d{i}.log").read_text()
                                                     for i in range(2)]
    pairs = [tuple(map(int, line.split())) for o in outs for line in o.split("\n") if line]
    uids = sorted(u for u, _ in pairs)
    modseqs = sorted(m for _, m in pairs)
    assert uids == list(range(1, 2 * per + 1))
    assert len(set(modseqs)) == 2 * per
    assert sql(migrated, "SELECT uidnext, highestmodseq FROM mailboxes WHERE id = $1", mb) == \
        f"{2 * per + 1}\t{2 * per + 1}"
    # UID order is commit order: the row lock is held to commit, so a
    # message with a higher UID never has a lower row id than a lower UID
    # committed after it... checked as: uid order == insertion order
    ids = sql(migrated, "SELECT string_agg(uid::text, ',' ORDER BY id) FROM messages").split(",")
    assert list(map(int, ids)) == list(range(1, 2 * per + 1))


def test_deliver_into_several_mailboxes_is_atomic(migrated):
    a = new_mailbox(migrated, "a")
    b = new_mailbox(migrated, "b")
    key = "ab" * 32
    # a blob must be reserved before it is delivered (the collector could
    # have removed an unreserved one): refused with a serialization failure
    r = su.run(migrated, "pg-query", "SELECT * FROM tp_deliver(ARRAY[$1::bigint], $2, 10, now(),"
               " NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'x')", a, key,
               check=False)
    assert r.returncode == 1 and f"blob {key} is not reserved" in r.stderr, r.stderr
    assert sql(migrated, "SELECT count(*) FROM messages") == "0"
    sql(migrated, "SELECT tp_blob_reserve($1, 10)", key)
    out = sql(migrated, "SELECT mailbox_id, uid FROM tp_deliver(ARRAY[$1::bigint, $2::bigint], $3,"
              " 10, now(), ARRAY['\\Seen'], 'env', 'bs', 'body', 'f', 't', 'c', 's', now(), '<m>',"
              " '{\"parts\": 1}', 'hello world')", b, a, key)
    assert sorted(out.split("\n")) == sorted([f"{a}\t1", f"{b}\t1"])
    # an unknown mailbox in the list rolls the whole delivery back
    r = su.run(migrated, "pg-query", "SELECT * FROM tp_deliver(ARRAY[$1::bigint, 999999], $2,"
               " 10, now(), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,"
               " 'x')", a, key, check=False)
    assert r.returncode == 1 and "no mailbox 999999" in r.stderr
    assert sql(migrated, "SELECT count(*) FROM messages") == "2"
    assert sql(migrated, "SELECT uidnext FROM mailboxes WHERE id = $1", a) == "2"
    # searchable by word without touching the blob
    assert sql(migrated, "SELECT count(*) FROM message_words WHERE search_tsv @@"
               " to_tsquery('simple', 'world')") == "2"


def test_flags_expunge_copy_move(migrated):
    a = new_mailbox(migrated, "a")
    b = sql(migrated, "SELECT tp_mailbox_create(1, 'Archive', '\\Archive')")
    key = "cd" * 32
    sql(migrated, "SELECT tp_blob_reserve($1, 100)", key)
    for size in (100, 20, 3):
        sql(migrated, "SELECT * FROM tp_deliver(ARRAY[$1::bigint], $2, $3, now(), NULL, NULL,"
            " NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)", a, key, str(size))

    def used():
        return sql(migrated, "SELECT string_agg(used_bytes::text, ' ' ORDER BY id) FROM mailboxes"
                   " WHERE id IN ($1, $2)", a, b)

    def used_matches_messages():
        return sql(migrated, "SELECT count(*) FROM mailboxes mb WHERE used_bytes <> (SELECT"
                   " coalesce(sum(size), 0) FROM messages m WHERE m.mailbox_id = mb.id AND NOT"
                   " m.expunged)") == "0"
    assert used() == "123 0"
    # highestmodseq is 4 (1 + three deliveries)
    out = sql(migrated, "SELECT uid, modseq, flags, failed, changed FROM tp_store_flags($1,"
              " ARRAY[1,2]::bigint[], 'add', ARRAY['\\Deleted','$Junk'], NULL)", a)
    assert out.split("\n") == ["1\t5\t{$Junk,\"\\\\Deleted\"}\tf\tt",
                               "2\t6\t{$Junk,\"\\\\Deleted\"}\tf\tt"]
    # RFC 7162 UNCHANGEDSINCE: message 1 changed at 5 > 4 -> failed, untouched
    out = sql(migrated, "SELECT uid, failed, changed FROM tp_store_flags($1,"
              " ARRAY[1,3]::bigint[], 'remove', ARRAY['$Junk'], 4)", a)
    assert out.split("\n") == ["1\tt\tf", "3\tf\tf"]
    # an unchanged flag set does not bump the modseq
    before = sql(migrated, "SELECT highestmodseq FROM mailboxes WHERE id = $1", a)
    sql(migrated, "SELECT * FROM tp_store_flags($1, ARRAY[3]::bigint[], 'remove',"
        " ARRAY['$Nothing'], NULL)", a)
    assert sql(migrated, "SELECT highestmodseq FROM mailboxes WHERE id = $1", a) == before
    # 'set' to the same flags in another order and with a duplicate: no change;
    # a new flag is added in sorted order; 'set' replaces
    out = sql(migrated, "SELECT uid, modseq, flags, changed FROM tp_store_flags($1,"
              " ARRAY[2]::bigint[], 'set', ARRAY['\\Deleted','$Junk','$Junk'], NULL)", a)
    assert out == "2\t6\t{$Junk,\"\\\\Deleted\"}\tf"
    out = sql(migrated, "SELECT flags, changed FROM tp_store_flags($1, ARRAY[2]::bigint[],"
              " 'add', ARRAY['\\Answered'], NULL)", a)
    assert out == "{$Junk,\"\\\\Answered\",\"\\\\Deleted\"}\tt"
    out = sql(migrated, "SELECT flags, changed FROM tp_store_flags($1, ARRAY[2]::bigint[],"
              " 'set', ARRAY['\\Deleted'], NULL)", a)
    assert out == "{\"\\\\Deleted\"}\tt"
    before = sql(migrated, "SELECT highestmodseq FROM mailboxes WHERE id = $1", a)
    assert before == "8"
    out = sql(migrated, "SELECT src_uid, dst_uid FROM tp_copy($1, ARRAY[1,2,3]::bigint[], $2,"
              " false)", a, b)
    assert out.split("\n") == ["1\t1", "2\t2", "3\t3"]
    assert used() == "123 123"
    out = sql(migrated, "SELECT uid FROM tp_expunge($1, NULL)", a)
    assert out.split("\n") == ["1", "2"]
    assert used() == "3 123"
    # a tombstone keeps UID, MODSEQ, size and blob; the rest and its words go
    assert sql(migrated, "SELECT count(*) FROM messages WHERE mailbox_id = $1 AND expunged AND"
               " num_nulls(envelope, bodystructure, body, hdr_from, hdr_to, hdr_cc,"
               " hdr_subject, hdr_date, hdr_message_id, parts, search_text) = 11", a) == "2"
    assert sql(migrated, "SELECT count(*) FROM message_words w JOIN messages m ON"
               " m.id = w.message_id WHERE m.expunged") == "0"
    # nothing left to expunge: the total stays
    assert sql(migrated, "SELECT count(*) FROM tp_expunge($1, NULL)", a) == "0"
    assert used() == "3 123"
    out = sql(migrated, "SELECT src_uid, dst_uid FROM tp_copy($2, ARRAY[3]::bigint[], $1, true)",
              a, b)
    assert out == "3\t4"
    assert used() == "6 120"
    assert used_matches_messages()
    # MOVE leaves a tombstone the same way
    assert sql(migrated, "SELECT count(*) FROM messages WHERE mailbox_id = $1 AND expunged AND"
               " uid = 3 AND envelope IS NULL AND search_text IS NULL", b) == "1"
    assert sql(migrated, "SELECT count(*) FROM messages WHERE mailbox_id = $1 AND NOT expunged",
               b) == "2"
    assert sql(migrated, "SELECT uidnext FROM mailboxes WHERE id = $1", a) == "5"


def test_search_text_is_bounded_below_the_tsvector_limit(migrated):
    mb = new_mailbox(migrated)
    # over 2 MB of distinct words (made by the server: too long for argv);
    # to_tsvector() of all of it would exceed the 1 MB limit
    words = "(SELECT string_agg('w' || to_hex(i) || 'q', ' ') FROM generate_series(0, 299999) i)"
    assert sql(migrated, f"SELECT length({words}) > 2000000") == "t"
    r = su.run(migrated, "pg-query", f"SELECT length(to_tsvector('simple', {words}))",
               check=False)
    assert r.returncode == 1 and "too long for tsvector" in r.stderr
    sql(migrated, "SELECT tp_blob_reserve($1, 1)", "ef" * 32)
    sql(migrated, "SELECT * FROM tp_deliver(ARRAY[$1::bigint], $2, 1, now(), NULL, NULL, NULL,"
        f" NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, {words})", mb, "ef" * 32)
    size, textlen = sql(migrated, "SELECT pg_column_size(w.search_tsv), length(m.search_text)"
                        " FROM messages m JOIN message_words w ON w.message_id = m.id").split("\t")
    assert 0 < int(size) < 1024 * 1024
    assert int(textlen) == 1024 * 1024
    assert sql(migrated, "SELECT count(*) FROM message_words WHERE search_tsv @@"
               " to_tsquery('simple', 'w0q')") == "1"


def test_start_up_failures_name_store_and_endpoint(tmp_path, postgres):
    port = harness.free_port()
    cfg = su.stores_yaml(tmp_path / "s.yaml",
                         pg_url=f"postgres://tailpost@127.0.0.1:{port}/tailpost",
                         pg_password="sekrit-pw")
    r = su.run(cfg, "pg-check", check=False)
    assert r.returncode == 1
    assert su.last_line(r.stderr) == \
        f"data store postgres://tailpost@127.0.0.1:{port}/tailpost: connection refused"
    # wrong password: the server's reason, never the password
    cfg = su.stores_yaml(tmp_path / "s2.yaml", pg_url=postgres.url_nopw, pg_password="wrong-pw")
    r = su.run(cfg, "pg-check", check=False)
    assert r.returncode == 1
    assert su.last_line(r.stderr) == (f"data store {postgres.url_nopw}: password authentication "
                                      f"failed for user \"{postgres.user}\"")
    assert "wrong-pw" not in r.stderr
    cfg = su.stores_yaml(tmp_path / "s3.yaml", pg_url="postgres://tailpost@db.invalid/tailpost",
                         pg_password="x")
    r = su.run(cfg, "pg-check", check=False)
    assert r.returncode == 1
    assert su.last_line(r.stderr).startswith(
        "data store postgres://tailpost@db.invalid/tailpost: could not translate host name")


def test_pool_fails_fast_when_down_and_reconnects(tmp_path):
    srv = harness.PostgresServer()
    try:
        srv.start()
        port = srv.port
        cfg = su.stores_yaml(tmp_path / "s.yaml", pg=srv)
        watcher = su.spawn(cfg, "pg-watch", 14, 100, log_path=tmp_path / "watch.log")
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(watcher.stdout))
        reader.start()
        harness.wait_for(lambda: any(l.startswith("ok") for l in lines), timeout=10,
                         what="first successful query")
        srv.crash()
        harness.wait_for(lambda: any(l.startswith("err") and "healthy=0" in l for l in lines),
                         timeout=10, what="pool to report the outage")
        n_down = len(lines)
        srv.start(port=port)
        harness.wait_for(lambda: any(l.startswith("ok") for l in lines[n_down:]), timeout=20,
                         what="pool to reconnect")
        harness.stop(watcher, sig=signal.SIGTERM)
        reader.join(timeout=5)
    finally:
        srv.close()
    errs = [l for l in lines if l.startswith("err")]
    # while down, queries failed at once with a short reason (not a hang)
    assert any("data store unavailable" in l or "connection" in l for l in errs), errs
    assert lines[-1].startswith("ok") or any(l.startswith("ok") for l in lines[n_down:])


def test_cancelled_and_dropped_requests_never_call_back(cfg):
    r = su.run(cfg, "pg-cancel")
    assert r.stdout.strip() == "c"


def test_query_timeout_fails_the_request_and_the_pool_recovers(tmp_path, postgres_db):
    cfg = su.stores_yaml(tmp_path / "s.yaml", pg=postgres_db, pg_query_timeout="500ms",
                         pg_pool_size=1)
    t0 = time.monotonic()
    r = su.run(cfg, "pg-query", "SELECT pg_sleep(5)", check=False, timeout=30)
    assert r.returncode == 1
    assert "data store timeout" in r.stderr
    assert time.monotonic() - t0 < 4


def test_pool_queues_beyond_its_size(tmp_path, postgres_db):
    """More requests than connections: they wait their turn, all answer."""
    cfg = su.stores_yaml(tmp_path / "s.yaml", pg=postgres_db, pg_pool_size=2)
    su.run(cfg, "migrate")
    mb = new_mailbox(cfg)
    out = su.run(cfg, "deliver", mb, 60, 20).stdout.split("\n")
    assert sorted(int(l.split()[0]) for l in out if l) == list(range(1, 61))
