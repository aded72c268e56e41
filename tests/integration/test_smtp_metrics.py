"""SMTP counters in /metrics (mailbox/server/metrics.c, fed by
mailbox/smtp/server.c and the connection layer), read with curl after
real swaks sessions: sessions per listener, messages and bytes,
recipients accepted and refused by reason, replies by class, AUTH
outcomes, TLS handshakes and PROXY header errors.
"""
import re
import shutil
import subprocess

import pytest

from smtp_util import EDGE_IP, Raw, SmtpMailbox

SWAKS = shutil.which("swaks") or "/usr/bin/swaks"
CURL = shutil.which("curl") or "/usr/bin/curl"


@pytest.fixture
def sm(tmp_path, postgres, postgres_db):
    box = SmtpMailbox(tmp_path, postgres, postgres_db, smtp_extra="max_message_size: 64KB")
    box.setup_directory()
    box.start()
    yield box
    assert box.stop() == 0, box.mb.text()[-3000:]


def swaks(*args):
    r = subprocess.run([SWAKS, "--helo", "client.example", "--timeout", "20"] + list(args),
                       capture_output=True, text=True, timeout=60)
    return r


def scrape(sm):
    r = subprocess.run([CURL, "-sS", "--max-time", "10",
                        f"http://127.0.0.1:{sm.ports['admin']}/metrics"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    out = {}
    for line in r.stdout.splitlines():
        if line.startswith("#") or not line:
            continue
        m = re.fullmatch(r"(\S+) (\S+)", line)
        assert m, line
        out[m.group(1)] = float(m.group(2))
    return out, r.stdout


def test_smtp_counters_after_swaks_runs(sm):
    before, _ = scrape(sm)
    mx = sm.ports["mx"]
    # 1: a message to two local recipients over STARTTLS
    r = swaks("--server", "127.0.0.1", "--port", str(mx), "-tls", "--from",
              "x@remote.example", "--to", "alice@example.org,bob@example.org",
              "--header", "Subject: metrics one")
    assert r.returncode == 0, r.stdout + r.stderr
    # 2: unknown and non-local recipients refused, then no valid recipient
    r = swaks("--server", "127.0.0.1", "--port", str(mx), "--from", "x@remote.example",
              "--to", "nobody@example.org,someone@elsewhere.example")
    assert r.returncode != 0
    assert "550 5.1.1" in r.stdout and "554 5.7.1" in r.stdout, r.stdout
    # 3: too big (64KB limit)
    r = swaks("--server", "127.0.0.1", "--port", str(mx), "--from", "x@remote.example",
              "--to", "alice@example.org", "--body", "y" * 100_000)
    assert r.returncode != 0 and "552 5.3.4" in r.stdout, r.stdout
    # 4: AUTH failure, then success, on the plaintext submission listener
    sub = sm.ports["subplain"]
    r = swaks("--server", "127.0.0.1", "--port", str(sub), "--auth", "PLAIN",
              "--auth-user", "alice@example.org", "--auth-password", "wrong",
              "--from", "alice@example.org", "--to", "bob@example.org")
    assert r.returncode != 0 and "535 5.7.8" in r.stdout, r.stdout
    r = swaks("--server", "127.0.0.1", "--port", str(sub), "--auth", "LOGIN",
              "--auth-user", "alice@example.org", "--auth-password", "alice-pw",
              "--from", "alice@example.org", "--to", "bob@example.org",
              "--header", "Subject: metrics two")
    assert r.returncode == 0, r.stdout + r.stderr
    # 5: a trusted PROXY peer sending garbage instead of a header
    c = Raw(sm.ports["mxp"], source=(EDGE_IP, 0))
    c.send(b"HELO not-a-proxy-header\r\n")
    assert c.closed()
    c.close()

    sm.wait_stored(3)
    after, text = scrape(sm)

    def d(name):
        return after.get(name, 0.0) - before.get(name, 0.0)

    L = 'listener="mx"'
    assert d(f"tailpost_mailbox_smtp_sessions_total{{{L}}}") == 3
    assert d('tailpost_mailbox_smtp_sessions_total{listener="subplain"}') == 2
    assert d(f'tailpost_mailbox_smtp_messages_total{{{L},result="accepted"}}') == 1
    assert d(f'tailpost_mailbox_smtp_messages_total{{{L},result="too_big"}}') == 1
    assert d(f'tailpost_mailbox_smtp_messages_total{{{L},result="store_failed"}}') == 0
    assert d('tailpost_mailbox_smtp_messages_total{listener="subplain",result="accepted"}') == 1
    stored = sm.query("SELECT DISTINCT m.blob_key, m.size FROM messages m "
                      "WHERE m.hdr_subject = 'metrics one'")
    assert len(stored) == 1
    assert d(f"tailpost_mailbox_smtp_message_bytes_total{{{L}}}") == stored[0]["size"]
    # alice, bob in run 1; alice in run 3 (refused later, at DATA)
    assert d(f"tailpost_mailbox_smtp_recipients_accepted_total{{{L}}}") == 3
    assert d(f'tailpost_mailbox_smtp_recipients_refused_total{{{L},reason="unknown"}}') == 1
    assert d(f'tailpost_mailbox_smtp_recipients_refused_total{{{L},reason="relay_denied"}}') \
        == 1
    assert d(f'tailpost_mailbox_smtp_recipients_refused_total{{{L},reason="tempfail"}}') == 0
    # 5xx: 550 and 554 at RCPT (swaks then QUITs), 552 after the data;
    # no 4xx on a healthy store
    assert d(f'tailpost_mailbox_smtp_replies_total{{{L},class="5xx"}}') == 3
    assert d(f'tailpost_mailbox_smtp_replies_total{{{L},class="4xx"}}') == 0
    assert d(f'tailpost_mailbox_smtp_replies_total{{{L},class="2xx"}}') > 10
    assert d('tailpost_mailbox_smtp_auth_total{listener="subplain",result="failure"}') == 1
    assert d('tailpost_mailbox_smtp_auth_total{listener="subplain",result="success"}') == 1
    assert d('tailpost_mailbox_auth_failures_total{listener="subplain"}') == 1
    assert d(f"tailpost_mailbox_tls_handshakes_total{{{L}}}") == 1
    assert d('tailpost_mailbox_proxy_header_errors_total{listener="mxp",reason="signature"}') \
        + d('tailpost_mailbox_proxy_header_errors_total{listener="mxp",reason="v1_syntax"}') == 1
    # the admin listener is not SMTP: no SMTP series for it
    assert 'tailpost_mailbox_smtp_sessions_total{listener="admin"}' not in text
    assert "# TYPE tailpost_mailbox_smtp_replies_total counter" in text


def test_smtp_tempfail_replies_are_counted(sm):
    """A store failure at DATA answers 451 and counts as store_failed/4xx."""
    before, _ = scrape(sm)
    # the spool dir vanishes: the message cannot be spooled
    import shutil as sh
    sh.rmtree(sm.spool)
    sm.spool.write_text("not a directory")
    c = Raw(sm.ports["mx"])
    assert c.reply()[0] == 220
    assert c.cmd("EHLO raw.example")[0] == 250
    assert c.cmd("MAIL FROM:<x@remote.example>")[0] == 250
    assert c.cmd("RCPT TO:<alice@example.org>")[0] == 250
    code, _ = c.cmd("DATA")
    assert code == 451
    c.cmd("QUIT")
    c.close()
    sm.spool.unlink()
    sm.spool.mkdir()
    after, _ = scrape(sm)
    L = 'listener="mx"'
    assert after[f'tailpost_mailbox_smtp_messages_total{{{L},result="store_failed"}}'] - \
        before[f'tailpost_mailbox_smtp_messages_total{{{L},result="store_failed"}}'] == 1
    assert after[f'tailpost_mailbox_smtp_replies_total{{{L},class="4xx"}}'] - \
        before[f'tailpost_mailbox_smtp_replies_total{{{L},class="4xx"}}'] == 1
