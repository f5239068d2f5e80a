# The study behind docs/gae-study.md, as rules: config/study.tsv lists each variant once (its
# overlays, the few settings that differ, its runs, seeds and evaluations; gae.study validates
# it, every row's configuration included, while the workflow parses). Each (variant, seed, run)
# trains and is scored under results/study/{variant}/seed{seed}/runs/{run}/; its small outputs
# are recorded under docs/study/record/ (committed), and each variant's table is rebuilt from
# that record into docs/study/tables/{variant}.md, its training curves into
# docs/study/figures/{variant}.png.
#
#   snakemake study                                      # every variant (long: see the sheet;
#                                                        # the target is in the Snakefile)
#   snakemake docs/study/tables/cpu-seeds.md             # one variant
#   snakemake -n study                                   # list every study job
#
# The `study` target is not part of `all`. A study job's configuration is params.yaml WITHOUT
# its `overlays` line (the preset `make run` wrote there), then the row's overlays and settings:
# the sheet alone says what a variant is. A row that `continues` another (more epochs, another
# schedule) starts each job from that row's model.pt of the same seed and run: an input edge.
# A row with `models_from` trains nothing: it scores that row's models again (another
# estimator, the whole test set), each loglik job reading that row's model.pt.
include: "study_common.smk"


rule study_train:
    input:
        data=dataset_of,
        code=CODE["train"],
        start=study_start_model,  # a continued row (`continues`): the model it starts from
    output:
        model=f"{STUDY_RUN}/{MODEL_FILE}",
        log_csv=f"{STUDY_RUN}/{TRAIN_LOG_FILE}",
    params:
        command=study_shell("train"),
    log:
        "logs/study/{variant}/seed{seed}/train/{run}.log",
    benchmark:
        "logs/benchmarks/study/{variant}/seed{seed}/train/{run}.tsv"
    threads: study_threads
    resources:
        gpu=1,
    shell:
        "export OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads}; "
        "{params.command} --restart-if-stale > {log} 2>&1"


rule study_loglik:
    input:
        model=study_model,  # the row's own model.pt, or its `models_from` row's
        data=dataset_of,
        code=CODE["loglik"],
    output:
        metrics=f"{STUDY_RUN}/{LOGLIK_FILE}",
        images=f"{STUDY_RUN}/{PER_IMAGE_FILE}",
    params:
        command=study_shell("loglik"),
    log:
        "logs/study/{variant}/seed{seed}/loglik/{run}.log",
    benchmark:
        "logs/benchmarks/study/{variant}/seed{seed}/loglik/{run}.tsv"
    threads: 1
    resources:
        gpu=1,
    shell:
        "OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 {params.command} > {log} 2>&1"


# The small outputs that must outlive results/ (they are committed): the text files as copies,
# byte for byte; the per-image estimates as text too (study_record_images).
rule study_record:
    input:
        f"{STUDY_RUN}/{{name}}",
    output:
        f"{STUDY_KEPT}/{{name}}",
    wildcard_constraints:
        name="|".join([TRAIN_LOG_FILE, LOGLIK_FILE]).replace(".", r"\."),
    log:
        "logs/study/{variant}/seed{seed}/record/{run}/{name}.log",
    benchmark:
        "logs/benchmarks/study/{variant}/seed{seed}/record/{run}/{name}.tsv"
    threads: 1
    localrule: True
    shell:
        "cp {input} {output} 2> {log}"


rule study_record_images:
    input:
        images=f"{STUDY_RUN}/{PER_IMAGE_FILE}",
        script="workflow/scripts/record_per_image.py",
    output:
        f"{STUDY_KEPT}/{PER_IMAGE_RECORD}",
    params:
        python=sys.executable,
    log:
        "logs/study/{variant}/seed{seed}/record/{run}/images.log",
    benchmark:
        "logs/benchmarks/study/{variant}/seed{seed}/record/{run}/images.tsv"
    threads: 1
    localrule: True
    shell:
        "{params.python:q} {input.script} {input.images} {output} > {log} 2>&1"


rule study_table:
    input:
        record=lambda wildcards: study_record_files(wildcards.variant),
        sheet=str(STUDY_SHEET),
        script="workflow/scripts/study_table.py",
    output:
        f"{STUDY_TABLES}/{{variant}}.md",
    params:
        python=sys.executable,
        record=str(STUDY_RECORD),
    log:
        "logs/study/{variant}/table.log",
    benchmark:
        "logs/benchmarks/study/{variant}/table.tsv"
    threads: 1
    localrule: True
    shell:
        "{params.python:q} {input.script} {wildcards.variant} --record {params.record} "
        "--out {output} > {log} 2>&1"


rule study_figure:
    input:
        record=lambda wildcards: study_record_files(wildcards.variant, with_loglik=False),
        sheet=str(STUDY_SHEET),
        script="workflow/scripts/study_curves.py",
    output:
        f"{STUDY_FIGURES}/{{variant}}.png",
    params:
        python=sys.executable,
        record=str(STUDY_RECORD),
    log:
        "logs/study/{variant}/figure.log",
    benchmark:
        "logs/benchmarks/study/{variant}/figure.tsv"
    threads: 1
    localrule: True
    shell:
        "{params.python:q} {input.script} {wildcards.variant} --record {params.record} "
        "--out {output} > {log} 2>&1"
