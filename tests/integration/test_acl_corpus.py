"""tailpost-acl against captured Tailscale verdicts.

Each file of ../shared/corpus/tailscale-policytests (beside the repository)
records a policy with a tests block, the tailnet it was evaluated on and what
Tailscale's control plane answered (200, or 400 with a message).  For every
file, `tailpost-acl test --topology CAPTURE POLICY` must give the same
verdict, and for a rejection the same message.
"""
import json
import pathlib
import subprocess

import pytest

from harness import ROOT, bin_path

CORPUS = ROOT.parent / "shared" / "corpus" / "tailscale-policytests"
FILES = sorted(CORPUS.glob("*.hujson"))


def strip_comments(text):
    """HuJSON comments out (strings respected); captures have no trailing commas."""
    out = []
    i, n, in_str = 0, len(text), False
    while i < n:
        c = text[i]
        if in_str:
            out.append(c)
            if c == "\\":
                out.append(text[i + 1])
                i += 2
                continue
            if c == '"':
                in_str = False
            i += 1
        elif c == '"':
            in_str = True
            out.append(c)
            i += 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            i = text.index("*/", i) + 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def test_corpus_is_present():
    assert CORPUS.is_dir(), f"corpus missing: {CORPUS}"
    assert len(FILES) == 57, f"expected 57 captures, found {len(FILES)}"


@pytest.mark.parametrize("capture", FILES, ids=[f.stem for f in FILES])
def test_capture_verdict(capture, tmp_path):
    data = json.loads(strip_comments(capture.read_text()))
    inp = data["input"]
    want_code = inp["api_response_code"]
    want_msg = (inp.get("api_response_body") or {}).get("message")
    policy = tmp_path / "policy.hujson"
    policy.write_text(json.dumps(inp["full_policy"], indent="\t") + "\n")

    r = subprocess.run(
        [str(bin_path("tailpost-acl")), "--format", "json", "test", "--topology",
         str(capture), str(policy)],
        capture_output=True, text=True, timeout=60)
    result = json.loads(r.stdout)
    assert result["version"] == 1
    msgs = [d["message"] for d in result["diagnostics"]]
    if want_code == 200:
        assert r.returncode == 0, f"Tailscale accepted; we said {r.returncode}: {msgs}"
        assert result["ok"] is True
    else:
        assert r.returncode == 1, f"Tailscale rejected ({want_msg}); we said {r.returncode}: {msgs}"
        assert want_msg in msgs, f"message {want_msg!r} not among {msgs}"
        # Every failure but the summary points into the policy file.
        for d in result["diagnostics"][:-1]:
            assert d["file"] == str(policy) and d["line"] > 0 and d["col"] > 0, d


@pytest.mark.parametrize("capture", FILES[:12], ids=[f.stem for f in FILES[:12]])
def test_fmt_matches_capture_layout(capture, tmp_path):
    """The captures were laid out by Tailscale's Go formatter as standard JSON
    (then given a comment header): without the header, fmt must find nothing
    to change in their ~7000 lines."""
    body = "".join(line for line in capture.read_text().splitlines(keepends=True)
                   if not line.startswith("//"))
    f = tmp_path / "capture.json"
    f.write_text(body)
    r = subprocess.run([str(bin_path("tailpost-acl")), "fmt", "--check", str(f)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
