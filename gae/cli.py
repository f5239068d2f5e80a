"""The ``gae`` command line: one subcommand per pipeline step, each calling one package function.

Every subcommand reads ``params.yaml`` (and the overlays it lists) plus any ``--config FILE``
given here, in order, then applies each ``--set KEY.PATH=VALUE``. Errors the user can fix exit
with status 1 and one message on stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from gae import __version__
from gae.errors import GaeError
from gae.settings import Config

log = logging.getLogger("gae")


def _cmd_prepare(cfg: Config, args: argparse.Namespace) -> None:
    from gae.data.prepare import prepare_dataset

    mirror = args.mirror or os.environ.get("GAE_DATA_MIRROR") or cfg.data.mirror
    if args.tfd_path:
        cfg = replace(cfg, data=replace(cfg.data, tfd_path=args.tfd_path))
    prepare_dataset(cfg, args.dataset, mirror=mirror, force=args.force)


def _cmd_train(cfg: Config, args: argparse.Namespace) -> None:
    from gae.training import train_run

    train_run(
        cfg,
        args.run,
        restart=args.restart,
        restart_if_stale=args.restart_if_stale,
        init_from=args.init_from,
    )


def _cmd_sample(cfg: Config, args: argparse.Namespace) -> None:
    from gae.sampling import sample_run

    sample_run(cfg, args.run)


def _cmd_parzen(cfg: Config, args: argparse.Namespace) -> None:
    from gae.evaluation.parzen import parzen_run

    parzen_run(cfg, args.run)


def _cmd_loglik(cfg: Config, args: argparse.Namespace) -> None:
    from gae.evaluation.loglik import loglik_run

    loglik_run(cfg, args.run, model_file=args.model)


def _cmd_diagnose(cfg: Config, args: argparse.Namespace) -> None:
    from gae.evaluation.diagnostics import diagnose_run

    diagnose_run(cfg, args.run)


def _cmd_figures(cfg: Config, args: argparse.Namespace) -> None:
    from gae.figures import make_figures

    make_figures(cfg)


def _cmd_tables(cfg: Config, args: argparse.Namespace) -> None:
    from gae.tables import make_tables

    make_tables(cfg)


def _cmd_report(cfg: Config, args: argparse.Namespace) -> None:
    from gae.report import make_report

    make_report(cfg)


def _cmd_config(cfg: Config, args: argparse.Namespace) -> None:
    import yaml

    if args.runs:
        print("\n".join(cfg.runs))
    else:
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")


SUBCOMMANDS: dict[str, tuple[Callable[[Config, argparse.Namespace], None], str]] = {
    "prepare": (_cmd_prepare, "fetch, verify and prepare a data set into data/prepared/"),
    "train": (_cmd_train, "train one run (resumes from its checkpoint)"),
    "sample": (_cmd_sample, "draw the run's samples.npy by the slides' procedure"),
    "parzen": (_cmd_parzen, "Parzen-window test log-likelihood of the run's samples"),
    "loglik": (_cmd_loglik, "importance-sampled and prior-sampled test log-likelihood"),
    "diagnose": (_cmd_diagnose, "memorisation diagnostics: samples vs nearest training images"),
    "figures": (_cmd_figures, "all figures under results/figures/"),
    "tables": (_cmd_tables, "tables 1 and 2 under results/tables/"),
    "report": (_cmd_report, "results/report.md"),
    "config": (_cmd_config, "print the effective configuration (after overlays)"),
}


def _common_options() -> argparse.ArgumentParser:
    """The options every subcommand takes (configuration, overlays, logging), as a parent
    parser: they are written after the subcommand, e.g. ``gae train RUN --set k=v``, which is
    how the pipeline's rules call it."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help="overlay a preset on params.yaml (repeatable, applied in order)",
    )
    common.add_argument(
        "--set",
        action="append",
        default=[],
        dest="sets",
        metavar="KEY.PATH=VALUE",
        help="set one key after the overlays, VALUE read as YAML (repeatable), "
        "e.g. --set train.lr=1e-4 --set models.gae.n_candidates=64",
    )
    common.add_argument(
        "--params", default="params.yaml", metavar="FILE", help="base configuration"
    )
    common.add_argument(
        "--no-preset",
        action="store_false",
        dest="preset",
        help="ignore the `overlays` line of the base configuration (the preset `make run` "
        "wrote there); the study's jobs use it",
    )
    common.add_argument("--log", metavar="FILE", help="also write the log to FILE")
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return common


