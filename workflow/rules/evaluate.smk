# Evaluation: Parzen, log-likelihood and memorisation diagnostics, each over the runs that
# params.yaml's `evaluate` lists for it. Each reads its data set through data.subset (a seeded
# sample), so those keys are settings of every step that loads data.


rule parzen:
    input:
        samples=run_file(SAMPLES_FILE),
        data=dataset_of,
        code=CODE["parzen"],
    output:
        metrics=run_file(PARZEN_FILE),
    params:
        settings=settings(
            "seed", "data.subset", "data.subset_seed", "evaluation.parzen", "evaluation.batch_size"
        ),
    log:
        log_file("parzen"),
    benchmark:
        benchmark_file("parzen")
    threads: 1
    resources:
        gpu=1,
    shell:
        gae_shell("parzen {wildcards.run}")


rule loglik:
    input:
        model=run_file(MODEL_FILE),
        data=dataset_of,
        code=CODE["loglik"],
    output:
        metrics=run_file(LOGLIK_FILE),
        images=run_file(PER_IMAGE_FILE),
    params:
        settings=settings(
            "seed", "data.subset", "data.subset_seed", "evaluation.loglik", "evaluation.batch_size"
        ),
    log:
        log_file("loglik"),
    benchmark:
        benchmark_file("loglik")
    threads: 1
    resources:
        gpu=1,
    shell:
        gae_shell("loglik {wildcards.run}")


rule diagnose:
    input:
        samples=run_file(SAMPLES_FILE),
        model=run_file(MODEL_FILE),
        data=dataset_of,
        code=CODE["diagnose"],
    output:
        metrics=run_file(DIAGNOSTICS_FILE),
        figure=reported(
            run_file(NEIGHBOURS_FIGURE), "Memorisation diagnostics", "nearest_neighbours", run="{run}"
        ),
    params:
        # the test images it compares with are Parzen's (evaluation.parzen.n_test)
        settings=settings(
            "seed",
            "data.subset",
            "data.subset_seed",
            "evaluation.diagnostics",
            "evaluation.parzen.n_test",
        ),
    log:
        log_file("diagnose"),
    benchmark:
        benchmark_file("diagnose")
    threads: 1
    resources:
        gpu=1,
    shell:
        gae_shell("diagnose {wildcards.run}")
