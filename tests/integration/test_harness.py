"""Self-tests of the integration harness.

Each store fixture is reached through our C toolchain (tests/tools/
store_selftest.c: libpq, hiredis, libcurl SigV4), and the harness's own
promises are checked: port-collision retry, log tails in start errors and
failure reports, teardown by PID on success, SIGTERM and SIGKILL of pytest.
"""
import hashlib
import os
import pathlib
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

import harness

HERE = pathlib.Path(__file__).resolve().parent


def run_tool(*args, env=None, timeout=60):
    exe = harness.tool_path("store_selftest")
    assert exe.exists(), f"{exe} not built: make BUILD={harness.BUILD.relative_to(harness.ROOT)} tools"
    full_env = harness._clean_env(env)
    return subprocess.run([str(exe)] + [str(a) for a in args], env=full_env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


def ok(r):
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r.stdout


def proc_uid(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    raise AssertionError(f"no Uid in /proc/{pid}/status")


# --- PostgreSQL


def test_postgres_query_through_libpq(postgres):
    assert ok(run_tool("pg", postgres.conninfo)) == "tailpost\ttailpost\t42\n"
    # The URL form carries the same credentials.
    out = ok(run_tool("pg", postgres.url, "SELECT current_user, inet_server_addr(), inet_server_port()"))
    assert out == f"tailpost\t127.0.0.1\t{postgres.port}\n"


def test_postgres_password_from_env(postgres):
    out = ok(run_tool("pg", postgres.conninfo_nopw, env=postgres.env()))
    assert out == "tailpost\ttailpost\t42\n"
    out = ok(run_tool("pg", postgres.url_nopw, env=postgres.env()))
    assert out == "tailpost\ttailpost\t42\n"

    # Host connections really require the password (scram-sha-256)...
    r = run_tool("pg", postgres.conninfo_nopw)
    assert r.returncode == 1 and "password" in r.stderr, r.stderr
    # ...and a wrong one is refused by the server.
    r = run_tool("pg", postgres.conninfo_nopw, env={"PGPASSWORD": postgres.password + "x"})
    assert r.returncode == 1 and "password authentication failed" in r.stderr, r.stderr


def test_postgres_settings(postgres):
    rows = postgres.psql("SELECT name, setting FROM pg_settings WHERE name IN "
                         "('listen_addresses', 'fsync', 'synchronous_commit', 'full_page_writes', "
                         "'password_encryption', 'shared_buffers') ORDER BY name")
    settings = dict(line.split("|") for line in rows.splitlines())
    assert settings == {
        "fsync": "on",
        "full_page_writes": "on",
        "listen_addresses": "127.0.0.1",
        "password_encryption": "scram-sha-256",
        "shared_buffers": "2048",  # 8 kB pages: 16 MB
        "synchronous_commit": "on",
    }
    methods = postgres.psql("SELECT DISTINCT auth_method FROM pg_hba_file_rules WHERE type = 'host'")
    assert methods.split() == ["scram-sha-256"]
    stored = postgres.psql(f"SELECT rolpassword FROM pg_authid WHERE rolname = '{postgres.user}'")
    assert stored.startswith("SCRAM-SHA-256$")
    # Only loopback: nothing listens on the port on another address.
    assert harness.owns_listener(postgres.pid, postgres.port, "127.0.0.1")
    if os.geteuid() == 0:
        assert proc_uid(postgres.pid) != 0


def test_postgres_fresh_database(postgres, postgres_db):
    assert postgres_db.name != postgres.dbname
    pg = lambda *a: ok(run_tool("pg", postgres_db.conninfo, *a))  # noqa: E731
    assert pg("SELECT current_database()") == postgres_db.name + "\n"
    assert pg("CREATE TABLE t (id int PRIMARY KEY, v text)") == "CREATE TABLE\n"
    assert pg("INSERT INTO t VALUES ($1, $2), ($3, NULL)", "1", "é\tx", "2") == "INSERT 0 2\n"
    assert pg("SELECT id, v FROM t ORDER BY id") == "1\té\tx\n2\t\\N\n"
    # The table exists only in this test's database.
    assert postgres.psql("SELECT to_regclass('public.t') IS NULL").strip() == "t"
    assert postgres.psql("SELECT to_regclass('public.t') IS NULL",
                         dbname=postgres_db.name).strip() == "f"


def test_postgres_crash_and_restart():
    """A private instance: committed data survives SIGKILL of every
    postgres process; close() leaves no process behind."""
    with harness.PostgresServer() as pg:
        ok(run_tool("pg", pg.conninfo, "CREATE TABLE c (v text)"))
        ok(run_tool("pg", pg.conninfo, "INSERT INTO c VALUES ($1)", "committed"))
        port, pid = pg.port, pg.pid
        kids = harness.child_pids(pid)
        assert kids, "postmaster has no children?"
        pg.crash()
        assert harness._pid_gone(pid) and all(harness._pid_gone(k) for k in kids)
        r = run_tool("pg", pg.conninfo, "SELECT 1")
        assert r.returncode == 1
        pg.start(port=port)
        assert ok(run_tool("pg", pg.conninfo, "SELECT v FROM c")) == "committed\n"
        assert "database system was interrupted" in pg.log_tail(200)
        pid, kids = pg.pid, harness.child_pids(pg.pid)
        d = pg.dir
    harness.wait_for(lambda: harness._pid_gone(pid) and all(harness._pid_gone(k) for k in kids),
                     timeout=10, what="postgres processes to exit")
    assert not d.exists()


# --- Redis


def test_redis_ping_through_hiredis(redis):
    assert ok(run_tool("redis", redis.host, redis.port)) == "PONG\n"
    assert redis.url == f"redis://127.0.0.1:{redis.port}/0"


def test_redis_roundtrip_and_config(redis_clean):
    r = redis_clean
    assert ok(run_tool("redis", r.host, r.port, "SET", "k:1", "v a l")) == "OK\n"
    assert r.command("GET", "k:1") == b"v a l"
    assert ok(run_tool("redis", r.host, r.port, "INCRBY", "n", "41")) == "41\n"
    assert ok(run_tool("redis", r.host, r.port, "GET", "missing")) == "(nil)\n"
    assert r.command("CONFIG", "GET", "save") == [b"save", b""]
    assert r.command("CONFIG", "GET", "appendonly") == [b"appendonly", b"no"]
    assert r.command("CONFIG", "GET", "bind") == [b"bind", b"127.0.0.1"]
    bad = run_tool("redis", r.host, r.port, "NOSUCHCOMMAND")
    assert bad.returncode == 1 and "unknown command" in bad.stderr


# --- S3


def parse_s3_output(out):
    lines = out.splitlines()
    assert len(lines) == 4, out
    return lines


def test_s3_roundtrip_through_libcurl(s3):
    bucket = s3.new_bucket_name("selftest")
    lines = parse_s3_output(ok(run_tool("s3", s3.endpoint, s3.region, bucket, s3.access_key,
                                        s3.secret_key)))
    assert lines[0] == f"bucket {bucket} created"
    put = lines[1].split()
    assert put[0] == "put" and put[2] == "196731" and put[3] == "bytes" and put[4] == "md5"
    key, md5 = put[1], put[5]
    assert put[6:] == ["etag", f'"{md5}"']  # single-part ETag is the MD5
    assert lines[2] == "get 196731 bytes equal"
    assert lines[3] == "head content-length 196731"
    # An independent client sees the same object.
    status, body, _ = harness.s3_request(s3.endpoint, s3.region, s3.access_key, s3.secret_key,
                                         "GET", f"/{bucket}/{key}")
    assert status == 200 and len(body) == 196731 and hashlib.md5(body).hexdigest() == md5
    # A second run finds the bucket it owns.
    lines = parse_s3_output(ok(run_tool("s3", s3.endpoint, s3.region, bucket, s3.access_key,
                                        s3.secret_key)))
    assert lines[0].startswith(f"bucket {bucket} exists")
    # An unknown access key is refused.
    r = run_tool("s3", s3.endpoint, s3.region, s3.new_bucket_name(), "NOBODY", "x")
    assert r.returncode == 1 and "HTTP 403" in r.stderr, r.stderr


def test_s3_bucket_fixture(s3, s3_bucket):
    status, body, _ = harness.s3_request(s3.endpoint, s3.region, s3.access_key, s3.secret_key,
                                         "GET", "/")
    assert status == 200 and f"<Name>{s3_bucket}</Name>".encode() in body


def test_s3_signatures_verified_through_proxy(s3_signed):
    p = s3_signed
    before = p.accepted
    bucket = "signed-" + os.urandom(4).hex()
    lines = parse_s3_output(ok(run_tool("s3", p.endpoint, p.region, bucket, p.access_key,
                                        p.secret_key)))
    assert lines[2:] == ["get 196731 bytes equal", "head content-length 196731"]
    assert p.rejected == [] and p.accepted - before == 4
    # A wrong secret is caught by the proxy (s3rver alone would accept it).
    r = run_tool("s3", p.endpoint, p.region, bucket + "x", p.access_key, "wrong-secret")
    assert r.returncode == 1 and "HTTP 403" in r.stderr and "SignatureDoesNotMatch" in r.stderr
    assert len(p.rejected) == 1 and p.rejected[0][0] == "PUT"
    # And so is a signature for another region.
    p.rejected.clear()
    r = run_tool("s3", p.endpoint, "eu-west-1", bucket + "y", p.access_key, p.secret_key)
    assert r.returncode == 1 and "credential scope" in p.rejected[0][2]
    p.rejected.clear()


def test_sigv4_verifier_agrees_with_botocore():
    """The proxy's verifier must accept what botocore signs and nothing else."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    body = b"hello\x00world"
    # Paths as botocore puts them on the wire (keys already URI-encoded).
    for path in ["/bucket/key", "/bucket/a%20b/c~d%2Be%3D", "/bucket?list-type=2&prefix=x%2Fy",
                 "/b?uploads"]:
        req = AWSRequest(method="PUT", url="http://127.0.0.1:9000" + path, data=body,
                         headers={"x-amz-content-sha256": hashlib.sha256(body).hexdigest(),
                                  "Content-Type": "application/octet-stream"})
        S3SigV4Auth(Credentials("AK", "SECRET"), "s3", "us-east-1").add_auth(req)
        hdrs = {k.lower(): v for k, v in req.headers.items()}
        hdrs["host"] = "127.0.0.1:9000"
        assert harness.sigv4_verify("PUT", path, hdrs, body, "SECRET", "us-east-1") is None, path
        assert harness.sigv4_verify("PUT", path, hdrs, body, "SECRET2", "us-east-1") is not None
        assert harness.sigv4_verify("PUT", path, hdrs, body + b"!", "SECRET", "us-east-1") is not None
        assert harness.sigv4_verify("GET", path, hdrs, body, "SECRET", "us-east-1") is not None


# --- harness robustness


@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_owns_listener(family, host):
    with socket.socket(family) as s:
        s.bind((host, 0))
        port = s.getsockname()[1]
        assert not harness.owns_listener(os.getpid(), port, host)  # bound, not listening
        s.listen()
        assert harness.owns_listener(os.getpid(), port, host)
        assert not harness.owns_listener(os.getppid(), port, host)
    assert not harness.owns_listener(os.getpid(), port, host)


@pytest.mark.parametrize("cls", [harness.RedisServer, harness.S3Server, harness.PostgresServer])
def test_port_collision_retries_on_a_new_port(monkeypatch, cls):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        ports = iter([taken])
        real = harness.free_port
        monkeypatch.setattr(harness, "free_port", lambda *a: next(ports, None) or real(*a))
        with cls() as srv:
            assert srv.port != taken
            assert harness.owns_listener(srv.pid, srv.port)
            assert not harness.owns_listener(srv.pid, taken)
            log = srv.log_tail(400)
            assert f"starting {srv.name} on port {taken}" in log
            assert f"starting {srv.name} on port {srv.port}" in log


def test_start_failure_shows_log_tail():
    class BadRedis(harness.RedisServer):
        start_timeout = 10.0

        def _argv(self, port):
            return super()._argv(port) + ["--no-such-directive", "1"]

    srv = BadRedis()
    with pytest.raises(harness.ServiceError) as e:
        srv.start()
    msg = str(e.value)
    assert "exited with status" in msg and "no-such-directive" in msg, msg
    assert not srv.running() and srv.pid is not None and harness._pid_gone(srv.pid)
    srv.close()
    assert not srv.dir.exists()


def test_close_stops_by_pid_and_removes_dir():
    r = harness.RedisServer().start()
    pid, d = r.pid, r.dir
    assert not harness._pid_gone(pid)
    r.close()
    assert harness._pid_gone(pid) and not d.exists()
    assert not any(k.startswith("redis#") and v.parent == d for k, v in harness.LIVE_LOGS.items())


INNER_CONFTEST = """
import importlib.util, sys
sys.path.insert(0, {here!r})
spec = importlib.util.spec_from_file_location("tailpost_it_conftest", {conftest!r})
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
globals().update({{k: v for k, v in vars(mod).items() if not k.startswith("_")}})
"""


def inner_pytest(tmp_path, test_src, **kw):
    (tmp_path / "conftest.py").write_text(INNER_CONFTEST.format(here=str(HERE),
                                                                conftest=str(HERE / "conftest.py")))
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(test_src))
    # Service dirs under tmp_path: a SIGKILLed pytest cannot remove its own.
    (tmp_path / "svc").mkdir()
    kw.setdefault("env", dict(os.environ, TAILPOST_TMP=str(tmp_path / "svc")))
    return subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "test_inner.py"], cwd=tmp_path, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, **kw)


def test_failure_report_includes_service_logs(tmp_path):
    p = inner_pytest(tmp_path, """
        def test_a_fails(redis):
            open("pid", "w").write(str(redis.pid))
            assert redis.command("PING") == "nope"

        def test_b_fails(redis):
            assert False
    """)
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 1, out
    # test_a: redis started during its setup, so its whole log is shown;
    # test_b: only what the log got since test_b started (nothing).
    a, b = out.split("test_a_fails", 1)[1].split("test_b_fails", 1)
    assert "redis#" in a and "log since test start" in a and "Ready to accept connections" in a, out
    assert "redis#" in b and "log since test start" in b and "(nothing new)" in b, out
    assert "Ready to accept connections" not in b.split("short test summary")[0], out
    assert harness._pid_gone(int((tmp_path / "pid").read_text()))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_pytest_killed_leaves_nothing_running(tmp_path, sig):
    p = inner_pytest(tmp_path, """
        import os
        import time

        def test_sleeps(redis):
            open("pid.tmp", "w").write(str(redis.pid))
            os.rename("pid.tmp", "pid")
            time.sleep(60)
    """)
    try:
        try:
            harness.wait_for(lambda: (tmp_path / "pid").exists() or p.poll() is not None,
                             timeout=30, what="inner redis")
        finally:
            if not (tmp_path / "pid").exists():
                harness.stop(p, sig=signal.SIGKILL)
                pytest.fail(f"inner pytest did not start redis:\n{p.communicate()[0]}")
        pid = int((tmp_path / "pid").read_text())
        assert not harness._pid_gone(pid)
        p.send_signal(sig)
        p.communicate(timeout=30)
        # SIGINT (Ctrl-C), SIGTERM: fixture teardown; SIGKILL: the parent-death signal.
        harness.wait_for(lambda: harness._pid_gone(pid), timeout=10, what=f"redis {pid} to exit")
    finally:
        harness.stop(p, sig=signal.SIGKILL)
