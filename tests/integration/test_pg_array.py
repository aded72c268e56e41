"""Postgres array literals built by pg_array_text (mailbox/store/pg.h) read
back by a real Postgres as exactly the elements given: quoting of '"' and
'\\', NULL and the string "NULL", empty strings, separators, braces and
UTF-8.  The unit test (tests/unit/test_pg_array.c) pins the bytes; this
proves Postgres agrees with them."""
import pytest

import store_util as su

CASES = [
    [],
    ["a"],
    [""],
    ["", ""],
    ["\\N"],
    ["NULL", "\\N", "null"],
    ['d"e', "b\\c", '\\"', '""\\\\'],
    ["a,b", "{c}", " d ", "\t"],
    ["\\Seen", "\\Deleted", "$Label1"],
    ["café", "日本", "📧", "Grüße, \"Welt\""],
    ["x" * 5000 + '"' + "\\" * 3],
]


@pytest.fixture(scope="module")
def cfg(tmp_path_factory, postgres):
    tmp = tmp_path_factory.mktemp("pg_array")
    db = postgres.create_database()
    yield su.stores_yaml(tmp / "s.yaml", pg=db)
    postgres.drop_database(db.name)


@pytest.mark.parametrize("elems", CASES, ids=[str(i) for i in range(len(CASES))])
def test_literal_reads_back_as_the_elements(cfg, elems):
    r = su.run(cfg, "pg-array", *elems, check=False)
    assert r.returncode == 0, (elems, r.stdout, r.stderr)
    assert r.stdout.rstrip("\n").endswith(" t"), r.stdout

