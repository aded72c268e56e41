"""The IMAP search builder (mailbox/imap/search_sql.c) on a real PostgreSQL
with the real schema: every SEARCH key and SORT criterion of a table runs
as the SQL the Postgres store will send (printed by the imap_search_sql
tool), with the client's strings as parameters, over messages delivered
with tp_deliver; the matching UIDs must be exactly the expected ones.

This checks what the C unit test cannot: that the SQL is valid, that
substring search has no wildcard characters (a "%" or "_" in a search
string is literal), that case folding works beyond ASCII (lower() on the
UTF-8 database), that NOT/OR keep their two-valued meaning over NULL
columns, and that the date, flag, UID and MODSEQ keys mean what IMAP
says.
"""
import json
import subprocess

import pytest

import harness
import store_util as su

# (from, to, cc, subject, hdr_date, internaldate, size, flags, search_text)
MESSAGES = [
    ("Alice Example <alice@example.org>", "bob@example.net", None, "Lunch on Thursday?",
     "2024-03-12 09:15:00+00", "2024-03-12 09:16:40+00", 559, ["\\Seen"],
     "From: Alice Example <alice@example.org>\nTo: bob@example.net\n"
     "Subject: Lunch on Thursday?\nX-Mailer: Thunderbird 115\n"
     "Hi Bob, are we still on for lunch? The caf\u00e9 opens at noon."),
    ("Dave <dave@example.com>", "Erin <erin@example.com>",
     'Team: grace@example.com, "Heidi H." <heidi@example.com>;', "Report attached",
     "2024-04-04 17:30:00+00", "2024-04-04 17:30:00+00", 2267, ["\\Flagged"],
     "From: Dave <dave@example.com>\nSubject: Report attached\n"
     "Here is the quarterly report. 50% off_sale"),
    ("Ivan <ivan@example.com>", "Judy <judy@example.com>", None, "Fwd: Spring sale",
     "2024-04-05 10:00:00+00", "2024-04-05 10:00:00+00", 779, ["$Forwarded"],
     "From: Ivan <ivan@example.com>\nSubject: Fwd: Spring sale\nSee below. Everything 20% off."),
    ('"Newsletter Team" <news@shop.example>', "Carol <carol@example.com>", None, "Spring sale",
     "2024-04-03 12:00:00+00", "2024-04-03 12:00:00+00", 708, ["\\Answered", "\\Seen"],
     "From: Newsletter Team <news@shop.example>\nSubject: Spring sale\nEverything 20% off."),
    ("Andr\u00e9 Pirard <PIRARD@vm1.ulg.ac.be>", "moore@cs.utk.edu", None,
     "CAF\u00c9 \u00dcber", "2024-01-01 00:00:00+00", "2024-01-01 00:00:00+00", 691,
     ["\\Deleted"], "From: Andr\u00e9 Pirard\nSubject: CAF\u00c9 \u00dcber\nstra\u00dfe"),
    (None, None, None, None, None, "2003-07-01 10:52:37+00", 313, ["\\Draft"],
     "no header fields at all"),
]
UIDS = "1,2,3,4,5,6"

