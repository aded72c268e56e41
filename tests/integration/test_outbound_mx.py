"""MX routing end to end through `serve`: the queue engine with a route of
`type: mx` and `dns: { servers: [...] }` pointing at a private dnsmasq on
loopback, whose MX records lead to a private Postfix
(postfix_util.start_smarthost, its `mx_port`: no AUTH needed, STARTTLS
offered).  The dnsmasq and Postfix fixtures are test_outbound_transport's.

  - a message submitted with SMTP AUTH to a domain with an MX record lands
    in Postfix's Maildir, sent to the MX host (opportunistic STARTTLS);
    dnsmasq saw the MX query, so the route really went through DNS;
  - a domain with a null MX (RFC 7505) fails permanently: a DSN (5.1.2)
    lands in the sender's INBOX, and nothing is sent;
  - a domain with a dead MX host before a live one is delivered to the
    live one.
"""
import os

import harness
import postfix_util
from smtp_util import SmtpMailbox
from test_outbound_queue import attempts_logged, inbox_dsns, submit, wait_maildir, wait_queue_empty
from test_outbound_transport import certs, dns, smarthost  # noqa: F401


def mx_yaml(dns_port, mx_port):
    # every non-local domain by MX (what `make run` does without a
    # smarthost); port: the test Postfix's MX listener instead of 25
    return (f"outbound:\n  poll: 300ms\n  retry: \"1s\"\n  expire: 1h\n"
            f"  connection_reuse: 2s\n  timeouts: {{ connect: 3s }}\n"
            f"  dns: {{ servers: [\"127.0.0.1:{dns_port}\"] }}\n"
            f"  routes:\n"
            f"    - name: internet\n"
            f"      domains: [\"*\"]\n"
            f"      type: mx\n"
            f"      port: {mx_port}\n"
            f"      tls: opportunistic\n")


def dns_queries(d, name, qtype):
    text = d["log"].read_text(errors="replace")
    return [l for l in text.splitlines() if f"query[{qtype}] {name} " in l]


def test_mx_route_through_serve(tmp_path, postgres, postgres_db, smarthost, dns):  # noqa: F811
    sm = SmtpMailbox(tmp_path, postgres, postgres_db, extra=mx_yaml(dns["port"],
                                                                    smarthost["mx_port"]))
    sm.setup_directory()
    sm.start()
    try:
        tag = os.urandom(4).hex()
        good = f"mx-{tag}@mx.test"
        msgid = submit(sm, [good], subject="by MX")
        got = wait_maildir(smarthost, good)
        # null MX: refused before any connection, bounced to alice
        submit(sm, [f"nobody-{tag}@nullmx.test"], subject="to a null MX")
        harness.wait_for(lambda: inbox_dsns(sm), timeout=60, what="a DSN in alice's INBOX")
        # a dead MX host (nothing on 127.0.0.2) before a live one
        fb = f"fb-{tag}@fallback.test"
        submit(sm, [fb], subject="fallback")
        got_fb = wait_maildir(smarthost, fb)
        wait_queue_empty(sm)
    finally:
        rc = sm.stop()
    assert rc == 0, f"exit status {rc}"

    assert len(got) == 1 and msgid.encode() in got[0]
    assert b"Subject: by MX" in got[0]
    # the route went through DNS: dnsmasq answered the MX query
    assert dns_queries(dns, "mx.test", "MX"), dns["log"].read_text()[-2000:]
    line = attempts_logged(sm, rcpt=good)[-1]
    assert line["result"] == "sent" and line["route"] == "internet", line
    assert line["domain"] == "mx.test" and line["remote"] == "mail.mx.test", line
    # Postfix's MX listener offered STARTTLS: it was used
    tls = [d for d in sm.mb.lines() if d.get("msg") == "outbound tls"]
    assert tls and all(d.get("verified") == "no" for d in tls), tls
    assert "TLS connection established from localhost[127.0.0.1]" in \
        postfix_util.postfix_log(smarthost)

    # null MX
    dsns = inbox_dsns(sm)
    assert len(dsns) == 1, [d for _, d in dsns]
    text = dsns[0][1].decode(errors="replace")
    assert f"Final-Recipient: rfc822; nobody-{tag}@nullmx.test" in text
    assert "Action: failed" in text and "Status: 5.1.2" in text
    assert dns_queries(dns, "nullmx.test", "MX")
    line = attempts_logged(sm, rcpt=f"nobody-{tag}@nullmx.test")[-1]
    assert line["result"] == "failed" and line["dsn"] == "yes", line
    assert postfix_util.smarthost_messages(smarthost, f"nobody-{tag}@nullmx.test") == []

    # fallback
    assert len(got_fb) == 1
    line = attempts_logged(sm, rcpt=fb)[-1]
    assert line["result"] == "sent" and line["remote"] == "live.fallback.test", line
