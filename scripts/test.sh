#!/usr/bin/env bash
# scripts/test.sh -- set everything up and run the whole test suite.
#   scripts/test.sh               normal build (./build)
#   scripts/test.sh --sanitize    the same suite under ASan + UBSan (./build-asan)
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh "${1:-}" || exit 1
dir=build
if [ "${1:-}" = "--sanitize" ]; then
  dir=build-asan
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fi
meson test -C "$dir" --print-errorlogs --num-processes 1
rc=$?
# the plain closing line, counted from meson's own log
json="$dir/meson-logs/testlog.json"
if [ -f "$json" ]; then
  passed=$(grep -c '"result": "OK"' "$json" || true)
  failed=$(grep -c -E '"result": "(FAIL|TIMEOUT|ERROR|UNEXPECTEDPASS)"' "$json" || true)
  echo "tests${1:+ ($1)}: $passed passed, $failed failed"
fi
exit $rc
