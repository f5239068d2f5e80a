"""Tables and figure of the learning-rate study (docs/gae-study.md, "The learning rate"), from the
runs' own files under results/study-cpu/.

Three schedules, the same for the GAE and the VAE at every depth: constant 1e-3 (the runs of the
component-variance study: `unit` GAE, `clip-warmup5` VAE), halved on every 2-epoch validation
plateau (`lrdecay`) and halved every 5 epochs (`lrstep5`). Writes
docs/study/figures/cpu_learning_rate.png and docs/study/cpu-learning-rate-tables.md. Run by
`bash docs/study/run_cpu_study.sh lr-plots` after the `lrdecay`, `lrstep5` and `lrstep5-full`
steps.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from plot_cpu_study import (  # noqa: E402
    CHOSEN,
    DEPTHS,
    FIRST,
    OUT,
    STUDY,
    per_image,
    run_name,
    sem,
    slides_cell,
)

HERE = Path(__file__).resolve().parent
SHARED = "unit"  # the GAE variant of the component study (run_cpu_study.sh)
STEP = "lrstep5"  # the schedule that became the CPU preset's default
# schedule -> (label, GAE folder, VAE folder), first 2,000 test images
SCHEDULES = {
    "constant": ("constant 1e-3", SHARED, CHOSEN),
    "plateau": ("halved on 2-epoch plateaus", "lrdecay", "lrdecay"),
    "step": ("halved every 5 epochs", STEP, STEP),
}
FULL = {"constant": (f"{SHARED}-full", f"{CHOSEN}-full"), "step": (f"{STEP}-full", f"{STEP}-full")}


def scores(folder: str, model: str, depth: int, n: int | None = FIRST) -> np.ndarray | None:
    values = per_image(STUDY / folder, run_name(model, depth))
    if values is None or (n is None and len(values) != 10000):
        return None
    return values if n is None else values[:n]


def cell(values: np.ndarray | None) -> str:
    return "–" if values is None else f"{values.mean():.2f} ± {sem(values):.2f}"


def diff(a: np.ndarray | None, b: np.ndarray | None) -> str:
    if a is None or b is None:
        return "–"
    d = a - b
    return f"{d.mean():+.2f} ± {sem(d):.2f}"


def ratio(a: np.ndarray | None, b: np.ndarray | None) -> str:
    """The paired difference a − b in standard errors ('–' if either is missing)."""
    return "–" if a is None or b is None else f"{(a - b).mean() / sem(a - b):+.1f}"


def seed_folders(base: str) -> tuple[tuple[str, str], ...]:
    """(seed, folder) of a study variant's three seeds: 1234 in `base`, 2 and 3 beside it."""
    return (("1234", base), ("2", f"{base}-seed2"), ("3", f"{base}-seed3"))


