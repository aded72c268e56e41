"""DKIM signatures from mailbox/dkim, checked by an independent verifier.

tests/tools/dkim_sign drives our streaming signer (and our key generator and
DNS TXT writer); dkimpy (Debian's python3-dkim, with python3-nacl for
Ed25519) verifies the result, reading the public key from the TXT value we
produced through a dnsfunc override instead of DNS.  Each sample message is
signed with ed25519-sha256 and rsa-sha256 together (both signatures must
verify) and with each alone, fed to the signer in several chunk sizes so
that the streaming splits land everywhere.  Tampered copies must fail.
"""
import os
import pathlib
import subprocess
import tempfile

import pytest

import harness

dkim = pytest.importorskip("dkim")
pytest.importorskip("nacl")  # dkimpy needs it for ed25519-sha256

DOMAIN = "example.com"
T0 = 1700000000


def tool():
    exe = harness.tool_path("dkim_sign")
    if not exe.exists():
        pytest.fail(f"{exe} not built: run make tools")
    return str(exe)


def run(*args, **kw):
    res = subprocess.run([tool(), *args], capture_output=True, timeout=120, **kw)
    assert res.returncode == 0, res.stderr.decode(errors="replace")
    return res.stdout


@pytest.fixture(scope="module")
def keys():
    with tempfile.TemporaryDirectory(prefix="dkim-") as d:
        d = pathlib.Path(d)
        out = {}
        for alg, sel in (("ed25519", "ed"), ("rsa", "rs")):
            pem = run("generate", alg)
            path = d / f"{sel}.pem"
            path.write_bytes(pem)
            txt = run("txt", str(path)).strip()
            assert txt.startswith(b"v=DKIM1; k=" + alg.encode() + b"; p=")
            out[alg] = (path, sel, txt)
        yield out


def dnsfunc_for(keys):
    table = {f"{sel}._domainkey.{DOMAIN}.".encode(): txt for (_, sel, txt) in keys.values()}

    def dnsfunc(name, timeout=5):
        return table.get(name)

    return dnsfunc


def sign(keys, msg, algs, chunk=4096, extra=()):
    with tempfile.NamedTemporaryFile(prefix="dkim-msg-") as f:
        f.write(msg)
        f.flush()
        specs = [f"{keys[a][0]}:{DOMAIN}:{keys[a][1]}" for a in algs]
        return run("sign", "-t", str(T0), "-c", str(chunk), *extra, *specs, f.name)


def verify_all(signed, keys, n):
    """Verify each of the n signatures on top; False where one fails."""
    d = dkim.DKIM(signed)
    dnsfunc = dnsfunc_for(keys)
    out = []
    for i in range(n):
        try:
            out.append(bool(d.verify(idx=i, dnsfunc=dnsfunc)))
        except dkim.DKIMException:  # a body hash mismatch raises
            out.append(False)
    return out


CRLF = b"\r\n"


def msg(*header_lines, body=b"Hello.\r\n"):
    return CRLF.join(header_lines) + CRLF + CRLF + body


BASE = (
    b"From: Joe SixPack <joe@example.com>",
    b"To: Suzie Q <suzie@shopping.example.net>",
    b"Subject: Is dinner ready?",
    b"Date: Fri, 11 Jul 2003 21:00:37 -0700",
    b"Message-ID: <20030712040037.46341.5F8J@example.com>",
)

