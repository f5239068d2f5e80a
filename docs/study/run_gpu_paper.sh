#!/usr/bin/env bash
# docs/gae-study.md, "The paper preset on a GPU": the PAPER preset (params.yaml) for bMNIST, GAE
# and VAE at depths 1-4, on one GPU inside a fixed wall-clock budget, from the repository root:
#   bash docs/study/run_gpu_paper.sh [OUTDIR]
# 1. all eight runs train at once (one process each, sharing the GPU); each is stopped after
#    TRAIN_SECONDS (its checkpoint holds the last whole epoch) unless it stops early by itself;
# 2. a stopped run saves its best epoch so far as model.pt (gpu-finish.yaml);
# 3. S = 5,000 importance samples on the first 1,000 test images (gpu-first1000.yaml), then on all
#    10,000; the GAE's log p(z) is the certified lower bound over each image's 200 nearest
#    components (paper-k200.yaml);
# 4. the depth-2 GAE again with the EXACT prior on the first 500 test images (the bound's gap;
#    CHECK= skips it, CHECK=RUN names another run).
# A run can be resumed later with the same command: `gae train` continues from its checkpoint.
# Results: results/study-gpu/{paper,exact}; OUTDIR (if given) gets a tarball of the logs, train
# logs and loglik files (not the models) and the GPU's description.
# Prepared data: data/prepared/bmnist.npz, or .gpu/bmnist_bits.npz (`... pack` writes it: the bits
# of the prepared file, 2.4 MB, for a machine the 220 MB file cannot be copied to).
set -uo pipefail
PY=${PY:-python3}
GAE="$PY -m gae"
# the defaults fit one 10-minute command on a lent GPU; the full budget: TRAIN_SECONDS=4000 EVAL_SECONDS=1200
TRAIN_SECONDS=${TRAIN_SECONDS:-270}
FIRST_SECONDS=${FIRST_SECONDS:-60}
EVAL_SECONDS=${EVAL_SECONDS:-170}
CHECK_SECONDS=${CHECK_SECONDS:-40}
CHECK=${CHECK-bmnist-gae-L2-z50}  # the run scored with the exact prior; empty: none
EXTRA=${EXTRA:-}                 # more overlays (tests of this script on a CPU)
DEPTHS=${DEPTHS:-"1 2 3 4"}
STUDY=docs/study
CFG="--config $STUDY/gpu-paper.yaml $EXTRA"
RESULTS=results/study-gpu
LOGS=$RESULTS/logs
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD

if [ "${1:-}" = pack ]; then  # here: the prepared bMNIST as bits
  mkdir -p .gpu
  exec $PY - <<'EOF'
import numpy as np
with np.load("data/prepared/bmnist.npz") as d:
    out = {k: np.packbits(d[k].astype(np.uint8), axis=1) if k.startswith("x_") else d[k]
           for k in d.files}
