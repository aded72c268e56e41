"""A 50 MB message costs no 50 MB of RAM: it streams through the session
into the spool file (hashed and MIME-parsed on the way) and from there
into the blob store (fs copy on the thread pool, or an S3 PUT read from
the file).  The daemon's peak RSS (VmHWM) may grow by a bounded amount
only; ASan's quarantine is made small for the measurement so that freed
read buffers do not count as live memory.
"""
import hashlib

import pytest

from smtp_util import Raw, SmtpMailbox

SIZE_MB = 50
ASAN = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:quarantine_size_mb=4:"
                        "thread_local_quarantine_size_kb=64"}


@pytest.mark.parametrize("store", ["fs", "s3"])
def test_fifty_megabytes_bounded_memory(tmp_path, postgres, postgres_db, s3, store):
    kw = {}
    if store == "s3":
        kw = {"s3": s3, "s3_bucket": s3.create_bucket()}
    sm = SmtpMailbox(tmp_path, postgres, postgres_db, smtp_extra="max_message_size: 64MB",
                     env=ASAN, **kw)
    sm.setup_directory().start()
    try:
        # warm up every code path once, then take the baseline
        c = Raw(sm.ports["mx"], timeout=120)
        c.reply()
        c.cmd("EHLO big.example")
        for i in range(2):
            assert c.cmd("MAIL FROM:<x@remote.example>")[0] == 250
            assert c.cmd("RCPT TO:<bob@example.org>")[0] == 250
            assert c.cmd("DATA")[0] == 354
            c.send(f"Subject: warm {i}\r\n\r\n".encode() + b"w" * 200000 + b"\r\n.\r\n")
            assert c.reply()[0] == 250
        base = sm.peak_rss_kb()
        line = b"0123456789abcdefghijklmnopqrstuvwxyz" * 27 + b"\r\n"  # 974 bytes
        n = SIZE_MB * 1024 * 1024 // len(line) + 1
        head = b"From: x@remote.example\r\nTo: bob@example.org\r\nSubject: fifty\r\n\r\n"
        assert c.cmd("MAIL FROM:<x@remote.example> SIZE=%d" % (len(head) + n * len(line)))[0] == 250
        assert c.cmd("RCPT TO:<bob@example.org>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(head)
        block = line * 1024
        for _ in range(n // 1024):
            c.send(block)
        c.send(line * (n % 1024))
        c.send(b".\r\n")
        code, text = c.reply()
        assert code == 250, text
        c.cmd("QUIT")
        c.close()
        grew_mb = (sm.peak_rss_kb() - base) / 1024
        m = [x for x in sm.messages("bob@example.org") if x["hdr_subject"] == "fifty"][0]
        assert m["size"] > SIZE_MB * 1024 * 1024
        data = sm.blob(m["blob_key"])
        assert hashlib.sha256(data).hexdigest() == m["blob_key"]
        assert data.endswith(head + line * n)
        print(f"peak RSS grew by {grew_mb:.1f} MB for a {SIZE_MB} MB message ({store})")
        assert grew_mb < 16, f"peak RSS grew by {grew_mb:.1f} MB"
        assert sm.stop() == 0
    finally:
        sm.stop()
