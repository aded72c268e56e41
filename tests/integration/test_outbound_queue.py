"""The outbound queue engine (mailbox/outbound/queue.h) against a real
Postfix smarthost (postfix_util.start_smarthost: SASL AUTH through Dovecot,
STARTTLS and implicit TLS, delivering into a Maildir).

Messages are submitted over SMTP AUTH (smtplib) as alice@example.org; what
leaves is read from the smarthost's Maildir, bounces (DSNs) from alice's
INBOX in Postgres and the blob store.  DKIM keys are generated with
tests/tools/dkim_sign and inserted into dkim_keys; dkimpy verifies the
relayed copies with a dnsfunc override serving the TXT records.

Bounded: every wait has a timeout; the load test is 1,000 small messages
through two daemons and one Postfix.
"""
import collections
import email
import os
import re
import signal
import smtplib
import subprocess
import threading
import time

import pytest

import harness
import postfix_util
from mailbox_util import Certs
from smtp_util import PASSWORDS, SmtpMailbox, sql_literal

RELAY_USER, RELAY_PW = "relayuser", "relay-secret"
SENDER = "alice@example.org"


# --- helpers ---------------------------------------------------------------


def outbound_yaml(port, *, tls="starttls", ca=None, retry="1s", expire="1h", extra="",
                  auth=True, concurrency=8, lease="10m"):
    route = (f"    - name: smarthost\n"
             f"      domains: [\"*\"]\n"
             f"      type: relay\n"
             f"      host: 127.0.0.1\n"
             f"      port: {port}\n"
             f"      tls: {tls}\n")
    if ca is not None:
        route += f"      verify: true\n      ca_file: \"{ca}\"\n"
    if auth:
        route += (f"      auth: {{ user: {RELAY_USER}, "
                  f"password: \"${{TAILPOST_RELAY_PASSWORD}}\" }}\n")
    return (f"outbound:\n  poll: 300ms\n  lease: {lease}\n  retry: \"{retry}\"\n"
            f"  expire: {expire}\n  concurrency: {concurrency}\n  connection_reuse: 2s\n"
            + extra + "  routes:\n" + route)


def make_mailbox(tmp_path, postgres, db, port, name="mailbox", redis=None, **kw):
    sm = SmtpMailbox(tmp_path, postgres, db, name=name, redis=redis,
                     extra=outbound_yaml(port, **kw),
                     env={"TAILPOST_RELAY_PASSWORD": RELAY_PW})
    return sm


def submit(sm, rcpts, subject="hello", body="Hello from tailpost.\r\n", msgid=None,
           extra_headers="", conn=None):
    """Submit one message as alice over submission without TLS (AUTH
    PLAIN); returns its Message-ID."""
    msgid = msgid or f"<{os.urandom(8).hex()}@example.org>"
    msg = (f"From: Alice <{SENDER}>\r\nTo: {', '.join(rcpts)}\r\nSubject: {subject}\r\n"
           f"Message-ID: {msgid}\r\nDate: Fri, 27 Nov 2026 07:00:00 +0000\r\n"
           f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n"
           f"{extra_headers}\r\n{body}")
    own = conn is None
    if own:
        conn = smtplib.SMTP("127.0.0.1", sm.ports["subplain"], timeout=30)
        conn.login(SENDER, PASSWORDS[SENDER])
    try:
        refused = conn.sendmail(SENDER, rcpts, msg.encode())
        assert refused == {}, refused
    finally:
        if own:
            conn.quit()
    return msgid


def queue_rows(sm):
    return sm.query("SELECT r.rcpt, r.status, r.attempts, r.last_error, r.lease_owner"
                    " FROM queue_rcpts r ORDER BY r.id")


def wait_queue_empty(sm, timeout=60):
    harness.wait_for(lambda: sm.query("SELECT id FROM queue_messages") == [], timeout=timeout,
                     what="the queue to drain")


def attempts_logged(sm, **kv):
    return [d for d in sm.mb.lines() if d.get("msg") == "outbound attempt" and
            all(d.get(k) == v for k, v in kv.items())]


def maildir_msgs(pf, addr):
    return postfix_util.smarthost_messages(pf, addr)


def wait_maildir(pf, addr, n=1, timeout=60):
    return harness.wait_for(lambda: (lambda m: m if len(m) >= n else None)(maildir_msgs(pf, addr)),
                            timeout=timeout, what=f"{n} message(s) for {addr} in the Maildir")


