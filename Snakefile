# The whole pipeline: prepare each data set -> train each run -> sample -> Parzen ->
# log-likelihood -> diagnostics -> figures -> tables -> report.
#
# Which runs exist and which evaluations cover them comes from params.yaml (`runs`, `evaluate`),
# never from this file. Presets are overlay files (config/*.yaml) listed in params.yaml's
# `overlays` (what `make run PRESET=...` writes) or given with `--config overlays=[FILE]`.
# Every rule calls one `gae` subcommand with the same overlays, so the pipeline and a hand-run
# `gae` command see the same configuration. See README "Pipeline".
#
# Parsing this workflow never imports torch (tests/test_workflow.py checks it): the rules need
# names and paths only, from gae.config, gae.paths and gae.pipeline.
from snakemake.utils import min_version

min_version("9.0")


configfile: "params.yaml"


# common.smk applies the overlays and validates the effective configuration with the checks
# every `gae` command uses (gae.config.load_config: the schema, unknown keys with the closest
# valid name, the cross-key rules, the file that set each bad value), before any job. Snakemake's
# own `validate` is not used: its YAML 1.1 reading of params.yaml takes `1e-4` for a string.
include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/study.smk"  # the `study` target, outside `all`


rule all:
    default_target: True
    input:
        all_outputs(),


# The study behind docs/gae-study.md (config/study.tsv; workflow/rules/study.smk): every
# variant's table and training curves, rebuilt from its runs. Not part of `all`: `snakemake study`.
rule study:
    input:
        study_tables(),


# Before the first job (not in dry runs): a configuration that asks for a GPU stops where no CUDA
# device is (the paper preset on a laptop), naming the CPU presets; GAE_ALLOW_CPU=1 overrides.
onstart:
    check_device()


# After a successful run: record the outputs in dvc.lock, so `dvc status` is clean (only when
# the whole pipeline exists and the configuration is params.yaml's own; see gae.pipeline).
onsuccess:
    record_outputs()
