# Presentation: figures, tables and the report. Their inputs and outputs are listed by the
# gae.figures / gae.tables / gae.report modules themselves, so the DAG cannot drift from the code.


rule figures:
    input:
        artifacts=lambda wildcards: [str(p) for p in figure_inputs(CFG)],
        code=CODE["figures"],
    output:
        [str(p) for p in figure_paths(CFG)],
    params:
        settings=settings("seed", "evaluate.latent"),
        gae_args=GAE_ARGS,
    log:
        log_file("figures", "figures"),
    benchmark:
        benchmark_file("figures", "figures")
    threads: 1
    resources:
        gpu=1,
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} "
        "gae figures {params.gae_args} > {log} 2>&1"


rule tables:
    input:
        artifacts=lambda wildcards: [str(p) for p in table_inputs(CFG)],
        code=CODE["tables"],
    output:
        [str(p) for p in table_paths(CFG)],
    params:
        gae_args=GAE_ARGS,
    log:
        log_file("tables", "tables"),
    benchmark:
        benchmark_file("tables", "tables")
    threads: 1
    shell:
        "gae tables {params.gae_args} > {log} 2>&1"


rule report:
    input:
        artifacts=lambda wildcards: [str(p) for p in report_inputs(CFG)],
        code=CODE["report"],
    output:
        report_path(),
    params:
        overlays=CFG["overlays"],
        gae_args=GAE_ARGS,
    log:
        log_file("report", "report"),
    benchmark:
        benchmark_file("report", "report")
    threads: 1
    shell:
        "gae report {params.gae_args} > {log} 2>&1"
