"""The in-memory store's Redis backend (mailbox/store/mem_redis.c) on a real
redis-server: counters with windows, bans with TTL and their index, key
prefix and logical DB selection, pub/sub between processes (the way two
mailbox instances talk), reconnects and renewed subscriptions after a
Redis restart, and the start-up failure messages.  The in-process backend
is covered by the unit tests (tests/unit/test_mem_local.c)."""
import socket
import subprocess
import threading
import time

import pytest

import harness
import store_util as su


@pytest.fixture
def cfg(tmp_path, redis_clean):
    return su.stores_yaml(tmp_path / "s.yaml", redis=redis_clean, prefix="tp:")


def out(cfg, *args):
    return su.run(cfg, *args).stdout.strip()


def test_check_names_kind_and_endpoint(cfg, redis_clean):
    assert out(cfg, "mem-check") == f"ok redis {redis_clean.url}"


def test_counter_window(cfg, redis_clean):
    assert out(cfg, "mem-incr", "auth:192.0.2.7", 400) == "1"
    assert out(cfg, "mem-incr", "auth:192.0.2.7", 400) == "2"
    assert out(cfg, "mem-count", "auth:192.0.2.7") == "2"
    ttl = int(redis_clean.command("PTTL", "tp:cnt:auth:192.0.2.7"))
    assert 0 < ttl <= 400
    # later increments do not extend the window
    time.sleep(0.15)
    out(cfg, "mem-incr", "auth:192.0.2.7", 400)
    assert int(redis_clean.command("PTTL", "tp:cnt:auth:192.0.2.7")) < ttl
    time.sleep(0.5)
    assert out(cfg, "mem-count", "auth:192.0.2.7") == "0"
    assert out(cfg, "mem-incr", "auth:192.0.2.7", 400) == "1"
    assert out(cfg, "mem-reset", "auth:192.0.2.7") == "ok"
    assert out(cfg, "mem-count", "auth:192.0.2.7") == "0"


def test_bans_expire_and_list(cfg, redis_clean):
    assert out(cfg, "mem-ban", "192.0.2.7", 60000, "auth failures") == "ok"
    assert out(cfg, "mem-ban", "2001:db8::1", 300, "short") == "ok"
    state = out(cfg, "mem-ban-check", "192.0.2.7").split(" ", 2)
    assert state[0] == "banned" and 59000 < int(state[1]) <= 60000 and state[2] == "auth failures"
    listed = out(cfg, "mem-bans").split("\n")
    assert listed[-1] == "end 2"
    assert sorted(l.split()[0] for l in listed[:-1]) == ["192.0.2.7", "2001:db8::1"]
    time.sleep(0.5)
    assert out(cfg, "mem-ban-check", "2001:db8::1") == "not-banned"
    listed = out(cfg, "mem-bans").split("\n")
    assert listed == [listed[0], "end 1"] and listed[0].startswith("192.0.2.7 ")
    # the expired entry was pruned from the index too
    assert redis_clean.command("ZCARD", "tp:bans") == 1
    assert out(cfg, "mem-unban", "192.0.2.7") == "ok"
    assert out(cfg, "mem-ban-check", "192.0.2.7") == "not-banned"
    assert out(cfg, "mem-bans") == "end 0"


def test_prefix_and_logical_db(tmp_path, redis_clean):
    url = f"redis://{redis_clean.host}:{redis_clean.port}/3"
    cfg = su.stores_yaml(tmp_path / "s.yaml", redis=url, prefix="inst-a:")
    out(cfg, "mem-incr", "k", 60000)
    out(cfg, "mem-ban", "192.0.2.9", 60000, "r")
    keys_db3 = redis_clean.command(
        "EVAL", "redis.call('SELECT', 3) return redis.call('KEYS', '*')", "0")
    keys_db3 = [k.decode() if isinstance(k, bytes) else k for k in keys_db3]
    assert sorted(keys_db3) == ["inst-a:ban:192.0.2.9", "inst-a:bans", "inst-a:cnt:k"]
    assert redis_clean.command("KEYS", "*") == []  # nothing in db 0
    # another prefix is another namespace
    other = su.stores_yaml(tmp_path / "o.yaml", redis=url, prefix="inst-b:")
    assert out(other, "mem-count", "k") == "0"
    assert out(other, "mem-ban-check", "192.0.2.9") == "not-banned"


def listen(cfg, tmp_path, channel, count, timeout_ms, name="l"):
    p = su.spawn(cfg, "mem-listen", channel, count, timeout_ms, log_path=tmp_path / f"{name}.log")
    assert p.stdout.readline().strip() == "listening"
    return p


