"""Tables and figure of the draws-per-image study (docs/gae-study.md, "Draws per image"), from
the runs' own files under results/study-cpu/.

n_z = 1 are the CPU preset's models with the rate halved every 5 epochs (`lrstep5`, scored on all
test images in `lrstep5-full`); n_z = 2 are the same settings with two draws of z per image for
both models (`nz2`, docs/study/cpu-nz2.yaml), and n_z = 4 with four (`nz4`, cpu-nz4.yaml; seeds
2 and 3 in nz4-seed2 / nz4-seed3). All 10,000 test images, S = 1,000, paired differences. Writes
docs/study/figures/cpu_draws.png and docs/study/cpu-draws-tables.md. Run by
`bash docs/study/run_cpu_study.sh nz-plots` after the `nz2`, `nz2-seeds`, `nz4`, `nz4-seeds`
and `lrstep5-full` steps.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from plot_cpu_study import DEPTHS, run_name, slides_cell  # noqa: E402
from plot_learning_rate import (  # noqa: E402
    HERE,
    cell,
    diff,
    plot_valid_curve,
    ratio,
    save_figure,
    scores,
    seed_folders,
    valid_curve,
)

ONE, TWO, FOUR = "lrstep5-full", "nz2", "nz4"  # folders of the scored models: n_z = 1, 2, 4
ONE_TRAINED = "lrstep5"  # where the n_z = 1 models' train logs are
# the cost: a GAE with n_z = 1 (lr2e-3, depth 3) trained at the same time, on the other core, as
# the n_z = 2 GAE at depth 3: the one pair of runs that shared the machine alike
COST_PAIR = (("lr2e-3", "gae", 3), (TWO, "gae", 3))


def epoch_cost() -> str:
    logs = [valid_curve(folder, run_name(model, depth)) for folder, model, depth in COST_PAIR]
    if any(log is None for log in logs):
        return "epoch cost: not measured"
    one, two = (log.seconds.median() for log in logs)
    return (
        f"epoch cost, GAE depth 3, two jobs at once on the 2 cores (median): n_z = 1 {one:.1f} s, "
        f"n_z = 2 {two:.1f} s ({two / one:.2f}x)"
    )


def draws_table(low: tuple[str, int], high: tuple[str, int]) -> str:
    """Each model with `low` and `high` draws per image (folder, n_z), the gains and the GAE's
    margin at the higher n_z."""
    (low_dir, n_low), (high_dir, n_high) = low, high
    lines = [
        f"| depth | GAE, n_z = {n_low} | GAE, n_z = {n_high} | GAE gain | VAE, n_z = {n_low} "
        f"| VAE, n_z = {n_high} | VAE gain | GAE − VAE, n_z = {n_high} (paired) | diff / s.e. "
        "| slides: GAE / VAE |",
        "|---" * 10 + "|",
    ]
    for depth in DEPTHS:
        g1, g2 = scores(low_dir, "gae", depth, None), scores(high_dir, "gae", depth, None)
        v1, v2 = scores(low_dir, "vae", depth, None), scores(high_dir, "vae", depth, None)
        lines.append(
            f"| {depth} | {cell(g1)} | {cell(g2)} | {diff(g2, g1)} | {cell(v1)} | {cell(v2)} | "
            f"{diff(v2, v1)} | {diff(g2, v2)} | {ratio(g2, v2)} | {slides_cell(depth)} |"
        )
    return "\n".join(lines)


def seeds_table() -> str:
    """The n_z = 2 GAE at depth 3 (the best depth) for seeds 1234, 2 and 3, all test images."""
    lines = ["| seed | GAE, depth 3, n_z = 2 | against −90 |", "|---|---|---|"]
    for seed, folder in seed_folders(TWO):
        g = scores(folder, "gae", 3, None)
        margin = "–" if g is None else f"{g.mean() + 90:+.2f}"
        lines.append(f"| {seed} | {cell(g)} | {margin} |")
    return "\n".join(lines)


def four_draws_table() -> str:
    """The GAE at depth 3 with four draws per image against two, seeds 1234, 2 and 3 (paired)."""
    lines = [
        "| seed | GAE, n_z = 2 | GAE, n_z = 4 | n_z 4 − 2 (paired) | n_z = 4 against −90 |",
        "|---|---|---|---|---|",
    ]
    for (seed, two), (_, four) in zip(seed_folders(TWO), seed_folders(FOUR), strict=True):
        g2, g4 = scores(two, "gae", 3, None), scores(four, "gae", 3, None)
        margin = "–" if g4 is None else f"{g4.mean() + 90:+.2f}"
        lines.append(f"| {seed} | {cell(g2)} | {cell(g4)} | {diff(g4, g2)} | {margin} |")
    return "\n".join(lines)


def four_draws_seeds_table() -> str:
    """Both models with four draws at depths 1 and 2 for seeds 1234, 2 and 3, and the GAE's
    margin per seed (paired), all test images."""
    lines = [
        "| depth | seed | GAE, n_z = 4 | VAE, n_z = 4 | GAE − VAE (paired) | diff / s.e. |",
        "|---|---|---|---|---|---|",
    ]
    for depth in (1, 2):
        for seed, folder in seed_folders(FOUR):
            g, v = scores(folder, "gae", depth, None), scores(folder, "vae", depth, None)
            lines.append(
                f"| {depth} | {seed} | {cell(g)} | {cell(v)} | {diff(g, v)} | {ratio(g, v)} |"
            )
    return "\n".join(lines)


def plot() -> None:
    fig, axes = plt.subplots(1, len(DEPTHS), figsize=(15, 3.8), sharey=True)
    for ax, depth in zip(axes, DEPTHS, strict=True):
        for model, colour in (("gae", "C0"), ("vae", "C3")):
            for folder, label, style in (
                (ONE_TRAINED, "n_z = 1", "--"),
                (TWO, "n_z = 2", "-"),
                (FOUR, "n_z = 4", ":"),
            ):
                plot_valid_curve(ax, folder, model, depth, style, colour, label)
        ax.set_title(f"depth {depth}")
        ax.set_xlabel("epoch")
        ax.set_ylim(-108, -96)
    axes[0].set_ylabel("validation bound (nats)")
    axes[0].legend(fontsize=7)
    fig.suptitle("CPU preset (rate halved every 5 epochs): one, two or four draws of z per image")
    save_figure(fig, "cpu_draws.png")


def main() -> None:
    text = (
        "# Draws per image (generated by docs/study/plot_draws.py)\n\n"
        "All 10,000 test images, S = 1,000, seed 1234; the GAE's log p(z) is the 200-nearest "
        "lower bound. Gains and margins are paired per test image.\n\n"
        + draws_table((ONE, 1), (TWO, 2))
        + f"\n\n{epoch_cost()}\n\n"
        + seeds_table()
        + "\n\n## Four draws per image against two\n\n"
        + draws_table((TWO, 2), (FOUR, 4))
        + "\n\n"
        + four_draws_table()
        + "\n\n## Four draws per image: seeds at depths 1 and 2\n\n"
        + four_draws_seeds_table()
        + "\n"
    )
    (HERE / "cpu-draws-tables.md").write_text(text)
    plot()
    print(text)
    for n_z, folder in ((2, TWO), (4, FOUR)):
        by_depth = {d: scores(folder, "gae", d, None) for d in DEPTHS}
        measured = {d: v.mean() for d, v in by_depth.items() if v is not None}
        if measured:
            best = max(measured, key=measured.get)
            print(f"best GAE at n_z = {n_z}: depth {best}, {measured[best]:.3f}")


if __name__ == "__main__":
    main()
