"""The directory (mailbox/directory/) on a real PostgreSQL: administration
(domains, accounts, addresses, aliases, tokens), the daemon's asynchronous
recipient and login lookups, and password verification for every accepted
hash format, with hashes made by independent tools: mkpasswd (package
whois: yescrypt, SHA-512-crypt, bcrypt) and argon2 (package argon2)."""
import shutil
import subprocess

import pytest

import store_util as su


@pytest.fixture
def cfg(tmp_path, postgres_db):
    c = su.stores_yaml(tmp_path / "s.yaml", pg=postgres_db)
    su.run(c, "migrate")
    return c


def out(cfg, *args, stdin=None):
    return su.run(cfg, *args, stdin=stdin).stdout.strip()


def fails(cfg, *args, stdin=None):
    r = su.run(cfg, *args, stdin=stdin, check=False)
    assert r.returncode == 1, (r.stdout, r.stderr)
    return su.last_line(r.stderr)


def mkpasswd(method, pw):
    return subprocess.run(["mkpasswd", "-m", method, "-s"], input=pw, capture_output=True,
                          text=True, check=True, timeout=30).stdout.strip()


def argon2id(pw, salt="c2FsdHNhbHRzYWx0", t=2, m=12):
    return subprocess.run(["argon2", salt, "-id", "-t", str(t), "-m", str(m), "-p", "1", "-e"],
                          input=pw, capture_output=True, text=True, check=True,
                          timeout=30).stdout.strip()


def test_domains_accounts_aliases(cfg):
    assert out(cfg, "domain-add", "Example.ORG") == ""
    assert fails(cfg, "domain-add", "example.org") == "domain 'example.org' already exists"
    assert fails(cfg, "domain-add", "bad_dom..x").startswith("domain 'bad_dom..x': ")
    out(cfg, "domain-add", "example.net")
    acc = out(cfg, "account-add", "Alice@Example.org", "user", stdin="pw1\n")
    assert acc.isdigit()
    out(cfg, "account-add", "bob", "admin", stdin="pw2\n")
    assert fails(cfg, "account-add", "alice@example.org", "user", stdin="x\n") == \
        "account 'alice@example.org' already exists"
    out(cfg, "address-add", "bob@example.org", "bob")
    out(cfg, "address-add", "robert@example.net", "bob")
    assert fails(cfg, "address-add", "bob@example.org", "alice@example.org") == \
        "address 'bob@example.org' is already in use"
    assert fails(cfg, "address-add", "x@unknown.example", "bob") == \
        "address 'x@unknown.example': unknown domain or no account 'bob'"
    accounts = out(cfg, "account-list").split("\n")
    assert accounts == ["alice@example.org user 0 alice@example.org",
                        "bob admin 0 bob@example.org robert@example.net"]
    out(cfg, "alias-add", "team@example.org", "alice@example.org", "bob", "ext@remote.example")
    out(cfg, "alias-add", "@example.net", "bob")
    aliases = out(cfg, "alias-list").split("\n")
    assert "team@example.org -> alice@example.org bob ext@remote.example" in aliases
    assert "@example.net -> bob" in aliases
    assert out(cfg, "alias-list", "example.net").split("\n") == [
        "@example.net -> bob", "robert@example.net -> account:bob"]
    assert fails(cfg, "alias-add", "x@example.org", "nobody") == \
        "alias 'x@example.org': target 'nobody': no account 'nobody'"
    assert fails(cfg, "domain-del", "example.net").startswith(
        "domain 'example.net' still has 2 addresses or aliases")
    out(cfg, "domain-del", "example.net", "force")
    assert out(cfg, "domain-list").split("\n") == ["example.org 3"]
    out(cfg, "alias-del", "team@example.org")
    assert fails(cfg, "alias-del", "team@example.org") == "no alias or address 'team@example.org'"
    out(cfg, "account-del", "bob")
    assert out(cfg, "account-list") == "alice@example.org user 0 alice@example.org"
    # INBOX exists for the remaining account
    assert out(cfg, "pg-query", "SELECT name FROM mailboxes") == "INBOX"


def test_recipient_lookup(cfg):
    out(cfg, "domain-add", "example.org")
    out(cfg, "domain-add", "lists.example.org")
    alice = out(cfg, "account-add", "alice@example.org", "user", stdin="pw\n")
    bob = out(cfg, "account-add", "bob", "user", stdin="pw\n")
    carol = out(cfg, "account-add", "carol@example.org", "user", stdin="pw\n")
    out(cfg, "address-add", "bob@example.org", "bob")
    out(cfg, "alias-add", "team@example.org", "alice@example.org", "bob", "ext@remote.example")
    out(cfg, "alias-add", "all@lists.example.org", "team@example.org", "carol@example.org")
    out(cfg, "alias-add", "loop1@example.org", "loop2@example.org")
    out(cfg, "alias-add", "loop2@example.org", "loop1@example.org", "alice@example.org")
    cases = {
        "alice@example.org": f"local account:{alice}",
        "ALICE@Example.ORG": f"local account:{alice}",
        "alice+news@example.org": f"local account:{alice}",
        "bob@example.org": f"local account:{bob}",
        "team@example.org": f"local account:{alice} account:{bob} forward:ext@remote.example",
        "all@lists.example.org": (f"local account:{alice} account:{bob} account:{carol}"
                                  " forward:ext@remote.example"),
        "loop1@example.org": f"local account:{alice}",
        "nobody@example.org": "unknown",
        "nobody+tag@example.org": "unknown",
        "someone@elsewhere.example": "not-local",
        "bob": "unknown error:address without '@'",
    }
    for addr, want in cases.items():
        assert out(cfg, "rcpt", addr) == want, addr
    # a catch-all takes what nothing else matched
    out(cfg, "alias-add", "@example.org", "carol@example.org")
    assert out(cfg, "rcpt", "nobody@example.org") == f"local account:{carol}"
    assert out(cfg, "rcpt", "alice@example.org") == f"local account:{alice}"
    # a disabled account receives nothing
    out(cfg, "account-disable", "carol@example.org")
    assert out(cfg, "rcpt", "carol@example.org") == "unknown"