def restart_master(pf):
    """Start a stopped smarthost's Postfix master again on the same
    config (same ports, same Maildir)."""
    conf = os.path.join(pf["base"], "conf")
    env = harness._clean_env({"MAIL_CONFIG": conf})
    pf["proc"] = harness.spawn([f"{postfix_util.DAEMON_DIR}/master", "-c", conf, "-s"],
                               pf["log"], cwd=pf["base"], env=env)
    harness.wait_port("127.0.0.1", pf["port"], timeout=20, proc=pf["proc"])


def stop_master(pf):
    harness.stop(pf["proc"])
    # the master's children go with it; the port must be closed
    harness.wait_for(lambda: not _port_open(pf["port"]), timeout=20, what="smarthost down")


def _port_open(port):
    import socket
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def inbox_dsns(sm, login=SENDER):
    """Bounces in login's INBOX: (message row, blob bytes)."""
    out = []
    for m in sm.messages(login):
        data = sm.blob(m["blob_key"])
        if b"multipart/report" in data[:4000]:
            out.append((m, data))
    return out


# --- fixtures --------------------------------------------------------------


@pytest.fixture
def smarthost(tmp_path):
    c = Certs(tmp_path / "smarthost-certs")
    cert, key = c.issue("smarthost")
    pf = postfix_util.start_smarthost("smarthost", cert, key, users={RELAY_USER: RELAY_PW},
                                      reject=("bad",), defer=("later",))
    pf["ca"] = c.ca
    try:
        yield pf
    finally:
        postfix_util.stop_postfix(pf)


@pytest.fixture
def dkim_keys(tmp_path):
    """An Ed25519 and an RSA key made by our generator: {alg: (pem, selector, txt)}."""
    exe = harness.tool_path("dkim_sign")
    assert exe.exists(), f"{exe} not built: run make tools"
    out = {}
    for alg, sel in (("ed25519", "ed2026"), ("rsa", "rsa2026")):
        pem = subprocess.run([str(exe), "generate", alg], capture_output=True, check=True,
                             timeout=120).stdout
        path = tmp_path / f"{sel}.pem"
        path.write_bytes(pem)
        txt = subprocess.run([str(exe), "txt", str(path)], capture_output=True, check=True,
                             timeout=60).stdout.strip()
        out[alg] = (pem.decode(), sel, txt)
    return out


def insert_keys(sm, keys, domain="example.org"):
    for alg, (pem, sel, txt) in keys.items():
        algo = "ed25519-sha256" if alg == "ed25519" else "rsa-sha256"
        sm.postgres.psql(
            "INSERT INTO dkim_keys(domain_id, selector, algorithm, private_key, public_key)"
            f" SELECT d.id, {sql_literal(sel)}, {sql_literal(algo)}, {sql_literal(pem)},"
            f" {sql_literal(txt.decode())} FROM domains d WHERE d.name = {sql_literal(domain)}",
            dbname=sm.db.name)


# --- SQL: the claim functions on their own ------------------------------------