def schedule_table() -> str:
    """Every schedule at every depth, first 2,000 test images, paired differences."""
    lines = [
        "| schedule | depth | GAE | VAE | GAE − VAE (paired) | GAE vs constant | VAE vs constant |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, (label, gae_dir, vae_dir) in SCHEDULES.items():
        for depth in DEPTHS:
            g, v = scores(gae_dir, "gae", depth), scores(vae_dir, "vae", depth)
            if g is None and v is None:
                continue
            g0, v0 = scores(SHARED, "gae", depth), scores(CHOSEN, "vae", depth)
            rel = key != "constant"
            lines.append(
                f"| {label} | {depth} | {cell(g)} | {cell(v)} | {diff(g, v)} | "
                f"{diff(g, g0) if rel else ''} | {diff(v, v0) if rel else ''} |"
            )
    return "\n".join(lines)


def best_vae_table() -> str:
    """The step-schedule GAE against the VAE under each schedule (first 2,000 test images)."""
    lines = [
        "| depth | GAE (halved every 5) | VAE constant | VAE plateaus | VAE every 5 "
        "| GAE − best VAE (paired) |",
        "|---|---|---|---|---|---|",
    ]
    for depth in DEPTHS:
        g = scores(STEP, "gae", depth)
        vaes = {k: scores(SCHEDULES[k][2], "vae", depth) for k in SCHEDULES}
        known = {k: v for k, v in vaes.items() if v is not None}
        best = max(known.values(), key=np.mean) if known else None
        lines.append(
            f"| {depth} | {cell(g)} | "
            + " | ".join(cell(vaes[k]) for k in SCHEDULES)
            + f" | {diff(g, best)} |"
        )
    return "\n".join(lines)


def full_table() -> str:
    """Table 2 with the CPU preset's defaults (the rate halved every 5 epochs) beside the earlier
    constant-rate models: all 10,000 test images, S = 1,000, the slides' numbers beside."""
    columns = [  # (header, folder, model)
        ("VAE (default: every 5)", FULL["step"][1], "vae"),
        ("VAE, constant", FULL["constant"][1], "vae"),
        ("gae-slides, constant", "slides", "gae-slides"),
        ("GAE posterior components, constant (former)", f"{CHOSEN}-full", "gae"),
        ("GAE unit, constant", FULL["constant"][0], "gae"),
        ("GAE (default: unit, every 5)", FULL["step"][0], "gae"),
    ]
    lines = [
        "| depth | " + " | ".join(c[0] for c in columns) + " | GAE − VAE, defaults (paired) "
        "| diff / s.e. | slides: GAE / VAE |",
        "|---" * (len(columns) + 4) + "|",
    ]
    for depth in DEPTHS:
        values = [scores(folder, model, depth, None) for _, folder, model in columns]
        vae, gae = values[0], values[-1]
        lines.append(
            f"| {depth} | "
            + " | ".join(cell(v) for v in values)
            + f" | {diff(gae, vae)} | {ratio(gae, vae)} | {slides_cell(depth)} |"
        )
    return "\n".join(lines)


def full_gain_table() -> str:
    """The step schedule against the constant rate, paired, all 10,000 test images."""
    lines = ["| depth | GAE: every 5 − constant | VAE: every 5 − constant |", "|---|---|---|"]
    for depth in DEPTHS:
        gains = [  # FULL's folders are (GAE, VAE)
            diff(scores(step, model, depth, None), scores(constant, model, depth, None))
            for model, step, constant in zip(
                ("gae", "vae"), FULL["step"], FULL["constant"], strict=True
            )
        ]
        lines.append(f"| {depth} | " + " | ".join(gains) + " |")
    return "\n".join(lines)


def seeds_table() -> str:
    """The defaults at depth 2 for seeds 1234, 2 and 3 (first 2,000 test images)."""
    lines = [
        "| seed | GAE | VAE | GAE − VAE (paired) |",
        "|---|---|---|---|",
    ]
    for seed, folder in seed_folders(STEP):
        g, v = scores(folder, "gae", 2), scores(folder, "vae", 2)
        lines.append(f"| {seed} | {cell(g)} | {cell(v)} | {diff(g, v)} |")
    return "\n".join(lines)


def paper_table() -> str:
    """params.yaml's budget at a constant rate, depth 2 (first 2,000 test images, S = 1,000)."""
    lines = [
        "| model | stopped after epoch | best epoch | best valid | test log p(x) |",
        "|---|---|---|---|---|",
    ]
    values = {}
    for model in ("gae", "vae"):
        log = valid_curve("paper", run_name(model, 2))
        values[model] = scores("paper", model, 2)
        if log is None:
            continue
        best = log.loc[log.valid_objective.idxmax()]
        lines.append(
            f"| {model.upper()} | {int(log.epoch.iloc[-1])} | {int(best.epoch)} | "
            f"{best.valid_objective:.2f} | {cell(values[model])} |"
        )
    lines.append(f"| GAE − VAE (paired) | | | | {diff(values['gae'], values['vae'])} |")
    return "\n".join(lines)


def margins() -> str:
    """GAE − VAE for every pair of schedules measured at each depth: the smallest, per depth."""
    out = []
    for depth in DEPTHS:
        pairs = []
        for gk, (_, gdir, _) in SCHEDULES.items():
            for vk, (_, _, vdir) in SCHEDULES.items():
                g, v = scores(gdir, "gae", depth), scores(vdir, "vae", depth)
                if g is not None and v is not None:
                    d = g - v
                    pairs.append((d.mean(), sem(d), gk, vk))
        if pairs:
            m = min(pairs)
            out.append(
                f"depth {depth}: {m[0]:+.2f} ± {m[1]:.2f} (GAE {m[2]}, VAE {m[3]}; "
                f"{len(pairs)} pairs)"
            )
    step4 = scores("lrstep4", "gae", 3)
    if step4 is not None:
        out.append(
            f"every 4 epochs, GAE depth 3: {cell(step4)}, against every 5: "
            f"{diff(step4, scores(STEP, 'gae', 3))} (paired)"
        )
    return "\n".join(f"- {line}" for line in out)


def valid_curve(folder: str, run: str) -> pd.DataFrame | None:
    path = STUDY / folder / "runs" / run / "train_log.csv"
    return pd.read_csv(path) if path.is_file() else None


def plot_valid_curve(
    ax: plt.Axes, folder: str, model: str, depth: int, style: str, colour: str, label: str
) -> None:
    """One run's validation bound per epoch, labelled '{MODEL}, {label}' (nothing if absent)."""
    log = valid_curve(folder, run_name(model, depth))
    if log is not None:
        ax.plot(
            log.epoch, log.valid_objective, style, color=colour, label=f"{model.upper()}, {label}"
        )


def save_figure(fig: plt.Figure, name: str) -> None:
    fig.tight_layout()
    OUT.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT / name, dpi=110)


