#!/bin/sh
# tests/bench/imap/run.sh -- the IMAP benchmark in one command (see run.py).
# Builds the release mailbox and tests/tools/imap_load into build/bench-imap
# (override: --build DIR or IMAP_BENCH_BUILD), then drives tailpost and a
# private Dovecot with the same workload.
set -eu
cd "$(dirname "$0")/../../.."
exec /usr/bin/python3 tests/bench/imap/run.py "$@"
