"""tailpost-mailbox and its stores: start-up checks that name the failing
store, `check` and `migrate`, /readyz through an outage, and two `serve`
processes sharing one Postgres, Redis and S3."""
import json
import time

import pytest

import harness
from mailbox_util import Conn, Mailbox, http, listener, pp_v2

EDGE = "127.0.0.2"


def start_fails(mb, *expect):
    mb.start(wait=False)
    rc = mb.wait_exit(timeout=60)
    text = mb.text()
    assert rc == 1, text[-2000:]
    for e in expect:
        assert e in text, f"{e!r} not in log:\n{text[-2000:]}"
    assert "msg=\"ready\"" not in text


def test_postgres_down_fails_loudly(tmp_path, postgres_db):
    mb = Mailbox(tmp_path, postgres_db)
    dead = harness.free_port()
    url = postgres_db.url_nopw.replace(f":{postgres_db.port}/", f":{dead}/")
    mb.write_config(listener("a", "test", harness.free_port()),
                    stores=mb.stores_yaml(data=f'  data: {{ postgres: "{url}", connect_timeout: 2s }}\n'))
    start_fails(mb, "store=data", f"data store postgresql://{postgres_db.user}@127.0.0.1:{dead}/",
                "refused")
    r = mb.cli("check")
    assert r.returncode == 1 and "data store: FAILED" in r.stdout


def test_bad_s3_host_fails_loudly(tmp_path, postgres_db):
    mb = Mailbox(tmp_path, postgres_db, env={"TAILPOST_S3_ACCESS_KEY": "k",
                                             "TAILPOST_S3_SECRET_KEY": "s"})
    blob = ('  blob: { s3: { endpoint: "http://no-such-host.invalid:3900", region: garage, '
            'bucket: tailpost-mail, access_key: "${TAILPOST_S3_ACCESS_KEY}", '
            'secret_key: "${TAILPOST_S3_SECRET_KEY}", timeout: 3s, retries: 0 } }\n')
    mb.write_config(listener("a", "test", harness.free_port()), stores=mb.stores_yaml(blob=blob))
    mb.migrate()
    start_fails(mb, "store=blob",
                "blob store s3 endpoint http://no-such-host.invalid:3900: could not resolve host")


def test_redis_unreachable_fails_loudly(tmp_path, postgres_db):
    mb = Mailbox(tmp_path, postgres_db)
    dead = harness.free_port()
    mb.write_config(listener("a", "test", harness.free_port()),
                    stores=mb.stores_yaml(memory=f'  memory: {{ redis: "redis://127.0.0.1:{dead}/2", timeout: 1s }}\n'))
    mb.migrate()
    start_fails(mb, "store=memory", f"memory store redis://127.0.0.1:{dead}/2")


def test_old_schema_refuses_to_start(tmp_path, postgres_db):
    mb = Mailbox(tmp_path, postgres_db)
    mb.write_config(listener("a", "test", harness.free_port()))
    start_fails(mb, "tailpost-mailbox migrate")
    r = mb.migrate()
    assert "migrated from version 0" in r.stdout
    assert "up to date" in mb.cli("migrate").stdout


def test_check_prints_redacted_config_and_stores(tmp_path, postgres_db, redis, s3, s3_bucket):
    mb = Mailbox(tmp_path, postgres_db, redis=redis, s3=s3, s3_bucket=s3_bucket)
    mb.write_config(listener("a", "test", harness.free_port(),
                             'proxy: { trusted: ["100.64.0.1"] }'))
    mb.migrate()
    r = mb.cli("check")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "configuration is valid" in out and "check: ok" in out
    assert "<redacted>" in out and postgres_db.password not in out
    assert s3.secret_key + '"' not in out  # S3RVER appears as the key name only via redaction
    assert "data store: ok" in out and "blob store: ok (s3" in out
    assert "memory store: ok (redis" in out
    assert 'header_timeout: 3s' in out and 'untrusted: "refuse"' in out
    r = mb.cli("check", "--json")
    j = json.loads(r.stdout)
    assert j["ok"] is True and j["stores"]["data"]["schema"] == j["stores"]["data"]["schema_needed"]
    assert j["stores"]["memory"]["kind"] == "redis" and j["stores"]["blob"]["kind"] == "s3"


def test_readyz_follows_a_store_outage(tmp_path, postgres_db):
    rs = harness.RedisServer(base=str(tmp_path))
    rs.start()
    try:
        mb = Mailbox(tmp_path, postgres_db, redis=rs)
        h = harness.free_port()
        mb.write_config(listener("h", "http", h))
        mb.migrate()
        mb.start()
        assert http(h, "GET", "/readyz")[0] == 200
        port = rs.port
        rs.stop()
        def not_ready():
            st, _, body = http(h, "GET", "/readyz")
            return st == 503 and b"memory store redis://127.0.0.1" in body
        harness.wait_for(not_ready, timeout=15, what="/readyz 503")
        assert http(h, "GET", "/healthz")[0] == 200  # alive all the same
        rs.start(port=port)
        harness.wait_for(lambda: http(h, "GET", "/readyz")[0] == 200, timeout=30,
                         what="/readyz back to 200 after the reconnect")
        m = http(h, "GET", "/metrics")[2].decode()
        assert 'tailpost_mailbox_store_up{store="memory",kind="redis"} 1' in m
        assert mb.stop() == 0
    finally:
        rs.close()


def test_two_instances_share_the_stores(tmp_path, postgres_db, redis_clean, s3, s3_bucket):
    token = None
    boxes = []
    try:
        for name in ("one", "two"):
            mb = Mailbox(tmp_path, postgres_db, name=name, redis=redis_clean, s3=s3,
                         s3_bucket=s3_bucket)
            mb.h, mb.t = harness.free_port(), harness.free_port()
            proxy = f'proxy: {{ trusted: ["{EDGE}/32"] }}'
            mb.write_config(listener("h", "http", mb.h) + listener("t", "test", mb.t, proxy),
                            extra="abuse: { auth_failures: 2, ban: 30s }\n")
            if name == "one":
                mb.migrate()
                token = mb.cli("token", "add", "shared").stdout.strip()
            boxes.append(mb)
        for mb in boxes:
            mb.start()
        one, two = boxes
        auth = {"Authorization": f"Bearer {token}"}
        for mb in boxes:
            assert http(mb.h, "GET", "/readyz")[0] == 200
        st, _, _ = http(one.h, "POST", "/api/v1/domains", body=b'{"name":"shared.example"}',
                        headers=auth)
        assert st == 201
        st, _, body = http(two.h, "GET", "/api/v1/domains", headers=auth)
        assert st == 200 and json.loads(body)[0]["name"] == "shared.example"
        # a ban set through one instance is enforced by the other (Redis)
        hdr = pp_v2(("203.0.113.50", 7000), ("100.64.0.2", 25))
        for _ in range(2):
            c = Conn(one.t, header=hdr, source=(EDGE, 0))
            c.line()
            assert c.cmd("AUTHFAIL").startswith("535")
            c.close()
        one.wait_log(lambda d: d.get("msg") == "client banned")
        c = Conn(two.t, header=hdr, source=(EDGE, 0))
        assert c.closed(timeout=5)
        two.wait_log(lambda d: d.get("msg", "").startswith("client banned: connection refused"))
        c = Conn(two.t, header=pp_v2(("203.0.113.51", 7000), ("100.64.0.2", 25)),
                 source=(EDGE, 0))
        assert c.line().startswith("220 ")
        c.close()
        for mb in boxes:
            assert mb.stop() == 0, mb.text()[-2000:]
    finally:
        for mb in boxes:
            mb.stop()