def test_claim_is_exclusive_and_results_need_the_lease(tmp_path, postgres, postgres_db):
    sm = make_mailbox(tmp_path, postgres, postgres_db, 9)
    sm.setup_directory()

    def q(sql):
        return postgres.psql(sql, dbname=postgres_db.name).strip()

    q("INSERT INTO queue_messages(sender, blob_key, size) VALUES ('a@x', repeat('0', 64), 1)")
    q("INSERT INTO queue_rcpts(message_id, rcpt) SELECT id, 'r' || g || '@y'"
      " FROM queue_messages, generate_series(1, 3) g")
    got = q("SELECT count(*) FROM tp_queue_claim('one:1', 60000, 10)")
    assert got == "3"
    # leased: nobody else gets them
    assert q("SELECT count(*) FROM tp_queue_claim('two:1', 60000, 10)") == "0"
    assert q("SELECT attempts FROM queue_rcpts ORDER BY id LIMIT 1") == "1"
    ids = q("SELECT string_agg(id::text, ',' ORDER BY id) FROM queue_rcpts")
    # a result under another claim does not count
    assert q(f"SELECT count(*) FROM tp_queue_record('two:1', '{{{ids}}}', "
             "'{sent,sent,sent}', '{NULL,NULL,NULL}', '{NULL,NULL,NULL}', '{f,f,f}')") == "0"
    # a lease that expired is claimed again (crashed worker), and then only
    # the new claim's result counts
    q("UPDATE queue_rcpts SET lease_until = now() - interval '1 second'")
    assert q("SELECT count(*) FROM tp_queue_claim('two:2', 60000, 10)") == "3"
    assert q("SELECT max(attempts) FROM queue_rcpts") == "2"
    assert q(f"SELECT count(*) FROM tp_queue_record('one:1', '{{{ids}}}', "
             "'{sent,sent,sent}', '{NULL,NULL,NULL}', '{NULL,NULL,NULL}', '{f,f,f}')") == "0"
    first, rest = ids.split(",")[0], ",".join(ids.split(",")[1:])
    nx = int(time.time()) + 3600
    out = q(f"SELECT out_kind FROM tp_queue_record('two:2', '{{{first}}}', '{{pending}}', "
            f"'{{{nx}}}', '{{\"451 4.3.0 later\"}}', '{{f}}')")
    assert out == "rcpt"
    assert q(f"SELECT status || ' ' || (next_attempt > now() + interval '50 minutes')::text "
             f"|| ' ' || last_error FROM queue_rcpts WHERE id = {first}") == \
        "pending true 451 4.3.0 later"
    # all final: the message row goes (so blob GC may take the blob)
    q(f"UPDATE queue_rcpts SET next_attempt = now() WHERE id = {first}")
    assert q("SELECT count(*) FROM tp_queue_claim('two:3', 60000, 10)") == "1"
    out = q(f"SELECT string_agg(out_kind, ',' ORDER BY out_kind) FROM tp_queue_record("
            f"'two:2', '{{{rest}}}', '{{sent,failed}}', '{{NULL,NULL}}', '{{NULL,x}}', '{{f,f}}')")
    assert out == "rcpt,rcpt"
    assert q("SELECT count(*) FROM queue_messages") == "1"
    out = q(f"SELECT string_agg(out_kind, ',' ORDER BY out_kind) FROM tp_queue_record("
            f"'two:3', '{{{first}}}', '{{sent}}', '{{NULL}}', '{{NULL}}', '{{f}}')")
    assert out == "deleted,rcpt"
    assert q("SELECT count(*) FROM queue_messages") == "0"
    # release gives unfinished claims back and does not count them as attempts
    q("INSERT INTO queue_messages(sender, blob_key, size) VALUES ('a@x', repeat('0', 64), 1)")
    q("INSERT INTO queue_rcpts(message_id, rcpt) SELECT max(id), 'z@y' FROM queue_messages")
    assert q("SELECT count(*) FROM tp_queue_claim('host:1:ab:7', 60000, 10)") == "1"
    assert q("SELECT tp_queue_release('host:1:ab')") == "1"
    assert q("SELECT attempts::text || coalesce(lease_owner, '-') FROM queue_rcpts") == "0-"


# --- delivery through the smarthost -------------------------------------------------


def test_relay_delivers_dkim_signed(tmp_path, postgres, postgres_db, smarthost, dkim_keys):
    dkim = pytest.importorskip("dkim")
    pytest.importorskip("nacl")
    sm = make_mailbox(tmp_path, postgres, postgres_db, smarthost["port"], ca=smarthost["ca"])
    sm.setup_directory()
    insert_keys(sm, dkim_keys)
    sm.start()
    try:
        # one local recipient too: the blob then starts with our Return-Path,
        # which must not leave
        msgid = submit(sm, ["ext@remote.example", "bob@example.org"], subject="signed")
        got = wait_maildir(smarthost, "ext@remote.example")[0]
        wait_queue_empty(sm)
        line = attempts_logged(sm, rcpt="ext@remote.example")[-1]
        assert line["result"] == "sent" and line["route"] == "smarthost", line
        assert line["recorded"] == "yes"
    finally:
        rc = sm.stop()
    assert rc == 0, f"exit status {rc}"
    assert msgid.encode() in got
    body = postfix_util.strip_postfix_headers(got)
    # ours: the DKIM-Signature fields first, then our Received:, never a Return-Path
    assert body.startswith(b"DKIM-Signature:"), body[:300]
    assert b"\nReturn-Path:" not in body.split(b"\r\n\r\n", 1)[0] and \
        not body.startswith(b"Return-Path"), body[:600]
    sigs = re.findall(rb"^DKIM-Signature:.*?a=([a-z0-9-]+);", body, re.M | re.S)
    assert sorted(sigs) == [b"ed25519-sha256", b"rsa-sha256"], sigs
    table = {f"{sel}._domainkey.example.org.".encode(): txt
             for (_, sel, txt) in dkim_keys.values()}
    d = dkim.DKIM(got)
    for i in range(2):
        assert d.verify(idx=i, dnsfunc=lambda name, timeout=5: table.get(name)), i
    # tampering breaks them: the verifier is not just saying yes
    bad = got.replace(b"Hello from tailpost.", b"Hello from elsewhere.")
    assert bad != got
    try:
        ok = dkim.DKIM(bad).verify(idx=0, dnsfunc=lambda name, timeout=5: table.get(name))
    except dkim.DKIMException:  # body hash mismatch
        ok = False
    assert not ok


