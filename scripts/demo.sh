#!/usr/bin/env bash
# scripts/demo.sh -- set everything up and run the main job headless on the default task.
# Today (issue [1/8 foundation]) that is: record a dataset through the crash-safe writer,
# inspect it, validate it, split it, and check it with an outside reader (h5py).
# Later issues extend it: scripted teleop -> dataset -> BC -> RL fine-tune -> plots.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
OUT=${OUT:-out}
mkdir -p "$OUT"
rm -rf "$OUT/demos.h5" "$OUT/demos.h5.staging"
B=build
echo "== record 20 synthetic demonstrations (84x84 camera) through the writer"
$B/dataset/dataset synth "$OUT/demos.h5" --demos 20 --steps 80 --image 84 --seed 7
echo "== dataset info"
$B/dataset/dataset info "$OUT/demos.h5"
echo "== dataset validate"
$B/dataset/dataset validate "$OUT/demos.h5"
echo "== dataset split --valid 0.1"
$B/dataset/dataset split "$OUT/demos.h5" --valid 0.1 --seed 0 --in-place
echo "== outside reader: h5py, opened as robomimic opens it"
/usr/bin/python3 tests/dataset/h5_check.py "$OUT/demos.h5" --native --expect-demos 20 --expect-images agentview_image:84:84
echo "== summary"
echo "dataset: $OUT/demos.h5 ($(du -h "$OUT/demos.h5" | cut -f1))"
