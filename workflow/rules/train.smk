# Training and sampling: one job per run of params.yaml's `runs`. `resources: gpu=1` lets
# `--resources gpu=N` bound how many of them share the accelerator(s) at once.


rule train:
    input:
        data=dataset_of,
        code=CODE["train"],
    output:
        model=run_file(MODEL_FILE),
        log_csv=run_file(TRAIN_LOG_FILE),
    params:
        settings=settings("seed", "data.subset", "data.subset_seed", "model", "models", "train"),
    log:
        log_file("train"),
    benchmark:
        benchmark_file("train")
    # train.num_threads of the configuration (null: the cores Snakemake was given)
    threads: TRAIN_THREADS
    resources:
        gpu=1,
    # `gae train` resumes from results/runs/{run}/checkpoint.pt (see train_shell in common.smk)
    shell:
        train_shell()


rule sample:
    input:
        model=run_file(MODEL_FILE),
        code=CODE["sample"],
    output:
        samples=run_file(SAMPLES_FILE),
    params:
        settings=settings("seed", "evaluation.n_samples", "evaluation.batch_size"),
    log:
        log_file("sample"),
    benchmark:
        benchmark_file("sample")
    threads: 1
    resources:
        gpu=1,
    shell:
        gae_shell("sample {wildcards.run}")
