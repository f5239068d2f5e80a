#!/usr/bin/env bash
# The CPU-preset part of docs/gae-study.md, from the repository root, after `make run PRESET=cpu`:
#   bash docs/study/run_cpu_study.sh train   # seeds 2 and 3 of GAE and VAE at depths 1-2
#   bash docs/study/run_cpu_study.sh gap     # K-nearest lower bound vs the preset's exact prior
#   bash docs/study/run_cpu_study.sh eval-preset  # S = 1,000 on the preset's own models (seed
#                                            # 1234): depths 1-2 all 10,000 test images, 3-4 first 2,000
#   bash docs/study/run_cpu_study.sh eval-seeds   # S = 1,000, seeds 2-3, first 2,000 test images
#   bash docs/study/run_cpu_study.sh depth4       # depth 4 at learning rate 3e-4, GAE and VAE
#   bash docs/study/run_cpu_study.sh clip    # xavier init + gradient clipping (the defaults since),
#                                            # with and without a 5-epoch warm-up; each run is
#                                            # trained, then scored with S = 1,000 on 2,000 images
#   bash docs/study/run_cpu_study.sh clip-seeds   # the chosen variant: seeds 2 and 3, depths 1-2
#   bash docs/study/run_cpu_study.sh clip-full    # its seed-1234 models, depths 1-4: all 10,000
#                                            # test images (S = 1,000)
#   bash docs/study/run_cpu_study.sh ablate  # VAE depth 2: the defaults without clipping / with
#                                            # PyTorch's init (which one costs the nat?)
#   bash docs/study/run_cpu_study.sh refresh # GAE depths 1-2, nearest exemplars every 4 epochs
#   bash docs/study/run_cpu_study.sh aggregate    # each VAE scored with its aggregate posterior
#                                            # as prior (after eval-preset and clip)
#   bash docs/study/run_cpu_study.sh plots   # docs/study/figures/*.png and the study tables
# The prior's component variance (the unit-variance GAE became the default; overlays restate it):
#   bash docs/study/run_cpu_study.sh component        # depth 3: posterior components with
#                                            # lambda_2 0.25 / 0.1, learned shared variance with
#                                            # lambda_2 0.5 / 0, unit variance; depth 4: learned
#                                            # (lambda_2 0) and unit; unit at depths 1-2; unit
#                                            # with 128 nearest exemplars at depth 3
#   bash docs/study/run_cpu_study.sh component-seeds  # unit: seeds 2 and 3, depths 1-2
#   bash docs/study/run_cpu_study.sh component-full   # unit, seed 1234: all 10,000 test images
#   bash docs/study/run_cpu_study.sh component-gap    # unit, depth 3: exact prior vs the bound
#   bash docs/study/run_cpu_study.sh component-slides # gae-slides, current recipe, table 2
#   bash docs/study/run_cpu_study.sh epochs50         # depth 2, GAE and VAE, 50 epochs
#   bash docs/study/run_cpu_study.sh component-seeds-full  # seeds 2 and 3 of the unit GAE and
#                                            # the VAE, depths 1-2: all 10,000 test images
#   bash docs/study/run_cpu_study.sh paper-d2         # the PAPER preset (300 epochs, patience 30,
#                                            # S = 5,000, all test images) on this CPU, depth 2
#   bash docs/study/run_cpu_study.sh paper-plateau-d2 [SECONDS]  # the paper preset as it is now
#                                            # (plateau-halved rate), depth 2, SECONDS of training
#   bash docs/study/run_cpu_study.sh paper-d2-first2000  # its models at S = 1,000 on the first
#                                            # 2,000 test images (the S = 5,000 run was stopped)
#   bash docs/study/run_cpu_study.sh lrdecay [MODEL:DEPTH...]  # the learning rate halved on
#                                            # every 2-epoch plateau (default gae:2 vae:2)
#   bash docs/study/run_cpu_study.sh lrstep 5 DEPTH...  # GAE and VAE, the learning rate halved
#                                            # every 5 epochs (lrstep 4: every 4)
#   bash docs/study/run_cpu_study.sh lrstep5-seeds [DEPTH...]  # seeds 2 and 3 (default depth 2)
#   bash docs/study/run_cpu_study.sh lrstep5-full [DEPTH...]  # those models, all 10,000 test images
#   bash docs/study/run_cpu_study.sh nz2 [MODEL:DEPTH...]  # n_z = 2 draws per image in the GAE's
#                                            # E-step (default gae:3), all 10,000 test images
#   bash docs/study/run_cpu_study.sh lr2e-3 [MODEL:DEPTH...]  # starting rate 2e-3, halved every 5
#   bash docs/study/run_cpu_study.sh nz4 / nz4-seed2 / nz4-seed3 [MODEL:DEPTH...]  # n_z = 4 (gae:3)
#   bash docs/study/run_cpu_study.sh nz2-seeds / nz4-seeds [MODEL:DEPTH...]  # seeds 2 and 3 of
#                                            # nz2 / nz4 (default gae:3)
#   bash docs/study/run_cpu_study.sh nz-plots         # the draws-per-image figure and tables
#   bash docs/study/run_cpu_study.sh lr-plots         # the learning-rate figure and tables
#   bash docs/study/run_cpu_study.sh component-plots  # its figure and tables
# train ... depth4 used the defaults of commit 3003d11 (init torch, no clipping, no warm-up; their
# overlays restore them, and eval-preset/gap read a CPU-preset run of that commit); clip, clip-seeds,
# refresh need no preset run.
# PRESET_RESULTS: where the preset's results/ are (default results); JOBS: parallel jobs (2).
# Each job is one `gae` command on one thread with its log under results/study-cpu/logs/.
set -euo pipefail
GAE=${GAE:-.venv/bin/gae}
PY=${PY:-.venv/bin/python}
PRESET_RESULTS=${PRESET_RESULTS:-results}
JOBS=${JOBS:-2}
CPU=config/cpu.yaml
CHOSEN=clip-warmup5  # the variant of the clip study that became the default
SHARED=unit  # the component-variance variant that became the default
STUDY=docs/study
LOGS=results/study-cpu/logs
SEED_RUNS=(bmnist-gae-L1-z50 bmnist-vae-L1-z50 bmnist-gae-L2-z50 bmnist-vae-L2-z50)
ALL_RUNS=(bmnist-gae-L{1,2,3,4}-z50 bmnist-vae-L{1,2,3,4}-z50)
mkdir -p "$LOGS"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 GAE PRESET_RESULTS

