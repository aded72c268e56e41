"""The admin API end to end with curl, the data subcommands of the CLI, the
recovery admin, and bans (which key on the proxied client and never hit
loopback, trusted proxy peers or the allowlist)."""
import hashlib
import json
import subprocess
import time

import pytest

import harness
from mailbox_util import Conn, Mailbox, http, listener, pp_v2

EDGE = "127.0.0.2"


def curl(port, method, path, token=None, data=None, basic=None, headers=(), proxy_src=None):
    """curl against the admin listener; returns (status, parsed JSON or text, headers text)."""
    argv = ["curl", "-sS", "-i", "--max-time", "20", "-X", method,
            f"http://127.0.0.1:{port}{path}"]
    if token is not None:
        argv += ["-H", f"Authorization: Bearer {token}"]
    if basic is not None:
        argv += ["-u", basic]
    if data is not None:
        argv += ["-H", "Content-Type: application/json", "--data-binary",
                 data if isinstance(data, str) else json.dumps(data)]
    for h in headers:
        argv += ["-H", h]
    r = subprocess.run(argv, capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    head, _, body = r.stdout.decode().partition("\r\n\r\n")
    status = int(head.split()[1])
    try:
        parsed = json.loads(body) if body.strip() else None
    except ValueError:
        parsed = body
    return status, parsed, head


@pytest.fixture
def api(tmp_path, postgres_db):
    h, ph, t = harness.free_port(), harness.free_port(), harness.free_port()
    mb = Mailbox(tmp_path, postgres_db, env={"TAILPOST_RECOVERY_ADMIN": "rescue:s3cret pass"})
    proxy = f'proxy: {{ trusted: ["{EDGE}/32", "100.64.0.1/32"] }}'
    mb.write_config(listener("admin", "http", h) + listener("padmin", "http", ph, proxy) +
                    listener("t", "test", t, proxy),
                    extra="abuse: { auth_failures: 3, window: 1m, ban: 2s, "
                          "allowlist: [\"192.0.2.0/24\"] }\n")
    mb.migrate()
    r = mb.cli("token", "add", "ci")
    assert r.returncode == 0, r.stderr
    mb.token = r.stdout.strip()
    assert mb.token.startswith("tp_")
    mb.start()
    mb.port, mb.pport, mb.tport = h, ph, t
    yield mb
    assert mb.stop() == 0, mb.text()[-3000:]


def test_token_required(api):
    st, body, head = curl(api.port, "GET", "/api/v1/domains")
    assert st == 401 and body["status"] == 401 and "error" in body
    assert "WWW-Authenticate: Bearer" in head
    st, body, _ = curl(api.port, "GET", "/api/v1/domains", token="tp_not-a-real-token")
    assert st == 401 and body["error"] == "invalid credentials"
    st, body, _ = curl(api.port, "GET", "/api/v1/domains", token=api.token)
    assert st == 200 and body == []


def test_tokens_are_stored_hashed(api, postgres):
    stored = postgres.psql("SELECT hash FROM api_tokens", dbname=api.db.dbname)
    assert hashlib.sha256(api.token.encode()).hexdigest() in stored
    assert api.token not in stored


def test_domains_accounts_aliases_crud(api, postgres):
    p, tok = api.port, api.token
    # domains
    st, body, _ = curl(p, "POST", "/api/v1/domains", tok, {"name": "Example.ORG"})
    assert st == 201 and body["name"] == "example.org", body
    st, body, _ = curl(p, "POST", "/api/v1/domains", tok, {"name": "example.org"})
    assert st == 409 and "already exists" in body["error"]
    assert curl(p, "GET", "/api/v1/domains/example.org", tok)[0] == 200
    assert curl(p, "GET", "/api/v1/domains/nope.example", tok)[0] == 404
    st, body, _ = curl(p, "GET", "/api/v1/domains", tok)
    assert [d["name"] for d in body] == ["example.org"]

    # accounts: with a password (hashed with argon2id) and with a ready hash
    st, body, _ = curl(p, "POST", "/api/v1/accounts", tok,
                       {"login": "alice@example.org", "password": "correct horse"})
    assert st == 201, body
    assert body["login"] == "alice@example.org" and body["role"] == "user"
    assert "alice@example.org" in body["addresses"]
    sha512 = subprocess.run(["openssl", "passwd", "-6", "-salt", "abcdefgh", "bobs pw"],
                            capture_output=True, text=True, check=True).stdout.strip()
    st, body, _ = curl(p, "POST", "/api/v1/accounts", tok, {"login": "bob", "password_hash": sha512})
    assert st == 201, body
    st, body, _ = curl(p, "POST", "/api/v1/accounts", tok,
                       {"login": "carol", "password_hash": "plaintext"})
    assert st == 400 and "password_hash" in body["error"]
    st, body, _ = curl(p, "POST", "/api/v1/accounts", tok, {"login": "alice@example.org",
                                                              "password": "x"})
    assert st == 409
    hashes = postgres.psql("SELECT login || ' ' || password_hash FROM accounts ORDER BY login",
                           dbname=api.db.dbname)
    assert "alice@example.org $argon2id$" in hashes and "correct horse" not in hashes
    assert f"bob {sha512}" in hashes
    # change password, role, quota
    old = postgres.psql("SELECT password_hash FROM accounts WHERE login='alice@example.org'",
                        dbname=api.db.dbname)
    st, _, _ = curl(p, "PUT", "/api/v1/accounts/alice@example.org/password", tok,
                    {"password": "new secret"})
    assert st == 204
    new = postgres.psql("SELECT password_hash FROM accounts WHERE login='alice@example.org'",
                        dbname=api.db.dbname)
    assert new != old and "$argon2id$" in new
    st, body, _ = curl(p, "PATCH", "/api/v1/accounts/alice%40example.org", tok,
                       {"role": "admin", "quota_bytes": 1048576})
    assert st == 200 and body["role"] == "admin" and body["quota_bytes"] == 1048576
    assert curl(p, "PATCH", "/api/v1/accounts/nobody", tok, {"disabled": True})[0] == 404
    st, body, _ = curl(p, "GET", "/api/v1/accounts", tok)
    assert sorted(a["login"] for a in body) == ["alice@example.org", "bob"]

    # aliases
    st, body, _ = curl(p, "POST", "/api/v1/aliases", tok,
                       {"address": "postmaster@example.org", "targets": ["alice@example.org"]})
    assert st == 201 and body["targets"] == ["alice@example.org"], body
    assert curl(p, "POST", "/api/v1/aliases", tok,
                {"address": "postmaster@example.org", "targets": ["bob"]})[0] == 409
    st, body, _ = curl(p, "POST", "/api/v1/aliases", tok,
                       {"address": "x@unknown.example", "targets": ["bob"]})
    assert st == 422, body
    st, body, _ = curl(p, "PUT", "/api/v1/aliases/postmaster@example.org", tok,
                       {"targets": ["bob", "alice@example.org"]})
    assert st == 200
    st, body, _ = curl(p, "GET", "/api/v1/aliases/postmaster@example.org", tok)
    assert st == 200 and sorted(body["targets"]) == ["alice@example.org", "bob"]
    st, body, _ = curl(p, "GET", "/api/v1/aliases?domain=example.org", tok)
    addrs = {a["address"]: a for a in body}
    assert addrs["alice@example.org"]["account"] == "alice@example.org"
    assert "postmaster@example.org" in addrs
    assert curl(p, "DELETE", "/api/v1/aliases/postmaster@example.org", tok)[0] == 204
    assert curl(p, "GET", "/api/v1/aliases/postmaster@example.org", tok)[0] == 404

    # deletes
    st, body, _ = curl(p, "DELETE", "/api/v1/domains/example.org", tok)
    assert st == 409 and "still" in body["error"]
    assert curl(p, "DELETE", "/api/v1/accounts/bob", tok)[0] == 204
    assert curl(p, "DELETE", "/api/v1/accounts/bob", tok)[0] == 404
    assert curl(p, "DELETE", "/api/v1/domains/example.org?force=true", tok)[0] == 204
    assert curl(p, "GET", "/api/v1/domains", tok)[1] == []


def test_json_errors(api):
    p, tok = api.port, api.token
    st, body, _ = curl(p, "POST", "/api/v1/domains", tok, "{not json")
    assert st == 400 and "invalid JSON" in body["error"] and body["status"] == 400
    st, body, _ = curl(p, "POST", "/api/v1/domains", tok, {"name": "a.example", "x": 1})
    assert st == 400 and "unknown member 'x'" in body["error"]
    st, _, body = http(p, "POST", "/api/v1/domains", body=b'{"name": "a.example"}',
                       headers={"Content-Type": "text/plain", "Authorization": f"Bearer {tok}"})
    assert st == 415 and json.loads(body)["status"] == 415
    st, body, head = curl(p, "PATCH", "/api/v1/domains", tok, {"name": "a"})
    assert st == 405 and "Allow: GET, POST" in head and body["status"] == 405
    st, body, _ = curl(p, "GET", "/api/v1/nothing", tok)
    assert st == 404 and body["status"] == 404
    st, body, _ = curl(p, "POST", "/api/v1/accounts", tok, {"login": "x"})
    assert st == 400 and "password" in body["error"]
    st, body, _ = curl(p, "POST", "/api/v1/accounts", tok,
                       {"login": "x", "password": "p", "role": "root"})
    assert st == 400 and "role" in body["error"]
    # HTTP framing errors from the pure parser
    st, _, _ = http(p, "POST", "/api/v1/domains", headers={"Transfer-Encoding": "chunked"})
    assert st == 501
    st, _, _ = http(p, "POST", "/api/v1/domains", body=b"x" * (1024 * 1024 + 1),
                    headers={"Authorization": f"Bearer {tok}"})
    assert st == 413


def test_recovery_admin(api):
    assert api.wait_log(lambda d: d.get("msg", "").startswith("RECOVERY ADMIN ENABLED")
                        and d.get("user") == "rescue")
    st, body, _ = curl(api.port, "POST", "/api/v1/domains", basic="rescue:s3cret pass",
                       data={"name": "rescue.example"})
    assert st == 201, body
    st, body, _ = curl(api.port, "GET", "/api/v1/domains", basic="rescue:wrong")
    assert st == 401
    api.wait_log(lambda d: d.get("msg") == "admin api" and d.get("who") == "recovery:rescue")
    # the variable does not leak to children or the environment of the process
    env = open(f"/proc/{api.proc.pid}/environ", "rb").read()
    # /proc/PID/environ shows the initial environment block; the daemon
    # wiped the value in place, so the secret is gone from it too.
    assert b"s3cret pass" not in env


def test_cli_data_subcommands(api):
    r = api.cli("domain", "add", "cli.example")
    assert r.returncode == 0, r.stderr
    r = api.cli("account", "add", "dave@cli.example", "--role", "admin", "--quota", "2GB",
                input="pw one\n")
    assert r.returncode == 0, r.stderr
    r = api.cli("account", "add", "erin", "--password", "x")
    assert r.returncode == 2 and "never taken from the command line" in r.stderr
    bcrypt = "$2b$10$" + "abcdefghijklmnopqrstuu" + "a" * 31
    r = api.cli("account", "add", "erin", "--hash", input=bcrypt + "\n")
    assert r.returncode == 0, r.stderr
    r = api.cli("account", "passwd", "dave@cli.example", input="pw two\n")
    assert r.returncode == 0, r.stderr
    r = api.cli("alias", "add", "all@cli.example", "dave@cli.example", "erin")
    assert r.returncode == 0, r.stderr
    r = api.cli("account", "list", "--json")
    accts = {a["login"]: a for a in json.loads(r.stdout)}
    assert accts["dave@cli.example"]["role"] == "admin"
    assert accts["dave@cli.example"]["quota_bytes"] == 2 * 1024 ** 3
    r = api.cli("alias", "list", "cli.example", "--json")
    al = {a["address"]: a for a in json.loads(r.stdout)}
    assert sorted(al["all@cli.example"]["targets"]) == ["dave@cli.example", "erin"]
    r = api.cli("domain", "list")
    assert "cli.example" in r.stdout
    r = api.cli("domain", "add", "cli.example", "--json")
    assert r.returncode == 1 and json.loads(r.stdout)["ok"] is False
    r = api.cli("token", "list", "--json")
    assert [t["name"] for t in json.loads(r.stdout)] == ["ci"]
    # the API sees what the CLI made, and the token's last use is recorded
    st, body, _ = curl(api.port, "GET", "/api/v1/accounts/erin", api.token)
    assert st == 200 and body["login"] == "erin"
    r = api.cli("token", "list", "--json")
    assert json.loads(r.stdout)[0]["last_used"] is not None
    r = api.cli("token", "del", "ci")
    assert r.returncode == 0
    assert curl(api.port, "GET", "/api/v1/domains", api.token)[0] == 401


def _authfail(port, src):
    c = Conn(port, header=pp_v2((src, 5000), ("100.64.0.2", 25)), source=(EDGE, 0))
    greet = c.line()
    if not greet:
        c.close()
        return None
    reply = c.cmd("AUTHFAIL")
    c.close()
    return reply


def _greeted(port, src):
    c = Conn(port, header=pp_v2((src, 5001), ("100.64.0.2", 25)), source=(EDGE, 0))
    line = c.line()
    c.close()
    return line.startswith("220 ")


def test_bans_key_on_the_proxied_client_and_expire(api):
    port = api.tport
    for _ in range(3):
        assert _authfail(port, "203.0.113.66").startswith("535 ")
    api.wait_log(lambda d: d.get("msg") == "client banned" and d.get("client") == "203.0.113.66")
    # the banned client is refused at accept, after the gate; others are not
    assert not _greeted(port, "203.0.113.66")
    api.wait_log(lambda d: d.get("msg", "").startswith("client banned: connection refused"))
    assert _greeted(port, "203.0.113.67")
    # v2 LOCAL (the edge's health check, no client) is never refused
    c = Conn(port, header=pp_v2(None, None, local=True), source=(EDGE, 0))
    assert c.line().startswith("220 ")
    c.close()
    # the ban expires (ban: 2s)
    harness.wait_for(lambda: _greeted(port, "203.0.113.66"), timeout=10, what="ban expiry")


def test_exempt_clients_are_never_banned(api):
    port = api.tport
    # a trusted proxy peer's address (100.64.0.1 is trusted on this listener)
    # and an allowlisted client fail five times each: no ban
    for src in ("100.64.0.1", "192.0.2.9"):
        for _ in range(5):
            assert _authfail(port, src).startswith("535 ")
        assert _greeted(port, src)
    # loopback, served directly on the plain http listener, neither
    for _ in range(5):
        assert http(api.port, "GET", "/api/v1/domains",
                    headers={"Authorization": "Bearer tp_wrong"})[0] == 401
    assert http(api.port, "GET", "/healthz")[0] == 200
    assert not [d for d in api.lines() if d.get("msg") == "client banned"]


def test_api_auth_failures_ban_the_proxied_client(api):
    hdr = pp_v2(("203.0.113.99", 6000), ("100.64.0.2", 8080))
    for _ in range(3):
        st, _, _ = http(api.pport, "GET", "/api/v1/domains", header=hdr, source=(EDGE, 0),
                        headers={"Authorization": "Bearer tp_wrong"})
        assert st == 401
    api.wait_log(lambda d: d.get("msg") == "client banned" and d.get("client") == "203.0.113.99")
    s = __import__("socket").create_connection(("127.0.0.1", api.pport), timeout=5,
                                               source_address=(EDGE, 0))
    s.sendall(hdr + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert s.recv(100) == b""
    s.close()
    m = http(api.port, "GET", "/metrics")[2].decode()
    assert "tailpost_mailbox_bans_total 1" in m
    assert 'tailpost_mailbox_auth_failures_total{listener="padmin"} 3' in m


def test_http_keep_alive_pipelining_and_100_continue(api):
    import socket
    s = socket.create_connection(("127.0.0.1", api.port), timeout=10)
    # two pipelined requests in one segment, answered in order on one connection
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while data.count(b"HTTP/1.1 ") < 2 or not data.endswith(b"not found\n"):
        d = s.recv(4096)
        assert d
        data += d
    assert data.index(b"200 OK") < data.index(b"404 Not Found")
    # Expect: 100-continue: the interim answer comes before the body is sent
    body = json.dumps({"name": "continue.example"}).encode()
    s.sendall(b"POST /api/v1/domains HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
              api.token.encode() + b"\r\nContent-Type: application/json\r\nExpect: 100-continue"
              b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n")
    assert s.recv(4096).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    s.sendall(body)
    resp = b""
    while b"}\n" not in resp:
        d = s.recv(4096)
        assert d
        resp += d
    assert resp.startswith(b"HTTP/1.1 201 Created")
    s.close()


def test_metrics_exposition_is_well_formed(api):
    st, hdrs, body = http(api.port, "GET", "/metrics")
    assert st == 200 and hdrs["content-type"].startswith("text/plain; version=0.0.4")
    typed, seen_families = set(), []
    for line in body.decode().splitlines():
        if line.startswith("# TYPE "):
            name = line.split()[2]
            assert name not in typed, f"family {name} declared twice"
            typed.add(name)
            seen_families.append(name)
        elif line and not line.startswith("#"):
            name = line.split("{")[0].split()[0]
            base = name
            for suf in ("_bucket", "_sum", "_count"):
                if name.endswith(suf) and name[:-len(suf)] in typed:
                    base = name[:-len(suf)]
            # a sample belongs to the family declared last (grouped)
            assert base == seen_families[-1] or name == seen_families[-1], line
            float(line.rsplit(" ", 1)[1])
    for fam in ("tailpost_mailbox_connections_total", "tailpost_mailbox_proxy_header_errors_total",
                "tailpost_mailbox_auth_failures_total", "tailpost_mailbox_bans_total",
                "tailpost_mailbox_store_up", "tailpost_mailbox_store_errors_total",
                "tailpost_mailbox_pg_latency_seconds"):
        assert fam in typed
