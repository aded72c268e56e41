"""Outbound administration on a real tailpost-mailbox and Postgres: DKIM
keys (`dkim generate|list|...`), the DNS records of a domain (`dns
records`), and the outbound queue (`queue list|show|retry|delete`), each
through the CLI and through the admin API with curl.

Keys are checked independently: the p= of the printed TXT record must be
the public half of the private key stored in dkim_keys (python
cryptography), and a message signed with that stored key (tests/tools/
dkim_sign, our streaming signer) must verify with dkimpy reading the
printed TXT record through a dnsfunc override.  The queue is filled the
way production fills it: mail for an external domain submitted with SMTP
AUTH to a running `serve`, whose delivery workers are switched off
(outbound.enabled: false) so the rows stay put while we look at them.
"""
import base64
import datetime
import hashlib
import json
import re
import smtplib
import subprocess
import tempfile

import pytest

import harness
from smtp_util import PASSWORDS, SmtpMailbox
from test_mailbox_admin_api import curl

dkim = pytest.importorskip("dkim")
pytest.importorskip("nacl")  # dkimpy needs it for ed25519-sha256
serialization = pytest.importorskip("cryptography.hazmat.primitives.serialization")

DOMAIN = "example.org"


@pytest.fixture(scope="module")
def sm(tmp_path_factory, postgres):
    tmp = tmp_path_factory.mktemp("outbound_admin")
    db = postgres.create_database()
    box = SmtpMailbox(tmp, postgres, db, extra="outbound: { enabled: false }\n")
    box.setup_directory()
    box.cli("domain", "add", "other.example")
    r = box.mb.cli("token", "add", "ci")
    assert r.returncode == 0, r.stderr
    box.token = r.stdout.strip()
    box.start()
    yield box
    rc = box.stop()
    postgres.drop_database(db.name)
    assert rc == 0, box.mb.text()[-3000:]


def cli(sm, *args):
    return sm.mb.cli(*args)


def api(sm, method, path, data=None):
    return curl(sm.ports["admin"], method, path, token=sm.token, data=data)


def month():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m")


def txt_from_zone_line(out):
    """The TXT value of the first `... IN TXT "..." "..."` line of out."""
    for line in out.splitlines():
        if " TXT " in line and "_domainkey" in line:
            name = line.split()[0]
            return name, "".join(re.findall(r'"([^"]*)"', line))
    raise AssertionError(f"no DKIM TXT line in {out!r}")


def p_of(txt):
    tags = dict(t.strip().split("=", 1) for t in txt.split(";") if t.strip())
    return tags["k"], base64.b64decode(tags["p"])


def stored_key(sm, domain, selector):
    rows = sm.query("SELECT k.private_key, k.public_key, k.algorithm, k.active FROM dkim_keys k"
                    f" JOIN domains d ON d.id = k.domain_id WHERE d.name = '{domain}'"
                    f" AND k.selector = '{selector}'")
    assert len(rows) == 1, rows
    return rows[0]


def public_bytes(pem, alg):
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    pub = key.public_key()
    if alg == "ed25519":
        return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return pub.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def sign_and_verify(sm, domain, selector, txt, pem):
    """Sign a message with the stored key through tests/tools/dkim_sign and
    verify it with dkimpy, the TXT record coming from what we printed."""
    msg = (f"From: alice@{domain}\r\nTo: friend@remote.example\r\nSubject: dkim admin\r\n"
           f"Date: Fri, 27 Nov 2026 03:40:00 +0000\r\nMessage-ID: <a1@{domain}>\r\n\r\n"
           "Signed with a key made by `tailpost-mailbox dkim generate`.\r\n").encode()
    with tempfile.TemporaryDirectory(prefix="dkim-admin-") as d:
        keyfile = f"{d}/key.pem"
        msgfile = f"{d}/msg.eml"
        with open(keyfile, "w") as f:
            f.write(pem)
        with open(msgfile, "wb") as f:
            f.write(msg)
        r = subprocess.run([str(harness.tool_path("dkim_sign")), "sign",
                            f"{keyfile}:{domain}:{selector}", msgfile],
                           capture_output=True, timeout=120)
        assert r.returncode == 0, r.stderr.decode(errors="replace")
    signed = r.stdout
    table = {f"{selector}._domainkey.{domain}.".encode(): txt.encode()}

    def dnsfunc(name, timeout=5):
        return table.get(name)

    assert dkim.verify(signed, dnsfunc=dnsfunc)
    # and a tampered copy does not verify
    assert not dkim.verify(signed.replace(b"Signed with", b"Signed by"), dnsfunc=dnsfunc)
    # nor against the record of another key of the same type
    tool = str(harness.tool_path("dkim_sign"))
    with tempfile.TemporaryDirectory(prefix="dkim-admin-") as d:
        kind = "ed25519" if "k=ed25519" in txt else "rsa"
        pem2 = subprocess.run([tool, "generate", kind], capture_output=True, check=True,
                              timeout=120).stdout
        with open(f"{d}/other.pem", "wb") as f:
            f.write(pem2)
        txt2 = subprocess.run([tool, "txt", f"{d}/other.pem"], capture_output=True, check=True,
                              timeout=60).stdout.strip()
    assert txt2 != txt.encode()
    other = {f"{selector}._domainkey.{domain}.".encode(): txt2}
    assert not dkim.verify(signed, dnsfunc=lambda name, timeout=5: other.get(name))


