#!/usr/bin/env bash
# 100+ random SIGKILLs per crash test (the suite runs 20 each): tests/dataset/crash_soak.sh [N] [BUILD]
set -euo pipefail
N=${1:-100}
B=${2:-build}
cd "$(dirname "$0")/../.."
DK_CRASH_ITERS=$N DK_BUILD=$PWD/$B DK_SRC=$PWD PYTHON=/usr/bin/python3 "$B/tests/dataset_test_crash" --jobs 1 --verbose
