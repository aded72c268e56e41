"""Postfix as a real sending MTA relaying into tailpost's mx.

A private Postfix instance (the Debian package, like
test_edge_postfix.py: its own config, queue and data directories in a temp
dir, master in the foreground, stopped by PID; the system's Postfix is
never touched) accepts mail on a loopback port and relays everything to
`relayhost = [127.0.0.1]:<our mx>` with opportunistic STARTTLS.  What
Postfix's SMTP client does (EHLO, STARTTLS, PIPELINING, 8BITMIME, SIZE,
DSN) is what tailpost must take; a refused recipient makes Postfix send a
bounce (MAIL FROM:<>) back to the local sender through tailpost again.
"""
import re
import smtplib

import pytest

import harness
import postfix_util
from smtp_util import SmtpMailbox

def start_postfix(relay_port):
    return postfix_util.start_postfix("postfix-relay-test", f"""\
myhostname = relay.test
mydomain = relay.test
myorigin = relay.test
mydestination =
inet_protocols = ipv4
relayhost = [127.0.0.1]:{relay_port}
relay_domains = example.org
mynetworks = 127.0.0.0/8
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
smtp_tls_security_level = may
smtp_tls_loglevel = 1
smtpd_banner = $myhostname ESMTP postfix-relay-test
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
""")


stop_postfix = postfix_util.stop_postfix
pf_log = postfix_util.postfix_log


@pytest.fixture(scope="module")
def env(tmp_path_factory, postgres):
    tmp = tmp_path_factory.mktemp("smtp_postfix")
    db = postgres.create_database()
    sm = SmtpMailbox(tmp, postgres, db)
    sm.setup_directory().start()
    pf = start_postfix(sm.ports["mx"])
    yield sm, pf
    stop_postfix(pf)
    rc = sm.stop()
    postgres.drop_database(db.name)
    assert rc == 0, sm.mb.text()[-3000:]


def wait_subject(sm, subject, count=1, timeout=30):
    return harness.wait_for(lambda: (lambda m: m if len(m) >= count else None)(
        [x for x in sm.messages() if x["hdr_subject"] == subject]), timeout=timeout,
        what=f"{subject!r} relayed by postfix")


def test_postfix_relays_into_mx(env):
    sm, pf = env
    big = "".join(f"line {i:06d} " + "z" * 60 + "\r\n" for i in range(30000))  # ~2 MB
    msgs = [("postfix small", ["alice@example.org"], "hello from postfix\r\n.dot line\r\n"),
            ("postfix alias", ["team@example.org"], "to the team\r\n"),
            ("postfix big", ["bob@example.org"], big)]
    with smtplib.SMTP("127.0.0.1", pf["port"], timeout=30) as s:
        for subject, rcpts, text in msgs:
            body = (f"From: sender@relay.test\r\nTo: {', '.join(rcpts)}\r\n"
                    f"Subject: {subject}\r\n\r\n{text}").encode()
            assert s.sendmail("sender@relay.test", rcpts, body) == {}
    small = wait_subject(sm, "postfix small")[0]
    blob = sm.blob(small["blob_key"])
    head = blob[:blob.index(b"\r\n\r\n")].decode()
    # ours first (after Return-Path), then Postfix's own trace header
    ours, theirs = [m.start() for m in re.finditer(r"\r\nReceived: ", head)][:2]
    assert head.startswith("Return-Path: <sender@relay.test>\r\nReceived: from relay.test "
                           "([127.0.0.1])")
    assert "with ESMTPS id" in head[:theirs] and "(using TLSv1." in head[:theirs]
    assert "by relay.test (Postfix)" in head[theirs:]
    assert blob.endswith(b"\r\n\r\nhello from postfix\r\n.dot line\r\n")
    team = wait_subject(sm, "postfix alias", count=2)
    assert sorted(m["login"] for m in team) == ["alice@example.org", "bob@example.org"]
    # the alias's remote target went to the outbound queue
    q = [r for r in sm.queue() if r["blob_key"] == team[0]["blob_key"]]
    assert [r["rcpt"] for r in q] == ["ext@remote.example"]
    big_m = wait_subject(sm, "postfix big")[0]
    assert sm.blob(big_m["blob_key"]).endswith(big.encode())
    log = harness.wait_for(lambda: (lambda t: t if t.count("status=sent") >= 3 else None)(
        pf_log(pf)), timeout=30, what="postfix to log three deliveries")
    assert "relay=127.0.0.1[127.0.0.1]" in log
    assert re.search(r"Trusted TLS connection established|Untrusted TLS connection established|"
                     r"Anonymous TLS connection established", log), log[-2000:]


def test_refused_recipient_bounces_back_through_mx(env):
    sm, pf = env
    with smtplib.SMTP("127.0.0.1", pf["port"], timeout=30) as s:
        body = (b"From: alice@example.org\r\nTo: nobody@example.org\r\n"
                b"Subject: postfix to nobody\r\n\r\nwill bounce\r\n")
        assert s.sendmail("alice@example.org", ["nobody@example.org"], body) == {}
    # Postfix got 550 5.1.1 from us and bounced to the sender, with <>
    harness.wait_for(lambda: "status=bounced" in pf_log(pf) and "5.1.1" in pf_log(pf),
                     timeout=30, what="postfix bounce")
    dsn = harness.wait_for(lambda: [m for m in sm.messages("alice@example.org")
                                    if (m["hdr_subject"] or "").startswith("Undelivered Mail")],
                           timeout=30, what="bounce in alice's INBOX")[0]
    blob = sm.blob(dsn["blob_key"])
    assert blob.startswith(b"Return-Path: <>\r\n")
    assert b"nobody@example.org" in blob and b"550 5.1.1" in blob
    # multipart/report (RFC 6522): the parts first, then the subtype
    assert dsn["bodystructure"].startswith('(("text" "plain"')
    assert ' "report" ("report-type" "delivery-status"' in dsn["bodystructure"]