def test_dkim_signs_only_for_the_senders_domain(tmp_path, postgres, postgres_db, smarthost,
                                               dkim_keys):
    """A From: in another of our domains is not signed for that domain:
    alice@example.org must not get mail signed by other.example."""
    sm = make_mailbox(tmp_path, postgres, postgres_db, smarthost["port"], ca=smarthost["ca"])
    sm.setup_directory()
    sm.postgres.psql("INSERT INTO domains(name) VALUES ('other.example')", dbname=sm.db.name)
    insert_keys(sm, {"ed25519": dkim_keys["ed25519"]}, domain="example.org")
    insert_keys(sm, {"rsa": dkim_keys["rsa"]}, domain="other.example")
    sm.start()
    try:
        submit(sm, ["x1@remote.example"], subject="forged from",
               extra_headers="Reply-To: ceo@other.example\r\n")
        conn = smtplib.SMTP("127.0.0.1", sm.ports["subplain"], timeout=30)
        conn.login(SENDER, PASSWORDS[SENDER])
        conn.sendmail(SENDER, ["x2@remote.example"],
                      b"From: CEO <ceo@other.example>\r\nTo: x2@remote.example\r\n"
                      b"Subject: forged\r\nMessage-ID: <forged@x>\r\n\r\nPay now.\r\n")
        conn.quit()
        first = wait_maildir(smarthost, "x1@remote.example")[0]
        forged = wait_maildir(smarthost, "x2@remote.example")[0]
        wait_queue_empty(sm)
    finally:
        rc = sm.stop()
    assert rc == 0, f"exit status {rc}"
    for got in (first, forged):
        doms = re.findall(rb"^DKIM-Signature:.*?d=([a-z0-9.-]+);", got, re.M | re.S)
        assert doms == [b"example.org"], (doms, got[:600])
    assert any(d.get("from_domain") == "other.example" for d in sm.mb.lines()
               if d.get("msg", "").startswith("outbound: From: domain differs"))


def test_implicit_tls_route(tmp_path, postgres, postgres_db, smarthost):
    sm = make_mailbox(tmp_path, postgres, postgres_db, smarthost["tls_port"], tls="implicit",
                      ca=smarthost["ca"])
    sm.setup_directory()
    sm.start()
    try:
        msgid = submit(sm, ["implicit@remote.example"])
        got = wait_maildir(smarthost, "implicit@remote.example")[0]
        wait_queue_empty(sm)
    finally:
        rc = sm.stop()
    assert rc == 0, f"exit status {rc}"
    assert msgid.encode() in got
    # unsigned: no keys for example.org
    assert b"DKIM-Signature" not in got


def test_smarthost_down_retried_then_delivered(tmp_path, postgres, postgres_db, smarthost):
    stop_master(smarthost)
    sm = make_mailbox(tmp_path, postgres, postgres_db, smarthost["port"], ca=smarthost["ca"],
                      retry="1s, 2s", extra="  delay_notice: 1s\n")
    sm.setup_directory()
    sm.start()
    try:
        msgid = submit(sm, ["later-up@remote.example"])
        harness.wait_for(lambda: len(attempts_logged(sm, rcpt="later-up@remote.example",
                                                     result="deferred")) >= 2,
                         timeout=30, what="two deferred attempts")
        row = queue_rows(sm)[0]
        assert row["status"] == "pending" and row["attempts"] >= 2, row
        assert row["last_error"], row
        restart_master(smarthost)
        got = wait_maildir(smarthost, "later-up@remote.example", timeout=60)
        wait_queue_empty(sm)
    finally:
        rc = sm.stop()
    assert rc == 0, f"exit status {rc}"
    assert msgid.encode() in got[0] and len(got) == 1
    lines = attempts_logged(sm, rcpt="later-up@remote.example")
    assert lines[-1]["result"] == "sent"
    assert all(d["result"] == "deferred" for d in lines[:-1])
    # delay_notice: exactly one "delayed" DSN, and no failure one
    dsns = inbox_dsns(sm)
    assert len(dsns) == 1, [d for _, d in dsns]
    text = dsns[0][1].decode(errors="replace")
    assert "Action: delayed" in text and "Action: failed" not in text
    assert "Final-Recipient: rfc822; later-up@remote.example" in text
    assert "Will-Retry-Until:" in text
    assert sum(1 for d in lines if d.get("dsn") == "delay") == 1