def plot() -> None:
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6))
    ax = axes[0]
    curves = [  # (folder, label, style); the constant runs continued to 50 / the paper preset
        ("paper", "constant, paper preset (patience 30)", ":"),
        (SHARED, "constant", "-"),
        ("lrdecay", "halved on 2-epoch plateaus", "--"),
        (STEP, "halved every 5 epochs", "-."),
    ]
    for model, colour in (("gae", "C0"), ("vae", "C3")):
        for folder, label, style in curves:
            src = folder if not (folder == SHARED and model == "vae") else CHOSEN
            plot_valid_curve(ax, src, model, 2, style, colour, label)
    ax.set_xlim(0, 110)
    ax.set_ylim(-106, -99)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation bound (nats)")
    ax.set_title("depth 2: validation bound by schedule")
    ax.legend(fontsize=7)

    ax = axes[1]
    for i, (label, gae_dir, vae_dir) in enumerate(SCHEDULES.values()):
        for model, folder, marker in (("gae", gae_dir, "o"), ("vae", vae_dir, "s")):
            pts = [(d, scores(folder, model, d)) for d in DEPTHS]
            pts = [(d, v) for d, v in pts if v is not None]
            if not pts:
                continue
            x = np.array([d for d, _ in pts]) + (i - 1) * 0.1
            ax.errorbar(
                x,
                [v.mean() for _, v in pts],
                yerr=[2 * sem(v) for _, v in pts],
                fmt=marker,
                color=f"C{i}",
                mfc=f"C{i}" if model == "gae" else "none",
                label=f"{model.upper()}, {label}",
            )
    ax.axhline(-90, color="grey", lw=0.8, ls=":")
    ax.set_xticks(DEPTHS)
    ax.set_xlabel("depth")
    ax.set_ylabel("test log p(x), first 2,000 images (± 2 s.e.)")
    ax.set_title("test log-likelihood by schedule (20 epochs, S = 1,000)")
    ax.legend(fontsize=7)
    save_figure(fig, "cpu_learning_rate.png")


def main() -> None:
    text = (
        "# Learning-rate study tables (generated by docs/study/plot_learning_rate.py)\n\n"
        "## Every schedule, first 2,000 test images\n\n"
        + schedule_table()
        + "\n\n## The GAE halved every 5 epochs against the VAE under each schedule\n\n"
        + best_vae_table()
        + "\n\n## Table 2: the defaults beside the constant-rate models, all 10,000 test images\n\n"
        + full_table()
        + "\n\n## Every 5 epochs against a constant rate, all 10,000 test images (paired)\n\n"
        + full_gain_table()
        + "\n\n## Seeds, depth 2, the defaults\n\n"
        + seeds_table()
        + "\n\n## The paper preset's budget at a constant rate, depth 2\n\n"
        + paper_table()
        + "\n\n## Smallest GAE − VAE margin over the schedule pairs; every 4 epochs\n\n"
        + margins()
        + "\n"
    )
    (HERE / "cpu-learning-rate-tables.md").write_text(text)
    plot()
    print(text)


if __name__ == "__main__":
    main()
