#!/usr/bin/env bash
# Runs every test twice (plain build and ASan+UBSan build), then each fuzz target for a bounded
# time, and ends with one line: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
ASAN_BUILD=${2:-build-asan}
FUZZ_SECONDS=${FUZZ_SECONDS:-15}
PYTEST=/usr/bin/python3

started=$SECONDS
passed=0
failed=0
failures=()

count() { # name status
  if [ "$2" -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); failures+=("$1"); fi
}

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

for b in "$BUILD" "$ASAN_BUILD"; do
  echo "== build $b"
  if ! ninja -C "$b" >"$b/ninja.log" 2>&1; then
    cat "$b/ninja.log"
    count "build $b" 1
    continue
  fi
  count "build $b" 0
  echo "== unit tests ($b)"
  for t in "$b"/tests/test_*; do
    [ -f "$t" ] && [ -x "$t" ] || continue
    # the output goes to this script's stdout whole (tee /dev/stderr would truncate a caller's
    # log file at each opening)
    tout=$(mktemp)
    "$t" >"$tout" 2>&1
    status=$?
    cat "$tout"
    line=$(grep -E '^.*: [0-9]+ passed, [0-9]+ failed$' "$tout" | tail -1)
    rm -f "$tout"
    p=$(echo "$line" | grep -Eo '[0-9]+ passed' | grep -Eo '[0-9]+' || echo 0)
    f=$(echo "$line" | grep -Eo '[0-9]+ failed' | grep -Eo '[0-9]+' || echo 0)
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$f" -gt 0 ]; then failures+=("$(basename "$t") ($b)"); fi
    # a crash (sanitizer abort) prints no count line: it still fails
    if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then count "$(basename "$t") ($b)" 1; fi
  done
  echo "== integration tests ($b)"
  out=$(mktemp)
  ENCLAVER_BUILD_DIR="$PWD/$b" "$PYTEST" -m pytest -q -p no:cacheprovider tests/integration 2>&1 | tee "$out"
  status=${PIPESTATUS[0]}
  p=$(grep -Eo '[0-9]+ passed' "$out" | tail -1 | grep -Eo '[0-9]+' || echo 0)
  f=$(grep -Eo '[0-9]+ (failed|error)' "$out" | awk '{s+=$1} END {print s+0}')
  rm -f "$out"
  passed=$((passed + p))
  failed=$((failed + f))
  if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then count "pytest ($b)" 1; fi
  [ "$f" -gt 0 ] && failures+=("pytest ($b): $f failed")
done

echo "== fuzz targets ($FUZZ_SECONDS s each)"
for f in "$ASAN_BUILD"/tests/fuzz_*; do
  [ -f "$f" ] && [ -x "$f" ] || continue
  name=$(basename "$f" | sed 's/^fuzz_//')
  work="$ASAN_BUILD/fuzz-corpus/$name"
  mkdir -p "$work"
  "$f" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=0 \
    -artifact_prefix="$ASAN_BUILD/fuzz-$name-" "$work" "tests/fuzz/corpus/$name" >"$work.log" 2>&1
  status=$?
  tail -1 "$work.log"
  [ "$status" -ne 0 ] && tail -40 "$work.log"
  count "fuzz $name" "$status"
done

echo
if [ "$failed" -gt 0 ]; then
  printf 'failed: %s\n' "${failures[@]}"
fi
echo "took $(((SECONDS - started) / 60)) min $(((SECONDS - started) % 60)) s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
