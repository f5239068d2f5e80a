"""Tables and figure of the component-variance study (docs/gae-study.md, "The prior's component
variance"), from the runs' own files under results/study-cpu/.

Compares the GAE whose prior components are its posteriors q(z|x_j) (the former default,
`clip-warmup5`, with R's sigma term lambda_2 at 0.5 / 0.25 / 0.1) with components of one shared
variance (`unit`: N(mu_j, I); `learned`: one learned diagonal variance), against the VAE of the
same recipe. Writes docs/study/figures/cpu_component_variance.png and
docs/study/cpu-component-variance-tables.md. Run by
`bash docs/study/run_cpu_study.sh component-plots` after the `component*` steps.
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
SHARED = "unit"  # the variant that became the default (run_cpu_study.sh)
# folder -> (label, prior components, lambda_2)
DEPTH3_VARIANTS = {
    CHOSEN: ("posterior, λ2 0.5 (former default)", "q(z\\|x_j)", 0.5),
    "lsigma0.25": ("posterior, λ2 0.25", "q(z\\|x_j)", 0.25),
    "lsigma0.1": ("posterior, λ2 0.1", "q(z\\|x_j)", 0.1),
    "learned": ("learned shared, λ2 0.5", "N(mu_j, s²), s learned", 0.5),
    "learned-l0": ("learned shared, λ2 0", "N(mu_j, s²), s learned", 0.0),
    SHARED: ("unit, λ2 0 (default)", "N(mu_j, I)", 0.0),
}


SHORT = {  # the variant names of the by-depth table and panel
    CHOSEN: "posterior, λ2 0.5 (former)",
    SHARED: "unit (default)",
    "learned-l0": "learned, λ2 0",
}


def log_of(folder: str, run: str) -> pd.DataFrame | None:
    path = STUDY / folder / "runs" / run / "train_log.csv"
    return pd.read_csv(path) if path.is_file() else None


def paired(a: np.ndarray, b: np.ndarray) -> str:
    d = a - b
    return f"{d.mean():+.2f} ± {sem(d):.2f}"


def depth3_table() -> str:
    run, vae_run = run_name("gae", 3), run_name("vae", 3)
    vae = per_image(STUDY / CHOSEN, vae_run)[:FIRST]
    base = per_image(STUDY / CHOSEN, run)[:FIRST]
    lines = [
        "| GAE variant | prior components | λ2 | test log p(x) | GAE − VAE (paired) "
        "| vs former default (paired) | best valid | entropy, last epoch | s/epoch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for folder, (label, components, lam) in DEPTH3_VARIANTS.items():
        values, log = per_image(STUDY / folder, run), log_of(folder, run)
        if values is None or log is None:
            lines.append(f"| {label} | {components} | {lam} | pending | | | | | |")
            continue
        g = values[:FIRST]
        lines.append(
            f"| {label} | {components} | {lam} | {g.mean():.2f} ± {sem(g):.2f} | "
            f"{paired(g, vae)} | {paired(g, base) if folder != CHOSEN else '–'} | "
            f"{log.valid_objective.max():.2f} | "
            f"{log.entropy.iloc[-1]:.1f} | {log.seconds.median():.0f} |"
        )
    vlog = log_of(CHOSEN, vae_run)
    lines.append(
        f"| VAE | N(0, I) | – | {vae.mean():.2f} ± {sem(vae):.2f} | | | "
        f"{vlog.valid_objective.max():.2f} | | {vlog.seconds.median():.0f} |"
    )
    return "\n".join(lines)


def by_depth_rows() -> list[dict]:
    """GAE − VAE per depth: all 10,000 test images for the former default and the unit-variance
    GAE (seeds 1234, 2, 3), the first 2,000 for seed 1234 again and the learned variant."""
    rows = []
    sources = [
        (CHOSEN, f"{CHOSEN}-full", f"{CHOSEN}-full", "1234", None),
        (SHARED, f"{SHARED}-full", f"{CHOSEN}-full", "1234", None),
        (SHARED, SHARED, CHOSEN, "1234", FIRST),
        (SHARED, f"{SHARED}-seed2-full", f"{CHOSEN}-seed2-full", "2", None),
        (SHARED, f"{SHARED}-seed3-full", f"{CHOSEN}-seed3-full", "3", None),
        ("learned-l0", "learned-l0", CHOSEN, "1234", FIRST),
    ]
    for variant, gae_dir, vae_dir, seed, n in sources:
        for depth in DEPTHS:
            g = per_image(STUDY / gae_dir, run_name("gae", depth))
            v = per_image(STUDY / vae_dir, run_name("vae", depth))
            if g is None or v is None:
                continue
            g, v = (g, v) if n is None else (g[:n], v[:n])
            d = g - v
            rows.append(
                {
                    "variant": variant,
                    "depth": depth,
                    "seed": seed,
                    "images": len(d),
                    "gae": g.mean(),
                    "gae_sem": sem(g),
                    "vae": v.mean(),
                    "vae_sem": sem(v),
                    "diff": d.mean(),
                    "diff_sem": sem(d),
                }
            )
    return rows


def by_depth_table(df: pd.DataFrame) -> str:
    lines = [
        "| GAE variant | depth | seed | test images | GAE | VAE | GAE − VAE (paired) "
        "| diff / s.e. |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in df.itertuples():
        lines.append(
            f"| {SHORT[r.variant]} | {r.depth} | {r.seed} | {r.images:,} "
            f"| {r.gae:.2f} ± {r.gae_sem:.2f} "
            f"| {r.vae:.2f} ± {r.vae_sem:.2f} | {r.diff:+.2f} ± {r.diff_sem:.2f} "
            f"| {r.diff / r.diff_sem:+.1f} |"
        )
    return "\n".join(lines)


def table2() -> str:
    """The slides' table 2 layout: every model at every depth, all 10,000 test images."""
    columns = [
        ("VAE", f"{CHOSEN}-full", "vae"),
        ("GAE, slides' objective (gae-slides)", "slides", "gae-slides"),
        ("GAE, posterior components (former default)", f"{CHOSEN}-full", "gae"),
        ("GAE, unit components (gae, default)", f"{SHARED}-full", "gae"),
    ]
    lines = [
        "| depth | " + " | ".join(c[0] for c in columns) + " | gae − VAE (paired) "
        "| slides: GAE / VAE |",
        "|---" * (len(columns) + 3) + "|",
    ]
    for depth in DEPTHS:
        cells, values = [], {}
        for _, folder, model in columns:
            v = per_image(STUDY / folder, run_name(model, depth))
            ok = v is not None and len(v) == 10000
            cells.append(f"{v.mean():.2f} ± {sem(v):.2f}" if ok else "pending")
            values[(folder, model)] = v if ok else None
        ours, vae = values[(f"{SHARED}-full", "gae")], values[(f"{CHOSEN}-full", "vae")]
        diff = paired(ours, vae) if ours is not None and vae is not None else "pending"
        lines.append(f"| {depth} | " + " | ".join(cells) + f" | {diff} | {slides_cell(depth)} |")
    return "\n".join(lines)