# parallel "name command..." lines, JOBS at a time; a failing job fails the step
parallel_jobs() {
  xargs -d '\n' -P "$JOBS" -I{} bash -c 'set -- {}; name=$1; shift; "$@" > "'"$LOGS"'/$name.log" 2>&1 || { echo "FAILED: $name (see '"$LOGS"'/$name.log)" >&2; exit 255; }'
}

train_eval_job() {  # train_eval_job "EVAL ARGS" RUN OVERLAY...: one job line: train, then loglik
  local eval=$1 run=$2; shift 2
  local c="--config $CPU"; for o in "$@"; do c="$c --config $o"; done
  echo "bash -c '$GAE train $run $c && $GAE loglik $run $c $eval'"
}
study_job() {  # study_job RUN OVERLAY...: train, then S = 1,000 on the first 2,000 test images
  train_eval_job "--config $STUDY/cpu-s1000.yaml --config $STUDY/cpu-first2000.yaml" "$@"
}
full_study_job() {  # full_study_job RUN OVERLAY...: train, then S = 1,000 on all test images
  train_eval_job "--config $STUDY/cpu-s1000.yaml" "$@"
}
full_eval_job() {  # full_eval_job VARIANT FULL_OVERLAY RUN: the variant's model, copied to its
  # own folder (FULL_OVERLAY sets it), scored with S = 1,000 on all 10,000 test images
  local variant=$1 full=$2 run=$3
  mkdir -p "results/study-cpu/$variant-full/runs/$run"
  cp -f "results/study-cpu/$variant/runs/$run/"{model.pt,train_log.csv} "results/study-cpu/$variant-full/runs/$run/"
  echo "$variant-full-$run $GAE loglik $run --config $CPU --config $STUDY/cpu-$variant.yaml --config $STUDY/cpu-s1000.yaml --config $full"
}

pair_run() { echo "bmnist-${1%%:*}-L${1##*:}-z50"; }  # pair_run MODEL:DEPTH -> the run's name

