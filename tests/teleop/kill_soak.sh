#!/usr/bin/env bash
# SIGKILL teleop at random instants N times (the suite does 10): tests/teleop/kill_soak.sh [N] [BUILD]
set -euo pipefail
N=${1:-50}
B=${2:-build}
cd "$(dirname "$0")/../.."
DK_TELEOP_KILLS=$N DK_BUILD=$PWD/$B DK_SRC=$PWD PYTHON=/usr/bin/python3 \
  "$B/tests/teleop_test_teleop" --jobs 1 --verbose --filter '*sigkill*'
