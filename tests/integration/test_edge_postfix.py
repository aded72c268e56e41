"""tailpost-edge in front of a real Postfix smtpd with
`smtpd_upstream_proxy_protocol = haproxy`.

Postfix (the Debian package) runs as a private instance: its own config
directory, queue and data directories in a temp dir, one smtpd on a free
loopback port with the PROXY protocol required, and every message
discarded (discard transport) so nothing leaves the machine.  The master
runs in the foreground (`master -c DIR -s`, what `postfix start-fg`
does), logging to stdout (maillog_file with postlogd), and is stopped by
PID.  The system's Postfix is never touched.

Postfix waits for the PROXY header before its banner, so:
  - a client that sends nothing still gets "220 ..." through the edge
    (the edge wrote the header at once, not after client bytes);
  - a full SMTP session (EHLO, MAIL, RCPT, DATA, QUIT) passes, and Postfix
    logs the real client address (127.0.0.2 / ::1, not the edge's).
"""
import json
import smtplib
import socket

import pytest

import harness
import postfix_util
from edge_util import Edge, connect, free_port, recv_until

@pytest.fixture(scope="module")
def postfix():
    pf = postfix_util.start_postfix("postfix-tailpost-test", """\
myhostname = mx.test
mydomain = test
myorigin = test
mydestination = mx.test, localhost
inet_protocols = all
local_transport = discard:
default_transport = discard:
relay_transport = discard:
smtpd_banner = $myhostname ESMTP tailpost-test
mynetworks = 127.0.0.0/8 [::1]/128
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_upstream_proxy_timeout = 5s
""", smtpd_options=["smtpd_upstream_proxy_protocol=haproxy"])
    yield pf
    postfix_util.stop_postfix(pf)


@pytest.fixture(scope="module")
def edge(postfix, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("edge_postfix")
    p4, p6 = free_port(), free_port("::1")
    cfg = {"workers": 2, "listeners": [{
        "name": "smtp", "bind": [f"127.0.0.1:{p4}", f"[::1]:{p6}"],
        "upstreams": [f"127.0.0.1:{postfix['port']}"], "idle_timeout": "10m",
        "health_check": {"interval": "2s", "timeout": "1s"}}]}
    e = Edge(tmp, json.dumps(cfg))
    yield e, p4, p6
    e.stop()
    assert e.asan_clean(), e.text()[-4000:]


def test_banner_reaches_silent_client(postfix, edge):
    e, p4, _ = edge
    c = connect("127.0.0.1", p4, src="127.0.0.2")
    # we send nothing at all; Postfix answers only after the PROXY header
    assert recv_until(c, b"\r\n").startswith(b"220 mx.test ESMTP tailpost-test")
    c.close()
    harness.wait_for(lambda: "connect from unknown[127.0.0.2]" in postfix_util.postfix_log(postfix) or
                     "connect from localhost[127.0.0.2]" in postfix_util.postfix_log(postfix),
                     timeout=10, what="postfix to log the real client")


@pytest.mark.parametrize("host,src", [("127.0.0.1", "127.0.0.3"), ("::1", "::1")],
                         ids=["ipv4", "ipv6"])
def test_full_smtp_session(postfix, edge, host, src):
    e, p4, p6 = edge
    port = p4 if host == "127.0.0.1" else p6
    msg = (f"From: a@example.org\r\nTo: bob@mx.test\r\nSubject: through the edge from {src}\r\n"
           f"\r\nhello\r\n").encode()
    with smtplib.SMTP(host, port, timeout=10, source_address=(src, 0)) as s:
        code, _ = s.ehlo("client.example")
        assert code == 250
        refused = s.sendmail("a@example.org", ["bob@mx.test"], msg)
        assert refused == {}
        me = s.sock.getsockname()
    log = harness.wait_for(lambda: (lambda t: t if "status=sent" in t and f"[{src}]" in t and
                                    f"client=" in t else None)(postfix_util.postfix_log(postfix)),
                           timeout=15, what="postfix to accept and discard the message")
    # the queued message is attributed to the real client, not to the edge
    assert any(f"client=unknown[{src}]" in l or f"client=localhost[{src}]" in l
               for l in log.splitlines()), log[-3000:]
    line = e.wait_line("conn.close", client=(f"[{src}]:{me[1]}" if ":" in src else f"{src}:{me[1]}"))
    assert line["reason"] == "eof" and int(line["bytes_c2u"]) > len(msg)
