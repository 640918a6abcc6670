#!/usr/bin/env bash
# scripts/check-format.sh -- exit 1 and list files that clang-format would change.
set -euo pipefail
cd "$(dirname "$0")/.."
bad=0
for f in $(git ls-files '*.c' '*.h'); do
  if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then echo "needs clang-format: $f"; bad=1; fi
done
exit $bad