continue_job() {  # continue_job SRC DEST RUN: copy SRC's checkpoint of RUN to DEST's folder
  # (unless one is there), so that `gae train` into DEST resumes it (bit-identical to an unbroken run)
  mkdir -p "results/study-cpu/$2/runs/$3"
  cp -n "results/study-cpu/$1/runs/$3/"{checkpoint.pt,train_log.csv} "results/study-cpu/$2/runs/$3/"
}

link_preset_models() {  # seed 1234 = the preset's own models, evaluated in the study's tree
  for run in "${ALL_RUNS[@]}"; do
    mkdir -p "results/study-cpu/seed1234/runs/$run"
    for f in model.pt train_log.csv; do
      cp -f "$PRESET_RESULTS/runs/$run/$f" "results/study-cpu/seed1234/runs/$run/$f"
    done
  done
}

case "${1:-}" in
  train)
    for seed in 2 3; do for run in "${SEED_RUNS[@]}"; do
      echo "train-$run-seed$seed $GAE train $run --config $CPU --config $STUDY/cpu-seed$seed.yaml"
    done; done | parallel_jobs ;;
  gap)
    for run in bmnist-gae-L{1,2,3,4}-z50; do
      mkdir -p "results/study-cpu/gap/runs/$run"
      cp -f "$PRESET_RESULTS/runs/$run/model.pt" "results/study-cpu/gap/runs/$run/model.pt"
      echo "gap-$run $GAE loglik $run --config $CPU --config $STUDY/cpu-gap.yaml"
    done | parallel_jobs ;;
  eval-preset)  # seed 1234: depths 1-2 on all 10,000 test images, depths 3-4 on the first 2,000
    link_preset_models
    for depth in 1 2 3 4; do for model in gae vae; do
      run=bmnist-$model-L$depth-z50
      extra=""; [ "$depth" -ge 3 ] && extra="--config $STUDY/cpu-first2000.yaml"
      echo "loglik-$run-seed1234 $GAE loglik $run --config $CPU --config $STUDY/cpu-seed1234.yaml --config $STUDY/cpu-s1000.yaml $extra"
    done; done | parallel_jobs ;;
  eval-seeds)  # seeds 2 and 3, depths 1-2, the first 2,000 test images
    for seed in 2 3; do for run in "${SEED_RUNS[@]}"; do
      echo "loglik-$run-seed$seed $GAE loglik $run --config $CPU --config $STUDY/cpu-seed$seed.yaml --config $STUDY/cpu-s1000.yaml --config $STUDY/cpu-first2000.yaml"
    done; done | parallel_jobs ;;
  depth4)  # depth 4, GAE and VAE, learning rate 3e-4: train, then S = 1,000 on 2,000 test images
    for run in bmnist-gae-L4-z50 bmnist-vae-L4-z50; do
      echo "depth4-$run $(study_job "$run" "$STUDY/cpu-depth4-lr3e-4.yaml")"
    done | parallel_jobs ;;
  clip)
    for variant in clip-warmup5 clip; do for depth in 4 2 1 3; do for model in gae vae; do
      run=bmnist-$model-L$depth-z50
      [ "$variant" = clip ] && [ "$depth" = 3 ] && continue
      echo "$variant-$run $(study_job "$run" "$STUDY/cpu-$variant.yaml")"
    done; done; done | parallel_jobs ;;
  clip-seeds)
    for seed in 2 3; do for depth in 1 2; do for model in gae vae; do
      run=bmnist-$model-L$depth-z50
      echo "$CHOSEN-seed$seed-$run $(study_job "$run" "$STUDY/cpu-$CHOSEN.yaml" "$STUDY/cpu-$CHOSEN-seed$seed.yaml")"
    done; done; done | parallel_jobs ;;
  clip-full)
    for depth in 1 2 3 4; do for model in gae vae; do
      full_eval_job "$CHOSEN" "$STUDY/cpu-full.yaml" "bmnist-$model-L$depth-z50"
    done; done | parallel_jobs ;;
  ablate)
    for a in noclip torchinit; do
      echo "ablate-$a $(study_job bmnist-vae-L2-z50 "$STUDY/cpu-$CHOSEN.yaml" "$STUDY/cpu-ablate-$a.yaml")"
    done | parallel_jobs ;;
  refresh)
    for depth in 1 2; do
      run=bmnist-gae-L$depth-z50
      echo "refresh4-$run $(study_job "$run" "$STUDY/cpu-$CHOSEN.yaml" "$STUDY/cpu-refresh4.yaml")"
    done | parallel_jobs ;;
  aggregate)
    for dir in seed1234 "$CHOSEN"; do
      echo "aggregate-$dir $PY $STUDY/vae_aggregate_prior.py results/study-cpu/$dir"
    done | parallel_jobs ;;
  plots)
    "$PY" "$STUDY/plot_cpu_study.py" ;;
  component)
    (for variant in lsigma0.25 lsigma0.1 learned learned-l0 "$SHARED"; do
      echo "$variant-L3 $(study_job bmnist-gae-L3-z50 "$STUDY/cpu-$variant.yaml")"
    done
    for variant in learned-l0 "$SHARED"; do
      echo "$variant-L4 $(study_job bmnist-gae-L4-z50 "$STUDY/cpu-$variant.yaml")"
    done
    for depth in 1 2; do
      echo "$SHARED-L$depth $(study_job "bmnist-gae-L$depth-z50" "$STUDY/cpu-$SHARED.yaml")"
    done
    echo "$SHARED-k128-L3 $(study_job bmnist-gae-L3-z50 "$STUDY/cpu-$SHARED.yaml" "$STUDY/cpu-$SHARED-k128.yaml")"
    ) | parallel_jobs ;;
  component-seeds)  # the VAEs of these seeds come from clip-seeds
    for seed in 2 3; do for depth in 1 2; do
      run=bmnist-gae-L$depth-z50
      echo "$SHARED-seed$seed-$run $(study_job "$run" "$STUDY/cpu-$SHARED.yaml" "$STUDY/cpu-$SHARED-seed$seed.yaml")"
    done; done | parallel_jobs ;;
  component-full)  # the VAEs come from clip-full
    for depth in 1 2 3 4; do
      full_eval_job "$SHARED" "$STUDY/cpu-$SHARED-full.yaml" "bmnist-gae-L$depth-z50"
    done | parallel_jobs ;;
  component-gap)
    run=bmnist-gae-L3-z50
    mkdir -p "results/study-cpu/$SHARED-gap/runs/$run"
    cp -f "results/study-cpu/$SHARED/runs/$run/model.pt" "results/study-cpu/$SHARED-gap/runs/$run/"
    echo "$SHARED-gap-$run $GAE loglik $run --config $CPU --config $STUDY/cpu-$SHARED.yaml --config $STUDY/cpu-$SHARED-gap.yaml" | parallel_jobs ;;
  component-slides)  # gae-slides under the current recipe, all 10,000 test images
    for depth in 1 2 3 4; do
      run=bmnist-gae-slides-L$depth-z50
      echo "slides-$run $(full_study_job "$run" "$STUDY/cpu-slides.yaml")"
    done | parallel_jobs ;;
  epochs50)  # depth 2, GAE and VAE, 50 epochs: continues the 20-epoch runs' checkpoints (the
    # epoch limit is not part of a run's fingerprint, and a resumed run is bit-identical)
    for pair in "gae:$SHARED" "vae:$CHOSEN"; do
      model=${pair%%:*}; src=${pair##*:}; run=bmnist-$model-L2-z50
      continue_job "$src" epochs50 "$run"
      echo "epochs50-$run $(full_study_job "$run" "$STUDY/cpu-50epochs.yaml")"
    done | parallel_jobs ;;
  component-seeds-full)  # the seed-2/3 models of component-seeds (GAE) and clip-seeds (VAE)
    for seed in 2 3; do for depth in 1 2; do
      full_eval_job "$SHARED-seed$seed" "$STUDY/cpu-$SHARED-seed$seed-full.yaml" "bmnist-gae-L$depth-z50"
      full_eval_job "$CHOSEN-seed$seed" "$STUDY/cpu-$CHOSEN-seed$seed-full.yaml" "bmnist-vae-L$depth-z50"
    done; done | parallel_jobs ;;
  paper-d2)  # the paper preset's depth-2 GAE and VAE, continued from the CPU preset's checkpoints
    # (GAE: epoch 20, not yet stopped; VAE: epoch 50 of epochs50, 8 epochs since its best)
    for pair in "gae:$SHARED" "vae:epochs50"; do
      model=${pair%%:*}; src=${pair##*:}; run=bmnist-$model-L2-z50
      continue_job "$src" paper "$run"
      c="--config $STUDY/paper-on-cpu.yaml"
      echo "paper-$run bash -c '$GAE train $run $c && $GAE loglik $run $c --config $STUDY/paper-k200.yaml'"
    done | parallel_jobs ;;
  paper-plateau-d2)  # [SECONDS] (default 3000): the paper preset as it is now, depth 2, each run
    # stopped after SECONDS (its best epoch so far saved: gpu-finish.yaml), then S = 1,000 on the
    # first 2,000 test images (the images of paper-d2-first2000)
    seconds=${2:-3000}
    for model in gae vae; do
      run=bmnist-$model-L2-z50; c="--config $STUDY/paper-plateau-on-cpu.yaml"
      echo "paper-plateau-$run bash -c 'timeout -k 10 $seconds $GAE train $run $c; $GAE train $run $c --config $STUDY/gpu-finish.yaml && $GAE loglik $run $c --config $STUDY/cpu-s1000.yaml --config $STUDY/cpu-first2000.yaml'"
    done | parallel_jobs ;;
  paper-d2-first2000)
    for model in gae vae; do
      run=bmnist-$model-L2-z50
      echo "paper-first2000-$run $GAE loglik $run --config $STUDY/paper-on-cpu.yaml --config $STUDY/cpu-s1000.yaml --config $STUDY/cpu-first2000.yaml"
    done | parallel_jobs ;;
  lrdecay)  # MODEL:DEPTH pairs (default gae:2 vae:2)
    shift; pairs=("$@"); [ ${#pairs[@]} -gt 0 ] || pairs=(gae:2 vae:2)
    for pair in "${pairs[@]}"; do
      run=$(pair_run "$pair")
      echo "lrdecay-$run $(study_job "$run" "$STUDY/cpu-lrdecay.yaml")"
    done | parallel_jobs ;;
  lrstep)  # EVERY [DEPTH...]: docs/study/cpu-lrstepEVERY.yaml
    every=$2; shift 2; for depth in ${@:-2}; do for model in gae vae; do
      echo "lrstep$every-bmnist-$model-L$depth-z50 $(study_job "bmnist-$model-L$depth-z50" "$STUDY/cpu-lrstep$every.yaml")"
    done; done | parallel_jobs ;;
  lrstep5-seeds)
    shift; for seed in 2 3; do for depth in ${@:-2}; do for model in gae vae; do
      run=bmnist-$model-L$depth-z50
      echo "lrstep5-seed$seed-$run $(study_job "$run" "$STUDY/cpu-lrstep5.yaml" "$STUDY/cpu-lrstep5-seed$seed.yaml")"
    done; done; done | parallel_jobs ;;
  lrstep5-full)
    shift; for depth in ${@:-1 2 3 4}; do for model in gae vae; do
      full_eval_job lrstep5 "$STUDY/cpu-lrstep5-full.yaml" "bmnist-$model-L$depth-z50"
    done; done | parallel_jobs ;;
  nz2|nz4|nz4-seed2|nz4-seed3|lr2e-3)  # [MODEL:DEPTH...] (default gae:3): cpu-STEP.yaml, all
    # test images
    variant=$1; shift; pairs=("$@"); [ ${#pairs[@]} -gt 0 ] || pairs=(gae:3)
    for pair in "${pairs[@]}"; do
      run=$(pair_run "$pair")
      echo "$variant-$run $(full_study_job "$run" "$STUDY/cpu-$variant.yaml")"
    done | parallel_jobs ;;
  lr-plots)
    "$PY" "$STUDY/plot_learning_rate.py" ;;
  nz2-seeds|nz4-seeds)  # [MODEL:DEPTH...] (default gae:3): seeds 2 and 3 of cpu-nz2.yaml /
    # cpu-nz4.yaml, all test images
    variant=${1%-seeds}; shift; pairs=("$@"); [ ${#pairs[@]} -gt 0 ] || pairs=(gae:3)
    for seed in 2 3; do for pair in "${pairs[@]}"; do
      run=$(pair_run "$pair")
      echo "$variant-seed$seed-$run $(full_study_job "$run" "$STUDY/cpu-$variant.yaml" "$STUDY/cpu-$variant-seed$seed.yaml")"
    done; done | parallel_jobs ;;
  nz-plots)
    "$PY" "$STUDY/plot_draws.py" ;;
  component-plots)
    "$PY" "$STUDY/plot_component_variance.py" ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | grep '^#'; exit 2 ;;
esac
