# Data: one job per data set that some run in params.yaml uses.


rule prepare:
    input:
        code=CODE["prepare"],
    output:
        npz=prepared("{dataset}", "npz"),
        meta=prepared("{dataset}", "json"),
    params:
        # where the files come from (mirror, download) does not change them (sha256-verified),
        # and subsets are taken when a step loads the data, not here
        settings=settings(
            "data",
            "seed",
            exclude=("data.subset", "data.subset_seed", "data.mirror", "data.download"),
        ),
    log:
        log_file("prepare", "{dataset}"),
    benchmark:
        benchmark_file("prepare", "{dataset}")
    threads: 1
    shell:
        gae_shell("prepare {wildcards.dataset}")
