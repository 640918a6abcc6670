#!/usr/bin/env bash
# scripts/test.sh -- set everything up and run the whole test suite.
#   scripts/test.sh               normal build (./build)
#   scripts/test.sh --sanitize    the same suite under ASan + UBSan (./build-asan)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh "${1:-}"
dir=build
if [ "${1:-}" = "--sanitize" ]; then
  dir=build-asan
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fi
meson test -C "$dir" --print-errorlogs --num-processes 1
