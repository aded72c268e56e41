#!/usr/bin/env python3
"""Write the seed corpus of fuzz_imap_session into tests/fuzz/corpus/imap_session/.

Each transcript in tests/unit/imap_transcripts becomes one seed: the three
option bytes fuzz_imap_session.c reads (switches, input piece size, event
seed) followed by the client's side of the dialogue, with the transcripts'
credentials replaced by the fuzzer's account ("alice"/"pw").  A few
hand-written inputs follow.

Run from the repository root:  python3 tests/fuzz/imap_session_seeds.py
"""
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SRC = os.path.join(ROOT, "tests", "unit", "imap_transcripts")
DST = os.path.join(ROOT, "tests", "fuzz", "corpus", "imap_session")


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
            if n in "rnt\\":
                out += {"r": b"\r", "n": b"\n", "t": b"\t", "\\": b"\\"}[n]
                i += 2
                continue
        out += c.encode("latin1")
        i += 1
    return bytes(out)


def transcript_seed(path, index):
    opt, stream = 0x08, bytearray()  # no TLS unless the transcript says so
    for line in open(path, encoding="latin1"):
        line = line.rstrip("\n")
        if line == "# config tls":
            opt &= ~0x08
        elif line == "# config plaintext":
            opt |= 0x10
        elif line == "# config rev2":
            opt |= 0x02
        elif line.startswith("C:"):
            stream += unescape(line[3:] if line[2:3] == " " else line[2:]) + b"\r\n"
        elif line.startswith("R:"):
            stream += unescape(line[3:] if line[2:3] == " " else line[2:])
    stream = bytes(stream).replace(b"alice@example.org", b"alice").replace(b"secret", b"pw")
    opt |= 0x01 if index % 2 else 0  # half with deferred completions
    piece = 0 if index % 3 == 0 else (7 * index) % 64 + 1
    return bytes([opt, piece, index * 37 % 256]) + stream


HAND = {
    "idle_pipelined": bytes([0x01, 0, 4]) + b"a LOGIN alice pw\r\nb SELECT INBOX\r\n"
    b"c IDLE\r\nDONE\r\nd UID FETCH 1:* (FLAGS BODY.PEEK[HEADER])\r\ne LOGOUT\r\n",
    "append_literal_plus": bytes([0x00, 5, 9]) + b"a LOGIN alice pw\r\n"
    b"b APPEND INBOX (\\Seen) {20+}\r\nSubject: x\r\n\r\nhello\r\n"
    b"c SELECT INBOX\r\nd FETCH * (BODY[] BODYSTRUCTURE ENVELOPE)\r\n",
    "qresync": bytes([0x05, 0, 2]) + b"a LOGIN alice pw\r\nb ENABLE QRESYNC\r\n"
    b"c SELECT INBOX (QRESYNC (1000 2 1:9))\r\nd STORE 1:* +FLAGS (\\Deleted)\r\n"
    b"e UID EXPUNGE 1:2\r\nf UID FETCH 1:* FLAGS (CHANGEDSINCE 1 VANISHED)\r\n",
    "search_sort": bytes([0x01, 3, 8]) + b"a LOGIN alice pw\r\nb SELECT INBOX\r\n"
    b"c UID SEARCH RETURN (MIN MAX COUNT ALL) OR (FROM alice SINCE 1-Jan-2020) NOT 2:*\r\n"
    b"d SORT (REVERSE SUBJECT DATE) UTF-8 TEXT \"\"\r\n",
    "master_authenticate": bytes([0x08 | 0x10, 0, 0]) + b"a AUTHENTICATE PLAIN\r\n"
    b"YWxpY2UAYWRtaW4AcHc=\r\nb LIST (SUBSCRIBED RECURSIVEMATCH) \"\" * RETURN (STATUS (SIZE))\r\n",
    "starttls": bytes([0x08, 0, 1]) + b"a STARTTLS\r\nb LOGIN alice pw\r\n",
}


def main():
    os.makedirs(DST, exist_ok=True)
    names = sorted(n for n in os.listdir(SRC) if n.endswith(".txt"))
    for i, name in enumerate(names):
        with open(os.path.join(DST, name[:-4]), "wb") as f:
            f.write(transcript_seed(os.path.join(SRC, name), i))
    for name, data in HAND.items():
        with open(os.path.join(DST, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
