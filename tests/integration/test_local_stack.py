"""`make run`'s stack (deploy/local/up --detach / down) on real parts.

Starts the private PostgreSQL, Redis, fs blob store, tailpost-mailbox and
tailpost-edge under a temporary state dir on a free port range, sends a
message through the edge with swaks, reads it back over IMAPS through the
edge with curl, restarts the stack and finds the message again, then
purges.  Everything is stopped by deploy/local/down, by PID.

Outbound: without TAILPOST_SMARTHOST the stack routes everything by MX
(checked in the config, the banner and stack.env); with it (a private
Postfix smarthost with SASL AUTH and STARTTLS, started by the test, never
by `make run`) a message submitted through the edge leaves through it.
"""
import os
import random
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import tempfile

import pytest

import harness
import postfix_util
from mailbox_util import Certs

UP = harness.ROOT / "deploy" / "local" / "up"
DOWN = harness.ROOT / "deploy" / "local" / "down"


def _free_base():
    """A port base whose whole range (base+25 .. base+2993) looks free."""
    offsets = [25, 80, 100, 143, 465, 587, 993, 1025, 1080, 1143, 1465, 1587,
               1800, 1993, 2379, 2432, 2900]
    for _ in range(50):
        base = random.randrange(30000, 57000, 10)
        ok = True
        for off in offsets:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", base + off))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    pytest.fail("no free port range for the local stack")


def _env(path):
    out = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out[k] = v
    return out


@pytest.fixture
def stack():
    state = tempfile.mkdtemp(prefix="tailpost-local-", dir="/tmp")
    os.chmod(state, 0o755)  # PostgreSQL runs as nobody when we are root
    env = dict(os.environ,
               TAILPOST_LOCAL_DIR=state,
               TAILPOST_PORT_BASE=str(_free_base()),
               TAILPOST_BIN_DIR=str(harness.BUILD / "bin"),
               TAILPOST_NO_BUILD="1")

    def run(cmd, *args, timeout=180, extra_env=None):
        r = subprocess.run([str(cmd), *args], env=dict(env, **(extra_env or {})),
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=timeout)
        return r

    yield run, state
    run(DOWN, "--purge")
    shutil.rmtree(state, ignore_errors=True)


def _logs(state):
    out = []
    logdir = os.path.join(state, "log")
    if os.path.isdir(logdir):
        for name in sorted(os.listdir(logdir)):
            out.append(f"--- {name}\n" + harness.log_tail(os.path.join(logdir, name)))
    return "\n".join(out)


def test_local_stack_send_read_restart(stack):
    run, state = stack
    r = run(UP, "--detach")
    assert r.returncode == 0, r.stdout + r.stderr + _logs(state)
    assert "demo account:" in r.stdout
    env = _env(harness.pathlib.Path(state) / "stack.env")
    assert env["TAILPOST_MAILBOX_RUNNING"] == "1"
    # no smarthost given: everything non-local goes by MX, and the banner
    # says what that needs
    assert env["TAILPOST_OUTBOUND_ROUTE"] == "mx"
    assert "straight to their MX hosts on port 25" in r.stdout
    assert "TAILPOST_SMARTHOST=" in r.stdout
    cfg = (harness.pathlib.Path(state) / "mailbox.yaml").read_text()
    assert re.search(r'domains: \["\*"\], type: mx', cfg), cfg
    host, port = env["TAILPOST_EDGE_SMTP"].split(":")
    user, pw = env["TAILPOST_DEMO_USER"], env["TAILPOST_DEMO_PASSWORD"]

    s = subprocess.run(["swaks", "--server", f"{host}:{port}", "--to", user,
                        "--from", "someone@example.net", "--header", "Subject: local stack",
                        "--body", "hello through the edge"],
                       capture_output=True, text=True, timeout=60)
    assert s.returncode == 0, s.stdout + s.stderr + _logs(state)
    assert "250 2.0.0" in s.stdout

    imaps = env["TAILPOST_EDGE_IMAPS"]

    def fetch():
        return subprocess.run(["curl", "-sk", "--max-time", "20", "--user", f"{user}:{pw}",
                               f"imaps://{imaps}/INBOX;UID=1"],
                              capture_output=True, text=True, timeout=60)

    f = fetch()
    assert f.returncode == 0, f.stderr + _logs(state)
    assert "hello through the edge" in f.stdout
    # The edge's PROXY v2 header carried the client: Received: names it.
    assert "[127.0.0.1]" in f.stdout

    # The admin API answers with the token written to stack.env.
    a = subprocess.run(["curl", "-s", "-H", f"Authorization: Bearer {env['TAILPOST_ADMIN_TOKEN']}",
                        env["TAILPOST_MAILBOX_ADMIN"] + "/api/v1/accounts"],
                       capture_output=True, text=True, timeout=30)
    assert user in a.stdout, a.stdout

    # down / up keeps the data.
    d = run(DOWN)
    assert d.returncode == 0, d.stdout + d.stderr
    assert "stopped mailbox" in d.stdout and "stopped postgres" in d.stdout
    r = run(UP, "--detach")
    assert r.returncode == 0, r.stdout + r.stderr + _logs(state)
    f = fetch()
    assert "hello through the edge" in f.stdout, f.stdout + f.stderr + _logs(state)

    # --purge stops everything and removes the state.
    d = run(DOWN, "--purge")
    assert d.returncode == 0
    assert not os.path.exists(os.path.join(state, "pg"))