def test_sighup_applies_new_routes(tmp_path, postgres, postgres_db, smarthost):
    # first a route to a port where nothing listens; SIGHUP with the right
    # port: the next attempt goes there
    import socket
    s0 = socket.socket()
    s0.bind(("127.0.0.1", 0))
    dead = s0.getsockname()[1]
    s0.close()
    sm = make_mailbox(tmp_path, postgres, postgres_db, dead, ca=smarthost["ca"], retry="1s")
    sm.setup_directory()
    sm.start()
    try:
        msgid = submit(sm, ["reload@remote.example"])
        harness.wait_for(lambda: attempts_logged(sm, rcpt="reload@remote.example",
                                                 result="deferred"),
                         timeout=30, what="a deferred attempt")
        sm.extra = outbound_yaml(smarthost["port"], ca=smarthost["ca"], retry="1s")
        sm.write_config()
        sm.mb.reload()
        got = wait_maildir(smarthost, "reload@remote.example", timeout=30)
        wait_queue_empty(sm)
    finally:
        rc = sm.stop()
    assert rc == 0, f"exit status {rc}"
    assert msgid.encode() in got[0]
    assert any(d.get("msg") == "outbound queue reconfigured" for d in sm.mb.lines())


def test_api_retry_wakes_the_workers(tmp_path, postgres, postgres_db, smarthost):
    # poll and retry an hour apart: only the kick sent by POST
    # /api/v1/queue/retry can make the deferred message go now
    from test_mailbox_admin_api import curl
    stop_master(smarthost)
    sm = make_mailbox(tmp_path, postgres, postgres_db, smarthost["port"], ca=smarthost["ca"],
                      retry="1h")
    sm.extra = sm.extra.replace("poll: 300ms", "poll: 1h")
    sm.write_config()
    sm.setup_directory()
    token = sm.cli("token", "add", "retry-test").strip()
    sm.start()
    try:
        submit(sm, ["kicked@remote.example"])
        harness.wait_for(lambda: attempts_logged(sm, rcpt="kicked@remote.example",
                                                 result="deferred"),
                         timeout=30, what="a deferred attempt")
        restart_master(smarthost)
        time.sleep(1)
        assert maildir_msgs(smarthost, "kicked@remote.example") == []
        st, body, _ = curl(sm.ports["admin"], "POST", "/api/v1/queue/retry", token=token)
        assert st == 200 and body == {"retried": 1}, body
        got = wait_maildir(smarthost, "kicked@remote.example", timeout=20)
        wait_queue_empty(sm)
    finally:
        rc = sm.stop()
    assert rc == 0, f"exit status {rc}"
    assert len(got) == 1


def test_5xx_bounces_to_the_sender(tmp_path, postgres, postgres_db, smarthost):
    sm = make_mailbox(tmp_path, postgres, postgres_db, smarthost["port"], ca=smarthost["ca"])
    sm.setup_directory()
    sm.start()
    try:
        msgid = submit(sm, ["bad@remote.example", "good@remote.example"], subject="to bounce")
        wait_maildir(smarthost, "good@remote.example")
        harness.wait_for(lambda: inbox_dsns(sm), timeout=60, what="a DSN in alice's INBOX")
        wait_queue_empty(sm)
        # the DSN itself went with the null sender and caused nothing else
        time.sleep(1)
        assert len(inbox_dsns(sm)) == 1
    finally:
        rc = sm.stop()
    assert rc == 0, f"exit status {rc}"
    m, data = inbox_dsns(sm)[0]
    assert data.startswith(b"Return-Path: <>\r\n"), data[:100]
    parsed = email.message_from_bytes(data)
    assert parsed.get_content_type() == "multipart/report"
    assert parsed.get_param("report-type") == "delivery-status"
    text = data.decode(errors="replace")
    assert "Final-Recipient: rfc822; bad@remote.example" in text
    assert "Action: failed" in text and "Status: 5.1.1" in text
    assert "good@remote.example" not in text.split("Content-Type: text/rfc822-headers")[0] \
        .split("message/delivery-status")[1]
    assert msgid in text  # the original's header block is returned
    line = attempts_logged(sm, rcpt="bad@remote.example")[-1]
    assert line["result"] == "failed" and line["code"] == "550" and line["dsn"] == "yes"


