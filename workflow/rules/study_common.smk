# Helpers of workflow/rules/study.smk: the study sheet (gae.study, validated while the workflow
# parses), its result and record layout, and each job's `gae` command line.
from gae.study import (
    PER_IMAGE_RECORD,
    STUDY_RECORD,
    STUDY_RESULTS,
    STUDY_SCHEMA,
    STUDY_SHEET,
    load_study,
    study_jobs,
)

try:
    STUDY_ROWS = load_study(STUDY_SHEET, STUDY_SCHEMA, Path(PARAMS_FILE))
except GaeError as exc:
    raise WorkflowError(f"invalid study sheet: {exc}") from None
STUDY = {row.variant: row for row in STUDY_ROWS}
STUDY_RUN = f"{STUDY_RESULTS}/{{variant}}/seed{{seed}}/runs/{{run}}"
STUDY_KEPT = f"{STUDY_RECORD}/{{variant}}/seed{{seed}}/{{run}}"
STUDY_TABLES = "docs/study/tables"
STUDY_FIGURES = "docs/study/figures"


wildcard_constraints:
    variant="|".join(sorted(STUDY, key=len, reverse=True)) or "no-study-variant",
    seed=r"[0-9]+",


def study_shell(command):
    """`python -m gae COMMAND RUN` with the row's configuration for the seed (no preset), and
    for a continued row's training the model it starts from."""

    def shell_text(wildcards):
        row = STUDY[wildcards.variant]
        args = ["--no-preset", *row.gae_arguments(int(wildcards.seed))]
        start = study_start_model(wildcards)
        if command == "train" and start:
            args.append(f"--init-from={start[0]}")
        if command == "loglik" and not row.trains:
            args.append(f"--model={study_model(wildcards)}")
        return shlex.join([sys.executable, "-m", "gae", command, wildcards.run, *args])

    return shell_text


def study_start_model(wildcards):
    """[the continued row's model.pt of this seed and run], or [] for a row trained afresh."""
    start = STUDY[wildcards.variant].start_model(int(wildcards.seed), wildcards.run)
    return [] if start is None else [str(start)]


def study_model(wildcards):
    """The model.pt a study job scores: its row's own, or that of the row in `models_from`."""
    return str(STUDY[wildcards.variant].model(int(wildcards.seed), wildcards.run))


def study_threads(wildcards):
    """train.num_threads of the row's configuration (null: the cores Snakemake was given)."""
    row = STUDY[wildcards.variant]
    cfg = row.config(int(wildcards.seed), Path(PARAMS_FILE))
    return cfg.train.num_threads or workflow.cores or 1


def study_tables():
    """The `study` target (Snakefile): every variant's table and training curves."""
    return [f"{STUDY_TABLES}/{variant}.md" for variant in STUDY] + [
        f"{STUDY_FIGURES}/{variant}.png" for variant, row in STUDY.items() if row.trains
    ]


def study_record_files(variant, with_loglik=True):
    """The record files a variant's table (or curves) reads. A models_from row trains nothing:
    its table takes the epochs from the source row's training logs, which are inputs too."""
    row = STUDY[variant]
    scored = with_loglik and "loglik" in row.evaluations
    names = [TRAIN_LOG_FILE] if row.trains else []
    names += [LOGLIK_FILE, PER_IMAGE_RECORD] if scored else []
    files = [
        f"{STUDY_RECORD}/{variant}/seed{seed}/{run}/{name}"
        for (_, seed, run) in study_jobs([row])
        for name in names
    ]
    if not row.trains:
        files += [
            f"{STUDY_RECORD}/{row.models_from}/seed{seed}/{run}/{TRAIN_LOG_FILE}"
            for (_, seed, run) in study_jobs([row])
        ]
    return files
