"""The blob stores (mailbox/store/blob*.c) through store_check: the fs tree
and S3 against s3rver, signed requests proven by SigV4Proxy, retries with
injected errors, verify-after-write, start-up failure messages, and the
collector of unreferenced blobs."""
import hashlib
import http.client
import http.server
import os
import pathlib
import shutil
import subprocess
import threading
import time

import pytest

import harness
import store_util as su


def make_file(path, size, seed=1):
    data = bytes(((i * 2654435761 + seed) >> 7) & 0xFF for i in range(size))
    path.write_bytes(data)
    return data, hashlib.sha256(data).hexdigest()


# --- fs ---------------------------------------------------------------------


def test_fs_put_get_range_head_delete(tmp_path):
    root = tmp_path / "blobs"
    root.mkdir()
    cfg = su.stores_yaml(tmp_path / "s.yaml", fs=root)
    data, key = make_file(tmp_path / "m.eml", 300_001)
    assert su.run(cfg, "blob-check").stdout.startswith("ok fs ")
    out = su.run(cfg, "blob-put", tmp_path / "m.eml").stdout.split()
    assert out == [key, "300001"]
    stored = root / key[:2] / key[2:4] / key
    assert stored.read_bytes() == data
    assert oct(stored.stat().st_mode & 0o777) == "0o640"
    assert su.run(cfg, "blob-head", key).stdout.strip() == "300001"
    r = subprocess.run([str(harness.tool_path("store_check")), "-c", str(cfg), "blob-get", key],
                       capture_output=True, timeout=60)
    assert r.returncode == 0 and r.stdout == data
    r = subprocess.run([str(harness.tool_path("store_check")), "-c", str(cfg), "blob-get", key,
                        "1000", "77"], capture_output=True, timeout=60)
    assert r.stdout == data[1000:1077]
    # clipped at the end, empty past it
    r = subprocess.run([str(harness.tool_path("store_check")), "-c", str(cfg), "blob-get", key,
                        "299990", "100"], capture_output=True, timeout=60)
    assert r.stdout == data[299990:]
    r = subprocess.run([str(harness.tool_path("store_check")), "-c", str(cfg), "blob-get", key,
                        "400000"], capture_output=True, timeout=60)
    assert r.returncode == 0 and r.stdout == b""
    # a get larger than the caller's bound fails instead of allocating
    r = su.run(cfg, "blob-get", key, 0, 0, 1000, check=False)
    assert r.returncode == 1 and "exceeds the limit of 1000" in r.stderr
    assert su.run(cfg, "blob-delete", key).stdout.strip() == "deleted"
    assert not stored.exists()
    r = su.run(cfg, "blob-delete", key, check=False)
    assert r.returncode == 3 and r.stdout.strip() == "not-found"
    r = su.run(cfg, "blob-head", key, check=False)
    assert r.returncode == 3


def test_fs_refuses_wrong_content_and_leaves_nothing(tmp_path):
    root = tmp_path / "blobs"
    root.mkdir()
    cfg = su.stores_yaml(tmp_path / "s.yaml", fs=root)
    data, key = make_file(tmp_path / "m.eml", 5000)
    wrong = "0" * 64
    r = su.run(cfg, "blob-put", tmp_path / "m.eml", wrong, check=False)
    assert r.returncode == 1
    assert "content does not match key" in r.stderr
    assert f"blob store fs path {root}" in r.stderr
    r = su.run(cfg, "blob-put", tmp_path / "m.eml", key, 4999, check=False)
    assert r.returncode == 1 and "expected 4999" in r.stderr
    r = su.run(cfg, "blob-put", tmp_path / "m.eml", "NOTAKEY", check=False)
    assert r.returncode == 1 and "invalid blob key" in r.stderr
    files = [p for p in root.rglob("*") if p.is_file()]
    assert files == [], files


