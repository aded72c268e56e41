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
import os
import shutil
import smtplib
import socket
import subprocess
import tempfile

import pytest

import harness
from edge_util import Edge, connect, free_port, recv_until

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
DAEMON_DIR = "/usr/lib/postfix/sbin"


@pytest.fixture(scope="module")
def postfix():
    if not os.access(POSTFIX, os.X_OK) or not os.access(f"{DAEMON_DIR}/master", os.X_OK):
        pytest.fail("postfix not installed: install the Debian package postfix (deploy/deps.sh --test)")
    if os.geteuid() != 0:
        pytest.fail("a private Postfix instance needs root (its master starts as root)")
    # Postfix daemons run as user postfix: the tree must be traversable.
    base = tempfile.mkdtemp(prefix="tailpost-postfix-", dir=harness._tmp_base())
    os.chmod(base, 0o755)
    conf, queue, data = (os.path.join(base, d) for d in ("conf", "queue", "data"))
    for d in (conf, queue, data):
        os.mkdir(d, 0o755)
    shutil.chown(data, "postfix")
    port = free_port()
    with open(os.path.join(conf, "main.cf"), "w") as f:
        f.write(f"""\
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
command_directory = /usr/sbin
daemon_directory = {DAEMON_DIR}
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.test
mydomain = test
myorigin = test
mydestination = mx.test, localhost
inet_interfaces = 127.0.0.1
inet_protocols = all
maillog_file = /dev/stdout
local_transport = discard:
default_transport = discard:
relay_transport = discard:
local_recipient_maps =
alias_maps =
alias_database =
smtpd_banner = $myhostname ESMTP tailpost-test
mynetworks = 127.0.0.0/8 [::1]/128
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_upstream_proxy_timeout = 5s
syslog_name = postfix-tailpost-test
biff = no
""")
    with open(os.path.join(conf, "master.cf"), "w") as f:
        f.write(f"""\
127.0.0.1:{port} inet n - n - - smtpd
  -o smtpd_upstream_proxy_protocol=haproxy
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
proxymap  unix  -       -       n       -       -       proxymap
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
""")
    env = harness._clean_env({"MAIL_CONFIG": conf})
    # creates the queue directories with their owners and modes
    r = subprocess.run([POSTFIX, "-c", conf, "check"], capture_output=True, text=True, timeout=60,
                       env=env)
    assert r.returncode == 0, f"postfix check failed:\n{r.stdout}{r.stderr}"
    log = os.path.join(base, "postfix.log")
    proc = harness.spawn([f"{DAEMON_DIR}/master", "-c", conf, "-s"], log, cwd=base, env=env)
    harness.watch_log("postfix", log)
    try:
        harness.wait_port("127.0.0.1", port, timeout=20, proc=proc)
    except BaseException:
        harness.stop(proc)
        raise
    yield {"port": port, "log": log, "proc": proc}
    harness.stop(proc)
    harness.unwatch_log("postfix")
    shutil.rmtree(base, ignore_errors=True)


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


def _postfix_log(postfix):
    with open(postfix["log"], errors="replace") as f:
        return f.read()


def test_banner_reaches_silent_client(postfix, edge):
    e, p4, _ = edge
    c = connect("127.0.0.1", p4, src="127.0.0.2")
    # we send nothing at all; Postfix answers only after the PROXY header
    assert recv_until(c, b"\r\n").startswith(b"220 mx.test ESMTP tailpost-test")
    c.close()
    harness.wait_for(lambda: "connect from unknown[127.0.0.2]" in _postfix_log(postfix) or
                     "connect from localhost[127.0.0.2]" in _postfix_log(postfix),
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
                                    f"client=" in t else None)(_postfix_log(postfix)),
                           timeout=15, what="postfix to accept and discard the message")
    # the queued message is attributed to the real client, not to the edge
    assert any(f"client=unknown[{src}]" in l or f"client=localhost[{src}]" in l
               for l in log.splitlines()), log[-3000:]
    line = e.wait_line("conn.close", client=(f"[{src}]:{me[1]}" if ":" in src else f"{src}:{me[1]}"))
    assert line["reason"] == "eof" and int(line["bytes_c2u"]) > len(msg)
