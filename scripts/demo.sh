#!/usr/bin/env bash
# scripts/demo.sh -- set everything up and run the main job headless on the default task (lift).
# Today (issues [1/8]..[3/8]): the scripted operator drives a virtual gamepad through the real
# teleop console (the same code path a person's pad takes), recording demonstrations with an
# 84x84 camera into a crash-safe dataset; then info, validate, a train/valid split and an outside
# reader's check (h5py, opened as robomimic opens it).
# Later issues extend it: -> BC -> short RL fine-tune -> summary and PNG plots.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
OUT=${OUT:-out}
EPISODES=${EPISODES:-10}
mkdir -p "$OUT"
rm -rf "$OUT/demos.h5" "$OUT/demos.h5.staging"
B=build
echo "== teleop: the scripted operator records $EPISODES lift demos through a virtual pad (20 Hz, 84x84 camera)"
$B/teleop/teleop --task lift --device scripted --headless --episodes "$EPISODES" --noise 0.3 \
  --camera agentview:84x84 --operator scripted --out "$OUT/demos.h5"
echo "== dataset info"
$B/dataset/dataset info "$OUT/demos.h5"
echo "== dataset validate"
$B/dataset/dataset validate "$OUT/demos.h5"
echo "== dataset split --valid 0.2"
$B/dataset/dataset split "$OUT/demos.h5" --valid 0.2 --seed 0 --in-place
echo "== outside reader: h5py, opened as robomimic opens it"
/usr/bin/python3 tests/dataset/h5_check.py "$OUT/demos.h5" --native --expect-demos "$EPISODES" \
  --expect-images agentview_image:84:84
echo "== summary"
echo "dataset: $OUT/demos.h5 ($(du -h "$OUT/demos.h5" | cut -f1))"
