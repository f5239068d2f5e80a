# Presentation: figures, tables and the report. Their inputs and outputs are listed by
# gae.paths, the layout the gae.figures / gae.tables / gae.report modules use themselves, so the
# DAG cannot drift from the code. None of them claims the `gpu` resource: they draw, format
# and encode a few images, and must not wait for a GPU slot (or ask a cluster for one).


rule figures:
    input:
        artifacts=lambda wildcards: [str(p) for p in figure_inputs(CFG)],
        code=CODE["figures"],
    output:
        [reported_figure(p) for p in figure_paths(CFG)],  # captions: common.smk, reported()
    params:
        settings=settings(
            "seed", "data.subset", "data.subset_seed", "evaluate.latent", "evaluation.batch_size"
        ),
    log:
        log_file("figures", "figures"),
    benchmark:
        benchmark_file("figures", "figures")
    threads: 1
    shell:
        gae_shell("figures")


rule tables:
    input:
        artifacts=lambda wildcards: [str(p) for p in table_inputs(CFG)],
        code=CODE["tables"],
    output:
        [reported_table(p) for p in table_paths(CFG)],
    params:
        # the footnotes name the subset and the estimators' settings; labels name the variants
        settings=settings(
            "data.subset", "evaluate", "evaluation.parzen", "evaluation.loglik", "models"
        ),
    log:
        log_file("tables", "tables"),
    benchmark:
        benchmark_file("tables", "tables")
    threads: 1
    shell:
        gae_shell("tables")


rule report:
    input:
        artifacts=lambda wildcards: [str(p) for p in report_inputs(CFG)],
        code=CODE["report"],
    output:
        reported(report_path(), "Report", "report"),
    params:
        # the settings the report states (gae.report._settings_lines)
        settings=settings(
            "overlays",
            "seed",
            "device",
            "data.subset",
            "model.hidden_units",
            "model.activation",
            "train.epochs",
            "train.batch_size",
            "train.lr",
            "train.patience",
            "evaluation.n_samples",
            "evaluation.parzen.n_test",
            "evaluation.loglik.n_importance",
            "evaluation.loglik.n_prior",
            "evaluation.loglik.n_test",
        ),
    log:
        log_file("report", "report"),
    benchmark:
        benchmark_file("report", "report")
    threads: 1
    shell:
        gae_shell("report")