def test_bounce_to_a_remote_sender_goes_out_with_the_null_sender(tmp_path, postgres,
                                                                postgres_db, smarthost):
    # x@remote.example -> fwd@example.org (an alias to bad@remote.example,
    # which the smarthost refuses): the DSN is queued for x@remote.example
    # with MAIL FROM:<> and relayed like any message.
    sm = make_mailbox(tmp_path, postgres, postgres_db, smarthost["port"], ca=smarthost["ca"])
    sm.setup_directory()
    sm.cli("alias", "add", "fwd@example.org", "bad@remote.example")
    sm.start()
    try:
        c = smtplib.SMTP("127.0.0.1", sm.ports["mx"], timeout=30)
        c.sendmail("x@remote.example", ["fwd@example.org"],
                   b"From: x@remote.example\r\nTo: fwd@example.org\r\nSubject: fwd\r\n"
                   b"Message-ID: <fwd-1@remote.example>\r\n\r\nforward me\r\n")
        c.quit()
        got = wait_maildir(smarthost, "x@remote.example", timeout=60)
        wait_queue_empty(sm)
    finally:
        rc = sm.stop()
    assert rc == 0, f"exit status {rc}"
    assert len(got) == 1
    # Postfix writes the envelope sender it was given as Return-Path
    assert got[0].startswith(b"Return-Path: <>"), got[0][:200]
    assert b"multipart/report" in got[0] and b"<fwd-1@remote.example>" in got[0]
    assert b"Final-Recipient: rfc822; bad@remote.example" in got[0]
    assert b"Original-Recipient: rfc822; fwd@example.org" in got[0]
    lines = attempts_logged(sm, rcpt="x@remote.example")
    assert lines and lines[-1]["result"] == "sent"


def test_expiry_bounces(tmp_path, postgres, postgres_db, smarthost):
    stop_master(smarthost)
    sm = make_mailbox(tmp_path, postgres, postgres_db, smarthost["port"], ca=smarthost["ca"],
                      retry="1s", expire="1m")
    sm.setup_directory()
    sm.start()
    try:
        submit(sm, ["never@remote.example"], subject="will expire")
        harness.wait_for(lambda: attempts_logged(sm, rcpt="never@remote.example",
                                                 result="deferred"),
                         timeout=30, what="a deferred attempt")
        assert inbox_dsns(sm) == []
        # the message has been queued for two minutes (past the 1m expiry)
        postgres.psql("UPDATE queue_messages SET created = created - interval '2 minutes'",
                      dbname=postgres_db.name)
        harness.wait_for(lambda: inbox_dsns(sm), timeout=30, what="an expiry DSN")
        wait_queue_empty(sm)
    finally:
        rc = sm.stop()
    assert rc == 0, f"exit status {rc}"
    _, data = inbox_dsns(sm)[0]
    text = data.decode(errors="replace")
    assert "Final-Recipient: rfc822; never@remote.example" in text
    assert "Action: failed" in text
    assert re.search(r"Status: 4\.\d+\.\d+", text), text
    line = attempts_logged(sm, rcpt="never@remote.example")[-1]
    assert line["result"] == "expired" and line["dsn"] == "yes"


def test_null_sender_gets_no_bounce(tmp_path, postgres, postgres_db, smarthost):
    sm = make_mailbox(tmp_path, postgres, postgres_db, smarthost["port"], ca=smarthost["ca"])
    sm.setup_directory()
    sm.start()
    try:
        c = smtplib.SMTP("127.0.0.1", sm.ports["subplain"], timeout=30)
        c.login(SENDER, PASSWORDS[SENDER])
        c.sendmail("<>", ["bad@remote.example"],
                   b"From: x@example.org\r\nSubject: null\r\n\r\nbody\r\n")
        c.quit()
        harness.wait_for(lambda: attempts_logged(sm, rcpt="bad@remote.example"), timeout=30,
                         what="the attempt")
        wait_queue_empty(sm)
    finally:
        rc = sm.stop()
    assert rc == 0, f"exit status {rc}"
    line = attempts_logged(sm, rcpt="bad@remote.example")[-1]
    assert line["result"] == "failed" and line["dsn"] == "no"
    assert inbox_dsns(sm) == [] and inbox_dsns(sm, "root@example.org") == []


