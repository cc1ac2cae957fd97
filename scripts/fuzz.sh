#!/usr/bin/env bash
# Runs every Fuzz target in the module for a short time each:
#   scripts/fuzz.sh [FUZZTIME]     (default 10s, or $FUZZTIME)
# A failure leaves the crashing input in the package's testdata/fuzz/, where
# it becomes a regression test: commit it with the fix.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PATH:/usr/local/go/bin"
fuzztime=${1:-${FUZZTIME:-10s}}

n=0
# Only packages with a "func Fuzz" in a test file; go test -list names them.
for dir in $(grep -rl --include='*_test.go' -E '^func Fuzz[A-Z0-9_]' . | xargs -r -n1 dirname | sort -u); do
	for target in $(go test -list '^Fuzz' "$dir" | grep -E '^Fuzz' || true); do
		echo "== $dir $target ($fuzztime)"
		go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$dir"
		n=$((n + 1))
	done
done
echo "fuzz: ran $n targets for $fuzztime each"
