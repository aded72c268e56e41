"""pytest fixtures for the integration suite (see harness.py).

Stores, each private to the test session, on loopback, in a temp dir:

  postgres     harness.PostgresServer: .conninfo, .url, .conninfo_nopw +
               .env() (PGPASSWORD), .psql(sql...), .create_database()
  postgres_db  a fresh database per test (dropped afterwards): PgDatabase
  redis        harness.RedisServer: .url, .host, .port, .command(...)
  redis_clean  the same server, FLUSHALLed before the test
  s3           harness.S3Server (s3rver): .endpoint, .region, .access_key,
               .secret_key, .create_bucket()
  s3_bucket    a fresh bucket name on s3
  s3_signed    harness.SigV4Proxy in front of s3 that rejects bad SigV4
               signatures (same attributes as s3, plus .rejected)

When a test fails, the tail of every live service log (and of logs daemon
fixtures register with harness.watch_log) is added to its report.  Services
are stopped by PID in fixture finalizers; SIGTERM to pytest becomes a
KeyboardInterrupt so those finalizers still run.  This file is also the
only place for pytest configuration of the suite.
"""
import os
import pathlib
import signal
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import harness  # noqa: E402

LOG_TAIL_LINES = int(os.environ.get("TAILPOST_LOG_TAIL", "60"))


def pytest_configure(config):
    # A SIGTERM (CI timeout, `kill`) should tear down like Ctrl-C does.
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        def on_term(signum, frame):
            raise KeyboardInterrupt(f"signal {signum}")

        signal.signal(signal.SIGTERM, on_term)


def pytest_report_header(config):
    return [f"tailpost build: {harness.BUILD}"]


# nodeid -> {log name: size when the test started}
_LOG_MARKS = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _LOG_MARKS[item.nodeid] = harness.log_sizes()
    try:
        yield
    finally:
        _LOG_MARKS.pop(item.nodeid, None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, add what each live log got since the test started (its
    last LOG_TAIL_LINES lines) to the report; logs started during the test
    are shown from their beginning."""
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    marks = _LOG_MARKS.get(item.nodeid, {})
    for name, path in sorted(harness.LIVE_LOGS.items()):
        text = harness.log_tail(path, LOG_TAIL_LINES, since=marks.get(name, 0))
        rep.sections.append((f"{name} log since test start ({path}, {rep.when})",
                             text or "(nothing new)"))


# --- PostgreSQL


@pytest.fixture(scope="session")
def postgres():
    srv = harness.PostgresServer()
    try:
        srv.start()
        yield srv
    finally:
        srv.close()


@pytest.fixture
def postgres_db(postgres):
    db = postgres.create_database()
    try:
        yield db
    finally:
        postgres.drop_database(db.name)


# --- Redis


@pytest.fixture(scope="session")
def redis():
    srv = harness.RedisServer()
    try:
        srv.start()
        yield srv
    finally:
        srv.close()


@pytest.fixture
def redis_clean(redis):
    redis.flushall()
    return redis


# --- S3


@pytest.fixture(scope="session")
def s3():
    srv = harness.S3Server()
    try:
        srv.start()
        yield srv
    finally:
        srv.close()


@pytest.fixture
def s3_bucket(s3):
    return s3.create_bucket()


@pytest.fixture(scope="session")
def s3_signed(s3):
    proxy = harness.SigV4Proxy(s3.endpoint, s3.access_key, s3.secret_key, s3.region).start()
    try:
        yield proxy
    finally:
        proxy.close()
