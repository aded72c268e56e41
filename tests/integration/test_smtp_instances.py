"""Two tailpost-mailbox instances on one Postgres, Redis and S3 take mail
for the same INBOX at the same time: every message is stored once, UIDs
are exactly 1..N without gaps or duplicates (tp_deliver allocates them
under the mailbox row lock), MODSEQs are distinct, and every blob is
readable through the shared S3."""
import concurrent.futures
import smtplib

from smtp_util import SmtpMailbox

PER_INSTANCE = 40


def send_many(port, tag):
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("pair.example")
        for i in range(PER_INSTANCE):
            body = f"Subject: {tag} {i}\r\n\r\nx\r\n".encode()
            assert s.sendmail("x@remote.example", ["alice@example.org"], body) == {}


def test_two_instances_deliver_into_one_inbox(tmp_path, postgres, postgres_db, redis_clean, s3):
    bucket = s3.create_bucket()
    one = SmtpMailbox(tmp_path, postgres, postgres_db, redis=redis_clean, s3=s3,
                      s3_bucket=bucket, name="one")
    two = SmtpMailbox(tmp_path, postgres, postgres_db, redis=redis_clean, s3=s3,
                      s3_bucket=bucket, name="two")
    one.setup_directory()
    one.start()
    two.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            futs = [ex.submit(send_many, b.ports["mx"], f"{b.mb.name}{k}")
                    for b in (one, two) for k in range(2)]
            for f in futs:
                f.result(timeout=120)
        msgs = one.messages("alice@example.org")
        n = 4 * PER_INSTANCE
        assert len(msgs) == n
        assert sorted(m["uid"] for m in msgs) == list(range(1, n + 1))
        assert len({m["modseq"] for m in msgs}) == n
        assert len({m["hdr_subject"] for m in msgs}) == n
        # every blob readable through the shared S3
        for m in msgs[:: n // 8]:
            assert len(one.blob(m["blob_key"])) == m["size"]
        for b in (one, two):
            assert any(d.get("msg") == "smtp message stored" for d in b.mb.lines())
    finally:
        assert one.stop() == 0
        assert two.stop() == 0
