"""SMTP behind tailpost-edge (PROXY v2) and directly: the real client is
the one in the stored Received: header, in the logs and in bans; a PROXY
header from a peer that is not trusted is a spoof and is refused.

The edge connects to the mailbox from 127.0.0.1, so here the `mxp`
listener trusts 127.0.0.1 as its proxy peer and serves other peers
directly (untrusted: direct); clients use other loopback addresses
(127.0.0.3, 127.0.0.4) as their source.
"""
import json
import smtplib

import pytest

import harness
from edge_util import Edge, free_port
from mailbox_util import pp_v2
from smtp_util import Raw, SmtpMailbox, check_stored


@pytest.fixture(scope="module")
def env(tmp_path_factory, postgres):
    tmp = tmp_path_factory.mktemp("smtp_proxy")
    db = postgres.create_database()
    sm = SmtpMailbox(tmp, postgres, db, proxy_peer="127.0.0.1",
                     extra="abuse: { rcpt_failures: 3, window: 1m, ban: 30s }\n")
    sm.setup_directory().start()
    ep = free_port()
    cfg = {"workers": 1, "listeners": [{
        "name": "smtp", "bind": [f"127.0.0.1:{ep}"], "upstreams": [f"127.0.0.1:{sm.ports['mxp']}"],
        "idle_timeout": "10m", "health_check": {"enabled": False}}]}
    edge = Edge(tmp, json.dumps(cfg))
    yield sm, edge, ep
    edge.stop()
    rc = sm.stop()
    postgres.drop_database(db.name)
    assert rc == 0, sm.mb.text()[-3000:]


def received_client(sm, subject):
    m = harness.wait_for(lambda: [x for x in sm.messages() if x["hdr_subject"] == subject],
                         timeout=10, what=subject)[0]
    blob = sm.blob(m["blob_key"])
    return m, blob, blob[:blob.index(b"\r\n\r\n")].decode()


def test_through_the_edge_received_shows_the_real_client(env):
    sm, edge, ep = env
    body = b"From: x@remote.example\r\nTo: alice@example.org\r\nSubject: via edge\r\n\r\nhi\r\n"
    with smtplib.SMTP("127.0.0.1", ep, timeout=10, source_address=("127.0.0.3", 0)) as s:
        s.ehlo("client.example")
        assert s.sendmail("x@remote.example", ["alice@example.org"], body) == {}
    m, blob, head = received_client(sm, "via edge")
    check_stored(sm, m, body, "alice@example.org")
    assert "Received: from client.example ([127.0.0.3])" in head, head
    assert "(tailpost listener mxp)" in head
    line = sm.mb.wait_log(lambda d: d.get("msg") == "connection" and d.get("listener") == "mxp"
                          and d.get("client", "").startswith("127.0.0.3:"), what="proxied conn")
    assert line[-1]["proxy"] == "v2" and line[-1]["peer"].startswith("127.0.0.1:")


def test_direct_clients_are_themselves(env):
    sm, _, _ = env
    # a listener without PROXY settings, and an untrusted peer served directly
    for port, src, subj in ((sm.ports["mx"], "127.0.0.4", "direct plain"),
                            (sm.ports["mxp"], "127.0.0.3", "direct untrusted")):
        with smtplib.SMTP("127.0.0.1", port, timeout=10, source_address=(src, 0)) as s:
            s.ehlo("direct.example")
            s.sendmail("x@remote.example", ["bob@example.org"], f"Subject: {subj}\r\n\r\nx\r\n")
        _, _, head = received_client(sm, subj)
        assert f"Received: from direct.example ([{src}])" in head, head


def test_spoofed_proxy_header_from_untrusted_peer_is_refused(env):
    sm, _, _ = env
    hdr = pp_v2(("203.0.113.66", 4444), ("127.0.0.1", 25))
    c = Raw(sm.ports["mxp"], source=("127.0.0.3", 0), header=hdr + b"EHLO evil.example\r\n")
    # SMTP speaks first, so a direct peer gets the greeting; its first bytes
    # are a PROXY header: dropped as a spoof, the EHLO behind it never answered
    first = c.line()
    assert first in ("", "220 mail.test ESMTP tailpost")
    if first:
        assert c.line() == ""
    c.close()
    sm.mb.wait_log(lambda d: d.get("msg", "").startswith("PROXY header from a peer that is not "
                                                         "trusted"), what="spoof log line")
    assert "203.0.113.66" not in "".join(l for l in sm.mb.text().splitlines() if "Received" in l)


def test_refused_recipients_ban_the_proxied_client_not_the_edge(env):
    sm, _, _ = env
    bad = ("203.0.113.7", 40000)

    def session(client, rcpts):
        c = Raw(sm.ports["mxp"], header=pp_v2(client, ("127.0.0.1", 25)))
        greet = c.reply()
        if greet[0] != 220:
            c.close()
            return None
        c.cmd("EHLO prober.example")
        c.cmd("MAIL FROM:<x@remote.example>")
        codes = [c.cmd(f"RCPT TO:<{r}>")[0] for r in rcpts]
        c.cmd("QUIT")
        c.close()
        return codes

    # three unknown users and a relay attempt from one proxied client
    assert session(bad, ["a1@example.org", "a2@example.org", "x@elsewhere.example"]) == \
        [550, 550, 554]
    sm.mb.wait_log(lambda d: d.get("msg") == "client banned" and d.get("client") == bad[0],
                   what="ban")
    # its next connection is refused (no greeting); another client behind
    # the same proxy peer (the edge, 127.0.0.1) still gets in: the ban hit
    # the client, not the tunnel
    harness.wait_for(lambda: session(bad, []) is None, timeout=10, what="banned client refused")
    assert session(("203.0.113.8", 40001), ["alice@example.org"]) == [250]
