#!/usr/bin/env bash
# One lent-GPU session (issue 20), at most 9 minutes in all: the CUDA tests, the training
# benchmark on the GPU (eager; then train.compile at depth 2), and one paper-preset pair
# (bmnist-vae-L2-z50 and bmnist-gae-L2-z50 trained CONCURRENTLY on the one GPU, then `gae loglik`
# of each on a subset of the test set). Everything lands under the folder given as $1 (default:
# $OUT when set, as on the device machine, else benchmarks/out/gpu):
#
#   session.log            every command, its exit status and seconds
#   env.txt                nvidia-smi, torch and CUDA versions
#   cuda-tests.log         pytest -k cuda (tests/test_gpu_path.py, tests/test_training.py)
#   training.json          benchmarks/bench_training.py on cuda (eager), every kind and depth
#   training-compile.json  the same at depth 2 for vae and gae, plus train.compile (reduce-overhead)
#   pair/                  the pair's train_log.csv, loglik.json and logs (results/runs/...)
#
# Usage: benchmarks/gpu_session.sh [--dry] [OUTDIR]
#   --dry  print the commands with their time limits and exit (no CUDA needed)
# Environment: PYTHON (default .venv/bin/python if it exists, else python3), GAE_DATA_MIRROR
# (default ../shared/data, used only if data/prepared/bmnist.npz is absent), BUDGET_S (540).
#
# The pair is the paper preset (params.yaml, --no-preset). Training that has not early-stopped
# when its time is up is stopped (its last checkpoint stays) and finalised at the epochs it has
# (`--set train.epochs=<done>`: epochs is not in the checkpoint fingerprint), so that loglik can
# run; a later session resumes it from the same folder with the full 300 epochs.
set -u -o pipefail

DRY=0
if [[ "${1:-}" == "--dry" ]]; then DRY=1; shift; fi
cd "$(dirname "$0")/.."
DIR="${1:-${OUT:-benchmarks/out/gpu}}"
BUDGET_S="${BUDGET_S:-540}"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
MIRROR="${GAE_DATA_MIRROR:-../shared/data}"
PAIR=(bmnist-vae-L2-z50 bmnist-gae-L2-z50)
RESULTS="$DIR/pair/results"
LOGLIK_N_TEST="${LOGLIK_N_TEST:-1000}"  # the full 10,000 x S = 5000 does not fit this window
SET_PAIR=(--no-preset --set "paths.results=$RESULTS")

started=$SECONDS
STEP_LIMIT=0
left() { echo $(( BUDGET_S - (SECONDS - started) )); }

# step NAME LIMIT_S CMD...: run CMD under `timeout` (never past the session budget), log it
step() {
  local name=$1 limit=$2; shift 2
  local remaining; remaining=$(left)
  (( limit > remaining )) && limit=$remaining
  if (( DRY )); then
    printf '[%s, <= %ss] %s\n' "$name" "$limit" "$*"
    return 0
  fi
  if (( limit < 5 )); then
    echo "== $name: skipped, the session's ${BUDGET_S} s are spent" | tee -a "$DIR/session.log"
    return 124
  fi
  echo "== $name (<= ${limit} s): $*" | tee -a "$DIR/session.log"
  local t0=$SECONDS rc=0
  STEP_LIMIT=$limit
  if declare -F "$1" > /dev/null; then
    "$@" || rc=$?  # a function of this script: it applies STEP_LIMIT to its own commands
  else
    timeout --signal=TERM --kill-after=10 "$limit" "$@" || rc=$?
  fi
  echo "== $name: exit $rc after $(( SECONDS - t0 )) s" | tee -a "$DIR/session.log"
  return $rc
}

if (( ! DRY )); then
  mkdir -p "$DIR" "$RESULTS"
  : > "$DIR/session.log"
  if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' \
      2>>"$DIR/session.log"; then
    echo "gpu_session.sh: no CUDA device visible to $PYTHON (torch.cuda.is_available() is" \
         "False, or torch is missing); this script is for a lent GPU. Nothing was run." >&2
    exit 2
  fi
  {
    nvidia-smi 2>&1 || true
    "$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
torch.cuda.get_device_name(0), "cpu threads", torch.get_num_threads())'
  } > "$DIR/env.txt"
fi

# 0. data: the prepared bmnist (the benchmark falls back to synthetic data, the pair needs it)
if [[ ! -f data/prepared/bmnist.npz ]] || (( DRY )); then
  step prepare 90 "$PYTHON" -m gae prepare bmnist --mirror "$MIRROR"
