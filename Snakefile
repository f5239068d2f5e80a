# The whole pipeline: prepare each data set -> train each run -> sample -> Parzen ->
# log-likelihood -> diagnostics -> figures -> tables -> report.
#
# Which runs exist and which evaluations cover them comes from params.yaml (`runs`, `evaluate`),
# never from this file. Presets are overlay files (config/*.yaml) listed in params.yaml's
# `overlays` (what `make run PRESET=...` writes) or given with `--config overlays=[FILE]`.
# Every rule calls one `gae` subcommand with the same overlays, so the pipeline and a hand-run
# `gae` command see the same configuration. See README "Pipeline".
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "params.yaml"


# 1. the raw configuration (params.yaml + snakemake --config) against the schema;
# 2. common.smk applies the overlays and validates the effective configuration with the same
#    checks the `gae` command uses (gae.config.validate_config), so errors read the same.
validate(config, "workflow/schemas/params.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        all_outputs(),