def test_pubsub_between_processes(cfg, tmp_path):
    p = listen(cfg, tmp_path, "idle:42", 2, 5000)
    try:
        assert out(cfg, "mem-publish", "idle:42", "EXISTS 7") == "ok"
        assert out(cfg, "mem-publish", "other", "not for us") == "ok"
        assert out(cfg, "mem-publish", "idle:42", "bin\tary") == "ok"
        o, _ = p.communicate(timeout=10)
    finally:
        harness.stop(p)
    assert p.returncode == 0
    assert o.split("\n")[:2] == ["msg idle:42 EXISTS 7", "msg idle:42 bin\tary"]


def test_ban_changes_are_published(cfg, tmp_path):
    p = listen(cfg, tmp_path, "bans", 2, 5000)
    try:
        out(cfg, "mem-ban", "198.51.100.1", 60000, "abuse")
        out(cfg, "mem-unban", "198.51.100.1")
        o, _ = p.communicate(timeout=10)
    finally:
        harness.stop(p)
    assert o.split("\n")[:2] == ["msg bans add 198.51.100.1", "msg bans del 198.51.100.1"]


def test_unreachable_redis_fails_loudly(tmp_path):
    port = harness.free_port()
    cfg = su.stores_yaml(tmp_path / "s.yaml", redis=f"redis://127.0.0.1:{port}/2")
    r = su.run(cfg, "mem-check", check=False)
    assert r.returncode == 1
    assert su.last_line(r.stderr) == f"memory store redis://127.0.0.1:{port}/2: Connection refused"


def test_hung_redis_times_out(tmp_path):
    """A server that accepts and never answers must not hang the caller."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(8)
    try:
        cfg = su.stores_yaml(tmp_path / "s.yaml", redis=f"redis://127.0.0.1:{ls.getsockname()[1]}",
                             redis_timeout="300ms")
        t0 = time.monotonic()
        r = su.run(cfg, "mem-check", check=False, timeout=20)
        assert r.returncode == 1
        assert su.last_line(r.stderr).endswith("command timeout after 300 ms")
        assert time.monotonic() - t0 < 5
    finally:
        ls.close()


def test_reconnects_and_renews_subscriptions(tmp_path):
    srv = harness.RedisServer()
    try:
        srv.start()
        port = srv.port
        cfg = su.stores_yaml(tmp_path / "s.yaml", redis=srv)
        watcher = su.spawn(cfg, "mem-watch", 20, 100, log_path=tmp_path / "watch.log")
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(watcher.stdout))
        reader.start()
        listener = listen(cfg, tmp_path, "chan", 1, 20000)
        harness.wait_for(lambda: any(l.startswith("ok") for l in lines), timeout=10,
                         what="first successful command")
        srv.stop()
        harness.wait_for(lambda: any(l.startswith("err") and "healthy=0" in l for l in lines),
                         timeout=10, what="outage reported")
        n_down = len(lines)
        srv.start(port=port)
        harness.wait_for(lambda: any(l.startswith("ok healthy=1") for l in lines[n_down:]),
                         timeout=20, what="command connection back")
        # the listener's subscription was renewed on its new connection
        deadline = time.monotonic() + 15
        got = None
        while time.monotonic() < deadline and got is None:
            out(cfg, "mem-publish", "chan", "after restart")
            try:
                got, _ = listener.communicate(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
        harness.stop(watcher)
        reader.join(timeout=5)
    finally:
        srv.close()
    assert got is not None and "msg chan after restart" in got
    errs = [l for l in lines if l.startswith("err")]
    assert errs and all("memory store redis://" in l for l in errs), errs


def test_store_freed_with_commands_in_flight(cfg):
    assert out(cfg, "mem-abort", 50) == "ok"


def test_auth_password(tmp_path):
    srv = harness.RedisServer()
    try:
        srv.start()
        srv.command("CONFIG", "SET", "requirepass", "r3dis-pw")
        good = su.stores_yaml(tmp_path / "g.yaml", redis=srv, redis_password="r3dis-pw")
        assert out(good, "mem-incr", "k", 60000) == "1"
        bad = su.stores_yaml(tmp_path / "b.yaml", redis=srv, redis_password="wrong")
        r = su.run(bad, "mem-incr", "k", 60000, check=False)
        assert r.returncode == 1
        assert "memory store redis://127.0.0.1:" in r.stderr
        assert "WRONGPASS" in r.stderr or "invalid password" in r.stderr
        assert "wrong" not in su.last_line(r.stderr).replace("WRONGPASS", "")
        none = su.stores_yaml(tmp_path / "n.yaml", redis=srv)
        r = su.run(none, "mem-check", check=False)
        assert r.returncode == 1 and "NOAUTH" in r.stderr
    finally:
        srv.close()
