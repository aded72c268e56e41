"""tailpost-acl end to end: the mail snippet generated, merged into a
realistic tailnet policy with comments, queried, re-merged, changed, removed.

Runs the real binary in a temporary directory; no network.
"""
import json
import subprocess

import pytest

from harness import bin_path

MAIL_PORTS = [25, 465, 587, 143, 993, 80]

BASE = """\
// Example Corp tailnet policy.
// Owned by the infra team; every change is reviewed in git.
{
\t// People and their roles.
\t"groups": {
\t\t"group:admins": ["alice@example.com"],
\t\t"group:dev":    ["bob@example.com", "alice@example.com"], // engineering
\t},

\t// Who may tag what.
\t"tagOwners": {
\t\t"tag:server":        ["group:admins"],
\t\t"tag:reverse-proxy": ["group:admins"], // the public edge
\t},

\t"hosts": {
\t\t"backup": "100.100.7.7",
\t},

\t/*
\t * Access rules: deny by default.
\t */
\t"acls": [
\t\t// Developers reach the app servers over HTTPS.
\t\t{"action": "accept", "src": ["group:dev"], "dst": ["tag:server:443"]},
\t\t// Admins reach everything tagged, on SSH.
\t\t{"action": "accept", "src": ["group:admins"], "dst": ["tag:server:22"]},
\t],

\t"ssh": [
\t\t{"action": "check", "src": ["group:admins"], "dst": ["tag:server"], "users": ["root"]},
\t],

\t"tests": [
\t\t{"src": "bob@example.com", "accept": ["tag:server:443"], "deny": ["tag:server:22"]},
\t],
}
"""


def acl(*args, cwd=None, env=None, check=None):
    r = subprocess.run([str(bin_path("tailpost-acl")), *map(str, args)], capture_output=True,
                       text=True, cwd=cwd, env=env, timeout=60)
    if check is not None:
        assert r.returncode == check, f"{args}: rc {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


@pytest.fixture
def work(tmp_path):
    (tmp_path / "policy.hujson").write_text(BASE)
    (tmp_path / ".env").write_text("# deployment\nTAILPOST_SMARTHOST_PORT=587\n"
                                   "TAILPOST_TAG_OWNER=group:admins\n")
    acl("gen", "--env", tmp_path / ".env", "--with-tests", "-o", tmp_path / "mail.hujson",
        check=0)
    return tmp_path


def test_snippet_checks_alone_and_against_base(work):
    acl("check", "--snippet", work / "mail.hujson", check=0)
    r = acl("check", "--snippet", "--against", work / "policy.hujson", work / "mail.hujson",
            check=0)
    assert "tests passed" in r.stderr
    # gen is what fmt would write.
    acl("fmt", "--check", work / "mail.hujson", check=0)


def test_merge_keeps_bytes_and_is_idempotent(work):
    p = work / "policy.hujson"
    acl("merge", "-w", p, work / "mail.hujson", check=0)
    merged = p.read_text()
    # Every comment and every untouched line of the base is still there.
    for line in BASE.splitlines():
        if "tag:reverse-proxy" in line and "edge" in line:
            continue  # the managed tagOwners entry is equal: kept as written
        assert line in merged, f"lost: {line!r}"
    # tag:reverse-proxy was already owned the same way: left alone, not ours.
    # tags, the grants section we created, grants, tests
    assert merged.count("tailpost-acl id=tailpost:") == 2 + 1 + 3 + 6
    acl("check", p, check=0)
    # A second run changes no byte, and --check agrees.
    acl("merge", "-w", p, work / "mail.hujson", check=0)
    assert p.read_text() == merged
    acl("merge", "--check", p, work / "mail.hujson", check=0)
    r = acl("merge", "--diff", p, work / "mail.hujson", check=0)
    assert r.stdout == ""


@pytest.fixture
def merged(work):
    acl("merge", "-w", work / "policy.hujson", work / "mail.hujson", check=0)
    return work / "policy.hujson"


@pytest.mark.parametrize("port", MAIL_PORTS)
def test_edge_reaches_mailbox_on_mail_ports(merged, port):
    r = acl("query", "--proto", "tcp", merged, "tag:reverse-proxy", f"tag:mailbox:{port}",
            check=0)
    assert "allowed" in r.stdout and "grants[0]" in r.stdout


@pytest.mark.parametrize("src,dst,proto", [
    ("tag:reverse-proxy", "tag:mailbox:8080", "tcp"),
    ("tag:reverse-proxy", "tag:mailbox:22", "tcp"),
    ("tag:mailbox", "tag:mail:25", "tcp"),
    ("tag:mail", "tag:mailbox:25", "tcp"),
    ("tag:mail", "tag:mailbox:25", None),
    ("tag:reverse-proxy", "tag:mail:587", None),
] + [("tag:reverse-proxy", f"tag:mailbox:{p}", "udp") for p in MAIL_PORTS])
def test_everything_else_is_denied(merged, src, dst, proto):
    args = ["query", merged, src, dst] if proto is None else \
        ["query", "--proto", proto, merged, src, dst]
    r = acl(*args, check=1)
    assert "denied" in r.stdout