def test_lookup_tempfails_when_the_store_is_down(tmp_path):
    from harness import free_port
    cfg = su.stores_yaml(tmp_path / "s.yaml",
                         pg_url=f"postgres://x@127.0.0.1:{free_port()}/x", pg_password="x")
    assert out(cfg, "rcpt", "a@example.org") == "tempfail error:data store unavailable"
    assert out(cfg, "auth", "a@example.org", stdin="pw\n") == "tempfail data store unavailable"


@pytest.mark.skipif(shutil.which("mkpasswd") is None or shutil.which("argon2") is None,
                    reason="needs mkpasswd (whois) and argon2")
def test_password_formats(cfg):
    pw = "correct horse \u00e9 battery"
    hashes = {
        "yescrypt": mkpasswd("yescrypt", pw),
        "sha512": mkpasswd("sha512crypt", pw),
        "bcrypt": mkpasswd("bcrypt", pw),
        "argon2id": argon2id(pw),
    }
    assert hashes["yescrypt"].startswith("$y$")
    assert hashes["sha512"].startswith("$6$")
    assert hashes["bcrypt"].startswith("$2b$")
    assert hashes["argon2id"].startswith("$argon2id$")
    for name, h in hashes.items():
        assert out(cfg, "password-supported", h) == "yes", name
        assert out(cfg, "password-verify", h, stdin=pw + "\n") == "match", name
        assert out(cfg, "password-verify", h, stdin=pw + "x\n") == "mismatch", name
        assert out(cfg, "password-verify", h, stdin="\n") == "mismatch", name
    # all at once on the thread pool
    got = out(cfg, "password-verify-async", *hashes.values(), stdin=pw + "\n").split("\n")
    assert got == ["match"] * 4
    # our own new hashes are argon2id with RFC 9106's second recommended option
    mine = out(cfg, "password-hash", stdin=pw + "\n")
    assert mine.startswith("$argon2id$v=19$m=65536,t=3,p=1$")
    assert mine != out(cfg, "password-hash", stdin=pw + "\n")  # fresh salt
    assert out(cfg, "password-verify", mine, stdin=pw + "\n") == "match"
    # malformed or unknown formats never match
    for bad in ("$1$abc$def", "plaintext", "$argon2id$v=19$m=65536,t=3,p=1$short",
                "$6$", hashes["sha512"][:-5]):
        assert out(cfg, "password-supported", bad) == "no", bad
        assert out(cfg, "password-verify", bad, stdin=pw + "\n") in ("bad-hash", "mismatch"), bad


@pytest.mark.skipif(shutil.which("mkpasswd") is None or shutil.which("argon2") is None,
                    reason="needs mkpasswd (whois) and argon2")
def test_auth_by_login_or_address(cfg):
    out(cfg, "domain-add", "example.org")
    out(cfg, "account-add", "dave", "admin", mkpasswd("sha512crypt", "s3cret"))
    out(cfg, "account-add", "erin@example.org", "user", argon2id("pa55"))
    out(cfg, "account-add", "frank", "user", mkpasswd("bcrypt", "b"))
    out(cfg, "address-add", "dave@example.org", "dave")
    dave = out(cfg, "pg-query", "SELECT id FROM accounts WHERE login = 'dave'")
    assert out(cfg, "auth", "dave", stdin="s3cret\n") == f"ok {dave} dave admin"
    assert out(cfg, "auth", "Dave@Example.org", stdin="s3cret\n") == f"ok {dave} dave admin"
    assert out(cfg, "auth", "dave", stdin="wrong\n") == "fail bad password"
    assert out(cfg, "auth", "nobody", stdin="x\n") == "fail unknown user"
    assert out(cfg, "auth", "erin@example.org", stdin="pa55\n").endswith(" erin@example.org user")
    assert out(cfg, "auth", "frank", stdin="b\n").endswith(" frank user")
    out(cfg, "account-disable", "frank")
    assert out(cfg, "auth", "frank", stdin="b\n") == "fail disabled"
    assert fails(cfg, "account-add", "gina", "user", "plaintext") == \
        "account 'gina': unsupported password hash"


def test_tokens(cfg):
    tok = out(cfg, "token-add", "ci")
    assert tok.startswith("tp_") and len(tok) == 46
    assert fails(cfg, "token-add", "ci") == "token 'ci' already exists"
    assert fails(cfg, "token-add", "bad name") == \
        "token name must be 1..64 bytes of [A-Za-z0-9._-]"
    # only the hash is stored
    stored = out(cfg, "pg-query", "SELECT hash FROM api_tokens")
    assert tok not in stored and len(stored) == 64
    listed = out(cfg, "token-list")
    assert listed.startswith("ci ") and listed.endswith(" -")
    assert out(cfg, "token-check", tok) == "found ci"
    assert not out(cfg, "token-list").endswith(" -")  # last_used recorded
    assert out(cfg, "token-check", tok + "x") == "not-found"
    out(cfg, "token-del", "ci")
    assert out(cfg, "token-check", tok) == "not-found"
    assert fails(cfg, "token-del", "ci") == "no token 'ci'"
