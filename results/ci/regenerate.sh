#!/usr/bin/env bash
# Regenerate the CI baselines of results/ci/ (synthetic suite, CPU, one thread, ~1 minute on 2 cores).
# Run it in the change that moves the numbers, and say why in that commit (docs/architecture.md §10).
#   results/ci/regenerate.sh            all baselines
#   results/ci/regenerate.sh standard   only results/ci/standard-synth-mosi.json (or dg, missing-rate, zoo;
#                                       zoo-dg: only the zoo's synth-dg baseline)
set -euo pipefail
cd "$(dirname "$0")/../.."
MSABENCH="${MSABENCH:-msabench}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
COMMON=(--tiny --seeds 1,2 --device cpu --threads 1 --no-mlflow)
K=1 FLOOR=0.01  # tolerance per cell: max(K x seed std, FLOOR), in the metric's unit (fractions, MAE, Corr)

make() {  # make NAME RUN-ARGS...
  local name="$1"; shift
  "$MSABENCH" run "${COMMON[@]}" "$@" --out "$TMP/$name" >/dev/null  # a later --seeds wins
  "$MSABENCH" check --write-baseline "results/ci/$name.json" --out "$TMP/$name" --k "$K" --floor "$FLOOR"
}

if [ $# -eq 0 ] || [[ " $* " == *" standard "* ]]; then
  make standard-synth-mosi --protocol standard --dataset synth-mosi --model constant --model linear_probe --model lf_dnn
fi
if [ $# -eq 0 ] || [[ " $* " == *" dg "* ]]; then
  make dg-multisource-synth-dg --protocol dg-multisource --setting A --model linear_probe
fi
# The zoo: every registered model in its tiny configuration (--tiny), so a change that moves any
# model's numbers fails `check` in CI (word-aligned models on aligned data, DG-only models on synth-dg).
# One seed (a run is deterministic on the CPU at one thread; the tolerance is the floor) keeps the
# CI re-run to a few minutes.
ZOO=(--seeds 1)
if [ $# -eq 0 ] || [[ " $* " == *" zoo "* ]]; then
  make zoo-standard-synth-mosi --protocol standard --dataset synth-mosi --model all "${ZOO[@]}"
  make zoo-standard-synth-mosi-aligned --protocol standard --dataset synth-mosi --set data.aligned=true \
    --model ef_lstm --model mfn --model graph_mfn --model mfm --model mctn --model mag_bert "${ZOO[@]}"
fi
if [ $# -eq 0 ] || [[ " $* " == *" zoo "* ]] || [[ " $* " == *" zoo-dg "* ]]; then
  make zoo-dg-single-synth-dg --protocol dg-single --setting A --model s2lif --model ridg --model mad "${ZOO[@]}"
fi
if [ $# -eq 0 ] || [[ " $* " == *" missing-rate "* ]]; then
  make missing-rate-synth-mosi --protocol missing-rate --dataset synth-mosi --rates 0,0.5,1 --model constant --model linear_probe
fi