def test_fs_put_from_memory(tmp_path):
    """blob_put_mem (IMAP APPEND's small messages): the same file, the
    same checks, nothing left behind when refused."""
    root = tmp_path / "blobs"
    root.mkdir()
    cfg = su.stores_yaml(tmp_path / "s.yaml", fs=root)
    data, key = make_file(tmp_path / "m.eml", 70_001)
    assert su.run(cfg, "blob-put-mem", tmp_path / "m.eml").stdout.split() == [key, "70001"]
    stored = root / key[:2] / key[2:4] / key
    assert stored.read_bytes() == data
    assert oct(stored.stat().st_mode & 0o777) == "0o640"
    # again: already there, left alone
    assert su.run(cfg, "blob-put-mem", tmp_path / "m.eml").stdout.split() == [key, "70001"]
    assert su.run(cfg, "blob-delete", key).stdout.strip() == "deleted"
    r = su.run(cfg, "blob-put-mem", tmp_path / "m.eml", "0" * 64, check=False)
    assert r.returncode == 1 and "content does not match key" in r.stderr
    r = su.run(cfg, "blob-put-mem", tmp_path / "m.eml", key, 70_000, check=False)
    assert r.returncode == 1 and "content does not match key" in r.stderr
    files = [p for p in root.rglob("*") if p.is_file()]
    assert files == [], files


def test_fs_concurrent_puts_of_one_blob(tmp_path):
    root = tmp_path / "blobs"
    root.mkdir()
    cfg = su.stores_yaml(tmp_path / "s.yaml", fs=root)
    data, key = make_file(tmp_path / "m.eml", 200_000)
    assert su.run(cfg, "blob-put-many", tmp_path / "m.eml", 16).stdout.strip() == "ok 16"
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == [f"{key[:2]}/{key[2:4]}/{key}"]
    assert (root / files[0]).read_bytes() == data


def test_fs_never_shows_a_partial_blob(tmp_path):
    """While a large put runs, the final name either does not exist or holds
    every byte (the data goes to a temp name and is renamed after fsync)."""
    root = tmp_path / "blobs"
    root.mkdir()
    cfg = su.stores_yaml(tmp_path / "s.yaml", fs=root)
    size = 24 * 1024 * 1024
    with open(tmp_path / "big.eml", "wb") as f:
        f.write(os.urandom(size))
    key = hashlib.sha256((tmp_path / "big.eml").read_bytes()).hexdigest()
    final = root / key[:2] / key[2:4] / key
    seen = {"partial": [], "tmp": 0, "polls": 0}
    done = threading.Event()

    def poll():
        while not done.is_set():
            seen["polls"] += 1
            try:
                st = final.stat()
                if st.st_size != size:
                    seen["partial"].append(st.st_size)
            except FileNotFoundError:
                pass
            d = final.parent
            if d.exists() and any(p.name.startswith(".tmp-") for p in d.iterdir()):
                seen["tmp"] += 1

    t = threading.Thread(target=poll)
    t.start()
    try:
        su.run(cfg, "blob-put", tmp_path / "big.eml", timeout=120)
    finally:
        done.set()
        t.join()
    assert seen["partial"] == []
    assert seen["polls"] > 0
    assert final.stat().st_size == size
    assert not any(p.name.startswith(".tmp-") for p in final.parent.iterdir())


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace not installed")
def test_fs_put_syscall_order(tmp_path):
    """fsync(file) happens before rename, and the directory is fsynced after."""
    root = tmp_path / "blobs"
    root.mkdir()
    cfg = su.stores_yaml(tmp_path / "s.yaml", fs=root)
    make_file(tmp_path / "m.eml", 10_000)
    trace = tmp_path / "trace"
    r = subprocess.run(["strace", "-f", "-o", str(trace), "-e", "trace=fsync,rename,openat",
                        str(harness.tool_path("store_check")), "-c", str(cfg), "blob-put",
                        str(tmp_path / "m.eml")], capture_output=True, timeout=120,
                       # LeakSanitizer cannot run under ptrace
                       env=dict(os.environ, ASAN_OPTIONS="detect_leaks=0"))
    assert r.returncode == 0, r.stderr
    calls = [l for l in trace.read_text().split("\n") if "fsync(" in l or "rename(" in l]
    kinds = [("rename" if "rename(" in l else "fsync") for l in calls]
    assert kinds[:3] == ["fsync", "rename", "fsync"], calls


