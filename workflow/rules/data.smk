# Data: one job per data set that some run in params.yaml uses.


rule prepare:
    input:
        code=CODE["prepare"],
    output:
        npz=prepared("{dataset}", "npz"),
        meta=prepared("{dataset}", "json"),
    params:
        settings=settings("data", "seed"),
        gae_args=GAE_ARGS,
    log:
        log_file("prepare", "{dataset}"),
    benchmark:
        benchmark_file("prepare", "{dataset}")
    threads: 1
    shell:
        "gae prepare {wildcards.dataset} {params.gae_args} > {log} 2>&1"
