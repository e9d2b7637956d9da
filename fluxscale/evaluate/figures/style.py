"""What the figures share: colours and labels, the Agg backend, saving a PNG, legends and the
shipped coastline."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["COLORS", "LABELS", "PGC_MONTH", "PGC_YEAR", "NEE_DAY", "PFT_COLORS", "pyplot", "save_figure", "label",
           "legend_outside", "pft_order", "coastline", "add_coastline"]

COLORS = {"EC-ATM": "tab:blue", "EC": "tab:green", "prior": "gold", "inversions": "tab:red", "truth": "black",
          "GCB": "dimgray"}
LABELS = {"prior": "prior (FLUXCOM role)", "inversions": "inversions (mean)", "truth": "truth (twin)"}
PGC_MONTH, PGC_YEAR = "PgC month$^{-1}$", "PgC yr$^{-1}$"
NEE_DAY = "gC m$^{-2}$ d$^{-1}$"
PFT_COLORS = {"ENF": "#05450a", "EBF": "#086a10", "DNF": "#54a708", "DBF": "#78d203", "MF": "#009900",
              "CSH": "#c6b044", "OSH": "#dcd159", "WSA": "#dade48", "SAV": "#fbff13", "GRA": "#b6ff05",
              "WET": "#27ff87", "CRO": "#c24f44", "URB": "#a5a5a5", "CVM": "#ff6d4c", "SNO": "#69fff8",
              "BSV": "#f9ffa4", "WAT": "#1c0dff", "none": "#ffffff"}
"""The MODIS land-cover colours of the IGBP classes."""


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, out: Path, name: str) -> Path:
    """Save ``fig`` as ``out/<name>.png`` (110 dpi, tight), integer year ticks, and close it."""
    from matplotlib.ticker import MaxNLocator

    for ax in fig.axes:  # years are integers (not on maps: their x axis is longitude)
        if (ax.get_xlabel() == "year" or "annual" in ax.get_title()) and ax.get_aspect() == "auto":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    p = out / f"{name}.png"
    fig.savefig(p, dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return p


def label(s: str) -> str:
    """A source's name in the legends."""
    return LABELS.get(s, s)


def legend_outside(ax, reverse: bool = False, **kw) -> None:
    """The legend of ``ax`` to its right, outside the data."""
    handles, labels = ax.get_legend_handles_labels()
    if reverse:  # a stacked bar: the legend in the order of the stack, top first
        handles, labels = handles[::-1], labels[::-1]
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=8, **kw)


def pft_order(classes) -> list[str]:
    """PFT labels in the order of :data:`PFT_COLORS` (unknown ones last)."""
    order = list(PFT_COLORS)
    return sorted(classes, key=lambda c: order.index(c) if c in order else len(order))


def coastline() -> list[np.ndarray]:
    """The shipped coastline (``fluxscale/data/coastline_0.5deg.npz``, made by
    ``tools/build_coastline.py`` from the shipped 0.5° land fraction): ``(k, 2)`` lon/lat
    polylines in degrees. Read once; nothing is downloaded."""
    global _COAST
    if _COAST is None:
        from importlib import resources

        ref = resources.files("fluxscale") / "data" / "coastline_0.5deg.npz"
        with resources.as_file(ref) as path, np.load(path, allow_pickle=False) as f:
            xy, starts = f["lonlat"].astype(np.float64) / 100.0, f["starts"]
        _COAST = [xy[a:b] for a, b in zip(starts[:-1], starts[1:])]
    return _COAST


_COAST: list[np.ndarray] | None = None


def add_coastline(ax, color: str = "0.25", lw: float = 0.5) -> None:
    """Draw the shipped coastline on a lon/lat axis (above the data, not changing its limits)."""
    from matplotlib.collections import LineCollection

    ax.add_collection(LineCollection(coastline(), colors=color, linewidths=lw, zorder=3), autolim=False)
