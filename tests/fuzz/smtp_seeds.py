#!/usr/bin/env python3
"""Write the seed corpus of fuzz_smtp into tests/fuzz/corpus/smtp/.

Each transcript in tests/unit/smtp_transcripts becomes one seed: the three
option bytes fuzz_smtp.c reads (role and switches, the seed of the fake
directory's answers, the feed size) followed by the client's side of the
dialogue.  A few hand-written inputs aim at the parsers alone.

Run from the repository root:  python3 tests/fuzz/smtp_seeds.py
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SRC = os.path.join(ROOT, "tests", "unit", "smtp_transcripts")
DST = os.path.join(ROOT, "tests", "fuzz", "corpus", "smtp")
ROLES = {"mx": 0, "submission": 1, "submissions": 2}


def unescape(s):
    out = bytearray()
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            n = s[i + 1]
            if n == "x":
                out.append(int(s[i + 2:i + 4], 16))
                i += 4
                continue
            out += {"r": b"\r", "n": b"\n", "t": b"\t", "\\": b"\\"}[n]
            i += 2
            continue
        out += c.encode()
        i += 1
    return bytes(out)


def transcript_seed(path, index):
    opt, stream = 0x04, bytearray()  # STARTTLS available by default
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if line.startswith("# role "):
            opt = (opt & ~0x03) | ROLES[line.split()[2]]
        elif line.startswith("# starttls off"):
            opt &= ~0x04
        elif line.startswith("# mx_auth on"):
            opt |= 0x08
        elif line.startswith("# repeat "):
            _, _, n, text = line.split(" ", 3)
            stream += (unescape(text) * int(n))[:700]  # past the 512 bound, still small
        elif line.startswith("C:"):
            stream += unescape(line[3:] if line[2:3] == " " else line[2:]) + b"\r\n"
        elif line.startswith("R:"):
            stream += unescape(line[3:] if line[2:3] == " " else line[2:])
    opt |= 0x10 if index % 2 else 0  # half answer requests synchronously
    return bytes([opt, index * 37 % 256, 63]) + bytes(stream)


HAND = {
    "params": b"\x00\x01\x07EHLO a\r\nMAIL FROM:<@x,@y:\"q\\\"t\"@[IPv6:::1]> SIZE=10 BODY=8BITMIME "
              b"SMTPUTF8 RET=FULL ENVID=a+2B AUTH=<>\r\nRCPT TO:<Postmaster> NOTIFY=SUCCESS,DELAY "
              b"ORCPT=utf-8;b\xc3\xa6r@c\r\nRCPT TO:<b@[x-tag:y]>\r\nDATA\r\n",
    "dots": b"\x00\x02\x01EHLO a\r\nMAIL FROM:<>\r\nRCPT TO:<a@b>\r\nDATA\r\n..x\r\n.\n\n.\r\r.\r\n"
            b"a\rb\nc\r\n.\r\nQUIT\r\n",
    "bdat": b"\x00\x03\x05EHLO a\r\nMAIL FROM:<>\r\nRCPT TO:<a@b>\r\nBDAT 3\r\na\r\rBDAT 0 LAST\r\n"
            b"BDAT 99999999999999999999999\r\n",
    "auth": b"\x02\x04\x10EHLO a\r\nAUTH PLAIN\r\nAGEAYg==\r\nAUTH LOGIN YQ==\r\n*\r\n"
            b"AUTH LOGIN\r\nYQ==\r\nYg==\r\nMAIL FROM:<a@b>\r\n",
    "starttls": b"\x05\x05\x3fEHLO a\r\nSTARTTLS\r\nMAIL FROM:<x@y>\r\nEHLO a\r\nAUTH PLAIN AGEAYg==\r\n",
    "controls": b"\x00\x06\x02\x00\x01\xff\r\nEHLO \xc0\xaf\r\nNOOP \xed\xa0\x80\r\n\r\n\n\r\r\n",
}


def main():
    os.makedirs(DST, exist_ok=True)
    names = sorted(n for n in os.listdir(SRC) if n.endswith(".txt"))
    for i, name in enumerate(names):
        seed = transcript_seed(os.path.join(SRC, name), i)
        with open(os.path.join(DST, re.sub(r"\.txt$", "", name)), "wb") as f:
            f.write(seed)
    for name, data in HAND.items():
        with open(os.path.join(DST, "hand_" + name), "wb") as f:
            f.write(data)
    print("wrote %d seeds to %s" % (len(names) + len(HAND), DST), file=sys.stderr)


if __name__ == "__main__":
    main()
