#!/usr/bin/env bash
# run.sh BUILD_DIR [BUILD_DIR...] - runs every test binary of each build and
# prints the total as the last line: "N passed, N failed".
# Each test binary prints "ok <name>" or "FAIL <name>: ..." per case and exits
# non-zero on any failure; a binary that crashes counts as one failure.
set -u
# Idle OpenMP threads sleep instead of spinning between the many small
# parallel regions of the tiny-model tests (a 10x difference on a busy
# 2-core machine; no effect on results).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
# The sdrt commands the tests run keep their prepared-weight cache out of
# $HOME (shared by test runs: entries are content-keyed, writes atomic).
export SDRT_WEIGHT_CACHE=${SDRT_WEIGHT_CACHE:-/tmp/sdrt-test-cache}
pass=0; fail=0
# Source checks (tests/check_*.sh) once, then every test binary of each build.
for c in "$(dirname "$0")"/check_*.sh; do
  out=$(mktemp)
  bash "$c" > "$out" 2>&1
  p=$(grep -c '^ok ' "$out"); f=$(grep -c '^FAIL ' "$out")
  printf '%-44s %4d passed, %d failed\n' "$(basename "$c")" "$p" "$f"
  if [ "$f" -gt 0 ]; then grep -v '^ok ' "$out" | tail -40 | sed 's/^/    /'; fi
  pass=$((pass + p)); fail=$((fail + f))
  rm -f "$out"
done
for dir in "$@"; do
  for t in "$dir"/tests/test_*; do
    [ -x "$t" ] || continue
    name="$(basename "$t") [$dir]"
    out=$(mktemp)
    start=$(date +%s%N)
    "$t" > "$out" 2>&1
    rc=$?
    p=$(grep -c '^ok ' "$out"); f=$(grep -c '^FAIL ' "$out")
    if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; echo "FAIL $name: exited with status $rc" >> "$out"; fi
    if [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then f=1; echo "FAIL $name: ran no test case" >> "$out"; fi
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    printf '%-44s %4d passed, %d failed  (%d.%03ds)\n' "$name" "$p" "$f" $((ms / 1000)) $((ms % 1000))
    if [ "$f" -gt 0 ]; then grep -v '^ok ' "$out" | tail -40 | sed 's/^/    /'; fi
    pass=$((pass + p)); fail=$((fail + f))
    rm -f "$out"
  done
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