def test_mailbox_reaches_smarthost_submission(merged):
    acl("query", "--proto", "tcp", merged, "tag:mailbox", "tag:mail:587", check=0)


def test_explain_names_rule_with_position(merged):
    r = acl("explain", merged, "tag:reverse-proxy", "tag:mailbox:8080", check=1)
    assert "rules from the source to the destination on other ports" in r.stdout
    assert f"grants[0] at {merged}:" in r.stdout
    r = acl("--format", "json", "query", merged, "tag:reverse-proxy", "tag:mailbox:993", check=0)
    j = json.loads(r.stdout)
    assert j["version"] == 1 and j["allowed"] is True
    assert j["rules"][0]["rule"] == "grants[0]" and j["rules"][0]["line"] > 0


def test_replace_after_port_change(work, merged):
    before = merged.read_text()
    (work / ".env").write_text("TAILPOST_SMARTHOST_PORT=465\nTAILPOST_TAG_OWNER=group:admins\n")
    acl("gen", "--env", work / ".env", "--with-tests", "-o", work / "mail.hujson", check=0)
    r = acl("merge", "--diff", merged, work / "mail.hujson", check=1)
    assert '-\t\t\t"ip":  ["tcp:587"],' in r.stdout and '+\t\t\t"ip":  ["tcp:465"],' in r.stdout
    acl("merge", "-w", merged, work / "mail.hujson", check=0)
    after = merged.read_text()
    assert after != before
    assert after.count("tailpost-acl id=tailpost:") == before.count("tailpost-acl id=tailpost:")
    acl("query", "--proto", "tcp", merged, "tag:mailbox", "tag:mail:465", check=0)
    acl("query", "--proto", "tcp", merged, "tag:mailbox", "tag:mail:587", check=1)
    # Still idempotent after the change.
    acl("merge", "--check", merged, work / "mail.hujson", check=0)


def test_remove_restores_base(work, merged):
    acl("merge", "--remove", "-w", merged, check=0)
    assert merged.read_text() == BASE
    acl("merge", "--remove", "--check", merged, check=0)


def test_conflict_on_tag_owners(work):
    p = work / "policy.hujson"
    conflicting = BASE.replace('"tag:server":        ["group:admins"],',
                               '"tag:server":        ["group:admins"],\n'
                               '\t\t"tag:mailbox":       ["group:dev"],')
    p.write_text(conflicting)
    r = acl("merge", "-w", p, work / "mail.hujson", check=5)
    assert 'merge conflict: tagOwners["tag:mailbox"]' in r.stderr
    assert f"{p}:13:3:" in r.stderr
    assert p.read_text() == conflicting  # nothing written
    acl("merge", "-w", "--on-conflict=ours", p, work / "mail.hujson", check=0)
    assert '"tag:mailbox":       ["group:dev"],' in p.read_text()


def test_merge_refuses_a_policy_failing_its_tests(work):
    p = work / "policy.hujson"
    wide = BASE.replace('\t\t// Admins reach everything',
                        '\t\t{"action": "accept", "src": ["*"], "dst": ["*:*"]},\n'
                        '\t\t// Admins reach everything')
    p.write_text(wide)
    r = acl("merge", "-w", p, work / "mail.hujson", check=1)
    assert "can access tag:mailbox:8080 (expected deny)" in r.stderr
    assert "nothing written" in r.stderr
    assert p.read_text() == wide


def test_output_formats_and_exit_codes(work):
    bad = work / "bad.hujson"
    bad.write_text('{\n\t"acls": [\n\t\t{"action": "accept",, },\n\t],\n}\n')
    r = acl("check", bad, check=3)
    assert f"{bad}:3:23: invalid character ',' at start of value" in r.stderr
    r = acl("--format", "github", "check", bad, check=3)
    assert r.stdout.startswith(f"::error file={bad},line=3,col=23::invalid character")
    r = acl("--format", "json", "check", bad, check=3)
    j = json.loads(r.stdout)
    assert j["version"] == 1 and j["exit"] == 3 and j["diagnostics"][0]["line"] == 3

    invalid = work / "invalid.hujson"
    invalid.write_text('{"acls": [{"action": "accept", "src": ["group:nope"], "dst": ["*:*"]}]}')
    r = acl("check", invalid, check=4)
    assert 'group "group:nope" not found' in r.stderr
    acl("check", work / "missing.hujson", check=6)
    acl("query", work / "policy.hujson", "tag:x", check=2)
    acl("frobnicate", check=2)


def test_fmt_modes(work):
    p = work / "policy.hujson"
    r = acl("fmt", "--check", p, check=1)
    assert "not formatted" in r.stderr
    r = acl("fmt", "--diff", p, check=1)
    assert r.stdout.startswith(f"--- a/{p}\n+++ b/{p}\n")
    acl("fmt", "-w", p, check=0)
    acl("fmt", "--check", p, check=0)
    formatted = p.read_text()
    assert "// engineering" in formatted and "Access rules: deny by default." in formatted
    acl("check", p, check=0)