SAMPLES = {
    "plain": msg(*BASE, body=b"Hi.\r\n\r\nWe lost the game. Are you hungry yet?\r\n\r\nJoe.\r\n"),
    "folded_headers": msg(
        b"From: Joe SixPack\r\n <joe@example.com>",
        b"To: a@example.net,\r\n\tb@example.net,\r\n   c@example.net",
        b"Subject:   a subject   that\r\n \t is folded\t ",
        b"Date: Fri, 11 Jul 2003 21:00:37 -0700",
        b"Cc: x@example.org",
        b"Cc: y@example.org",
        b"MIME-Version: 1.0",
        b"Content-Type: text/plain;\r\n charset=us-ascii",
        b"X-Unsigned: whatever",
    ),
    "trailing_whitespace": msg(
        *BASE,
        body=b"line with trailing spaces   \r\n\tindented\t\tline \t\r\n  \r\n"
        b"a  b\t\tc\r\n \r\n\r\n\r\n   \r\n",
    ),
    "empty_body": msg(*BASE, body=b""),
    "body_only_blank_lines": msg(*BASE, body=b"\r\n\r\n  \r\n"),
    "no_final_crlf": msg(*BASE, body=b"no line end at the end"),
    "no_body_separator": CRLF.join(BASE) + CRLF,
    "long_lines": msg(
        *BASE,
        b"References: " + b" ".join(b"<%d@example.com>" % i for i in range(300)),
        body=(b"x" * 20000 + b"\r\n") * 3 + b"y " * 5000 + b"\r\n",
    ),
    "lf_line_ends": b"\n".join(BASE) + b"\n\nbody with LF\n  only  \n\n",
    "dot_lines": msg(*BASE, body=b".\r\n..\r\n.leading dot\r\n"),
    "utf8_body": msg(*BASE, b"Content-Type: text/plain; charset=utf-8",
                     body="Grüße, 世界  \r\n".encode()),
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_both_algorithms_verify(keys, name):
    m = SAMPLES[name]
    for chunk in (1, 7, 4096):
        if chunk == 1 and len(m) > 20000:
            continue  # byte-at-a-time over 100 kB only costs time under ASan
        signed = sign(keys, m, ["ed25519", "rsa"], chunk=chunk)
        assert signed.endswith(m)
        assert signed.count(b"DKIM-Signature:") == 2
        assert verify_all(signed, keys, 2) == [True, True], (name, chunk)
        # the chunking must not change a byte of the output
        if chunk != 4096:
            assert signed == sign(keys, m, ["ed25519", "rsa"])


@pytest.mark.parametrize("alg", ["ed25519", "rsa"])
def test_single_algorithm_dkim_verify(keys, alg):
    for name in ("plain", "folded_headers", "empty_body", "long_lines"):
        signed = sign(keys, SAMPLES[name], [alg])
        header = signed[: signed.index(b"\r\nFrom:")]
        assert (b"a=%s-sha256;" % alg.encode()) in header
        assert b"c=relaxed/relaxed;" in header
        assert dkim.verify(signed, dnsfunc=dnsfunc_for(keys)), (alg, name)


def test_signature_lines_are_folded(keys):
    signed = sign(keys, SAMPLES["long_lines"], ["ed25519", "rsa"])
    header_block = signed.split(b"\r\nFrom:")[0]
    for line in header_block.split(b"\r\n"):
        assert len(line) <= 78, line


TAMPER = [
    ("body changed", lambda m: m.replace(b"hungry", b"thirsty")),
    ("body line added", lambda m: m + b"P.S. send money\r\n"),
    ("subject changed", lambda m: m.replace(b"dinner ready", b"dinner late")),
    ("second From prepended", lambda m: b"From: Mallory <m@evil.example>\r\n" + m),
    ("From appended", lambda m: m.replace(b"\r\n\r\n", b"\r\nFrom: m@evil.example\r\n\r\n", 1)),
    ("date removed", lambda m: m.replace(b"Date: Fri, 11 Jul 2003 21:00:37 -0700\r\n", b"")),
]


@pytest.mark.parametrize("what,change", TAMPER, ids=[t[0] for t in TAMPER])
def test_tampered_message_fails(keys, what, change):
    signed = sign(keys, SAMPLES["plain"], ["ed25519", "rsa"])
    sigs_end = signed.index(b"From: Joe")
    sigs, original = signed[:sigs_end], signed[sigs_end:]
    assert verify_all(signed, keys, 2) == [True, True]
    tampered = sigs + change(original)
    assert tampered != signed
    assert verify_all(tampered, keys, 2) == [False, False], what


def test_changes_relaxed_canonicalization_tolerates(keys):
    """Whitespace changes that relays make must not break relaxed/relaxed."""
    signed = sign(keys, SAMPLES["plain"], ["ed25519", "rsa"])
    sigs_end = signed.index(b"From: Joe")
    sigs, original = signed[:sigs_end], signed[sigs_end:]
    changed = original.replace(b"Subject: Is dinner", b"SUBJECT:   Is \r\n\tdinner")
    changed = changed.replace(b"We lost the game.", b"We  lost\tthe game.   ")
    changed = changed + b"\r\n\r\n"
    assert verify_all(sigs + changed, keys, 2) == [True, True]


def test_wrong_key_fails(keys):
    signed = sign(keys, SAMPLES["plain"], ["ed25519"])
    other = run("generate", "ed25519")
    with tempfile.NamedTemporaryFile(prefix="dkim-key-") as f:
        f.write(other)
        f.flush()
        other_txt = run("txt", f.name).strip()
    bad = dict(keys)
    bad["ed25519"] = (keys["ed25519"][0], keys["ed25519"][1], other_txt)
    assert not dkim.verify(signed, dnsfunc=dnsfunc_for(bad))


def test_large_message_streams(keys, tmp_path):
    """A 20 MB body goes through in 64 kB chunks and still verifies."""
    line = b"0123456789 abcdefghij  klmnopqrstuvwxyz \t ABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n"
    body = line * (20 * 1024 * 1024 // len(line))
    m = msg(*BASE, body=body)
    path = tmp_path / "big.eml"
    path.write_bytes(m)
    specs = [f"{keys[a][0]}:{DOMAIN}:{keys[a][1]}" for a in ("ed25519", "rsa")]
    out = run("sign", "-t", str(T0), "-c", "65536", *specs, str(path))
    assert out.endswith(m)
    assert verify_all(out, keys, 2) == [True, True]


def test_header_bound_is_enforced(keys):
    m = msg(*BASE, b"X-Filler: " + b"a" * 5000)
    with tempfile.NamedTemporaryFile(prefix="dkim-msg-") as f:
        f.write(m)
        f.flush()
        spec = f"{keys['ed25519'][0]}:{DOMAIN}:{keys['ed25519'][1]}"
        res = subprocess.run([tool(), "sign", "-H", "1024", spec, f.name],
                             capture_output=True, timeout=60)
    assert res.returncode == 1
    assert b"bound" in res.stderr