fi

# 1. the CUDA tests (skip nothing silently: -rs lists any skip)
if (( DRY )); then
  step cuda-tests 90 "$PYTHON" -m pytest tests/test_gpu_path.py tests/test_training.py -k cuda \
    -q -rs -p no:cacheprovider
else
  step cuda-tests 90 "$PYTHON" -m pytest tests/test_gpu_path.py tests/test_training.py -k cuda \
    -q -rs -p no:cacheprovider > "$DIR/cuda-tests.log" 2>&1
  tail -5 "$DIR/cuda-tests.log"
fi

# 2. the benchmark, eager, every kind and depth (the full mode: 100 timed steps each)
step bench 90 "$PYTHON" benchmarks/bench_training.py --device cuda --out "$DIR/training.json"

# 3. the paper-preset pair, concurrently on the one GPU (two processes share it)
# each_run FN: FN RUN for every run of the pair at once, in the background; fails if one did
each_run() {
  local fn=$1 pids=() run rc=0 pid
  for run in "${PAIR[@]}"; do
    "$fn" "$run" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || rc=$?; done
  return $rc
}
train_one() {
  timeout --signal=TERM --kill-after=10 "$STEP_LIMIT" \
    "$PYTHON" -m gae train "$1" "${SET_PAIR[@]}" --log "$DIR/pair/$1.train.log" \
    > "$DIR/pair/$1.stdout" 2>&1
}
loglik_one() {
  [[ -f "$RESULTS/runs/$1/model.pt" ]] || return 0
  timeout --signal=TERM --kill-after=10 "$STEP_LIMIT" "$PYTHON" -m gae loglik "$1" \
    "${SET_PAIR[@]}" --set "evaluation.loglik.n_test=$LOGLIK_N_TEST" \
    > "$DIR/pair/$1.loglik.stdout" 2>&1
}
pair_train() { each_run train_one; }
pair_loglik() { each_run loglik_one; }
# the epochs a stopped run has, to finalise it there (its best epoch becomes model.pt)
pair_finalise() {
  local run epochs
  for run in "${PAIR[@]}"; do
    [[ -f "$RESULTS/runs/$run/model.pt" ]] && continue
    epochs=$("$PYTHON" -c 'import sys, torch
print(torch.load(sys.argv[1], map_location="cpu", weights_only=False)["state"]["epoch"])' \
      "$RESULTS/runs/$run/checkpoint.pt" 2>/dev/null) || { echo "$run: no checkpoint"; continue; }
    echo "$run: stopped after epoch $epochs; finalising there (resumable to 300 later)"
    timeout "$STEP_LIMIT" "$PYTHON" -m gae train "$run" "${SET_PAIR[@]}" \
      --set "train.epochs=$epochs" >> "$DIR/pair/$run.stdout" 2>&1
  done
}
if (( DRY )); then
  for run in "${PAIR[@]}"; do
    step "train $run (concurrent)" 170 "$PYTHON" -m gae train "$run" "${SET_PAIR[@]}"
  done
  step finalise 20 "(a run stopped by its limit:) $PYTHON -m gae train RUN ${SET_PAIR[*]}" \
    "--set train.epochs=<epochs in its checkpoint>"
  for run in "${PAIR[@]}"; do
    step "loglik $run (concurrent)" 60 "$PYTHON" -m gae loglik "$run" "${SET_PAIR[@]}" \
      --set "evaluation.loglik.n_test=$LOGLIK_N_TEST"
  done
else
  step pair-train 170 pair_train
  step pair-finalise 20 pair_finalise
  step pair-loglik 60 pair_loglik
  for run in "${PAIR[@]}"; do  # the small outputs beside the run folders (checkpoints stay)
    for file in train_log.csv loglik.json; do
      [[ -f "$RESULTS/runs/$run/$file" ]] && cp "$RESULTS/runs/$run/$file" "$DIR/pair/$run.$file"
    done
  done
fi

# 4. train.compile against eager, depth 2 (compilation is excluded from the timing, not from
# the session: it is last so that it cannot crowd out the rest)
step bench-compile 110 "$PYTHON" benchmarks/bench_training.py --device cuda --compile \
  --kinds vae,gae --depths 2 --steps 100 --out "$DIR/training-compile.json"

if (( ! DRY )); then
  echo "gpu_session.sh: done in $(( SECONDS - started )) s; outputs under $DIR" \
    | tee -a "$DIR/session.log"
fi