def _add_command_arguments(parsers: dict[str, argparse.ArgumentParser]) -> None:
    """The arguments that only some subcommands take: the data set and its sources for
    ``prepare``, the run name for the per-run steps, the restart policy for ``train``."""
    parsers["prepare"].add_argument("dataset", help="mnist | bmnist | frey | tfd")
    parsers["prepare"].add_argument(
        "--mirror", metavar="DIR", help="local mirror folder (also GAE_DATA_MIRROR, data.mirror)"
    )
    parsers["prepare"].add_argument(
        "--tfd-path", metavar="FILE", help="your licensed TFD_48x48.mat (data.tfd_path)"
    )
    parsers["prepare"].add_argument(
        "--force", action="store_true", help="rebuild even if the prepared files are current"
    )
    for name in ("train", "sample", "parzen", "loglik", "diagnose"):
        parsers[name].add_argument("run", help="run name, e.g. bmnist-gae-L2-z50")
    parsers["train"].add_argument(
        "--restart", action="store_true", help="ignore an existing checkpoint and start afresh"
    )
    parsers["train"].add_argument(
        "--restart-if-stale",
        action="store_true",
        help="resume when the checkpoint matches the settings, else start afresh (the "
        "pipeline's rules use it) instead of stopping",
    )
    parsers["train"].add_argument(
        "--init-from",
        metavar="MODEL",
        type=Path,
        help="continue another model.pt of this run (more epochs, another schedule): its "
        "weights, with a fresh optimizer, schedule and early stopping",
    )
    parsers["loglik"].add_argument(
        "--model",
        metavar="MODEL",
        type=Path,
        help="score this model.pt of the run instead of the run's own (its path and sha256 "
        "go into loglik.json); a study row's `models_from` uses it",
    )
    parsers["config"].add_argument("--runs", action="store_true", help="list the run names only")


def build_parser() -> argparse.ArgumentParser:
    """The ``gae`` parser: one subcommand per entry of ``SUBCOMMANDS``, each with the common
    options and its own arguments."""
    common = _common_options()
    parser = argparse.ArgumentParser(
        prog="gae",
        description="Generative Auto Encoder (Kim, Kim & Hwang 2018) beside a VAE baseline.",
    )
    parser.add_argument("--version", action="version", version=f"gae {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parsers = {
        name: sub.add_parser(name, parents=[common], help=text, description=text)
        for name, (_, text) in SUBCOMMANDS.items()
    }
    _add_command_arguments(parsers)
    return parser


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time (test runners swap and close it)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it; ignore
        pass


def _setup_logging(log_file: str | None, verbose: bool) -> None:
    handlers: list[logging.Handler] = [_StderrHandler()]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )


# progress bars written to a log file (Snakemake, DVC, SLURM) update this rarely, in seconds
LOG_FILE_PROGRESS_INTERVAL = "30"


def _quiet_progress_when_logged() -> None:
    """tqdm redraws every 0.1 s; into a log file that is thousands of lines per job. When stderr
    is not a terminal, default tqdm's minimum interval (TQDM_MININTERVAL, which the user may
    set) to 30 s: the log keeps a line with the rate and ETA twice a minute. tqdm reads the
    variable when first imported, so this runs before any subcommand module is loaded."""
    if not sys.stderr.isatty():
        os.environ.setdefault("TQDM_MININTERVAL", LOG_FILE_PROGRESS_INTERVAL)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.log, args.verbose)
    _quiet_progress_when_logged()
    handler, _ = SUBCOMMANDS[args.command]
    try:
        from gae.config import load_config

        cfg = load_config(args.config, base=args.params, sets=args.sets, preset=args.preset)
        handler(cfg, args)
    except GaeError as exc:
        log.debug("failure", exc_info=True)
        print(f"gae {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"gae {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
