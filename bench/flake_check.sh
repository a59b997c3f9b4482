#!/usr/bin/env bash
# Runs one test N times in a row (default: the once-flaky fault test at the release command, 50 times)
# and reports how many runs failed. Not part of CI: it shows a flake is gone (issue 18, item 7).
# Usage: bench/flake_check.sh [N] [pytest node id]
set -u
n="${1:-50}"
test_id="${2:-tests/e2e/test_resilience.py::test_daemon_killed_at_a_step_never_leaves_a_half_switch[release-command]}"
cd "$(dirname "$0")/.."
failures=0
started=$(date +%s)
for i in $(seq 1 "$n"); do
    if python -m pytest -q -p no:cacheprovider "$test_id" >"/tmp/flake_check.$$.log" 2>&1; then
        echo "run $i/$n: passed"
    else
        failures=$((failures + 1))
        echo "run $i/$n: FAILED"
        tail -n 30 "/tmp/flake_check.$$.log"
    fi
done
rm -f "/tmp/flake_check.$$.log"
echo "$test_id: $failures of $n runs failed ($(( $(date +%s) - started )) s, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores)"
[ "$failures" -eq 0 ]
