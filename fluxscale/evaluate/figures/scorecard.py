"""The scorecard figure (Fig. S1): every product and baseline at every scale as a heat map,
drawn from :func:`fluxscale.evaluate.scorecard.scorecard`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fluxscale.evaluate.figures.figure import Figure, FigureInputs
from fluxscale.evaluate.figures.style import pyplot

__all__ = ["FIGS1", "scorecard_ratios"]


def scorecard_ratios(card) -> tuple[np.ndarray, list[str], list[str]]:
    """The heat map's values: each row (metric) divided by its best value, ``(metric,
    product)``, NaN where a product has no value; with the metric and product names."""
    from fluxscale.evaluate.scorecard import scorecard_wide

    wide = scorecard_wide(card).drop(columns=["unit", "reference"])
    best = card[card.best].groupby("metric").value.min().reindex(wide.index)
    ratio = wide.to_numpy(dtype=np.float64) / best.to_numpy(dtype=np.float64)[:, None]
    return ratio, list(wide.index), list(wide.columns)


def draw_scorecard(inp: FigureInputs, out: Path):
    """Fig. S1: metric × product, each row as value / the row's best, the best framed."""
    from matplotlib.colors import LogNorm

    card = inp.scorecard
    plt = pyplot()
    ratio, metrics, products = scorecard_ratios(card)
    units = card.drop_duplicates("metric").set_index("metric")
    fig, ax = plt.subplots(figsize=(1.2 * len(products) + 4, 0.55 * len(metrics) + 2.2))
    shown = np.where(np.isfinite(ratio) & (ratio > 0), ratio, np.nan)
    top = max(float(np.nanmax(shown)) if np.isfinite(shown).any() else 2.0, 2.0)
    im = ax.imshow(np.clip(shown, 1.0, top), cmap="magma_r", norm=LogNorm(1.0, top), aspect="auto")
    plt.colorbar(im, ax=ax, label="RMSE / the row's best (log scale)")
    for i, m in enumerate(metrics):
        sub = card[card.metric == m].set_index("product")
        for j, p in enumerate(products):
            v = float(sub.value.get(p, np.nan))
            if not np.isfinite(v):
                ax.text(j, i, "–", ha="center", va="center", fontsize=8, color="gray")
                continue
            best = bool(sub.best.get(p, False))
            light = np.isfinite(ratio[i, j]) and ratio[i, j] > np.sqrt(top)
            ax.text(j, i, f"{v:.3g}", ha="center", va="center", fontsize=8,
                    fontweight="bold" if best else "normal", color="white" if light else "black")
            if best:
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="tab:cyan", lw=2.5))
    ax.set_xticks(range(len(products)), products, rotation=35, ha="right")
    ax.set_yticks(range(len(metrics)), [f"{m} ({units.unit[m]}; vs {units.reference[m]})" for m in metrics])
    ax.set_title("scorecard: RMSE of every product and baseline (framed: the best of the row)")
    fig.tight_layout()
    return fig


def _no_scorecard(inp: FigureInputs) -> str | None:
    return None if inp.scorecard is not None and len(inp.scorecard) else "no scorecard"


FIGS1 = Figure(
    "figS1", "figS1_scorecard",
    title="scorecard of the products and the simple baselines",
    caption=("Fig. S1: RMSE of every product (the cube's ensembles, the prior, the inversion mean) and of the simple "
             "baselines (EC + offset, prior + offset: the field plus one offset per region-month and m2 of land that "
             "matches the inversion mean's integral; flat inversions: the inversion mean spread evenly over each "
             "region's land; inversions (gridded): the inversion mean on its own grid) at every scale, against the "
             "truth on a twin (else the inversion mean, GCB and the towers; the per-cell rows need a truth). Colour: "
             "the value divided by the row's best (log scale); numbers: the RMSE in the row's unit; framed: the best "
             "of the row. Data: scorecard.csv."),
    draw=draw_scorecard, missing=_no_scorecard)
