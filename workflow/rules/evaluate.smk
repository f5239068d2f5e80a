# Evaluation: Parzen, log-likelihood and memorisation diagnostics, each over the runs that
# params.yaml's `evaluate` lists for it.


rule parzen:
    input:
        samples=run_file("samples.npy"),
        data=dataset_of,
        code=CODE["evaluation"],
    output:
        metrics=run_file("parzen.json"),
    params:
        settings=settings("seed", "evaluation.parzen", "evaluation.batch_size"),
        gae_args=GAE_ARGS,
    log:
        log_file("parzen"),
    benchmark:
        benchmark_file("parzen")
    threads: 1
    resources:
        gpu=1,
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} "
        "gae parzen {wildcards.run} {params.gae_args} > {log} 2>&1"


rule loglik:
    input:
        model=run_file("model.pt"),
        data=dataset_of,
        code=CODE["evaluation"],
    output:
        metrics=run_file("loglik.json"),
        images=run_file("loglik_images.npz"),
    params:
        settings=settings("seed", "evaluation.loglik", "evaluation.batch_size"),
        gae_args=GAE_ARGS,
    log:
        log_file("loglik"),
    benchmark:
        benchmark_file("loglik")
    threads: 1
    resources:
        gpu=1,
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} "
        "gae loglik {wildcards.run} {params.gae_args} > {log} 2>&1"


rule diagnose:
    input:
        samples=run_file("samples.npy"),
        model=run_file("model.pt"),
        data=dataset_of,
        code=CODE["evaluation"],
    output:
        metrics=run_file("diagnostics.json"),
        figure=run_file("nearest_neighbours.png"),
    params:
        settings=settings("seed", "evaluation.diagnostics"),
        gae_args=GAE_ARGS,
    log:
        log_file("diagnose"),
    benchmark:
        benchmark_file("diagnose")
    threads: 1
    resources:
        gpu=1,
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} "
        "gae diagnose {wildcards.run} {params.gae_args} > {log} 2>&1"
