"""The Node IMAP client imapflow (npm, 1.0.171; installed by
deploy/deps.sh --test into var/node/node_modules) against tailpost's IMAP
server: directly on imaps, and through tailpost-edge, which forwards with
a PROXY v2 header.  The client script (js/imapflow_client.js) logs in,
lists, selects INBOX, fetches envelope and source, sets flags, appends,
moves, IDLEs until another connection's APPEND arrives as EXISTS, and
searches; this file checks what it saw."""
import json
import os
import pathlib
import subprocess

import pytest

import harness
from mailbox_util import Certs, Mailbox, listener

USER, PASSWORD = "alice@example.org", "secret-pw-1"
REPO = pathlib.Path(__file__).resolve().parents[2]
NODE_PATH = REPO / "var" / "node" / "node_modules"
SCRIPT = pathlib.Path(__file__).resolve().parent / "js" / "imapflow_client.js"

pytestmark = pytest.mark.skipif(
    not (NODE_PATH / "imapflow" / "package.json").exists(),
    reason="imapflow not installed (deploy/deps.sh --test)")


def run_imapflow(port, ca, local_address=None, timeout=90):
    cfg = {"host": "127.0.0.1", "port": port, "user": USER, "pass": PASSWORD, "ca": str(ca)}
    if local_address:
        cfg["localAddress"] = local_address
    env = dict(os.environ, NODE_PATH=str(NODE_PATH))
    r = subprocess.run(["node", str(SCRIPT), json.dumps(cfg)], capture_output=True, text=True,
                       env=env, timeout=timeout)
    out = json.loads(r.stdout.strip().splitlines()[-1]) if r.stdout.strip() else {}
    assert r.returncode == 0 and "error" not in out, f"{r.stdout}\n{r.stderr}"
    return out


def check(out):
    paths = {m["path"]: m["specialUse"] for m in out["list"]}
    assert paths["INBOX"] in ("\\Inbox", None)
    for name, use in (("Drafts", "\\Drafts"), ("Sent", "\\Sent"), ("Trash", "\\Trash"),
                      ("Junk", "\\Junk"), ("Archive", "\\Archive")):
        assert paths[name] == use, paths
    assert out["append_uid"] >= 1
    assert out["exists"] == 1
    assert out["fetched_uid"] == out["append_uid"]
    assert out["envelope_subject"] == "imapflow first"
    assert out["envelope_from"] == ["bob@example.net"]
    assert out["source_equal"] is True
    assert out["flags_before"] == ["\\Seen"]
    assert out["flags_after"] == ["Important", "\\Flagged", "\\Seen"]
    # MOVE with UIDPLUS: the client learns the new UID
    assert out["move_uidmap"] and out["move_uidmap"][0][0] == out["append_uid"]
    new_uid = out["move_uidmap"][0][1]
    assert out["inbox_after_move"] == 0
    assert out["idle_exists"] == {"count": 1, "prevCount": 0}
    assert len(out["search_second"]) == 1
    assert out["search_archive"] == [new_uid]
    assert out["search_flagged"] == [new_uid]
    assert out["search_body"] == [new_uid]
    assert out["archive_source_equal"] is True
    assert out["archive_flags"] == ["Important", "\\Flagged", "\\Seen"]


@pytest.fixture
def certs(tmp_path):
    return Certs(tmp_path / "certs")


def test_imapflow_direct(tmp_path, postgres_db, certs):
    cert, key = certs.issue("mb", cn="localhost")
    mb = Mailbox(tmp_path, postgres_db)
    port = harness.free_port()
    mb.write_config(listener("imaps", "imaps", port, f'tls: {{ cert: "{cert}", key: "{key}" }}'))
    mb.migrate()
    assert mb.cli("account", "add", USER, input=PASSWORD + "\n").returncode == 0
    mb.start()
    try:
        check(run_imapflow(port, certs.ca))
        mb.wait_log(lambda d: d.get("msg") == "imap login" and d.get("result") == "ok" and
                    d.get("account") == USER)
    finally:
        assert mb.stop() == 0, mb.text()[-3000:]


def test_imapflow_through_the_edge_with_proxy_v2(tmp_path, postgres_db, certs):
    from edge_util import Edge, free_port
    cert, key = certs.issue("edge-mb", cn="localhost")
    mb = Mailbox(tmp_path, postgres_db, name="behind-edge")
    port = harness.free_port()
    mb.write_config(listener(
        "imaps", "imaps", port,
        f'tls: {{ cert: "{cert}", key: "{key}" }}\n'
        'proxy: { trusted: ["127.0.0.1/32"], header_timeout: 2s }'))
    mb.migrate()
    assert mb.cli("account", "add", USER, input=PASSWORD + "\n").returncode == 0
    mb.start()
    ep = free_port()
    cfg = {"workers": 1, "listeners": [{
        "name": "imaps", "bind": [f"127.0.0.1:{ep}"],
        "upstreams": [f"127.0.0.1:{port}"],
        "idle_timeout": "10m", "health_check": {"enabled": False}}]}
    edge = Edge(tmp_path, json.dumps(cfg))
    try:
        # the client comes from 127.0.0.3; the mailbox only trusts the
        # edge (127.0.0.1) and must see the client through PROXY v2
        check(run_imapflow(ep, certs.ca, local_address="127.0.0.3"))
        mb.wait_log(lambda d: d.get("msg") == "imap login" and d.get("result") == "ok" and
                    d.get("client") == "127.0.0.3")
        conns = [d for d in mb.lines() if d.get("msg") == "connection"]
        assert conns and all(d.get("proxy") == "v2" for d in conns), conns
        assert all(d.get("client", "").startswith("127.0.0.3:") for d in conns), conns
    finally:
        edge.stop()
        assert mb.stop() == 0, mb.text()[-3000:]
