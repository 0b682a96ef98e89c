#!/usr/bin/env bash
# Regenerate the CI baselines of results/ci/ (synthetic suite, CPU, one thread, ~1 minute on 2 cores).
# Run it in the change that moves the numbers, and say why in that commit (docs/architecture.md §10).
#   results/ci/regenerate.sh            all baselines
#   results/ci/regenerate.sh standard   only results/ci/standard-synth-mosi.json (or dg, missing-rate)
set -euo pipefail
cd "$(dirname "$0")/../.."
MSABENCH="${MSABENCH:-msabench}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
COMMON=(--tiny --seeds 1,2 --device cpu --threads 1 --no-mlflow)
K=1 FLOOR=0.01  # tolerance per cell: max(K x seed std, FLOOR), in the metric's unit (fractions, MAE, Corr)

make() {  # make NAME RUN-ARGS...
  local name="$1"; shift
  "$MSABENCH" run "$@" "${COMMON[@]}" --out "$TMP/$name" >/dev/null
  "$MSABENCH" check --write-baseline "results/ci/$name.json" --out "$TMP/$name" --k "$K" --floor "$FLOOR"
}

if [ $# -eq 0 ] || [[ " $* " == *" standard "* ]]; then
  make standard-synth-mosi --protocol standard --dataset synth-mosi --model constant --model linear_probe --model lf_dnn
fi
if [ $# -eq 0 ] || [[ " $* " == *" dg "* ]]; then
  make dg-multisource-synth-dg --protocol dg-multisource --setting A --model linear_probe
fi
if [ $# -eq 0 ] || [[ " $* " == *" missing-rate "* ]]; then
  make missing-rate-synth-mosi --protocol missing-rate --dataset synth-mosi --rates 0,0.5,1 --model constant --model linear_probe
fi