def test_local_route_delivers_into_the_store(tmp_path, postgres, postgres_db, smarthost):
    # A queued recipient whose domain has a `local` route is delivered into
    # the store (or bounced when unknown): queue rows inserted by hand, as
    # for a domain that became ours after the message was queued.
    extra = ("    - name: here\n      domains: [\"example.org\"]\n      type: local\n")
    sm = make_mailbox(tmp_path, postgres, postgres_db, smarthost["port"], ca=smarthost["ca"])
    sm.extra = sm.extra + extra
    sm.write_config()
    sm.setup_directory()
    sm.start()
    try:
        # a stored message gives us a blob to queue
        submit(sm, ["bob@example.org"], subject="local route")
        blob = sm.wait_stored(1, login="bob@example.org")[0]
        postgres.psql(
            "WITH m AS (INSERT INTO queue_messages(sender, blob_key, size, account_id)"
            f" VALUES ({sql_literal(SENDER)}, {sql_literal(blob['blob_key'])}, {blob['size']},"
            " NULL) RETURNING id)"
            " INSERT INTO queue_rcpts(message_id, rcpt) SELECT m.id, r FROM m,"
            " unnest(ARRAY['bob@example.org', 'nobody@example.org']) r",
            dbname=postgres_db.name)
        sm.wait_stored(2, login="bob@example.org", timeout=30)
        harness.wait_for(lambda: inbox_dsns(sm), timeout=30, what="a DSN for nobody@")
        wait_queue_empty(sm)
    finally:
        rc = sm.stop()
    assert rc == 0, f"exit status {rc}"
    second = sm.messages("bob@example.org")[1]
    data = sm.blob(second["blob_key"])
    # exactly one Return-Path: the one the local delivery added
    assert data.startswith(b"Return-Path: <alice@example.org>\r\n")
    assert data.count(b"Return-Path:") == 1
    _, dsn = inbox_dsns(sm)[0]
    assert b"nobody@example.org" in dsn and b"Status: 5.1.1" in dsn


# --- several instances, crashes ---------------------------------------------------


def _msgids(pf, addr):
    c = collections.Counter()
    for m in maildir_msgs(pf, addr):
        mm = re.search(rb"^Message-ID: (<[^>]+>)", m, re.M | re.I)
        if mm:
            c[mm.group(1).decode()] += 1
    return c


def _submit_many(sm, rcpt, ids, errors):
    try:
        conn = smtplib.SMTP("127.0.0.1", sm.ports["subplain"], timeout=60)
        conn.login(SENDER, PASSWORDS[SENDER])
        for mid in ids:
            submit(sm, [rcpt], subject="load", msgid=mid, body="x\r\n", conn=conn)
        conn.quit()
    except Exception as e:  # reported by the test
        errors.append(repr(e))