def test_fs_check_names_store_and_path(tmp_path):
    cfg = su.stores_yaml(tmp_path / "s.yaml", fs=tmp_path / "missing")
    r = su.run(cfg, "blob-check", check=False)
    assert r.returncode == 1
    assert su.last_line(r.stderr) == \
        f"blob store fs path {tmp_path}/missing: stat: No such file or directory"


# --- S3 ---------------------------------------------------------------------


def s3_get(cfg, key, *rng):
    r = subprocess.run([str(harness.tool_path("store_check")), "-c", str(cfg), "blob-get", key]
                       + [str(x) for x in rng], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.parametrize("prefix", ["", "mail/"])
def test_s3_put_verify_get_range_delete(tmp_path, s3, s3_bucket, prefix):
    cfg = su.stores_yaml(tmp_path / "s.yaml", s3=s3, bucket=s3_bucket, s3_prefix=prefix)
    data, key = make_file(tmp_path / "m.eml", 3 * 65536 + 123)
    assert su.run(cfg, "blob-check").stdout.startswith(f"ok s3 {s3.endpoint}")
    assert su.run(cfg, "blob-put", tmp_path / "m.eml").stdout.split()[0] == key
    # the object is where the layout says, read back with our own signer
    status, body, _ = harness.s3_request(s3.endpoint, s3.region, s3.access_key, s3.secret_key,
                                         "GET", f"/{s3_bucket}/{prefix}{key}")
    assert status == 200 and body == data
    assert su.run(cfg, "blob-head", key).stdout.strip() == str(len(data))
    assert s3_get(cfg, key) == data
    assert s3_get(cfg, key, 65530, 20) == data[65530:65550]
    assert s3_get(cfg, key, len(data) - 5) == data[-5:]
    assert s3_get(cfg, key, len(data) + 10) == b""
    assert su.run(cfg, "blob-delete", key).stdout.strip() == "deleted"
    r = su.run(cfg, "blob-head", key, check=False)
    assert r.returncode == 3
    r = su.run(cfg, "blob-get", key, check=False)
    assert r.returncode == 3


def test_s3_empty_blob(tmp_path, s3, s3_bucket):
    cfg = su.stores_yaml(tmp_path / "s.yaml", s3=s3, bucket=s3_bucket)
    (tmp_path / "empty").write_bytes(b"")
    key = hashlib.sha256(b"").hexdigest()
    assert su.run(cfg, "blob-put", tmp_path / "empty").stdout.split() == [key, "0"]
    assert su.run(cfg, "blob-head", key).stdout.strip() == "0"
    assert s3_get(cfg, key) == b""


def test_s3_signatures_verified_end_to_end(tmp_path, s3, s3_bucket, s3_signed):
    """Every request our client sends passes an independent SigV4 check."""
    cfg = su.stores_yaml(tmp_path / "s.yaml", s3=s3_signed, bucket=s3_bucket)
    before_acc = s3_signed.accepted
    before_rej = len(s3_signed.rejected)
    data, key = make_file(tmp_path / "m.eml", 70_000)
    su.run(cfg, "blob-check")
    su.run(cfg, "blob-put", tmp_path / "m.eml")
    assert s3_get(cfg, key, 5, 10) == data[5:15]
    assert s3_get(cfg, key) == data
    su.run(cfg, "blob-head", key)
    su.run(cfg, "blob-delete", key)
    assert s3_signed.rejected[before_rej:] == []
    # check, put, verify, get range, get, head, delete
    assert s3_signed.accepted - before_acc == 7
    # and a wrong secret is refused by the verifier, with the S3 error named
    bad = su.stores_yaml(tmp_path / "bad.yaml", s3=s3_signed, bucket=s3_bucket,
                         secret_key="not-the-secret")
    r = su.run(bad, "blob-put", tmp_path / "m.eml", check=False)
    assert r.returncode == 1
    assert "HTTP 403 SignatureDoesNotMatch" in r.stderr
    assert len(s3_signed.rejected) > before_rej


class FaultProxy:
    """Forwards to S3, answering the first `fail` requests of `method` with
    `status` itself, or rewriting a HEAD's Content-Length; records methods."""

    def __init__(self, upstream, method="PUT", fail=1, status=500, head_length=None):
        self.up = upstream
        self.method, self.fail, self.status, self.head_length = method, fail, status, head_length
        self.log = []
        self.lock = threading.Lock()
        proxy = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _handle(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                with proxy.lock:
                    proxy.log.append(self.command)
                    inject = self.command == proxy.method and proxy.fail > 0
                    if inject:
                        proxy.fail -= 1
                if inject:
                    msg = b"<Error><Code>InternalError</Code><Message>injected</Message></Error>"
                    self.send_response(proxy.status)
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(msg)
                    return
                c = http.client.HTTPConnection("127.0.0.1", proxy.up.port, timeout=30)
                try:
                    hdrs = {k: v for k, v in self.headers.items()
                            if k.lower() not in ("connection", "expect")}
                    c.request(self.command, self.path, body=body, headers=hdrs)
                    r = c.getresponse()
                    data = r.read()
                    self.send_response(r.status)
                    for k, v in r.getheaders():
                        if k.lower() not in ("connection", "transfer-encoding", "content-length",
                                             "keep-alive", "date", "server"):
                            self.send_header(k, v)
                    if self.command == "HEAD":
                        clen = r.getheader("Content-Length")
                        if proxy.head_length is not None and r.status == 200:
                            clen = str(proxy.head_length)
                        self.send_header("Content-Length", clen or "0")
                    else:
                        self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    c.close()

            do_GET = do_PUT = do_DELETE = do_HEAD = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def test_s3_put_retried_after_500(tmp_path, s3, s3_bucket):
    p = FaultProxy(s3, method="PUT", fail=2, status=503)
    try:
        cfg = su.stores_yaml(tmp_path / "s.yaml", s3_endpoint=p.endpoint, bucket=s3_bucket,
                             s3_retries=3)
        data, key = make_file(tmp_path / "m.eml", 10_000)
        su.run(cfg, "blob-put", tmp_path / "m.eml")
        assert p.log == ["PUT", "PUT", "PUT", "HEAD"]
        assert s3_get(cfg, key) == data
    finally:
        p.close()


def test_s3_put_from_memory_signed_and_retried(tmp_path, s3, s3_bucket, s3_signed):
    """blob_put_mem on S3: signed as a file put is, and a retried attempt
    sends the bytes again from the first."""
    cfg = su.stores_yaml(tmp_path / "s.yaml", s3=s3_signed, bucket=s3_bucket)
    before_rej = len(s3_signed.rejected)
    data, key = make_file(tmp_path / "m.eml", 3 * 65536 + 7)
    assert su.run(cfg, "blob-put-mem", tmp_path / "m.eml").stdout.split() == [key, str(len(data))]
    assert s3_get(cfg, key) == data
    assert s3_signed.rejected[before_rej:] == []
    p = FaultProxy(s3, method="PUT", fail=1, status=503)
    try:
        cfg = su.stores_yaml(tmp_path / "p.yaml", s3_endpoint=p.endpoint, bucket=s3_bucket,
                             s3_retries=2)
        data, key = make_file(tmp_path / "n.eml", 10_000)
        su.run(cfg, "blob-put-mem", tmp_path / "n.eml")
        assert p.log == ["PUT", "PUT", "HEAD"]
        assert s3_get(cfg, key) == data
    finally:
        p.close()


def test_s3_gives_up_after_retries(tmp_path, s3, s3_bucket):
    p = FaultProxy(s3, method="PUT", fail=10, status=500)
    try:
        cfg = su.stores_yaml(tmp_path / "s.yaml", s3_endpoint=p.endpoint, bucket=s3_bucket,
                             s3_retries=1)
        make_file(tmp_path / "m.eml", 1000)
        r = su.run(cfg, "blob-put", tmp_path / "m.eml", check=False)
        assert r.returncode == 1
        assert f"blob store s3 endpoint {p.endpoint}: PUT " in r.stderr
        assert "HTTP 500 InternalError" in r.stderr
        assert p.log == ["PUT", "PUT"]
    finally:
        p.close()


def test_s3_4xx_is_not_retried(tmp_path, s3, s3_bucket):
    p = FaultProxy(s3, method="GET", fail=5, status=400)
    try:
        cfg = su.stores_yaml(tmp_path / "s.yaml", s3_endpoint=p.endpoint, bucket=s3_bucket,
                             s3_retries=3)
        data, key = make_file(tmp_path / "m.eml", 1000)
        su.run(cfg, "blob-put", tmp_path / "m.eml")
        r = su.run(cfg, "blob-get", key, check=False)
        assert r.returncode == 1 and "HTTP 400" in r.stderr
        assert p.log.count("GET") == 1
    finally:
        p.close()


def test_s3_verify_after_write_catches_a_short_object(tmp_path, s3, s3_bucket):
    """A PUT the server acknowledged but whose HEAD shows another size is
    not durable: it is written again, and the put fails after its retries."""
    p = FaultProxy(s3, method="none", fail=0, head_length=3)
    try:
        cfg = su.stores_yaml(tmp_path / "s.yaml", s3_endpoint=p.endpoint, bucket=s3_bucket,
                             s3_retries=1)
        make_file(tmp_path / "m.eml", 1000)
        r = su.run(cfg, "blob-put", tmp_path / "m.eml", check=False)
        assert r.returncode == 1
        assert "stored size 3 differs from 1000" in r.stderr
        assert p.log == ["PUT", "HEAD", "PUT", "HEAD"]
    finally:
        p.close()


def test_s3_timeout_is_retried_then_reported(tmp_path, s3_bucket):
    """A server that accepts and never answers: timeout, retry, message."""
    import socket
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(16)
    try:
        ep = f"http://127.0.0.1:{ls.getsockname()[1]}"
        cfg = su.stores_yaml(tmp_path / "s.yaml", s3_endpoint=ep, bucket=s3_bucket,
                             s3_retries=1, s3_timeout="300ms")
        make_file(tmp_path / "m.eml", 100)
        t0 = time.monotonic()
        r = su.run(cfg, "blob-put", tmp_path / "m.eml", check=False)
        assert r.returncode == 1
        assert su.last_line(r.stderr).endswith(": timeout after 300 ms")
        assert time.monotonic() - t0 >= 0.6  # two attempts and a backoff
        assert "msg=\"blob store retry\"" in r.stderr
    finally:
        ls.close()


def test_s3_bad_host_message(tmp_path):
    cfg = su.stores_yaml(tmp_path / "s.yaml", s3_endpoint="http://garage:3900",
                         bucket="tailpost-mail")
    r = su.run(cfg, "blob-check", check=False)
    assert r.returncode == 1
    assert su.last_line(r.stderr) == \
        "blob store s3 endpoint http://garage:3900: could not resolve host 'garage'"


def test_s3_refused_and_missing_bucket_messages(tmp_path, s3):
    port = harness.free_port()
    cfg = su.stores_yaml(tmp_path / "s.yaml", s3_endpoint=f"http://127.0.0.1:{port}",
                         bucket="tailpost-mail")
    r = su.run(cfg, "blob-check", check=False)
    assert su.last_line(r.stderr) == (f"blob store s3 endpoint http://127.0.0.1:{port}: "
                                      f"could not connect to 127.0.0.1:{port}: Connection refused")
    cfg = su.stores_yaml(tmp_path / "s2.yaml", s3=s3, bucket="no-such-bucket")
    r = su.run(cfg, "blob-check", check=False)
    assert su.last_line(r.stderr) == \
        f"blob store s3 endpoint {s3.endpoint}: bucket does not exist (HTTP 404)"


# --- garbage collection -----------------------------------------------------


@pytest.mark.parametrize("kind", ["fs", "s3"])
def test_gc_removes_only_unreferenced_old_blobs(tmp_path, postgres, postgres_db, s3, kind):
    if kind == "fs":
        (tmp_path / "blobs").mkdir()
        cfg = su.stores_yaml(tmp_path / "s.yaml", pg=postgres_db, fs=tmp_path / "blobs")
    else:
        cfg = su.stores_yaml(tmp_path / "s.yaml", pg=postgres_db, s3=s3,
                             bucket=s3.create_bucket())
    su.run(cfg, "migrate")
    keep_data, keep = make_file(tmp_path / "keep.eml", 1000, seed=1)
    drop_data, drop = make_file(tmp_path / "drop.eml", 1000, seed=2)
    for f in ("keep.eml", "drop.eml"):
        su.run(cfg, "blob-put", tmp_path / f)
    su.run(cfg, "pg-query", "SELECT tp_blob_reserve($1, 1000)", keep)
    su.run(cfg, "pg-query", "SELECT tp_blob_reserve($1, 1000)", drop)
    su.run(cfg, "pg-query", "INSERT INTO accounts(login, password_hash) VALUES ('u', 'x')")
    mb = su.run(cfg, "pg-query", "SELECT tp_mailbox_create(1, 'INBOX', NULL)").stdout.strip()
    su.run(cfg, "pg-query",
           "SELECT * FROM tp_deliver(ARRAY[$1::bigint], $2, 1000, now(), '{}', NULL, NULL,"
           " NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'x')", mb, keep)
    # young blobs are left alone (a delivery may be between put and commit)
    assert su.run(cfg, "blob-gc", 3600, 100).stdout.strip() == "examined 0 deleted 0 failed 0"
    su.run(cfg, "pg-query", "UPDATE blobs SET last_used = now() - interval '2 hours'")
    assert su.run(cfg, "blob-gc", 3600, 100).stdout.strip() == "examined 1 deleted 1 failed 0"
    assert su.run(cfg, "blob-head", drop, check=False).returncode == 3
    assert su.run(cfg, "blob-head", keep).stdout.strip() == "1000"
    rows = su.run(cfg, "pg-query", "SELECT key FROM blobs ORDER BY key").stdout.split()
    assert rows == [keep]
    # once the message is gone, its blob goes too
    su.run(cfg, "pg-query", "DELETE FROM messages")
    su.run(cfg, "pg-query", "UPDATE blobs SET last_used = now() - interval '2 hours'")
    assert su.run(cfg, "blob-gc", 3600, 100).stdout.strip() == "examined 1 deleted 1 failed 0"
    assert su.run(cfg, "blob-head", keep, check=False).returncode == 3


@pytest.mark.parametrize("kind", ["fs", "s3"])
def test_store_freed_with_requests_in_flight(tmp_path, s3, kind):
    if kind == "fs":
        (tmp_path / "blobs").mkdir()
        cfg = su.stores_yaml(tmp_path / "s.yaml", fs=tmp_path / "blobs")
    else:
        cfg = su.stores_yaml(tmp_path / "s.yaml", s3=s3, bucket=s3.create_bucket())
    make_file(tmp_path / "m.eml", 2_000_000)
    # under ASan: no use after free, no leak, no late callback
    assert su.run(cfg, "blob-abort", tmp_path / "m.eml", 6).stdout.strip() == "ok"
