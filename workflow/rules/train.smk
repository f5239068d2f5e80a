# Training and sampling: one job per run of params.yaml's `runs`. `resources: gpu=1` lets
# `--resources gpu=N` bound how many of them share the accelerator(s) at once.


rule train:
    input:
        data=dataset_of,
        code=CODE["train"],
    output:
        model=run_file("model.pt"),
        log_csv=run_file("train_log.csv"),
    params:
        settings=settings("seed", "data.subset", "model", "models", "train"),
        gae_args=GAE_ARGS,
    log:
        log_file("train"),
    benchmark:
        benchmark_file("train")
    threads: 1
    resources:
        gpu=1,
    # `gae train` resumes from results/runs/{run}/checkpoint.pt. A checkpoint made with other
    # settings (e.g. another preset) is refused by `gae train`; since Snakemake re-runs this job
    # exactly because the settings changed, start that run afresh (--restart) instead of failing.
    shell:
        "export OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads}; "
        "gae train {wildcards.run} {params.gae_args} > {log} 2>&1 || "
        "{{ grep -q 'was made with other settings' {log} && "
        "gae train {wildcards.run} --restart {params.gae_args} >> {log} 2>&1; }}"


rule sample:
    input:
        model=run_file("model.pt"),
        code=CODE["sample"],
    output:
        samples=run_file("samples.npy"),
    params:
        settings=settings("seed", "evaluation.n_samples", "evaluation.batch_size"),
        gae_args=GAE_ARGS,
    log:
        log_file("sample"),
    benchmark:
        benchmark_file("sample")
    threads: 1
    resources:
        gpu=1,
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} "
        "gae sample {wildcards.run} {params.gae_args} > {log} 2>&1"