def test_two_instances_deliver_each_message_exactly_once(tmp_path, postgres, postgres_db,
                                                         smarthost, redis_clean):
    n = 1000
    rcpt = "load@remote.example"
    a = make_mailbox(tmp_path, postgres, postgres_db, smarthost["port"], name="a",
                     ca=smarthost["ca"], redis=redis_clean)
    b = make_mailbox(tmp_path, postgres, postgres_db, smarthost["port"], name="b",
                     ca=smarthost["ca"], redis=redis_clean)
    # one store, as in production: the same database, blobs and Redis
    b.mb.blobs = a.mb.blobs
    b.write_config()
    a.setup_directory()
    a.start()
    b.start()
    t0 = time.monotonic()
    try:
        ids = [f"<load-{i}-{os.urandom(4).hex()}@example.org>" for i in range(n)]
        errors = []
        threads = [threading.Thread(target=_submit_many, args=(sm, rcpt, part, errors))
                   for sm, part in ((a, ids[: n // 2]), (b, ids[n // 2:]))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
        assert errors == [] and not any(t.is_alive() for t in threads), errors
        harness.wait_for(lambda: sum(_msgids(smarthost, rcpt).values()) >= n, timeout=600,
                         interval=1, what=f"{n} messages in the Maildir")
        wait_queue_empty(a, timeout=120)
        time.sleep(2)  # anything sent twice would show up now
        counts = _msgids(smarthost, rcpt)
    finally:
        rcs = [a.stop(), b.stop()]
    assert rcs == [0, 0], rcs
    elapsed = time.monotonic() - t0
    print(f"two instances: {n} messages in {elapsed:.1f}s; sent by a: "
          f"{len(attempts_logged(a, result='sent'))}, b: {len(attempts_logged(b, result='sent'))}")
    assert set(counts) == set(ids), (len(counts), n)
    dups = {k: v for k, v in counts.items() if v != 1}
    assert dups == {}, list(dups.items())[:5]
    # both instances did part of the work
    for sm in (a, b):
        assert len(attempts_logged(sm, result="sent")) > 0, sm.mb.name
    assert elapsed < 900


def test_sigkill_during_delivery_loses_nothing(tmp_path, postgres, postgres_db, smarthost):
    n = 120
    rcpt = "crash@remote.example"
    sm = make_mailbox(tmp_path, postgres, postgres_db, smarthost["port"], ca=smarthost["ca"],
                      lease="10s", concurrency=4)
    sm.setup_directory()
    # queue everything while delivery is off, then let it run and kill it
    sm.extra = sm.extra.replace("outbound:\n", "outbound:\n  enabled: false\n", 1)
    sm.write_config()
    sm.start()
    ids = [f"<crash-{i}-{os.urandom(4).hex()}@example.org>" for i in range(n)]
    errors = []
    _submit_many(sm, rcpt, ids, errors)
    assert errors == []
    sm.stop()
    sm.extra = sm.extra.replace("  enabled: false\n", "", 1)
    sm.write_config()
    sm.start()
    try:
        harness.wait_for(lambda: sum(_msgids(smarthost, rcpt).values()) >= 10, timeout=120,
                         interval=0.05, what="some deliveries")
        sm.proc.send_signal(signal.SIGKILL)
        sm.proc.wait(timeout=30)
        leased = postgres.psql("SELECT count(*) FROM queue_rcpts WHERE lease_owner IS NOT NULL",
                               dbname=postgres_db.name).strip()
        sm.start()
        harness.wait_for(lambda: sum(_msgids(smarthost, rcpt).values()) >= n, timeout=300,
                         interval=1, what="every message after the restart")
        wait_queue_empty(sm, timeout=120)
        time.sleep(1)
        counts = _msgids(smarthost, rcpt)
    finally:
        rc = sm.stop()
    assert rc == 0, f"exit status {rc}"
    assert set(counts) == set(ids), (len(counts), n)
    dups = [k for k, v in counts.items() if v > 1]
    print(f"sigkill: duplicates={len(dups)} leased_at_kill={leased}")
    # at most one duplicate per message, and only among those in flight at the kill
    assert all(v <= 2 for v in counts.values())
    assert len(dups) <= int(leased), (dups, leased)


def _hole():
    """A "smarthost" that accepts connections and never greets."""
    import socket
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(16)
    return hole, hole.getsockname()[1]


def test_sigterm_keeps_leases_of_sends_in_flight(tmp_path, postgres, postgres_db):
    # The send is in flight when SIGTERM comes: the remote side may already
    # have the message, so after the drain grace the daemon leaves the lease
    # to expire (retried later, as after a crash) instead of handing the
    # recipient to another instance at once.
    hole, port = _hole()
    sm = make_mailbox(tmp_path, postgres, postgres_db, port, tls="none", auth=False)
    sm.setup_directory()
    sm.start()
    try:
        submit(sm, ["term@remote.example"])
        harness.wait_for(lambda: (lambda r: r and r[0]["lease_owner"])(queue_rows(sm)),
                         timeout=30, what="a lease")
    finally:
        rc = sm.stop()
        hole.close()
    assert rc == 0
    rows = queue_rows(sm)
    assert len(rows) == 1, rows
    assert rows[0]["status"] == "pending" and rows[0]["lease_owner"] is not None, rows
    assert rows[0]["attempts"] == 1, rows
    assert any(d.get("msg", "").startswith("outbound: deliveries cut short") and
               d.get("rcpts") == "1" for d in sm.mb.lines())
    assert any(d.get("msg") == "outbound leases released" and d.get("rcpts") == "0"
               for d in sm.mb.lines())


def test_lease_renewed_while_a_send_is_slow(tmp_path, postgres, postgres_db):
    # A send that outlives outbound.lease (10 s here) must not be claimed
    # again: the leases of messages in flight are renewed every lease/3.
    hole, port = _hole()
    sm = make_mailbox(tmp_path, postgres, postgres_db, port, tls="none", auth=False,
                      lease="10s")
    sm.setup_directory()
    sm.start()
    try:
        submit(sm, ["slow@remote.example"])
        harness.wait_for(lambda: (lambda r: r and r[0]["lease_owner"])(queue_rows(sm)),
                         timeout=30, what="a lease")
        first = queue_rows(sm)[0]
        time.sleep(16)
        rows = sm.query("SELECT attempts, lease_owner, lease_until > now() AS live"
                        " FROM queue_rcpts")
    finally:
        sm.stop()
        hole.close()
    assert len(rows) == 1, rows
    assert rows[0]["attempts"] == 1, rows
    assert rows[0]["lease_owner"] == first["lease_owner"] and rows[0]["live"] is True, rows