SEARCHES = [
    ("ALL", [1, 2, 3, 4, 5, 6]),
    ("SEEN", [1, 4]),
    ("UNSEEN", [2, 3, 5, 6]),
    ("FLAGGED", [2]),
    ("OR ANSWERED DRAFT", [4, 6]),
    ("KEYWORD $Forwarded", [3]),
    ("UNKEYWORD $Forwarded NOT DELETED", [1, 2, 4, 6]),
    ("NEW", []),
    ("FROM alice", [1]),
    ("FROM \"ANDR\u00c9\"", [5]),
    ("SUBJECT \"caf\u00e9\"", [5]),
    ("SUBJECT \"\u00fcber\"", [5]),
    ("SUBJECT \"\"", [1, 2, 3, 4, 5]),
    ("NOT SUBJECT \"\"", [6]),
    ("NOT FROM alice", [2, 3, 4, 5, 6]),
    ("TO judy", [3]),
    ("CC heidi", [2]),
    ("BCC anyone", []),
    ("HEADER X-Mailer thunder", [1]),
    ("HEADER X-Mailer \"\"", [1]),
    ("HEADER Message-ID \"\"", []),
    ("BODY \"50% off_\"", [2]),
    ("BODY \"20% off\"", [3, 4]),
    ("BODY \"%\"", [2, 3, 4]),
    ("BODY \"_\"", [2]),
    ("BODY \"STRASSE\"", []),
    ("TEXT thursday", [1]),
    ("TEXT \"\"", [1, 2, 3, 4, 5, 6]),
    ("LARGER 1000", [2]),
    ("SMALLER 600", [1, 6]),
    ("BEFORE 1-Apr-2024", [1, 5, 6]),
    ("ON 3-Apr-2024", [4]),
    ("SINCE 4-Apr-2024", [2, 3]),
    ("SENTBEFORE 1-Jan-2010", [6]),
    ("SENTON 12-Mar-2024", [1]),
    ("SENTSINCE 1-Jan-2024 NOT SENTSINCE 1-Apr-2024", [1, 5]),
    ("2,4:*", [2, 4, 5, 6]),
    ("UID 2:4 NOT 3", [2, 4]),
    ("MODSEQ 4", [3, 4, 5, 6]),
    ("(OR FROM dave FROM ivan) (SUBJECT report)", [2]),
    ("NOT (FROM dave OR TO judy CC heidi)", [1, 3, 4, 5, 6]),
    ("SUBJECT \"x') OR true; --\"", []),
    ("HEADER Subject \"(fwd\"", []),
    ("HEADER Subject \"fwd:\"", [3]),
]

SORTS = [
    ("(ARRIVAL) UTF-8 ALL", [6, 5, 1, 4, 2, 3]),
    ("(REVERSE DATE) UTF-8 ALL", [3, 2, 4, 1, 5, 6]),
    ("(SUBJECT) UTF-8 ALL", [6, 5, 1, 2, 3, 4]),
    ("(FROM) UTF-8 ALL", [6, 1, 2, 3, 4, 5]),
    ("(SIZE) UTF-8 ALL", [6, 1, 5, 4, 3, 2]),
    ("(TO REVERSE SIZE) UTF-8 ALL", [6, 1, 4, 2, 3, 5]),
    ("(REVERSE ARRIVAL) UTF-8 SEEN", [4, 1]),
]


def lit(v):
    return "NULL" if v is None else harness.sql_literal(v)


def arr(v):
    return "ARRAY[" + ",".join(harness.sql_literal(x) for x in v) + "]::text[]"


@pytest.fixture(scope="module")
def mailbox(tmp_path_factory, postgres):
    db = postgres.create_database()
    cfg = su.stores_yaml(tmp_path_factory.mktemp("s") / "s.yaml", pg=db)
    su.run(cfg, "migrate")
    acc = postgres.psql("INSERT INTO accounts(login, password_hash) VALUES ('a', 'x') "
                        "RETURNING id", dbname=db.name).strip()
    mb = postgres.psql(f"SELECT tp_mailbox_create({acc}, 'INBOX', NULL)",
                       dbname=db.name).strip()
    for i, (frm, to, cc, subj, date, idate, size, flags, text) in enumerate(MESSAGES):
        key = format(i + 1, "x") * 64
        postgres.psql(
            f"SELECT tp_blob_reserve('{key[:64]}', {size}); "
            f"SELECT * FROM tp_deliver(ARRAY[{mb}]::bigint[], '{key[:64]}', {size}, "
            f"{lit(idate)}, {arr(flags)}, NULL, NULL, NULL, {lit(frm)}, {lit(to)}, {lit(cc)}, "
            f"{lit(subj)}, {lit(date)}, NULL, NULL, {lit(text)})", dbname=db.name)
    try:
        yield cfg, mb
    finally:
        postgres.drop_database(db.name)


def run_search(cfg, mb, args, sort=False):
    argv = [str(harness.tool_path("imap_search_sql"))] + (["--sort"] if sort else [])
    r = subprocess.run(argv + [args, UIDS], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    q = json.loads(r.stdout)
    out = su.run(cfg, "pg-query", q["sql"], mb, *q["params"]).stdout
    return [int(x) for x in out.split()]


@pytest.mark.parametrize("args,want", SEARCHES, ids=[a for a, _ in SEARCHES])
def test_search(mailbox, args, want):
    cfg, mb = mailbox
    assert run_search(cfg, mb, args) == want


@pytest.mark.parametrize("args,want", SORTS, ids=[a for a, _ in SORTS])
def test_sort(mailbox, args, want):
    cfg, mb = mailbox
    assert run_search(cfg, mb, args, sort=True) == want
