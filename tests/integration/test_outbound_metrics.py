"""Outbound queue, transport and IMAP body cache counters in /metrics
(mailbox/server/metrics.c, fed by mailbox/outbound/queue.c through
outbound_queue_stats() and by imap_server_cache_stats()), read with curl.

The outbound test drives `serve` against a real Postfix smarthost
(postfix_util.start_smarthost, as in test_outbound_queue.py): one message
with a delivered and a refused recipient (a DSN into alice's INBOX), a
second message on the kept connection, then the smarthost down: a deferred
attempt and the queue depth gauges (counted on the loop every 10 s).  The
counters are compared with the daemon's own `outbound attempt` log lines
and with the Postgres queue rows, so they cannot pass by being constant.
"""
import imaplib
import re
import shutil
import subprocess

import harness
from mailbox_util import Mailbox, listener
from test_outbound_queue import (attempts_logged, inbox_dsns, make_mailbox, smarthost,  # noqa: F401
                                 stop_master, submit, wait_maildir, wait_queue_empty)

CURL = shutil.which("curl") or "/usr/bin/curl"


def scrape(port):
    r = subprocess.run([CURL, "-sS", "--max-time", "10", f"http://127.0.0.1:{port}/metrics"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    out = {}
    types = {}
    for line in r.stdout.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ")
            assert name not in types, f"family {name} twice"
            types[name] = typ
            continue
        if line.startswith("#") or not line:
            continue
        m = re.fullmatch(r"(\S+) (\S+)", line)
        assert m, line
        assert m.group(1) not in out, f"sample {m.group(1)} twice"
        out[m.group(1)] = float(m.group(2))
    return out, types


def attempts(v, result):
    return v[f'tailpost_mailbox_outbound_attempts_total{{result="{result}"}}']


def transport(v, result):
    return v[f'tailpost_mailbox_outbound_transport_recipients_total{{result="{result}"}}']


def test_outbound_counters(tmp_path, postgres, postgres_db, smarthost):  # noqa: F811
    sm = make_mailbox(tmp_path, postgres, postgres_db, smarthost["port"], ca=smarthost["ca"])
    # keep the connection long enough for the second message to reuse it
    sm.extra = sm.extra.replace("connection_reuse: 2s", "connection_reuse: 60s")
    sm.write_config()
    sm.setup_directory()
    sm.start()
    port = sm.ports["admin"]
    try:
        v, types = scrape(port)
        for res in ("delivered", "deferred", "bounced", "failed"):
            assert attempts(v, res) == 0
        assert types["tailpost_mailbox_outbound_attempts_total"] == "counter"
        assert types["tailpost_mailbox_outbound_in_flight"] == "gauge"
        assert v["tailpost_mailbox_outbound_connections_total"] == 0
        assert v['tailpost_mailbox_outbound_dsn_total{result="stored"}'] == 0

        # 1: one recipient delivered, one refused by Postfix (5xx): a DSN
        submit(sm, ["good@remote.example", "bad@remote.example"], subject="metrics 1")
        wait_maildir(smarthost, "good@remote.example")
        harness.wait_for(lambda: inbox_dsns(sm), timeout=60, what="a DSN in alice's INBOX")
        wait_queue_empty(sm)
        v, _ = scrape(port)
        assert attempts(v, "delivered") == 1 and attempts(v, "bounced") == 1, v
        assert attempts(v, "deferred") == 0 and attempts(v, "failed") == 0
        assert v['tailpost_mailbox_outbound_dsn_total{result="stored"}'] == 1
        assert v['tailpost_mailbox_outbound_dsn_total{result="error"}'] == 0
        assert v["tailpost_mailbox_outbound_claimed_messages_total"] == 1
        assert v["tailpost_mailbox_outbound_claimed_recipients_total"] == 2
        assert v['tailpost_mailbox_outbound_claims_total{result="ok"}'] >= 1
        assert v['tailpost_mailbox_outbound_claims_total{result="error"}'] == 0
        assert v["tailpost_mailbox_outbound_results_unrecorded_total"] == 0
        assert v["tailpost_mailbox_outbound_connections_total"] == 1
        assert v["tailpost_mailbox_outbound_tls_sessions_total"] == 1  # STARTTLS
        assert v["tailpost_mailbox_outbound_connection_reuses_total"] == 0
        assert transport(v, "delivered") == 1 and transport(v, "permfail") == 1
        assert transport(v, "tempfail") == 0
        assert v["tailpost_mailbox_outbound_in_flight"] == 0
        assert v["tailpost_mailbox_outbound_sends_active"] == 0

        # 2: a second message goes over the kept connection
        submit(sm, ["good2@remote.example"], subject="metrics 2")
        wait_maildir(smarthost, "good2@remote.example")
        wait_queue_empty(sm)
        v, _ = scrape(port)
        assert attempts(v, "delivered") == 2
        assert v["tailpost_mailbox_outbound_connections_total"] == 1
        assert v["tailpost_mailbox_outbound_connection_reuses_total"] == 1
        assert v["tailpost_mailbox_outbound_claimed_messages_total"] == 2

        # 3: the smarthost goes away: a deferred attempt, and the message
        # shows in the depth gauges (and stays there)
        stop_master(smarthost)
        submit(sm, ["later@remote.example"], subject="metrics 3")
        harness.wait_for(lambda: attempts_logged(sm, rcpt="later@remote.example",
                                                 result="deferred"),
                         timeout=30, what="a deferred attempt")

        def depth_seen():
            v, _ = scrape(port)
            if v.get("tailpost_mailbox_outbound_queue_recipients_pending") == 1:
                return v
            return None
        v = harness.wait_for(depth_seen, timeout=30, interval=1,
                             what="the queue depth gauges to count the deferred message")
        assert v["tailpost_mailbox_outbound_queue_messages"] == 1
        assert v["tailpost_mailbox_outbound_queue_oldest_seconds"] >= 0
        rows = sm.query("SELECT count(*) AS n FROM queue_rcpts WHERE status = 'pending'")
        assert rows[0]["n"] == 1
        assert attempts(v, "deferred") >= 1 and transport(v, "tempfail") >= 1
        # the counters agree with the daemon's own attempt log lines
        log = attempts_logged(sm)
        assert attempts(v, "delivered") == len([d for d in log if d["result"] == "sent"])
        assert attempts(v, "deferred") == len([d for d in log if d["result"] == "deferred"])
        assert attempts(v, "bounced") == len([d for d in log if d.get("dsn") == "yes"])
    finally:
        rc = sm.stop()
    assert rc == 0, f"exit status {rc}"


def test_imap_body_cache_counters(tmp_path, postgres_db):
    mb = Mailbox(tmp_path, postgres_db)
    imap_port, http_port = harness.free_port(), harness.free_port()
    mb.write_config(listener("imap", "imap", imap_port, "allow_plaintext_auth: true") +
                    listener("admin", "http", http_port),
                    extra="imap:\n  blob_cache_size: 8MB\noutbound: { enabled: false }\n")
    mb.migrate()
    r = mb.cli("account", "add", "alice@example.org", input="alice-pw-1\n")
    assert r.returncode == 0, r.stderr
    mb.start()
    try:
        v, types = scrape(http_port)
        # no IMAP connection yet: the cache does not exist
        assert v['tailpost_mailbox_imap_body_cache_lookups_total{result="hit"}'] == 0
        assert v["tailpost_mailbox_imap_body_cache_limit_bytes"] == 0
        assert types["tailpost_mailbox_imap_body_cache_bytes"] == "gauge"

        msg = (b"From: Bob <bob@example.net>\r\nTo: alice@example.org\r\n"
               b"Subject: cache metrics\r\n\r\n" + b"cached body line\r\n" * 500)
        c = imaplib.IMAP4("127.0.0.1", imap_port, timeout=20)
        c.login("alice@example.org", "alice-pw-1")
        typ, _ = c.append("INBOX", None, None, msg)
        assert typ == "OK"
        c.select("INBOX")
        typ, data = c.fetch("1", "(BODY.PEEK[])")
        assert typ == "OK" and data[0][1] == msg
        v1, _ = scrape(http_port)
        assert v1["tailpost_mailbox_imap_body_cache_limit_bytes"] == 8 * 1024 * 1024
        assert v1['tailpost_mailbox_imap_body_cache_lookups_total{result="miss"}'] >= 1
        assert v1["tailpost_mailbox_imap_body_cache_stores_total"] >= 1
        assert v1["tailpost_mailbox_imap_body_cache_entries"] >= 1
        assert v1["tailpost_mailbox_imap_body_cache_bytes"] >= len(msg)
        hits1 = v1['tailpost_mailbox_imap_body_cache_lookups_total{result="hit"}']

        for _ in range(3):
            typ, data = c.fetch("1", "(BODY.PEEK[])")
            assert typ == "OK" and data[0][1] == msg
        # the stored metadata (written at delivery) is kept with the octets:
        # the same items again come from the cache, identical
        items = "(FLAGS ENVELOPE BODYSTRUCTURE RFC822.SIZE INTERNALDATE)"
        typ, first = c.fetch("1", items)
        assert typ == "OK" and b"cache metrics" in first[0]
        v_mid, _ = scrape(http_port)
        typ, again = c.fetch("1", items)
        assert typ == "OK" and again == first
        c2 = imaplib.IMAP4("127.0.0.1", imap_port, timeout=20)
        c2.login("alice@example.org", "alice-pw-1")
        c2.select("INBOX", readonly=True)
        typ, other = c2.fetch("1", items)
        assert typ == "OK" and other == first
        typ, other = c2.fetch("1", items)  # flags known now too
        assert typ == "OK" and other == first
        c2.logout()
        v_end, _ = scrape(http_port)
        hit = 'tailpost_mailbox_imap_body_cache_lookups_total{result="hit"}'
        assert v_end[hit] >= v_mid[hit] + 3, (v_mid[hit], v_end[hit])
        typ, data = c.fetch("1", "(BODY.PEEK[])")
        assert typ == "OK" and data[0][1] == msg
        c.logout()
        v2, _ = scrape(http_port)
        assert v2['tailpost_mailbox_imap_body_cache_lookups_total{result="hit"}'] >= hits1 + 3
        # the same ranges again: nothing new was stored or missed
        assert (v2['tailpost_mailbox_imap_body_cache_lookups_total{result="miss"}'] ==
                v1['tailpost_mailbox_imap_body_cache_lookups_total{result="miss"}'])
        # (the first FETCH of ENVELOPE ... added those items to the entry)
        assert v2["tailpost_mailbox_imap_body_cache_stores_total"] == \
            v1["tailpost_mailbox_imap_body_cache_stores_total"] + 1 == \
            v_mid["tailpost_mailbox_imap_body_cache_stores_total"]
        assert v2["tailpost_mailbox_imap_body_cache_evictions_total"] == 0
    finally:
        rc = mb.stop()
    assert rc == 0, mb.text()[-3000:]
