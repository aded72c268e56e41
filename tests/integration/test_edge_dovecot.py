"""tailpost-edge in front of a real Dovecot IMAP listener with `haproxy = yes`.

Dovecot (the Debian package) runs as a private instance: `dovecot -F -c
FILE` with its own base_dir, state_dir and a passwd-file user database in
a temp dir, one imap-login listener on a free loopback port that requires
the PROXY header from `haproxy_trusted_networks`, logging to stderr.  It is
stopped by PID; the system's Dovecot is never touched.

Through the edge, an IMAP LOGIN + SELECT + LOGOUT works, and Dovecot logs
the login with the real client's address and port (rip=, rport=) -- the
client binds 127.0.0.2 (or uses ::1) while the edge reaches Dovecot from
127.0.0.1, so only a correct header can produce that line.
"""
import imaplib
import json
import os
import pwd
import shutil
import socket
import tempfile

import pytest

import harness
from edge_util import Edge, connect, free_port, recv_until

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"


@pytest.fixture(scope="module")
def dovecot():
    if not os.access(DOVECOT, os.X_OK):
        pytest.fail("dovecot not installed: install dovecot-core and dovecot-imapd (deploy/deps.sh --test)")
    if os.geteuid() != 0:
        pytest.fail("a private Dovecot instance needs root here (its login processes switch users)")
    for u in ("dovecot", "dovenull"):
        try:
            pwd.getpwnam(u)
        except KeyError:
            pytest.fail(f"user {u} missing: the dovecot-core package creates it")
    base = tempfile.mkdtemp(prefix="tailpost-dovecot-", dir=harness._tmp_base())
    os.chmod(base, 0o755)
    for d in ("run", "state", "home"):
        os.mkdir(os.path.join(base, d), 0o755)
    nobody = pwd.getpwnam("nobody")
    os.chown(os.path.join(base, "home"), nobody.pw_uid, nobody.pw_gid)
    with open(os.path.join(base, "passwd"), "w") as f:
        f.write("alice:{PLAIN}wonderland::::::\n")
    port = free_port()
    conf = os.path.join(base, "dovecot.conf")
    with open(conf, "w") as f:
        f.write(f"""\
base_dir = {base}/run
state_dir = {base}/state
instance_name = tailpost-test-{port}
log_path = /dev/stderr
info_log_path = /dev/stderr
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
haproxy_trusted_networks = 127.0.0.0/8 ::1
haproxy_timeout = 3s
login_log_format_elements = user=<%u> method=%m rip=%r rport=%{{rport}} lip=%l lport=%{{lport}} %c
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {base}/passwd
}}
userdb {{
  driver = static
  args = uid={nobody.pw_uid} gid={nobody.pw_gid} home={base}/home/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
    haproxy = yes
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
""")
    log = os.path.join(base, "dovecot.log")
    proc = harness.spawn([DOVECOT, "-F", "-c", conf], log, cwd=base)
    harness.watch_log("dovecot", log)
    try:
        harness.wait_port("127.0.0.1", port, timeout=20, proc=proc)
    except BaseException:
        harness.stop(proc)
        raise
    yield {"port": port, "log": log, "proc": proc}
    harness.stop(proc)
    harness.unwatch_log("dovecot")
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def edge(dovecot, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("edge_dovecot")
    p4, p6 = free_port(), free_port("::1")
    cfg = {"workers": 2, "listeners": [{
        "name": "imap", "bind": [f"127.0.0.1:{p4}", f"[::1]:{p6}"],
        "upstreams": [f"127.0.0.1:{dovecot['port']}"], "idle_timeout": "35m",
        "tlv_unique_id": True,
        "health_check": {"interval": "2s", "timeout": "1s"}}]}
    e = Edge(tmp, json.dumps(cfg))
    yield e, p4, p6
    e.stop()
    assert e.asan_clean(), e.text()[-4000:]


def _log(dovecot):
    with open(dovecot["log"], errors="replace") as f:
        return f.read()


class _IMAP(imaplib.IMAP4):
    """imaplib with a chosen source address."""

    def __init__(self, host, port, src):
        self._src = src
        super().__init__(host, port, timeout=10)

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self._src, 0))


@pytest.mark.parametrize("host,src", [("127.0.0.1", "127.0.0.2"), ("::1", "::1")],
                         ids=["ipv4", "ipv6"])
def test_imap_login_through_edge(dovecot, edge, host, src):
    e, p4, p6 = edge
    port = p4 if host == "127.0.0.1" else p6
    m = _IMAP(host, port, src)
    assert b"Dovecot" in m.welcome  # the greeting came first, unprompted
    me = m.sock.getsockname()[:2]
    typ, _ = m.login("alice", "wonderland")
    assert typ == "OK"
    typ, data = m.select("INBOX")
    assert typ == "OK", data
    m.logout()
    line = harness.wait_for(
        lambda: next((l for l in _log(dovecot).splitlines()
                      if "Login: user=<alice>" in l and f"rport={me[1]}," in l), None),
        timeout=10, what="dovecot login line")
    assert f"rip={src}," in line, line
    assert f"lip={host}, lport={port}" in line, line
    e.wait_line("conn.close", reason="eof")


def test_greeting_without_client_bytes(dovecot, edge):
    e, p4, _ = edge
    c = connect("127.0.0.1", p4, src="127.0.0.4")
    assert recv_until(c, b"\r\n").startswith(b"* OK")
    c.sendall(b"a1 LOGOUT\r\n")
    assert b"a1 OK" in recv_until(c, b"a1 OK")
    c.close()
