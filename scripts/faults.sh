#!/usr/bin/env bash
# The long versions of the fault suite: hundreds of kill points, a long fuzz run, a long load test.
#   scripts/faults.sh [KILL_POINTS] [FUZZ_EXAMPLES] [LOAD_SECONDS]
# PostgreSQL runs too when TREND_TEST_POSTGRES_URL is set.
set -euo pipefail
cd "$(dirname "$0")/.."
export TREND_KILL_POINTS="${1:-200}" TREND_FUZZ_EXAMPLES="${2:-1000}" TREND_LOAD_SECONDS="${3:-60}"
exec .venv/bin/pytest tests/faults -m faults -p no:cacheprovider -o addopts="--strict-markers -ra" --timeout 7200 -s