def gap_table() -> str:
    """The 200-nearest-component lower bound against the exact prior, same images and draws."""
    run = run_name("gae", 3)
    exact = per_image(STUDY / f"{SHARED}-gap", run)
    bound = per_image(STUDY / SHARED, run)
    if exact is None or bound is None:
        return "(pending: run_cpu_study.sh component-gap)"
    n = len(exact)
    d = exact - bound[:n]
    return (
        "| model | test images | exact prior | 200 nearest (bound) | exact − bound |\n"
        "|---|---|---|---|---|\n"
        f"| {SHARED}, depth 3 | {n} | {exact.mean():.4f} | {bound[:n].mean():.4f} | "
        f"{d.mean():.4f} (max {d.max():.4f}) |"
    )


def plot(df: pd.DataFrame) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    ax = axes[0]
    colour_of = {folder: f"C{i}" for i, folder in enumerate(DEPTH3_VARIANTS)}  # every panel
    styles = {
        CHOSEN: ("s", -0.12, colour_of[CHOSEN]),
        SHARED: ("o", 0.0, colour_of[SHARED]),
        "learned-l0": ("^", 0.12, colour_of["learned-l0"]),
    }
    for (variant, seed, images), part in df.groupby(["variant", "seed", "images"]):
        marker, dx, colour = styles[variant]
        full = images == 10000
        ax.errorbar(
            part.depth + dx + 0.04 * (int(seed) % 3),
            part["diff"],
            yerr=2 * part.diff_sem,
            fmt=marker,
            color=colour,
            mfc=colour if full else "none",
            label=f"{SHORT[variant]}, seed {seed}, {images:,} images",
            capsize=3,
        )
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set(
        xlabel="depth",
        ylabel="GAE − VAE, nats (paired, ± 2 s.e.)",
        xticks=list(DEPTHS),
        title="GAE − VAE by prior component variance",
    )
    ax.legend(fontsize=7)

    run = run_name("gae", 3)
    for folder, (label, _, _) in DEPTH3_VARIANTS.items():
        log = log_of(folder, run)
        if log is None:
            continue
        style = {"marker": ".", "label": label, "color": colour_of[folder]}
        axes[1].plot(log.epoch, log.valid_objective, **style)
        axes[2].plot(log.epoch, log.entropy, **style)
    vlog = log_of(CHOSEN, run_name("vae", 3))
    axes[1].plot(vlog.epoch, vlog.valid_objective, "k--", label="VAE")
    axes[1].set(
        xlabel="epoch",
        ylabel="validation bound, nats",
        ylim=(-120, -100),
        title="depth 3: validation bound (own prior)",
    )
    axes[1].legend(fontsize=7)
    axes[2].set(
        xlabel="epoch",
        ylabel="encoder entropy H[q(z|x)], nats",
        title="depth 3: posterior entropy (training images)",
    )
    learned = log_of("learned-l0", run)
    if learned is not None and "prior_std" in learned:
        twin = axes[2].twinx()
        twin.plot(
            learned.epoch,
            learned.prior_std,
            ":",
            color=colour_of["learned-l0"],
            label="learned s (λ2 0), mean",
        )
        twin.set_ylabel("learned component std s (dotted)")
        twin.legend(fontsize=7, loc="lower right")
    axes[2].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    OUT.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT / "cpu_component_variance.png", dpi=120)
    plt.close(fig)


def main() -> None:
    df = pd.DataFrame(by_depth_rows())
    plot(df)
    text = "\n\n".join(
        [
            "<!-- written by docs/study/plot_component_variance.py; do not edit by hand -->",
            "Depth 3, seed 1234, first 2,000 test images, S = 1,000:\n\n" + depth3_table(),
            "By depth (S = 1,000; VAE = the clip-warmup5 VAE of the same seed):\n\n"
            + by_depth_table(df),
            "Table 2, all 10,000 test images, seed 1234, S = 1,000 (mean ± s.e. over images):\n\n"
            + table2(),
            "Lower-bound gap (S = 1,000, same draws):\n\n" + gap_table(),
        ]
    )
    (HERE / "cpu-component-variance-tables.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
