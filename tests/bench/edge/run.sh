#!/bin/sh
# tests/bench/edge/run.sh -- the edge benchmark in one command (see run.py).
# Builds the release edge into build/bench-edge (override: --build DIR or
# EDGE_BENCH_BUILD), then runs direct / tailpost-edge / HAProxy interleaved.
set -eu
cd "$(dirname "$0")/../../.."
exec /usr/bin/env python3 tests/bench/edge/run.py "$@"
