#!/usr/bin/env bash
# scripts/demo.sh -- set everything up and run the main job headless on the default task (lift).
# The scripted operator drives a virtual gamepad through the real teleop console (the same code
# path a person's pad takes), recording demonstrations with an 84x84 camera into a crash-safe
# dataset: 10 at the real 20 Hz, then more unpaced (--fast) to make 50. Then info, validate, a
# train/valid split and an outside reader's check (h5py, opened as robomimic opens it); then
# behavior cloning (bc-train: rollouts choose the best epoch) and bc-eval on 50 held-out seeds,
# with the loss and success curves as PNG.
# Then an RL fine-tune (SAC from the policy and the demos) until 90% success on 50 evaluation
# seeds, beside the same algorithm from scratch on the same budget, with the comparison plot, and
# bc-eval of the fine-tuned policy on the held-out seeds. Last, one self-contained report page (viewer --report) of it all.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
OUT=${OUT:-out}
EPISODES=${EPISODES:-10}  # at the real rate
TOTAL=${TOTAL:-50}        # demos in all (the rest recorded unpaced)
EPOCHS=${EPOCHS:-200}
RL_STEPS=${RL_STEPS:-30000}           # the fine-tune's budget (env steps; it stops at the target)
SCRATCH_STEPS=${SCRATCH_STEPS:-30000} # scratch's (rl-finetune's own default, 10x the fine-tune's
                                      # steps to the target, would take ~40 minutes here)
RL_TARGET=${RL_TARGET:-0.9}           # the success rate that counts as arrived
mkdir -p "$OUT"
rm -rf "$OUT/demos.h5" "$OUT/demos.h5.staging"
B=build
echo "== teleop: the scripted operator records $EPISODES lift demos through a virtual pad (20 Hz, 84x84 camera)"
$B/teleop/teleop --task lift --device scripted --headless --episodes "$EPISODES" --noise 0.3 \
  --camera agentview:84x84 --operator scripted --out "$OUT/demos.h5"
if [ "$TOTAL" -gt "$EPISODES" ]; then
  echo "== teleop --fast: $((TOTAL - EPISODES)) more demos, unpaced, appended"
  $B/teleop/teleop --task lift --device scripted --headless --episodes "$((TOTAL - EPISODES))" --noise 0.3 \
    --camera agentview:84x84 --operator scripted --fast --quiet --out "$OUT/demos.h5"
fi
echo "== dataset info"
$B/dataset/dataset info "$OUT/demos.h5"
echo "== dataset validate"
$B/dataset/dataset validate "$OUT/demos.h5"
echo "== dataset split --valid 0.2"
$B/dataset/dataset split "$OUT/demos.h5" --valid 0.2 --seed 0 --in-place
echo "== outside reader: h5py, opened as robomimic opens it"
/usr/bin/python3 tests/dataset/h5_check.py "$OUT/demos.h5" --native --expect-demos "$TOTAL" \
  --expect-images agentview_image:84:84
echo "== bc-train: behavior cloning (robomimic's settings but 256-256 wide: the RL actor below starts"
echo "   from this network, and a 1024-wide one makes each RL update ~10x slower on two cores)"
rm -f "$OUT/policy.h5"
$B/bc/bc-train "$OUT/demos.h5" -o "$OUT/policy.h5" --epochs "$EPOCHS" --filter-key train --hidden 256,256
echo "== bc-eval: 50 held-out seeds"
$B/bc/bc-eval "$OUT/policy.h5" --episodes 50 --json | tee "$OUT/bc_eval.json"
echo "== rl-finetune --compare: SAC from the policy and the demos until $(awk "BEGIN{print 100*$RL_TARGET}")% success on 50"
echo "   evaluation seeds (at most $RL_STEPS env steps), then the same algorithm from scratch for $SCRATCH_STEPS"
rm -f "$OUT/ft.h5" "$OUT/ft_scratch.h5" "$OUT/ft_compare.csv" "$OUT/ft_compare.png"
$B/rl_finetune/rl-finetune --policy "$OUT/policy.h5" --demos "$OUT/demos.h5" --steps "$RL_STEPS" \
  --target "$RL_TARGET" --eval-every 2500 --eval-episodes 50 --compare --scratch-steps "$SCRATCH_STEPS" \
  --quiet --out "$OUT/ft.h5" | tee "$OUT/rl_summary.txt"
echo "== bc-eval of the fine-tuned policy: the same 50 held-out seeds as the BC policy's"
$B/bc/bc-eval "$OUT/ft.h5" --episodes 50 --json | tee "$OUT/ft_eval.json"
echo "== viewer --report: one page with the dataset, the BC and fine-tune results and their plots"
$B/viewer/viewer --report "$OUT" --target "$RL_TARGET"
# LABEL: success k/n (p%), mean length L -- from a bc-eval --json file
eval_line() {
  /usr/bin/python3 -c "import json,sys; r=json.load(open(sys.argv[2])); print('%s: success %d/%d (%.0f%%), mean length %.1f' % (sys.argv[1], r['successes'], r['episodes'], 100*r['success_rate'], r['mean_length']))" "$1" "$2"
}
echo "== summary"
echo "dataset: $OUT/demos.h5 ($(du -h "$OUT/demos.h5" | cut -f1))"
echo "policy: $OUT/policy.h5; metrics $OUT/policy.csv; plots $OUT/policy_loss.png $OUT/policy_success.png"
eval_line "bc-eval" "$OUT/bc_eval.json"
echo "fine-tune: $OUT/ft.h5; comparison $OUT/ft_compare.csv $OUT/ft_compare.png"
eval_line "fine-tuned, bc-eval" "$OUT/ft_eval.json"
grep '^compare:' "$OUT/rl_summary.txt" | head -1
echo "report: $OUT/report.html (one self-contained page: open it in a browser, or mail it)"
