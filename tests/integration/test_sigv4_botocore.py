"""Our SigV4 signer (mailbox/store/sigv4.c, through tests/tools/sigv4_sign)
against botocore, an independent implementation (python3-botocore).

The S3 test server (s3rver) does not check signatures, so this is where
signing is proven: for each request of a table (methods, awkward keys,
query strings, extra headers, empty and large bodies) the Authorization
header must equal botocore's for the same request, credentials and time.
The URL botocore signs is built here with urllib's quoting, not taken from
our tool, so an encoding mistake on our side shows as a mismatch.  Then one
request per method goes through SigV4Proxy (which verifies signatures with
a third implementation, harness.sigv4_verify) end to end.
"""
import datetime
import hashlib
import subprocess
import types
import urllib.parse
from unittest import mock

import pytest

import botocore.auth
import botocore.awsrequest
import botocore.credentials

import harness

ACCESS = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
WHEN = datetime.datetime(2024, 2, 29, 23, 59, 58)
WHEN_UNIX = int(WHEN.replace(tzinfo=datetime.timezone.utc).timestamp())
HOST = "127.0.0.1:3900"

LARGE = bytes((i * 7919) & 0xFF for i in range(5 * 1024 * 1024 + 3))

CASES = [
    # (id, method, raw path, query pairs, extra headers, body, region)
    ("put-plain", "PUT", "/bucket/5ea665d3", [], {}, b"hello\r\n", "us-east-1"),
    ("put-empty", "PUT", "/bucket/empty", [], {}, b"", "us-east-1"),
    ("put-large", "PUT", "/bucket/large", [], {"Content-Type": "message/rfc822"}, LARGE, "garage"),
    ("get", "GET", "/bucket/mail/ab/cd/key", [], {}, b"", "us-east-1"),
    ("get-range", "GET", "/bucket/k", [], {"Range": "bytes=100-199"}, b"", "eu-central-1"),
    ("head", "HEAD", "/bucket/k", [], {}, b"", "us-east-1"),
    ("delete", "DELETE", "/bucket/k", [], {}, b"", "us-east-1"),
    ("head-bucket", "HEAD", "/bucket", [], {}, b"", "garage"),
    ("list", "GET", "/bucket", [("list-type", "2"), ("prefix", "mail/"), ("max-keys", "1000")],
     {}, b"", "us-east-1"),
    ("list-continuation", "GET", "/bucket",
     [("list-type", "2"), ("continuation-token", "1/ab+cd=="), ("delimiter", "/")], {}, b"",
     "us-east-1"),
    ("subresource-empty-value", "GET", "/bucket", [("acl", "")], {}, b"", "us-east-1"),
    ("key-spaces", "PUT", "/bucket/a key with  spaces.eml", [], {}, b"x", "us-east-1"),
    ("key-utf8", "PUT", "/bucket/caf\u00e9/\u65e5\u672c\u8a9e/\U0001f4e7.eml", [], {}, b"x",
     "us-east-1"),
    ("key-plus-equals", "GET", "/bucket/a+b=c&d;e,f", [], {}, b"", "us-east-1"),
    ("key-slashes", "GET", "/bucket/a//b/./c/../d/", [], {}, b"", "us-east-1"),
    ("key-reserved", "DELETE", "/bucket/!*'()$@:[]#%25", [], {}, b"", "us-east-1"),
    ("query-awkward", "GET", "/bucket",
     [("prefix", "a b+c/d=e"), ("marker", "\u00e9\u00e8"), ("z", "1"), ("a", "2")], {}, b"",
     "us-east-1"),
    ("headers-squeezed", "PUT", "/bucket/h", [],
     {"X-Amz-Meta-Note": "  several   spaces\tand tab ", "Content-Type": "text/plain"}, b"abc",
     "us-east-1"),
    ("unsigned-payload", "PUT", "/bucket/u", [], {}, b"streamed", "us-east-1"),
]


def our_sign(tmp_path, method, path, query, headers, body, region, unsigned=False):
    argv = [str(harness.tool_path("sigv4_sign")), method, path, HOST, str(WHEN_UNIX), region,
            ACCESS, SECRET]
    for k, v in query:
        argv += ["-q", k, v]
    for k, v in headers.items():
        argv += ["-h", k, v]
    if unsigned:
        argv += ["-p", "UNSIGNED-PAYLOAD"]
    elif body:
        f = tmp_path / "body"
        f.write_bytes(body)
        argv += ["-b", str(f)]
    r = subprocess.run(argv, capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr.decode()
    out = {}
    lines = r.stdout.decode().split("\n")
    for line in lines[:4]:
        k, _, v = line.partition(": ")
        out[k] = v
    out["canonical"] = "\n".join(lines[5:]).rstrip("\n")
    return out


class FixedDateTime(datetime.datetime):
    @classmethod
    def utcnow(cls):
        return WHEN


def botocore_sign(method, path, query, headers, body, region, unsigned=False):
    # The URL path: S3 encodes each byte outside the unreserved set once,
    # keeping '/' (botocore's S3 signer signs the URL path as given).
    url = "http://" + HOST + urllib.parse.quote(path, safe="/~")
    req = botocore.awsrequest.AWSRequest(method=method, url=url, data=body,
                                         headers=dict(headers), params=list(query))
    if unsigned:
        req.context["client_config"] = types.SimpleNamespace(
            s3={"payload_signing_enabled": False})
    creds = botocore.credentials.Credentials(ACCESS, SECRET)
    auth = botocore.auth.S3SigV4Auth(creds, "s3", region)
    seen = []
    real = auth.canonical_request

    def record(r):
        seen.append(real(r))
        return seen[-1]

    auth.canonical_request = record
    with mock.patch.object(botocore.auth.datetime, "datetime", FixedDateTime):
        auth.add_auth(req)
    return req.headers["Authorization"], seen[0], urllib.parse.urlsplit(url).path


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_authorization_equals_botocore(tmp_path, case):
    name, method, path, query, headers, body, region = case
    unsigned = name == "unsigned-payload"
    ours = our_sign(tmp_path, method, path, query, headers, body, region, unsigned)
    theirs, canonical, url_path = botocore_sign(method, path, query, headers, body, region,
                                                unsigned)
    assert ours["path"] == url_path
    assert ours["canonical"] == canonical
    assert ours["authorization"] == theirs
    if not unsigned:
        assert ours["payload"] == hashlib.sha256(body).hexdigest()
    else:
        assert ours["payload"] == "UNSIGNED-PAYLOAD"


def test_signature_changes_with_secret_and_time(tmp_path):
    base = our_sign(tmp_path, "GET", "/b/k", [], {}, b"", "us-east-1")["authorization"]
    argv = [str(harness.tool_path("sigv4_sign")), "GET", "/b/k", HOST, str(WHEN_UNIX + 1),
            "us-east-1", ACCESS, SECRET]
    later = subprocess.run(argv, capture_output=True, timeout=30).stdout.decode()
    assert base not in later
    argv[-1] = SECRET + "x"
    argv[4] = str(WHEN_UNIX)
    other = subprocess.run(argv, capture_output=True, timeout=30).stdout.decode()
    assert base not in other


def test_signer_refuses_header_injection(tmp_path):
    argv = [str(harness.tool_path("sigv4_sign")), "GET", "/b/k", HOST, str(WHEN_UNIX),
            "us-east-1", ACCESS, SECRET, "-h", "x-amz-meta-a", "v\r\nInjected: 1"]
    r = subprocess.run(argv, capture_output=True, timeout=30)
    assert r.returncode == 1
    assert b"control character" in r.stderr
