#!/usr/bin/env bash
# Filters `go test -v` output: passes test results and failures through,
# keeps full output of failing tests, and preserves go test's exit status
# (the caller runs with pipefail).
set -uo pipefail
log=$(mktemp)
trap 'rm -f "$log"' EXIT
tee "$log" | grep --line-buffered -E '^(--- |=== NAME|ok |FAIL|PASS|panic|e2e:|kubelet:|node-e2e:|torture:|\s+--- )' || true
if grep -qE '^(--- FAIL|FAIL|panic)' "$log"; then
	echo "----- full output of the failing run -----"
	cat "$log"
	exit 1
fi
grep -qE '^ok ' "$log"
