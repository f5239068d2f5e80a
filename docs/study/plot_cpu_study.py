"""Figures and tables of the CPU-preset study (docs/gae-study.md) from the runs' own files.

Reads results/study-cpu/seed*/runs/{run}/{loglik.json,loglik_images.npz,train_log.csv}, the
preset's results/runs (gae-slides runs, exact-prior loglik for the lower-bound gap) and writes
docs/study/figures/cpu_*.png plus docs/study/cpu-study-tables.md. Run by
`bash docs/study/run_cpu_study.sh plots` after its train/gap/eval steps.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from gae.evaluation import mean_sem  # noqa: E402
from gae.evaluation.loglik import PER_IMAGE_FILE  # noqa: E402
from gae.tables import SLIDES_TABLE2  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
STUDY = ROOT / "results" / "study-cpu"
PRESET = ROOT / os.environ.get("PRESET_RESULTS", "results")
OUT = Path(__file__).resolve().parent / "figures"
DEPTHS = (1, 2, 3, 4)
FIRST = 2000  # the seed repeats' test images (docs/study/cpu-first2000.yaml)
CHOSEN = "clip-warmup5"  # the clip-study variant that became the default (run_cpu_study.sh)
INIT_VARIANTS = (CHOSEN, "clip")  # the longer prefix first
# per variant: marker, x offset in the paired-difference panel, colour there
VARIANT_STYLE = {"torch": ("x", -0.15, "C2"), "clip": ("o", 0.0, "C3"), CHOSEN: ("s", 0.15, "C4")}
COLLAPSED = -180.0  # nats: a model on the mean-image plateau (about -201)


def run_name(model: str, depth: int) -> str:
    return f"bmnist-{model}-L{depth}-z50"


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def per_image(seed_dir: Path, run: str) -> np.ndarray | None:
    path = seed_dir / "runs" / run / PER_IMAGE_FILE
    if not path.is_file():
        return None
    with np.load(path) as data:
        return data["importance_log_px"].astype(np.float64)


def sem(values: np.ndarray) -> float:
    """Standard error over images (gae.evaluation.mean_sem, the tables' own statistic)."""
    return mean_sem(values)[1]


def slides_cell(depth: int) -> str:
    """The slides' table-2 scores at `depth`, 'GAE / VAE'."""
    return f"{SLIDES_TABLE2[('gae', depth)]:.2f} / {SLIDES_TABLE2[('vae', depth)]:.2f}"


def seed_dirs() -> list[tuple[str, int, Path]]:
    """The first study (model.init: torch): results/study-cpu/seed{N}."""
    return [("torch", int(d.name[4:]), d) for d in sorted(STUDY.glob("seed*"))]


def init_dirs() -> list[tuple[str, int, Path]]:
    """The clipping study: results/study-cpu/{clip,clip-warmup5}[-seed{N}]."""
    found = []
    for variant in INIT_VARIANTS:
        for d in sorted(STUDY.glob(f"{variant}*")):
            rest = d.name[len(variant) :]
            if rest == "" or rest.startswith("-seed"):
                found.append((variant, int(rest[5:]) if rest else 1234, d))
    return found


def collect(
    n_first: int | None = None, sources: list[tuple[str, int, Path]] | None = None
) -> pd.DataFrame:
    """One row per (variant, seed, model, depth) with the S = 1,000 estimate and the paired
    difference, over the first ``n_first`` test images (None: each run's own n_test)."""
    rows = []
    for variant, seed, seed_dir in seed_dirs() if sources is None else sources:
        for depth in DEPTHS:
            vae = per_image(seed_dir, run_name("vae", depth))
            vae = None if vae is None else vae[:n_first]
            for model in ("gae", "vae"):
                run = run_name(model, depth)
                values = per_image(seed_dir, run)
                if values is None or (n_first is not None and values.size < n_first):
                    continue
                values = values[:n_first]
                meta = read_json(seed_dir / "runs" / run / "loglik.json")
                imp = meta["estimators"]["importance"]
                log = pd.read_csv(seed_dir / "runs" / run / "train_log.csv")
                row = {
                    "variant": variant,
                    "seed": seed,
                    "model": model,
                    "depth": depth,
                    "mean": values.mean(),
                    "sem": sem(values),
                    "n_test": values.size,
                    "S": imp["n_importance"],
                    "prior_components": imp.get("prior_components"),
                    "best_valid": log["valid_objective"].max(),
                    "epochs": int(log["epoch"].max()),
                    "s_per_epoch": log["seconds"].median(),
                }
                if model == "gae" and vae is not None and vae.shape == values.shape:
                    diff = values - vae
                    row.update(diff=diff.mean(), diff_sem=sem(diff))
                rows.append(row)
    return pd.DataFrame(rows)


def gap_table() -> pd.DataFrame:
    rows = []
    for depth in DEPTHS:
        run = run_name("gae", depth)
        bound = STUDY / "gap" / "runs" / run / "loglik.json"
        exact = PRESET / "runs" / run / "loglik.json"
        if bound.is_file() and exact.is_file():
            b, e = (read_json(p)["estimators"]["importance"] for p in (bound, exact))
            rows.append(
                {
                    "depth": depth,
                    "exact": e["mean"],
                    "bound": b["mean"],
                    "gap": e["mean"] - b["mean"],
                    "K": b.get("prior_components"),
                    "S": e["n_importance"],
                    "n_test": read_json(exact)["n_test"],
                }
            )
    return pd.DataFrame(rows)


def plot_loglik(df: pd.DataFrame, seeds: pd.DataFrame) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    for model, colour in (("gae", "C0"), ("vae", "C1")):
        part = df[df.model == model]
        ax.scatter(
            part.depth + (-0.08 if model == "gae" else 0.08),
            part["mean"],
            color=colour,
            label=f"{model.upper()} (ours, each seed)",
            zorder=3,
        )
        means = part.groupby("depth")["mean"].mean()
        ax.plot(means.index, means.values, color=colour, alpha=0.6)
        d4 = per_image(STUDY / "depth4-lr3e-4", run_name(model, 4))
        if d4 is not None:
            ax.scatter(
                [4.0],
                [d4[:FIRST].mean()],
                color=colour,
                marker="s",
                zorder=3,
                label=f"{model.upper()} depth 4, lr 3e-4",
            )
        ax.plot(
            DEPTHS,
            [SLIDES_TABLE2[(model, d)] for d in DEPTHS],
            color=colour,
            ls="--",
            marker="x",
            label=f"{model.upper()} (slides)",
        )
    ax.text(3.55, -110.5, "depth 4, lr 1e-3: both\ncollapsed (≈ −201 to −206)", fontsize=7)
    ax.set(
        xlabel="encoder/decoder depth",
        ylabel="test log p(x), nats (higher is better)",
        xticks=DEPTHS,
        title=f"CPU preset (20 epochs), first {FIRST} test images",
        ylim=(-112, -88),
    )
    ax.legend(fontsize=8)
    ax = axes[1]
    gae = seeds[(seeds.model == "gae") & seeds["diff"].notna()] if "diff" in seeds else seeds
    for seed, part in gae.groupby("seed"):
        offset = {1234: -0.1, 2: 0.0, 3: 0.1}.get(seed, 0.0)
        ax.errorbar(
            part.depth + offset,
            part["diff"],
            yerr=2 * part.diff_sem,
            fmt="o",
            capsize=3,
            label=f"seed {seed}",
        )
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set(
        xlabel="depth",
        xticks=DEPTHS,
        ylabel="GAE − VAE, nats (± 2 paired s.e.)",
        title=f"Paired difference, first {FIRST} test images",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / "cpu_loglik_by_depth.png", dpi=120)
    plt.close(fig)


def plot_training() -> None:
    seed_dir = STUDY / "seed1234" / "runs"
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    palette = sns.color_palette("viridis", len(DEPTHS))
    for i, depth in enumerate(DEPTHS):
        for model, ls in (("gae", "-"), ("vae", "--")):
            path = seed_dir / run_name(model, depth) / "train_log.csv"
            if path.is_file():
                log = pd.read_csv(path)
                axes[0].plot(
                    log.epoch,
                    log.valid_objective,
                    ls=ls,
                    color=palette[i],
                    label=f"{model.upper()} L{depth}",
                )
                axes[1].plot(log.epoch, log.seconds, ls=ls, color=palette[i])
    axes[0].set(
        xlabel="epoch",
        ylabel="validation objective (ELBO), nats",
        ylim=(-140, None),
        title="Validation bound (solid GAE, dashed VAE)",
    )
    axes[0].legend(fontsize=7, ncol=2)
    axes[1].set(
        xlabel="epoch",
        ylabel="seconds per epoch (incl. validation)",
        title="Epoch time, 2 jobs on 2 cores",
    )
    ax = axes[2]
    for i, depth in enumerate(DEPTHS):
        path = PRESET / "runs" / run_name("gae-slides", depth) / "train_log.csv"
        if path.is_file():
            log = pd.read_csv(path)
            if "self_responsibility" in log:
                ax.plot(
                    log.epoch,
                    log.self_responsibility,
                    color=palette[i],
                    label=f"gae-slides L{depth}",
                )
    ax.set(
        xlabel="epoch",
        ylabel="mean self-responsibility r_ii",
        yscale="log",
        title="Slides' Monte-Carlo EM: weight of x_i's own code",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / "cpu_training.png", dpi=120)
    plt.close(fig)


def plot_gae_internals() -> None:
    seed_dir = STUDY / "seed1234" / "runs"
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    palette = sns.color_palette("viridis", len(DEPTHS))
    for i, depth in enumerate(DEPTHS):
        path = seed_dir / run_name("gae", depth) / "train_log.csv"
        if not path.is_file():
            continue
        log = pd.read_csv(path)
        for ax, column in zip(axes, ("log_prior", "entropy", "r_sigma"), strict=True):
            if column in log:
                ax.plot(log.epoch, log[column], color=palette[i], label=f"GAE L{depth}")
    titles = (
        "E log p_-i(z): leave-one-out 32-NN prior",
        "entropy of q(z|x)",
        "R's σ term (λ2 · penalty)",
    )
    for ax, title in zip(axes, titles, strict=True):
        ax.set(xlabel="epoch", title=title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / "cpu_gae_internals.png", dpi=120)
    plt.close(fig)


def plot_init(df: pd.DataFrame) -> None:
    """Test log-likelihood and paired GAE − VAE by depth: the first study (init torch, no
    clipping) against xavier + clipping with and without warm-up."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    collapsed = df[df["mean"] < COLLAPSED].set_index(["variant", "seed", "depth"]).index
    df = df[~df.set_index(["variant", "seed", "depth"]).index.isin(collapsed)]
    for variant, part in df.groupby("variant"):
        marker, offset, diff_colour = VARIANT_STYLE[variant]
        for model, colour in (("gae", "C0"), ("vae", "C1")):
            rows = part[part.model == model]
            means = rows.groupby("depth")["mean"].mean()
            axes[0].plot(
                means.index,
                means.values,
                color=colour,
                marker=marker,
                ls="-" if variant == CHOSEN else ":",
                label=f"{model.upper()}, {variant}",
            )
        gae = part[(part.model == "gae") & part["diff"].notna()]
        for seed, rows in gae.groupby("seed"):
            axes[1].errorbar(
                rows.depth + offset,
                rows["diff"],
                yerr=2 * rows.diff_sem,
                fmt=marker,
                capsize=3,
                color=diff_colour,
                label=f"{variant}" if seed == 1234 else None,
            )
    axes[0].set(
        xlabel="encoder/decoder depth",
        ylabel="test log p(x), nats (higher is better)",
        xticks=DEPTHS,
        title=f"CPU preset budget, first {FIRST} test images\n(pairs with a collapsed model, "
        f"< {COLLAPSED}, left out)",
    )
    axes[0].legend(fontsize=7)
    axes[1].axhline(0.0, color="k", lw=0.8)
    axes[1].set(
        xlabel="depth",
        xticks=DEPTHS,
        ylabel="GAE − VAE, nats (± 2 paired s.e.)",
        title="Paired difference, every seed",
    )
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / "cpu_init.png", dpi=120)
    plt.close(fig)


def tables(df: pd.DataFrame, gap: pd.DataFrame) -> str:
    lines = ["<!-- written by docs/study/plot_cpu_study.py -->", ""]
    if not df.empty:
        lines += [
            "| variant | depth | seed | GAE | VAE | GAE − VAE (paired) | diff / s.e. | best valid "
            "GAE / VAE | s/epoch GAE / VAE |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for (variant, depth, seed), part in df.groupby(["variant", "depth", "seed"]):
            g = part[part.model == "gae"]
            v = part[part.model == "vae"]
            if g.empty or v.empty:
                continue
            g, v = g.iloc[0], v.iloc[0]
            lines.append(
                f"| {variant} | {depth} | {seed} | {g['mean']:.2f} ± {g['sem']:.2f} | "
                f"{v['mean']:.2f} ± {v['sem']:.2f} | {g['diff']:+.2f} ± {g['diff_sem']:.2f} | "
                f"{g['diff'] / g['diff_sem']:+.1f} | {g['best_valid']:.2f} / "
                f"{v['best_valid']:.2f} | {g['s_per_epoch']:.0f} / {v['s_per_epoch']:.0f} |"
            )
        sizes = df[["S", "n_test", "prior_components"]].drop_duplicates().to_dict("records")
        lines += ["", f"Estimator settings: {sizes}.", ""]
    if not gap.empty:
        lines += [
            "| depth | exact prior | K-nearest bound | gap (nats) | K | S | test images |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r.depth} | {r.exact:.3f} | {r.bound:.3f} | {r.gap:.4f} | {r.K} | {r.S} | "
            f"{r.n_test} |"
            for r in gap.itertuples()
        ]
    return "\n".join(lines) + "\n"


def depth4_table() -> str:
    """Depth 4 at learning rate 3e-4 (docs/study/cpu-depth4-lr3e-4.yaml), GAE vs VAE, paired."""
    base = STUDY / "depth4-lr3e-4"
    values = {m: per_image(base, run_name(m, 4)) for m in ("gae", "vae")}
    if any(v is None for v in values.values()):
        return ""
    gae, vae = values["gae"], values["vae"]
    diff = gae - vae
    logs = {m: pd.read_csv(base / "runs" / run_name(m, 4) / "train_log.csv") for m in values}
    return (
        "\n## Depth 4, learning rate 3e-4 (seed 1234)\n\n"
        "| GAE | VAE | GAE − VAE (paired) | diff / s.e. | best valid GAE / VAE | test images |\n"
        "|---|---|---|---|---|---|\n"
        f"| {gae.mean():.2f} ± {sem(gae):.2f} | {vae.mean():.2f} ± {sem(vae):.2f} | "
        f"{diff.mean():+.2f} ± {sem(diff):.2f} | {diff.mean() / sem(diff):+.1f} | "
        f"{logs['gae'].valid_objective.max():.2f} / {logs['vae'].valid_objective.max():.2f} | "
        f"{gae.size} |\n"
    )


def refresh_table() -> str:
    """GAE with the nearest-exemplar search every 4 epochs vs every epoch (CHOSEN)."""
    lines = []
    for depth in DEPTHS:
        run = run_name("gae", depth)
        every = per_image(STUDY / CHOSEN, run)
        fourth = per_image(STUDY / f"{CHOSEN}-refresh4", run)
        if every is None or fourth is None:
            continue
        every, fourth = every[:FIRST], fourth[:FIRST]
        logs = [
            pd.read_csv(STUDY / d / "runs" / run / "train_log.csv")
            for d in (CHOSEN, f"{CHOSEN}-refresh4")
        ]
        diff = fourth - every
        lines.append(
            f"| {depth} | {every.mean():.2f} ± {sem(every):.2f} | {fourth.mean():.2f} ± "
            f"{sem(fourth):.2f} | {diff.mean():+.2f} ± {sem(diff):.2f} | "
            f"{logs[0].seconds.median():.1f} / {logs[1].seconds.median():.1f} |"
        )
    if not lines:
        return ""
    return (
        f"\n## Nearest-exemplar search every epoch vs every 4 epochs (GAE, first {FIRST})\n\n"
        "| depth | every epoch | every 4 epochs | difference (paired) | s/epoch (median) |\n"
        "|---|---|---|---|---|\n" + "\n".join(lines) + "\n"
    )


def aggregate_table() -> str:
    """docs/study/vae_aggregate_prior.py: each VAE with its own aggregate posterior as prior."""
    lines = []
    for name in ("seed1234", CHOSEN):
        path = STUDY / name / "vae_aggregate_prior.csv"
        if path.is_file():
            for r in pd.read_csv(path).itertuples(index=False):
                lines.append(
                    f"| {name} | {r[1]} | {r[2]:.2f} | {r[3]:.2f} | {r[4]:+.2f} ± {r[5]:.2f} | "
                    f"{r[6]} |"
                )
    if not lines:
        return ""
    return (
        "\n## VAEs scored with their own aggregate posterior as prior\n\n"
        "| models | depth | N(0, I) prior | aggregate-posterior prior (exact) | gain "
        "(paired) | test images |\n|---|---|---|---|---|---|\n" + "\n".join(lines) + "\n"
    )


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    sns.set_theme(style="whitegrid")
    chosen_full = [(CHOSEN, 1234, STUDY / f"{CHOSEN}-full")]
    full = collect(sources=seed_dirs() + [d for d in chosen_full if d[2].is_dir()])
    full = full[full.n_test == full.n_test.max()] if not full.empty else full
    first = collect(n_first=FIRST)
    gap = gap_table()
    if not first.empty:
        plot_loglik(first, first)
    plot_training()
    plot_gae_internals()
    text = "## All test images\n\n" + tables(full, pd.DataFrame())
    text += f"\n## First {FIRST} test images, every seed\n\n" + tables(first, gap)
    text += depth4_table()
    init = collect(n_first=FIRST, sources=init_dirs())
    if not init.empty:
        torch_init = first[first.seed == 1234]
        plot_init(pd.concat([torch_init, init], ignore_index=True))
        text += f"\n## Xavier init + gradient clipping, ± warm-up; first {FIRST} test images\n\n"
        text += tables(init, pd.DataFrame())
    text += refresh_table() + aggregate_table()
    (Path(__file__).resolve().parent / "cpu-study-tables.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
