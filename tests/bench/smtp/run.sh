#!/bin/sh
# tests/bench/smtp/run.sh -- the SMTP benchmark in one command (see run.py).
# Builds the release mailbox into build/bench-smtp (override: --build DIR or
# SMTP_BENCH_BUILD), then runs tailpost (fs, S3) and Postfix -> Dovecot LMTP.
set -eu
cd "$(dirname "$0")/../../.."
exec /usr/bin/python3 tests/bench/smtp/run.py "$@"