# --- DKIM --------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["ed25519", "rsa"])
def test_dkim_generate_publishes_the_stored_key_and_signatures_verify(sm, alg):
    r = cli(sm, "dkim", "generate", "--domain", "Example.ORG", "--algorithm", alg)
    assert r.returncode == 0, r.stdout + r.stderr
    prefix = "ed" if alg == "ed25519" else "rsa"
    sel = re.search(r"selector (\S+) ", r.stdout).group(1)
    assert re.fullmatch(prefix + month() + "[a-z]?", sel), sel
    name, txt = txt_from_zone_line(r.stdout)
    assert name == f"{sel}._domainkey.{DOMAIN}."
    k, p = p_of(txt)
    assert k == alg
    row = stored_key(sm, DOMAIN, sel)
    assert row["algorithm"] == f"{alg}-sha256" and row["active"] is True
    assert row["public_key"] == txt
    assert row["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    assert public_bytes(row["private_key"], alg) == p
    if alg == "rsa":
        # RSA records exceed 255 bytes: the zone line cuts them into strings
        assert len(txt) > 255
        line = [l for l in r.stdout.splitlines() if " TXT " in l][0]
        assert all(len(s) <= 255 for s in re.findall(r'"([^"]*)"', line))
        assert len(re.findall(r'"([^"]*)"', line)) >= 2
    sign_and_verify(sm, DOMAIN, sel, txt, row["private_key"])


def test_dkim_json_list_selectors_and_errors(sm):
    r = cli(sm, "dkim", "generate", "--domain", "other.example", "--algorithm", "ed25519-sha256",
            "--selector", "Sel1", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    j = json.loads(r.stdout)
    assert j["ok"] is True and j["selector"] == "sel1" and j["domain"] == "other.example"
    assert j["algorithm"] == "ed25519-sha256" and j["dns_name"] == "sel1._domainkey.other.example"
    assert public_bytes(stored_key(sm, "other.example", "sel1")["private_key"],
                        "ed25519") == p_of(j["txt"])[1]
    # the default selector is taken twice the same month: a letter is appended
    a = json.loads(cli(sm, "dkim", "generate", "--domain", "other.example", "--algorithm",
                       "ed25519", "--json").stdout)
    b = json.loads(cli(sm, "dkim", "generate", "--domain", "other.example", "--algorithm",
                       "ed25519", "--json").stdout)
    assert a["selector"] == "ed" + month() and b["selector"] == "ed" + month() + "b"

    # errors: duplicate selector, unknown domain, bad algorithm, bad selector
    r = cli(sm, "dkim", "generate", "--domain", "other.example", "--algorithm", "rsa",
            "--selector", "sel1")
    assert r.returncode == 1 and "selector 'sel1' already exists for other.example" in r.stderr
    r = cli(sm, "dkim", "generate", "--domain", "nosuch.example", "--algorithm", "ed25519")
    assert r.returncode == 1 and "domain 'nosuch.example' does not exist" in r.stderr
    r = cli(sm, "dkim", "generate", "--domain", "other.example", "--algorithm", "dsa")
    assert r.returncode == 2 and "unknown algorithm 'dsa'" in r.stderr
    r = cli(sm, "dkim", "generate", "--domain", "other.example", "--algorithm", "rsa",
            "--selector", "bad sel")
    assert r.returncode == 1 and "selector 'bad sel'" in r.stderr
    r = cli(sm, "dkim", "generate", "--domain", "other.example")
    assert r.returncode == 2 and "usage" in r.stderr
    r = cli(sm, "dkim", "generate", "--domain", "nosuch.example", "--algorithm", "rsa", "--json")
    assert r.returncode == 1 and json.loads(r.stdout)["ok"] is False
    # nothing was stored by the failures
    assert len(sm.query("SELECT k.id FROM dkim_keys k JOIN domains d ON d.id = k.domain_id"
                        " WHERE d.name = 'other.example'")) == 3

    # list: one domain, all domains, unknown domain
    r = cli(sm, "dkim", "list", "--domain", "other.example", "--json")
    assert r.returncode == 0, r.stderr
    keys = json.loads(r.stdout)
    assert [k["selector"] for k in keys] == sorted([a["selector"], b["selector"], "sel1"])
    assert all(k["domain"] == "other.example" and k["active"] for k in keys)
    r = cli(sm, "dkim", "list")
    assert r.returncode == 0 and "other.example" in r.stdout and "sel1" in r.stdout
    r = cli(sm, "dkim", "list", "--domain", "nosuch.example")
    assert r.returncode == 1 and "does not exist" in r.stderr

    # deactivate, activate, delete
    r = cli(sm, "dkim", "deactivate", "--domain", "other.example", "--selector", "sel1")
    assert r.returncode == 0, r.stderr
    assert stored_key(sm, "other.example", "sel1")["active"] is False
    r = cli(sm, "dkim", "activate", "--domain", "other.example", "--selector", "sel1")
    assert r.returncode == 0 and stored_key(sm, "other.example", "sel1")["active"] is True
    r = cli(sm, "dkim", "delete", "--domain", "other.example", "--selector", b["selector"])
    assert r.returncode == 0, r.stderr
    r = cli(sm, "dkim", "delete", "--domain", "other.example", "--selector", b["selector"])
    assert r.returncode == 1 and "does not exist" in r.stderr
    keys = json.loads(cli(sm, "dkim", "list", "--domain", "other.example", "--json").stdout)
    assert sorted(k["selector"] for k in keys) == sorted([a["selector"], "sel1"])


# --- DNS records ------------------------------------------------------------------------


def tlsa_311(cert_path):
    """SHA-256 of the certificate's DER SubjectPublicKeyInfo, by openssl."""
    pub = subprocess.run(["openssl", "x509", "-in", str(cert_path), "-noout", "-pubkey"],
                         capture_output=True, check=True, timeout=30).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub,
                         capture_output=True, check=True, timeout=30).stdout
    return hashlib.sha256(der).hexdigest()


def by_name_type(recs):
    out = {}
    for r in recs:
        out.setdefault((r["name"], r["type"]), []).append(r)
    return out


def test_dns_records_zone_and_json(sm):
    cli(sm, "dkim", "generate", "--domain", "other.example", "--algorithm", "rsa",
        "--selector", "dns1")
    keys = json.loads(cli(sm, "dkim", "list", "--domain", "other.example", "--json").stdout)
    assert "dns1" in [k["selector"] for k in keys]
    r = cli(sm, "dns", "records", "other.example", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    j = json.loads(r.stdout)
    assert j["domain"] == "other.example" and j["mta_sts"] is None
    recs = by_name_type(j["records"])
    assert recs[("other.example.", "MX")][0]["value"] == "10 mail.test."
    assert recs[("other.example.", "TXT")][0]["value"].startswith("v=spf1 mx")
    # every key of the domain, with its stored TXT value
    for k in keys:
        got = recs[(k["selector"] + "._domainkey.other.example.", "TXT")]
        assert got[0]["value"] == k["txt"]
    assert len([n for (n, t) in recs if "_domainkey" in n]) == len(keys)
    assert recs[("_dmarc.other.example.", "TXT")][0]["value"] == \
        "v=DMARC1; p=quarantine; rua=mailto:postmaster@other.example"
    assert recs[("_smtp._tls.other.example.", "TXT")][0]["value"] == \
        "v=TLSRPTv1; rua=mailto:postmaster@other.example"
    assert recs[("_submissions._tcp.other.example.", "SRV")][0]["value"] == "0 1 465 mail.test."
    assert recs[("_imaps._tcp.other.example.", "SRV")][0]["value"] == "0 1 993 mail.test."
    # TLSA from the mx listener's certificate
    tlsa = recs[("_25._tcp.mail.test.", "TLSA")][0]["value"]
    assert tlsa == "3 1 1 " + tlsa_311(sm.cert)
    assert not any(t == "TXT" and n.startswith("_mta-sts.") for (n, t) in recs)

    # the zone snippet says the same
    r = cli(sm, "dns", "records", "other.example")
    assert r.returncode == 0, r.stderr
    zone = r.stdout
    assert re.search(r"^other\.example\.\s+\d+\s+IN\s+MX\s+10 mail\.test\.$", zone, re.M)
    assert re.search(r"^_25\._tcp\.mail\.test\.\s+\d+\s+IN\s+TLSA\s+3 1 1 " +
                     tlsa_311(sm.cert) + "$", zone, re.M)
    for k in keys:
        line = [l for l in zone.splitlines()
                if l.startswith(k["selector"] + "._domainkey.other.example.")]
        assert len(line) == 1 and "".join(re.findall(r'"([^"]*)"', line[0])) == k["txt"]

    # MTA-STS on request, no reports, strict DMARC
    r = cli(sm, "dns", "records", "OTHER.example", "--json", "--mta-sts", "testing",
            "--report", "none", "--dmarc", "reject")
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    recs = by_name_type(j["records"])
    sts = recs[("_mta-sts.other.example.", "TXT")][0]["value"]
    assert re.fullmatch(r"v=STSv1; id=[0-9a-f]{20}", sts)
    assert "mode: testing" in j["mta_sts"]["policy"] and "mx: mail.test" in j["mta_sts"]["policy"]
    assert ("_smtp._tls.other.example.", "TXT") not in recs
    assert recs[("_dmarc.other.example.", "TXT")][0]["value"] == "v=DMARC1; p=reject"
    r2 = cli(sm, "dns", "records", "other.example", "--mta-sts", "testing")
    assert "; MTA-STS policy, to serve at https://mta-sts.other.example/" in r2.stdout
    assert r2.stdout.count("mode: testing") == 1
    assert sts.split("id=")[1] in r2.stdout  # the id is stable for one policy

    # errors
    r = cli(sm, "dns", "records", "nosuch.example")
    assert r.returncode == 1 and "domain 'nosuch.example' does not exist" in r.stderr
    r = cli(sm, "dns", "records", "other.example", "--dmarc", "maybe")
    assert r.returncode == 1 and "DMARC policy must be" in r.stderr
    r = cli(sm, "dns", "records", "other.example", "--report", "not an address")
    assert r.returncode == 1 and "invalid report address" in r.stderr
    r = cli(sm, "dns", "records")
    assert r.returncode == 2 and "usage" in r.stderr


# --- queue ---------------------------------------------------------------------------


def submit(sm, rcpts, subject):
    """Submit with SMTP AUTH; rcpts outside our domains go to the queue."""
    msg = (f"From: alice@{DOMAIN}\r\nTo: {', '.join(rcpts)}\r\nSubject: {subject}\r\n"
           f"\r\nqueued for the admin test\r\n")
    with smtplib.SMTP("127.0.0.1", sm.ports["sub"], timeout=10) as s:
        s.starttls(context=sm.client_context())
        s.login("alice@example.org", PASSWORDS["alice@example.org"])
        refused = s.sendmail(f"alice@{DOMAIN}", rcpts, msg.encode())
        assert refused == {}
    rows = sm.query("SELECT q.id FROM queue_messages q JOIN queue_rcpts r ON r.message_id = q.id"
                    f" WHERE r.rcpt = '{rcpts[0]}' ORDER BY q.id DESC LIMIT 1")
    assert rows, "the message was not queued"
    return rows[0]["id"]


def rcpt_rows(sm, qid):
    return sm.query("SELECT rcpt, status, next_attempt <= now() AS due, attempts"
                    f" FROM queue_rcpts WHERE message_id = {qid} ORDER BY id")


def test_queue_cli_list_show_retry_delete(sm):
    q1 = submit(sm, ["one@remote.example", "two@remote.example"], "queue cli 1")
    q2 = submit(sm, ["three@far.example"], "queue cli 2")
    # a message the workers tried before: not due for an hour
    sm.postgres.psql("UPDATE queue_rcpts SET next_attempt = now() + interval '1 hour',"
                     " attempts = 2, last_error = '451 4.4.1 try later'"
                     f" WHERE message_id IN ({q1}, {q2})", dbname=sm.db.name)

    r = cli(sm, "queue", "list", "--json")
    assert r.returncode == 0, r.stderr
    msgs = {m["id"]: m for m in json.loads(r.stdout)}
    assert q1 in msgs and q2 in msgs
    m = msgs[q1]
    assert m["sender"] == f"alice@{DOMAIN}" and m["account"] == "alice@example.org"
    assert m["size"] > 0 and re.fullmatch(r"[0-9a-f]{64}", m["blob_key"])
    assert [x["rcpt"] for x in m["recipients"]] == ["one@remote.example", "two@remote.example"]
    assert all(x["status"] == "pending" and x["attempts"] == 2 and
               x["last_error"] == "451 4.4.1 try later" for x in m["recipients"])

    r = cli(sm, "queue", "list")
    assert r.returncode == 0 and f"\n{q1} " in "\n" + r.stdout
    assert "one@remote.example" in r.stdout and 'last-error="451 4.4.1 try later"' in r.stdout

    r = cli(sm, "queue", "show", str(q2), "--json")
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert j["id"] == q2 and [x["rcpt"] for x in j["recipients"]] == ["three@far.example"]
    r = cli(sm, "queue", "show", str(q2))
    assert r.returncode == 0 and "three@far.example" in r.stdout

    # retry one: only its recipients become due
    assert not any(x["due"] for x in rcpt_rows(sm, q1) + rcpt_rows(sm, q2))
    r = cli(sm, "queue", "retry", str(q1))
    assert r.returncode == 0, r.stderr
    assert f"queue message {q1}: 2 pending recipients due now" in r.stdout
    assert all(x["due"] for x in rcpt_rows(sm, q1))
    assert not any(x["due"] for x in rcpt_rows(sm, q2))
    # a recipient that is done is not retried
    sm.postgres.psql(f"UPDATE queue_rcpts SET status = 'sent' WHERE rcpt = 'two@remote.example'"
                     f" AND message_id = {q1}", dbname=sm.db.name)
    r = cli(sm, "queue", "retry", str(q1), "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == {"ok": True, "retried": 1}
    # retry --all
    r = cli(sm, "queue", "retry", "--all")
    assert r.returncode == 0, r.stderr
    assert all(x["due"] for x in rcpt_rows(sm, q2))

    # delete: the message and its recipients, nothing else
    r = cli(sm, "queue", "delete", str(q2))
    assert r.returncode == 0 and f"queue message {q2} deleted (1 recipients" in r.stdout
    assert sm.query(f"SELECT id FROM queue_messages WHERE id = {q2}") == []
    assert rcpt_rows(sm, q2) == []
    assert len(rcpt_rows(sm, q1)) == 2

    # errors
    for args in (("show", "999999"), ("retry", "999999"), ("delete", "999999"),
                 ("delete", str(q2))):
        r = cli(sm, "queue", *args)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert "does not exist" in r.stderr
    r = cli(sm, "queue", "show", "abc")
    assert r.returncode == 2 and "'abc' is not a queue id" in r.stderr
    r = cli(sm, "queue", "retry")
    assert r.returncode == 2 and "usage" in r.stderr
    r = cli(sm, "queue", "show", "999999", "--json")
    assert r.returncode == 1 and json.loads(r.stdout)["ok"] is False
    cli(sm, "queue", "delete", str(q1))


# --- the admin API ----------------------------------------------------------------------


def test_api_dkim(sm):
    st, body, _ = api(sm, "POST", "/api/v1/domains/other.example/dkim",
                      {"algorithm": "rsa", "selector": "api1"})
    assert st == 201, body
    assert body["selector"] == "api1" and body["algorithm"] == "rsa-sha256"
    assert body["dns_name"] == "api1._domainkey.other.example"
    row = stored_key(sm, "other.example", "api1")
    assert public_bytes(row["private_key"], "rsa") == p_of(body["txt"])[1]
    sign_and_verify(sm, "other.example", "api1", body["txt"], row["private_key"])
    st, body, _ = api(sm, "POST", "/api/v1/domains/other.example/dkim", {"algorithm": "ed25519"})
    assert st == 201 and body["selector"].startswith("ed" + month())

    st, body, _ = api(sm, "GET", "/api/v1/domains/other.example/dkim")
    assert st == 200 and "api1" in [k["selector"] for k in body]
    assert all(k["domain"] == "other.example" for k in body)

    # errors
    st, body, _ = api(sm, "POST", "/api/v1/domains/other.example/dkim",
                      {"algorithm": "ed25519", "selector": "api1"})
    assert st == 409 and "already exists" in body["error"]
    st, body, _ = api(sm, "POST", "/api/v1/domains/nosuch.example/dkim", {"algorithm": "rsa"})
    assert st == 404 and "does not exist" in body["error"]
    st, body, _ = api(sm, "GET", "/api/v1/domains/nosuch.example/dkim")
    assert st == 404 and body["status"] == 404
    st, body, _ = api(sm, "POST", "/api/v1/domains/other.example/dkim", {"algorithm": "dsa"})
    assert st == 400 and "'algorithm' must be ed25519 or rsa" in body["error"]
    st, body, _ = api(sm, "POST", "/api/v1/domains/other.example/dkim", {"selector": "x"})
    assert st == 400 and "'algorithm' is required" in body["error"]
    st, body, _ = api(sm, "POST", "/api/v1/domains/other.example/dkim",
                      {"algorithm": "rsa", "bits": "4096"})
    assert st == 400 and "unknown member 'bits'" in body["error"]
    st, body, _ = api(sm, "POST", "/api/v1/domains/other.example/dkim",
                      {"algorithm": "rsa", "selector": "no way"})
    assert st == 400 and "selector" in body["error"]
    st, body, head = api(sm, "DELETE", "/api/v1/domains/other.example/dkim")
    assert st == 405 and "Allow: GET, POST" in head


def test_api_dns(sm):
    st, body, head = api(sm, "GET", "/api/v1/domains/other.example/dns")
    assert st == 200, body
    assert "application/json" in head
    recs = by_name_type(body["records"])
    assert recs[("other.example.", "MX")][0]["value"] == "10 mail.test."
    assert recs[("_25._tcp.mail.test.", "TLSA")][0]["value"] == "3 1 1 " + tlsa_311(sm.cert)
    keys = json.loads(cli(sm, "dkim", "list", "--domain", "other.example", "--json").stdout)
    for k in keys:
        assert recs[(k["selector"] + "._domainkey.other.example.", "TXT")][0]["value"] == k["txt"]
    # the CLI and the API agree
    assert json.loads(cli(sm, "dns", "records", "other.example", "--json").stdout) == body

    st, text, head = api(sm, "GET", "/api/v1/domains/other.example/dns?format=zone")
    assert st == 200 and "Content-Type: text/plain" in head
    assert text == cli(sm, "dns", "records", "other.example").stdout
    st, text, _ = api(sm, "GET", "/api/v1/domains/other.example/dns?format=zone&mta_sts=enforce"
                                 "&report=none")
    assert st == 200 and "_mta-sts.other.example." in text and "_smtp._tls" not in text
    assert "mode: enforce" in text

    st, body, _ = api(sm, "GET", "/api/v1/domains/nosuch.example/dns")
    assert st == 404 and "does not exist" in body["error"]
    st, body, _ = api(sm, "GET", "/api/v1/domains/other.example/dns?format=xml")
    assert st == 400 and "format" in body["error"]
    st, body, _ = api(sm, "GET", "/api/v1/domains/other.example/dns?dmarc=maybe")
    assert st == 400 and "DMARC" in body["error"]
    st, body, head = api(sm, "POST", "/api/v1/domains/other.example/dns", {})
    assert st == 405 and "Allow: GET" in head


def test_api_queue(sm):
    q1 = submit(sm, ["api-one@remote.example"], "queue api 1")
    q2 = submit(sm, ["api-two@remote.example", "api-three@remote.example"], "queue api 2")
    sm.postgres.psql("UPDATE queue_rcpts SET next_attempt = now() + interval '1 hour'"
                     f" WHERE message_id IN ({q1}, {q2})", dbname=sm.db.name)

    st, body, _ = api(sm, "GET", "/api/v1/queue")
    assert st == 200, body
    ids = [m["id"] for m in body]
    assert q1 in ids and q2 in ids and ids == sorted(ids)
    st, body, _ = api(sm, "GET", "/api/v1/queue?limit=1")
    assert st == 200 and len(body) == 1
    st, body, _ = api(sm, "GET", f"/api/v1/queue/{q2}")
    assert st == 200 and body["id"] == q2
    assert [r["rcpt"] for r in body["recipients"]] == ["api-two@remote.example",
                                                      "api-three@remote.example"]
    assert body["sender"] == f"alice@{DOMAIN}" and body["account"] == "alice@example.org"
    # the CLI shows the same
    assert json.loads(cli(sm, "queue", "show", str(q2), "--json").stdout) == body

    st, body, _ = api(sm, "POST", f"/api/v1/queue/{q2}/retry")
    assert st == 200 and body == {"id": q2, "retried": 2}
    assert all(x["due"] for x in rcpt_rows(sm, q2))
    assert not any(x["due"] for x in rcpt_rows(sm, q1))
    # retry all (the CLI's `queue retry --all`): every pending recipient,
    # not the ones that are done
    sm.postgres.psql("UPDATE queue_rcpts SET next_attempt = now() + interval '1 hour'"
                     f" WHERE message_id IN ({q1}, {q2})", dbname=sm.db.name)
    sm.postgres.psql("UPDATE queue_rcpts SET status = 'sent'"
                     " WHERE rcpt = 'api-three@remote.example'", dbname=sm.db.name)
    pending = sm.query("SELECT count(*) AS n FROM queue_rcpts WHERE status = 'pending'")[0]["n"]
    st, body, _ = api(sm, "POST", "/api/v1/queue/retry")
    assert st == 200 and body == {"retried": pending}, body
    assert pending >= 2
    assert all(x["due"] for x in rcpt_rows(sm, q1))
    rows = {x["rcpt"]: x for x in rcpt_rows(sm, q2)}
    assert rows["api-two@remote.example"]["due"]
    assert not rows["api-three@remote.example"]["due"]
    st, body, head = api(sm, "GET", "/api/v1/queue/retry")
    assert st == 405 and "Allow: POST" in head
    st, body, head = api(sm, "DELETE", "/api/v1/queue/retry")
    assert st == 405 and "Allow: POST" in head
    st, body, _ = curl(sm.ports["admin"], "POST", "/api/v1/queue/retry")
    assert st == 401

    st, body, _ = api(sm, "DELETE", f"/api/v1/queue/{q1}")
    assert st == 204 and body is None
    assert sm.query(f"SELECT id FROM queue_messages WHERE id = {q1}") == []
    assert rcpt_rows(sm, q1) == []

    # errors
    st, body, _ = api(sm, "GET", f"/api/v1/queue/{q1}")
    assert st == 404 and body["error"] == f"queue message {q1} does not exist"
    st, body, _ = api(sm, "DELETE", f"/api/v1/queue/{q1}")
    assert st == 404
    st, body, _ = api(sm, "POST", "/api/v1/queue/999999/retry")
    assert st == 404 and "does not exist" in body["error"]
    st, body, _ = api(sm, "GET", "/api/v1/queue/abc")
    assert st == 400 and "'abc' is not a queue id" in body["error"]
    st, body, _ = api(sm, "GET", "/api/v1/queue?limit=-3")
    assert st == 400
    st, body, head = api(sm, "GET", f"/api/v1/queue/{q2}/retry")
    assert st == 405 and "Allow: POST" in head
    st, body, head = api(sm, "POST", "/api/v1/queue", {})
    assert st == 405 and "Allow: GET" in head
    st, body, _ = api(sm, "GET", f"/api/v1/queue/{q2}/other")
    assert st == 404
    # without credentials nothing is revealed
    st, body, _ = curl(sm.ports["admin"], "GET", "/api/v1/queue")
    assert st == 401
    api(sm, "DELETE", f"/api/v1/queue/{q2}")
