"""Quota on SMTP delivery: a recipient whose account is at or over its
quota (accounts.quota_bytes against the used bytes its mailboxes keep) is
refused at RCPT with 552 5.2.2, as Dovecot's LMTP does (that it is not
counted as abuse is checked by the session transcript 04_mx_rcpt_policy,
since loopback clients are never banned); an account with room, an alias that still reaches someone with
room, and an account without a quota are accepted.  Expunging frees room
again (the used bytes follow).
"""
import smtplib

import pytest

from smtp_util import SmtpMailbox

BIG = "x" * 70 + "\r\n"


def message(rcpt, lines):
    return (f"From: a@sender.example\r\nTo: {rcpt}\r\nSubject: quota\r\n\r\n" +
            BIG * lines).encode()


def send(port, rcpts, lines=60):
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
        c.ehlo("client.example")
        return c.sendmail("a@sender.example", rcpts, message(rcpts[0], lines))


@pytest.fixture
def sm(tmp_path, postgres, postgres_db):
    sm = SmtpMailbox(tmp_path, postgres, postgres_db)
    sm.setup_directory()
    # bob: 3000 bytes; alice: no quota
    sm.postgres.psql("UPDATE accounts SET quota_bytes = 3000 WHERE login = 'bob@example.org'",
                     dbname=sm.db.name)
    sm.start()
    try:
        yield sm
    finally:
        assert sm.stop() == 0


def test_recipient_over_quota_refused_at_rcpt(sm):
    port = sm.ports["mx"]
    # under the quota when RCPT is checked: accepted (it may go over)
    assert send(port, ["bob@example.org"]) == {}
    assert len(sm.messages("bob@example.org")) == 1
    # now over: refused with 552 5.2.2, nothing stored
    with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
        send(port, ["bob@example.org"])
    code, text = e.value.recipients["bob@example.org"]
    assert code == 552 and text.startswith(b"5.2.2"), (code, text)
    assert len(sm.messages("bob@example.org")) == 1
    # others are unaffected, in the same transaction too
    assert send(port, ["bob@example.org", "alice@example.org"]) == \
        {"bob@example.org": (552, b"5.2.2 Mailbox full")}
    assert len(sm.messages("alice@example.org")) == 1
    # an alias that still reaches someone with room (and a remote address) is accepted
    assert send(port, ["team@example.org"], lines=2) == {}
    assert any(d.get("msg") == "smtp recipient over quota" and d.get("rcpt") == "bob@example.org"
               for d in sm.mb.lines())


def test_expunge_frees_room(sm):
    port = sm.ports["mx"]
    assert send(port, ["bob@example.org"]) == {}
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(port, ["bob@example.org"], lines=1)
    # the mailbox's used bytes follow an expunge (tp_expunge)
    bob = "(SELECT mb.id FROM mailboxes mb JOIN accounts a ON a.id = mb.account_id" \
          " WHERE a.login = 'bob@example.org')"
    sm.postgres.psql(f"UPDATE messages SET flags = flags || '{{\\\\Deleted}}'::text[]"
                     f" WHERE mailbox_id IN {bob}", dbname=sm.db.name)
    sm.postgres.psql(f"SELECT tp_expunge(id, NULL) FROM mailboxes WHERE id IN {bob}",
                     dbname=sm.db.name)
    used = sm.query("SELECT coalesce(sum(mb.used_bytes), 0) AS u FROM mailboxes mb"
                    " JOIN accounts a ON a.id = mb.account_id"
                    " WHERE a.login = 'bob@example.org'")[0]["u"]
    assert used == 0, used
    assert send(port, ["bob@example.org"], lines=1) == {}
