"""Every figure of the report, in the order the report shows them, and the one loop that
draws them (:func:`write_figures`). Each figure's drawing, file, title and caption live
together in its :class:`~fluxscale.evaluate.figures.figure.Figure` object."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import xarray as xr

from fluxscale.evaluate.figures.figure import Figure, FigureInputs
from fluxscale.evaluate.figures.maps import FIG5, FIG6, FIG7, FIGB2
from fluxscale.evaluate.figures.scorecard import FIGS1
from fluxscale.evaluate.figures.regional import FIG2, FIG3, FIG4, FIGC1, FIGC3, FIGC4, FIGC5
from fluxscale.evaluate.figures.static import FIGA1, FIGB3, FIGB4
from fluxscale.evaluate.figures.towers import FIG8, FIG9, FIGC2

__all__ = ["FIGURES", "CAPTIONS", "TITLES", "write_figures"]

FIGURES: tuple[Figure, ...] = (FIGS1, FIG2, FIG3, FIG4, FIGC1, FIG8, FIG9, FIG5, FIG6, FIG7, FIGB2, FIGC3, FIGC4, FIGC5,
                               FIGA1, FIGB3, FIGB4, FIGC2)
"""The figures, in the order they are drawn and shown in the report."""

CAPTIONS = {f.name: f.caption for f in FIGURES}
"""The caption of each figure in the report: what it shows, units, sources and data files."""

TITLES = {f.name: f.title for f in FIGURES}
"""A short title of each figure, the report's heading (``Fig. 2: global annual NEE``)."""


def write_figures(ev: xr.Dataset, tables: pd.DataFrame, out: str | Path, maps: xr.Dataset | None = None,
                  static: xr.Dataset | None = None, fig9_sites: tuple[str, ...] = (),
                  scorecard: pd.DataFrame | None = None) -> tuple[dict[str, Path], dict[str, str]]:
    """Every figure whose inputs exist; returns ``({name: png}, {name: why skipped})``.

    ``maps``: :func:`fluxscale.evaluate.figures.evaluation_maps` (Figs. 5–7, B2; None: not
    drawn); ``static``: :func:`fluxscale.evaluate.figures.static_data` (Figs. A1, B3, B4;
    None: not drawn); ``fig9_sites``: the towers of Fig. 9 (default:
    :func:`fluxscale.evaluate.tropical_sites`); ``scorecard``:
    :func:`fluxscale.evaluate.scorecard.scorecard` (Fig. S1; None: not drawn). Which figures can be drawn is settled for all
    of them before the first is drawn."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    inp = FigureInputs(ev, tables, maps, static, tuple(fig9_sites), scorecard)
    plan = [(f, f.missing(inp)) for f in FIGURES]
    skipped = {f.name: why for f, why in plan if why is not None}
    done = {f.name: f.write(inp, out) for f, why in plan if why is None}
    return done, skipped
