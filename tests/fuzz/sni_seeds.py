#!/usr/bin/env python3
"""Write the seed corpus of fuzz_sni into tests/fuzz/corpus/sni/.

Real ClientHellos come from OpenSSL through Python's ssl module (memory
BIOs, no network); the rest are built field by field: fragmented over
several records, without SNI, with a non-host_name entry, malformed
lengths, and a few non-TLS openings (SMTP, HTTP, SSLv2-style).  Run it
again only to change the seeds; the output is committed.
"""
import os
import ssl
import struct

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "sni")


def openssl_hello(sni, alpn=None, tls13_only=False):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if tls13_only:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if alpn:
        ctx.set_alpn_protocols(alpn)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def ext(etype, body):
    return struct.pack("!HH", etype, len(body)) + body


def sni_ext(entries):
    lst = b"".join(struct.pack("!BH", t, len(n)) + n for t, n in entries)
    return ext(0, struct.pack("!H", len(lst)) + lst)


def hello(exts, sid=b"\xaa" * 32, ciphers=b"\x13\x01\x13\x02", comp=b"\x00", hs_type=1):
    body = b"\x03\x03" + bytes(range(32)) + bytes([len(sid)]) + sid
    body += struct.pack("!H", len(ciphers)) + ciphers + bytes([len(comp)]) + comp
    if exts is not None:
        e = b"".join(exts)
        body += struct.pack("!H", len(e)) + e
    return bytes([hs_type]) + len(body).to_bytes(3, "big") + body


def records(msg, frag=0, ctype=22):
    out, off = b"", 0
    frag = frag or len(msg)
    while off < len(msg):
        chunk = msg[off:off + frag]
        out += struct.pack("!BHH", ctype, 0x0301, len(chunk)) + chunk
        off += len(chunk)
    return out


seeds = {
    "openssl_alpn_imap": openssl_hello("Mail.Example.org", ["imap"]),
    "openssl_tls13": openssl_hello("mx1.example.net", tls13_only=True),
    "openssl_no_sni": openssl_hello(None),
    "built_simple": records(hello([sni_ext([(0, b"imap.example.org")])])),
    "built_after_grease": records(hello([ext(0x0A0A, b"\x00"), ext(10, b"\x00\x02\x00\x1d"),
                                         sni_ext([(0, b"a.example")])])),
    "built_frag_1": records(hello([sni_ext([(0, b"x.example")])]), frag=1),
    "built_frag_7": records(hello([sni_ext([(0, b"frag.example.org")])]), frag=7),
    "built_no_ext": records(hello(None)),
    "built_other_type": records(hello([sni_ext([(1, b"not-a-host")])])),
    "built_two_entries": records(hello([sni_ext([(1, b"zz"), (0, b"second.example")])])),
    "bad_ext_len": records(hello([sni_ext([(0, b"x.example")])])[:-2] + b"\xff\xff"),
    "bad_name_underscore": records(hello([sni_ext([(0, b"bad_name.example")])])),
    "bad_server_hello": records(hello([sni_ext([(0, b"x.example")])], hs_type=2)),
    "bad_second_record": records(hello([sni_ext([(0, b"x.example")])]), frag=10)[:15]
    + b"\x17" + records(hello([sni_ext([(0, b"x.example")])]), frag=10)[16:],
    "plain_smtp": b"EHLO client.example.org\r\n",
    "plain_http": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "sslv2_hello": bytes.fromhex("802e0103010015000000100100800300800700c0060040020080040080"),
}

for name, data in seeds.items():
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)
print(f"wrote {len(seeds)} seeds to {HERE}")
