#!/usr/bin/env python3
"""Write the seed corpus of fuzz_smtp_reply into tests/fuzz/corpus/smtp_reply/.

Each seed is the two option bytes fuzz_smtp_reply.c reads (switches, feed
size) followed by what a server says in a whole session: greetings, EHLO
replies with and without extensions, STARTTLS, AUTH, per-recipient
replies, multi-line and odd replies.

Run from the repository root:  python3 tests/fuzz/smtp_reply_seeds.py
"""
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DST = os.path.join(ROOT, "tests", "fuzz", "corpus", "smtp_reply")

EHLO_ALL = (b"250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 10000000\r\n250-8BITMIME\r\n"
            b"250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250-DSN\r\n250-CHUNKING\r\n"
            b"250 AUTH PLAIN LOGIN\r\n")
OK = b"250 2.0.0 ok\r\n"

SEEDS = {
    # opts: bit0-1 tls policy, 2 implicit tls, 3 auth, 4 no pipelining,
    #       5 tls fails, 6 body AGAIN, 7 body error; feed size byte
    "01_plain": (0x10, 0, b"220 mx ESMTP\r\n250 mx\r\n" + OK * 4 + b"354 go\r\n" + OK +
                 OK * 3 + b"354 go\r\n" + OK + b"221 bye\r\n"),
    "02_pipelined": (0x00, 7, b"220 mx ESMTP\r\n" + EHLO_ALL + OK + OK +
                     b"451 4.2.0 busy\r\n550 5.1.1 unknown\r\n354 go\r\n" + OK + b"221 bye\r\n"),
    "03_starttls": (0x02, 3, b"220 mx\r\n250-mx\r\n250 STARTTLS\r\n220 2.0.0 go\r\n" + EHLO_ALL +
                    OK * 4 + b"354 go\r\n" + OK),
    "04_starttls_missing": (0x02, 64, b"220 mx\r\n250 mx\r\n221 bye\r\n"),
    "05_auth_plain": (0x0c, 5, b"220 mx\r\n" + EHLO_ALL + b"235 2.7.0 ok\r\n" + OK * 4 +
                      b"354 go\r\n" + OK),
    "06_auth_login": (0x1c, 2, b"220 mx\r\n250-mx\r\n250 AUTH LOGIN\r\n334 VXNlcm5hbWU6\r\n"
                      b"334 UGFzc3dvcmQ6\r\n235 ok\r\n" + OK * 4 + b"354 go\r\n" + OK),
    "07_auth_fail": (0x0c, 9, b"220 mx\r\n" + EHLO_ALL + b"535 5.7.8 no\r\n221 bye\r\n"),
    "08_helo_fallback": (0x00, 4, b"220 mx\r\n502 5.5.1 no EHLO\r\n250 mx\r\n" + OK * 4 +
                         b"354 go\r\n" + OK),
    "09_greeting_554": (0x00, 64, b"554 5.7.1 go away\r\n221 bye\r\n"),
    "10_421": (0x00, 1, b"220 mx\r\n250 mx\r\n" + OK + b"421 4.4.2 closing\r\n"),
    "11_multiline": (0x10, 11, b"220-mx.example.org\r\n220-second line\r\n220 ready\r\n"
                     b"250-mx\r\n250 8BITMIME\r\n" + OK +
                     b"550-5.1.1 first\r\n550-5.1.1 second\r\n550 5.1.1 third\r\n" + OK + OK +
                     b"354 go\r\n452-4.3.1 full\r\n452 4.3.1 try later\r\n" + OK),
    "12_malformed": (0x00, 3, b"220 mx\r\n25O mx\r\n"),
    "13_injection": (0x01, 64, b"220 mx\r\n250-mx\r\n250 STARTTLS\r\n220 go\r\n250 injected\r\n"),
    "14_rset_reuse": (0x10, 6, b"220 mx\r\n250 mx\r\n451 4.3.0 later\r\n" + OK + OK + OK + OK +
                      b"354 go\r\n" + OK + b"221 bye\r\n"),
    "15_size_limit": (0x00, 13, b"220 mx\r\n250-mx\r\n250 SIZE 100\r\n" + OK * 2 +
                      b"354 go\r\n" + OK),
    "16_body_again": (0x50, 8, b"220 mx\r\n250 mx\r\n" + OK * 4 + b"354 go\r\n" + OK + OK * 3),
    "17_body_error": (0x90, 8, b"220 mx\r\n250 mx\r\n" + OK * 4 + b"354 go\r\n" + OK),
    "18_lf_only": (0x00, 5, b"220 mx\n250-mx\n250 PIPELINING\n250 ok\n250 ok\n250 ok\n250 ok\n"
                   b"354 go\n250 ok\n"),
    "19_tls_fails": (0x21, 64, b"220 mx\r\n250-mx\r\n250 STARTTLS\r\n220 go\r\n"),
    "20_early_reply_in_body": (0x10, 64, b"220 mx\r\n250 mx\r\n" + OK * 4 + b"354 go\r\n"
                               b"552 5.3.4 too big\r\n"),
}


def main():
    os.makedirs(DST, exist_ok=True)
    for name, (opts, feed, data) in SEEDS.items():
        with open(os.path.join(DST, name), "wb") as f:
            f.write(bytes([opts, feed]) + data)
    print(f"wrote {len(SEEDS)} seeds to {DST}")


if __name__ == "__main__":
    main()
