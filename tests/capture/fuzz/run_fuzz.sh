#!/bin/bash
# Build the libFuzzer target for the servo stream parsers with clang and run it for a bounded
# time. Needs clang and libclang-rt-14-dev (Debian bookworm: apt-get install clang libclang-rt-14-dev).
#
#   tests/capture/fuzz/run_fuzz.sh [seconds=20] [workdir=$TMPDIR/srv_fuzz]
#
# Exit status: 0 when the run ended without a crash (and prints libFuzzer's final stats),
# 77 (meson's "skipped") when clang cannot build a fuzzer here, else libFuzzer's status; a crash
# leaves its input as workdir/crash-* (replay: workdir/fuzz_status workdir/crash-...).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../../.." && pwd)
secs=${1:-20}
work=${2:-${TMPDIR:-/tmp}/srv_fuzz}
cc=${CLANG:-clang}
mkdir -p "$work/corpus"

if ! command -v "$cc" > /dev/null; then
  echo "run_fuzz.sh: $cc not found (apt-get install clang libclang-rt-14-dev)" >&2
  exit 77
fi
srv="$src/capture/servo"
t0=$(date +%s.%N)
if ! "$cc" -std=c11 -g -O1 -D_GNU_SOURCE -Wall -Wextra -Werror \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$src/core" -I"$srv" \
    "$here/fuzz_status.c" "$srv/srv_codec.c" "$srv/srv_dxl.c" "$srv/srv_fts.c" "$src/core/tk_error.c" \
    -o "$work/fuzz_status"; then
  echo "run_fuzz.sh: could not build the libFuzzer target (libclang-rt-14-dev missing?)" >&2
  exit 77
fi
t1=$(date +%s.%N)

# Seeds: docs/reference.md's vectors, status packets, a stuffed packet, two packets back to back
# (the first byte of each seed also picks the chunk schedule).
seed() { printf "$2" > "$work/corpus/$1"; }
seed dxl_ping_req     '\xff\xff\xfd\x00\x01\x03\x00\x01\x19\x4e'
seed dxl_read_req     '\xff\xff\xfd\x00\x01\x07\x00\x02\x84\x00\x04\x00\x1d\x15'
seed dxl_ping_status  '\x00\xff\xff\xfd\x00\x01\x07\x00\x55\x00\x06\x04\x26\x65\x5d'
seed dxl_read_status  '\x81\xff\xff\xfd\x00\x01\x08\x00\x55\x00\xa6\x00\x00\x00\x8c\xc0'
seed fts_ping_req     '\xff\xff\x01\x02\x01\xfb'
seed fts_ping_status  '\x07\xff\xff\x01\x02\x00\xfc'
seed fts_two_status   '\x90\xff\xff\x01\x04\x00\x00\x08\xf2\xff\xff\x02\x04\x00\x00\x08\xf1'
seed garbage_then_dxl '\x55\x12\xff\xff\xff\xfd\x00\x01\x07\x00\x55\x00\x06\x04\x26\x65\x5d'

rc=0
"$work/fuzz_status" -max_total_time="$secs" -max_len=2048 -timeout=10 -print_final_stats=1 \
  -artifact_prefix="$work/" "$work/corpus" > "$work/fuzz.log" 2>&1 || rc=$?
if [ "$rc" -eq 0 ]; then
  grep -E '^(Done |stat::)' "$work/fuzz.log" || true
else
  tail -n 60 "$work/fuzz.log"
fi
t2=$(date +%s.%N)
awk -v a="$t0" -v b="$t1" -v c="$t2" -v n="$(ls "$work/corpus" | wc -l)" -v rc="$rc" \
  'BEGIN { printf "run_fuzz.sh: build %.1f s, fuzz %.1f s, corpus %d files, exit %d\n", b - a, c - b, n, rc }'
exit "$rc"