np.savez_compressed(".gpu/bmnist_bits.npz", **out)
EOF
fi
OUTDIR=${1:-}
mkdir -p "$LOGS" data/prepared
start=$SECONDS
exec > >(tee -a "$LOGS/driver.log") 2>&1
stamp() { echo "[$((SECONDS - start)) s] $*"; }
pids=()
wait_jobs() { [ ${#pids[@]} -eq 0 ] || wait "${pids[@]}"; pids=(); }  # not a bare `wait`: that also waits for the tee

if [ ! -f data/prepared/bmnist.npz ]; then
  $PY - <<'EOF' || exit 1
import numpy as np
with np.load(".gpu/bmnist_bits.npz") as d:
    out = {k: np.unpackbits(d[k], axis=1)[:, :784].astype(np.float32) if k.startswith("x_")
           else d[k] for k in d.files}
np.savez("data/prepared/bmnist.npz", **out)
EOF
  cp .gpu/bmnist.json data/prepared/ 2>/dev/null || true
fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; $PY -c \
  'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'; } \
  > "$LOGS/device.txt" 2>&1
cat "$LOGS/device.txt"

runs=()
for depth in $DEPTHS; do for model in gae vae; do runs+=("bmnist-$model-L$depth-z50"); done; done

stamp "training ${runs[*]} for at most $TRAIN_SECONDS s"
for run in "${runs[@]}"; do
  timeout -k 10 -s TERM "$TRAIN_SECONDS" $GAE train "$run" $CFG > "$LOGS/train-$run.log" 2>&1 &
  pids+=($!)
done
wait_jobs
stamp "saving each run's best epoch"
for run in "${runs[@]}"; do
  $GAE train "$run" $CFG --config $STUDY/gpu-finish.yaml > "$LOGS/finish-$run.log" 2>&1 &
  pids+=($!)
done
wait_jobs

eval_all() {  # eval_all FOLDER SECONDS [OVERLAY]: every trained model, S = 5,000, at once
  local folder=$1 seconds=$2 overlay=${3:-} run k200
  stamp "S = 5,000 into $RESULTS/$folder, at most $seconds s"
  for run in "${runs[@]}"; do
    [ -f "$RESULTS/paper/runs/$run/model.pt" ] || continue
    if [ "$folder" != paper ]; then
      mkdir -p "$RESULTS/$folder/runs/$run"
      cp -f "$RESULTS/paper/runs/$run/"{model.pt,train_log.csv} "$RESULTS/$folder/runs/$run/"
    fi
    k200=""; case $run in *-gae-*) k200="--config $STUDY/paper-k200.yaml" ;; esac
    timeout -k 10 -s TERM "$seconds" $GAE loglik "$run" $CFG $k200 ${overlay:+--config $overlay} \
      > "$LOGS/loglik-$folder-$run.log" 2>&1 &
    pids+=($!)
  done
  wait_jobs
}
# the first 1,000 test images first: a result even if the whole test set runs out of time
eval_all first1000 "$FIRST_SECONDS" $STUDY/gpu-first1000.yaml
eval_all paper "$EVAL_SECONDS"

check=$CHECK
if [ -n "$check" ] && [ -f "$RESULTS/paper/runs/$check/model.pt" ]; then
  stamp "exact prior, $check, first 500 test images, at most $CHECK_SECONDS s"
  mkdir -p "$RESULTS/exact/runs/$check"
  cp -f "$RESULTS/paper/runs/$check/"{model.pt,train_log.csv} "$RESULTS/exact/runs/$check/"
  timeout -k 10 -s TERM "$CHECK_SECONDS" $GAE loglik "$check" $CFG --config $STUDY/gpu-exact-500.yaml \
    > "$LOGS/exact-$check.log" 2>&1
fi

stamp "summary"
$PY - "$RESULTS" <<'EOF'
import json, sys
from pathlib import Path
import numpy as np
import pandas as pd
root = Path(sys.argv[1])
for folder in ("paper", "first1000", "exact"):
    for run_dir in sorted((root / folder / "runs").glob("*")):
        line = [folder, run_dir.name]
        log = run_dir / "train_log.csv"
        if log.is_file():
            t = pd.read_csv(log)
            best = t.loc[t.valid_objective.idxmax()]
            line += [f"epochs {len(t)}", f"best {int(best.epoch)} valid {best.valid_objective:.2f}",
                     f"median epoch {t.seconds.median():.2f} s", f"last lr {t['lr'].iloc[-1]:.2e}"
                     if "lr" in t else ""]
        res = run_dir / "loglik.json"
        if res.is_file():
            result = json.loads(res.read_text())
            r = result["estimators"]["importance"]
            line.append(f"loglik {r['mean']:.2f} +- {r['sem']:.2f} (n {result['n_test']})")
        print(" | ".join(line))
for folder in ("first1000", "paper"):
    for depth in range(1, 5):
        files = [root / folder / f"runs/bmnist-{m}-L{depth}-z50/loglik_images.npz" for m in ("gae", "vae")]
        if all(f.is_file() for f in files):
            g, v = (np.load(f)["importance_log_px"] for f in files)
            d = g - v
            print(f"{folder} depth {depth}: GAE - VAE {d.mean():+.2f} +- {d.std(ddof=1) / np.sqrt(len(d)):.2f} (n {len(d)})")
exact = root / "exact/runs/bmnist-gae-L2-z50/loglik_images.npz"
bound = root / "paper/runs/bmnist-gae-L2-z50/loglik_images.npz"
if exact.is_file() and bound.is_file():
    e = np.load(exact)["importance_log_px"]
    b = np.load(bound)["importance_log_px"][: len(e)]
    print(f"exact - bound, first {len(e)} images: {np.mean(e - b):.5f} (min {np.min(e - b):.5f})")
EOF

if [ -n "$OUTDIR" ]; then
  mkdir -p "$OUTDIR"
  tar czf "$OUTDIR/study-gpu.tar.gz" --exclude='*.pt' "$RESULTS"
  stamp "wrote $OUTDIR/study-gpu.tar.gz"
fi
