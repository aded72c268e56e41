"""How an S3 put is confirmed (stores.blob.s3.verify, mailbox/store/blob_s3.c).

head (default): a HEAD after the PUT must show the stored size
(tests/integration/test_store_blob.py covers it, with injected faults).
etag: the PUT's answer must carry an ETag equal to the MD5 of the bytes
sent, so no second request is made; a wrong ETag means the object is
written again (and the put fails once the retries are used up); an ETag
that is not a plain MD5 (SSE-KMS, multipart objects) falls back to the HEAD.

A small proxy in front of s3rver records the methods and can rewrite the
ETag of PUT answers.
"""
import hashlib
import http.client
import http.server
import threading

import pytest

import store_util as su
from test_store_blob import make_file, s3_get


class EtagProxy:
    def __init__(self, upstream, etag=None):
        self.up, self.etag, self.log = upstream, etag, []
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
                c = http.client.HTTPConnection("127.0.0.1", proxy.up.port, timeout=30)
                try:
                    hdrs = {k: v for k, v in self.headers.items()
                            if k.lower() not in ("connection", "expect")}
                    c.request(self.command, self.path, body=body, headers=hdrs)
                    r = c.getresponse()
                    data = r.read()
                    self.send_response(r.status)
                    for k, v in r.getheaders():
                        if k.lower() in ("connection", "transfer-encoding", "content-length",
                                         "keep-alive", "date", "server"):
                            continue
                        if k.lower() == "etag" and self.command == "PUT" and \
                                proxy.etag is not None:
                            v = proxy.etag
                        self.send_header(k, v)
                    clen = r.getheader("Content-Length") if self.command == "HEAD" else None
                    self.send_header("Content-Length", clen or str(len(data)))
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


def cfg_with(tmp_path, endpoint, bucket, verify, retries=1):
    cfg = su.stores_yaml(tmp_path / "s.yaml", s3_endpoint=endpoint, bucket=bucket,
                         s3_retries=retries)
    text = cfg.read_text()
    assert "region: us-east-1" in text
    cfg.write_text(text.replace("region: us-east-1", f"region: us-east-1, verify: {verify}"))
    return cfg


@pytest.fixture
def proxy(request, s3):
    p = EtagProxy(s3, etag=getattr(request, "param", None))
    yield p
    p.close()


def test_etag_verify_needs_no_head(tmp_path, s3_bucket, proxy):
    cfg = cfg_with(tmp_path, proxy.endpoint, s3_bucket, "etag")
    data, key = make_file(tmp_path / "m.eml", 3 * 65536 + 7)
    assert su.run(cfg, "blob-put", tmp_path / "m.eml").stdout.split()[0] == key
    assert proxy.log == ["PUT"]
    assert s3_get(cfg, key) == data


def test_head_verify_is_the_default(tmp_path, s3_bucket, proxy):
    cfg = su.stores_yaml(tmp_path / "s.yaml", s3_endpoint=proxy.endpoint, bucket=s3_bucket)
    data, key = make_file(tmp_path / "m.eml", 5000)
    su.run(cfg, "blob-put", tmp_path / "m.eml")
    assert proxy.log == ["PUT", "HEAD"]


@pytest.mark.parametrize("proxy", ['"' + hashlib.md5(b"something else").hexdigest() + '"'],
                         indirect=True)
def test_wrong_etag_rewrites_then_fails(tmp_path, s3_bucket, proxy):
    cfg = cfg_with(tmp_path, proxy.endpoint, s3_bucket, "etag", retries=1)
    data, key = make_file(tmp_path / "m.eml", 1000)
    r = su.run(cfg, "blob-put", tmp_path / "m.eml", check=False)
    assert r.returncode == 1
    assert f"is not the MD5 {hashlib.md5(data).hexdigest()} of the 1000 bytes sent" in r.stderr
    assert proxy.log == ["PUT", "PUT"]


@pytest.mark.parametrize("proxy", ['"3858f62230ac3c915f300c664312c11f-2"'], indirect=True)
def test_non_md5_etag_falls_back_to_head(tmp_path, s3_bucket, proxy):
    cfg = cfg_with(tmp_path, proxy.endpoint, s3_bucket, "etag")
    data, key = make_file(tmp_path / "m.eml", 2000)
    su.run(cfg, "blob-put", tmp_path / "m.eml")
    assert proxy.log == ["PUT", "HEAD"]
    assert s3_get(cfg, key) == data


def test_empty_blob_with_etag(tmp_path, s3_bucket, proxy):
    cfg = cfg_with(tmp_path, proxy.endpoint, s3_bucket, "etag")
    data, key = make_file(tmp_path / "e.eml", 0)
    su.run(cfg, "blob-put", tmp_path / "e.eml")
    assert proxy.log == ["PUT"]
    assert s3_get(cfg, key) == b""