def test_local_stack_smarthost(stack, tmp_path):
    run, state = stack
    certs = Certs(tmp_path / "certs")
    cert, key = certs.issue("smarthost")
    pf = postfix_util.start_smarthost("local-smarthost", cert, key,
                                      users={"relayuser": "relay-pw-1"})
    try:
        # bad settings stop `up` before anything starts
        for bad, why in (({"TAILPOST_SMARTHOST": "no-port"}, "expected host:port"),
                         ({"TAILPOST_SMARTHOST": "h:x1"}, "the port must be a number"),
                         ({"TAILPOST_SMARTHOST": "h:25", "TAILPOST_SMARTHOST_TLS": "maybe"},
                          "expected implicit, starttls"),
                         ({"TAILPOST_SMARTHOST": "h:25", "TAILPOST_SMARTHOST_USER": "u"},
                          "TAILPOST_SMARTHOST_PASSWORD")):
            r = run(UP, "--detach", extra_env=bad)
            assert r.returncode != 0 and why in r.stderr, (bad, r.stdout, r.stderr)
            assert not os.path.exists(os.path.join(state, "pg")), "something was started"

        r = run(UP, "--detach", extra_env={
            "TAILPOST_SMARTHOST": f"127.0.0.1:{pf['port']}",
            "TAILPOST_SMARTHOST_USER": "relayuser",
            "TAILPOST_SMARTHOST_PASSWORD": "relay-pw-1",
            "TAILPOST_SMARTHOST_CA": str(certs.ca)})
        assert r.returncode == 0, r.stdout + r.stderr + _logs(state)
        assert f"relayed to 127.0.0.1:{pf['port']} (tls starttls, AUTH as relayuser)" in r.stdout
        env = _env(harness.pathlib.Path(state) / "stack.env")
        assert env["TAILPOST_OUTBOUND_ROUTE"] == "relay"
        # the password is not in the config, only in a private file
        cfg = (harness.pathlib.Path(state) / "mailbox.yaml").read_text()
        assert "relay-pw-1" not in cfg and "type: relay" in cfg
        secret = os.path.join(state, "secrets", "smarthost-password")
        assert os.stat(secret).st_mode & 0o077 == 0

        # submitted through the edge with AUTH (STARTTLS, self-signed)
        user, pw = env["TAILPOST_DEMO_USER"], env["TAILPOST_DEMO_PASSWORD"]
        host, port = env["TAILPOST_EDGE_SUBMISSION"].split(":")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        msgid = f"<local-{os.urandom(6).hex()}@example.test>"
        with smtplib.SMTP(host, int(port), timeout=30) as c:
            c.starttls(context=ctx)
            c.login(user, pw)
            c.sendmail(user, ["someone@remote.example"],
                       (f"From: {user}\r\nTo: someone@remote.example\r\n"
                        f"Subject: out through the smarthost\r\nMessage-ID: {msgid}\r\n"
                        "\r\nhello out there\r\n").encode())
        got = harness.wait_for(
            lambda: postfix_util.smarthost_messages(pf, "someone@remote.example"),
            timeout=60, what="the message in the smarthost's Maildir")
        assert msgid.encode() in got[0] and b"hello out there" in got[0]
        log = open(os.path.join(state, "log", "mailbox.log"), errors="replace").read()
        assert "route=smarthost" in log and "result=sent" in log, log[-3000:]
    finally:
        run(DOWN)
        postfix_util.stop_postfix(pf)
