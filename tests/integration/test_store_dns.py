"""Store host names are resolved off the event loop (mailbox/store/resolve.h):
libpq and hiredis would call a blocking getaddrinfo on the loop, so the
Postgres pool and the Redis store look names up on a worker thread and
connect by address.

- A host name ("localhost") for Postgres and Redis works end to end.
- With a DNS that takes 2.5 s per lookup (an LD_PRELOAD getaddrinfo that
  sleeps for the name "slow.test"), the daemon keeps answering /healthz
  within a fraction of that while the pool's lookup runs, and the stores
  then work.
"""
import re
import subprocess
import time

import pytest

import harness
from mailbox_util import http
from smtp_util import SmtpMailbox

SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <string.h>
#include <unistd.h>

typedef int gai_fn(const char *, const char *, const struct addrinfo *, struct addrinfo **);

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
	gai_fn *real = (gai_fn *)dlsym(RTLD_NEXT, "getaddrinfo");

	if (node != NULL && strcmp(node, "slow.test") == 0) {
		usleep(2500000);
		node = "127.0.0.1";
	}
	return real(node, service, hints, res);
}
"""


def rename_hosts(sm, name):
    text = sm.mb.path.read_text()
    n = text.count("127.0.0.1:")
    pg_port, redis_port = sm.db.port, sm.mb.redis.port
    text = text.replace(f"@127.0.0.1:{pg_port}/", f"@{name}:{pg_port}/")
    text = text.replace(f"redis://127.0.0.1:{redis_port}/", f"redis://{name}:{redis_port}/")
    assert text.count("127.0.0.1:") == n - 2, text
    sm.mb.path.write_text(text)


def deliver(sm, subject):
    import smtplib
    with smtplib.SMTP("127.0.0.1", sm.ports["mx"], timeout=20) as s:
        s.sendmail("x@remote.example", ["alice@example.org"],
                   f"Subject: {subject}\r\n\r\nhello\r\n".encode())
    harness.wait_for(lambda: sm.query(f"SELECT 1 FROM messages WHERE hdr_subject = '{subject}'")
                     or None, timeout=20, what=f"message {subject}")


@pytest.fixture
def sm(tmp_path, postgres, postgres_db, redis):
    box = SmtpMailbox(tmp_path, postgres, postgres_db, redis=redis)
    box.setup_directory()
    yield box
    box.stop()


def test_host_names_for_postgres_and_redis(sm):
    rename_hosts(sm, "localhost")
    sm.start()
    st, _, body = http(sm.ports["admin"], "GET", "/readyz")
    assert st == 200, body
    deliver(sm, "dns localhost")
    lines = sm.mb.lines()
    pg = [d for d in lines if d.get("msg") == "data store host names resolved"]
    rd = [d for d in lines if d.get("msg") == "memory store host name resolved"]
    assert pg and pg[0]["hosts"].split(",")[0] == "localhost", pg
    assert re.fullmatch(r"[0-9a-f.:,]+", pg[0]["addrs"]), pg
    assert rd and rd[0]["host"] == "localhost", rd


def test_slow_dns_does_not_stall_the_loop(sm, tmp_path):
    shim = tmp_path / "slowdns.so"
    src = tmp_path / "slowdns.c"
    src.write_text(SHIM)
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", str(shim), str(src), "-ldl"],
                   check=True, timeout=60)
    rename_hosts(sm, "slow.test")
    # connect timeouts bound the lookups too: give them room for 2.5 s
    text = sm.mb.path.read_text()
    assert "connect_timeout: 2s" in text and "timeout: 2s }" in text
    sm.mb.path.write_text(text.replace("connect_timeout: 2s", "connect_timeout: 6s")
                          .replace("timeout: 2s }", "timeout: 6s }"))
    env = {"LD_PRELOAD": str(shim),
           "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:verify_asan_link_order=0"}
    n = len([d for d in sm.mb.lines() if d.get("msg") == "ready"])
    sm.mb.start(wait=False, env=env)
    # start-up checks resolve synchronously (before serving): three slow lookups
    sm.mb.wait_log(lambda d: d.get("msg") == "ready", count=n + 1, timeout=60, what="ready")
    t_ready = time.monotonic()
    worst = 0.0
    polls = 0
    # the pool's own lookup (2.5 s) runs now, on the resolver thread
    while time.monotonic() - t_ready < 2.0:
        t0 = time.monotonic()
        st, _, _ = http(sm.ports["admin"], "GET", "/healthz", timeout=10)
        worst = max(worst, time.monotonic() - t0)
        assert st == 200
        polls += 1
        time.sleep(0.05)
    assert polls >= 10
    assert worst < 0.5, f"/healthz took {worst:.2f}s while a lookup was running"
    sm.mb.wait_log(lambda d: d.get("msg") == "data store host names resolved" and
                   d.get("hosts") == "slow.test", timeout=20, what="pg lookup")
    deliver(sm, "dns slow")
    st, _, body = http(sm.ports["admin"], "GET", "/readyz")
    assert st == 200, body
