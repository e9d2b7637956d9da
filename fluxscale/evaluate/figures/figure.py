"""One figure of the report as an object: how to draw it, when it cannot be drawn, its file,
title and caption, kept together (:class:`Figure`); :class:`FigureInputs` is what every
figure draws from. :func:`fluxscale.evaluate.figures.write.write_figures` is the one loop
over them all."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import xarray as xr

from fluxscale.evaluate.figures.style import save_figure

__all__ = ["Figure", "FigureInputs"]


@dataclass(frozen=True)
class FigureInputs:
    """What the figures are drawn from: ``ev`` (:func:`fluxscale.evaluate.evaluation_data`),
    ``tables`` (:func:`fluxscale.evaluate.evaluation_tables`), ``maps``
    (:func:`fluxscale.evaluate.figures.evaluation_maps`, None: no maps), ``static``
    (:func:`fluxscale.evaluate.figures.static_data`, None: no grid), ``fig9_sites`` (the
    towers of Fig. 9; empty: :func:`fluxscale.evaluate.tropical_sites` chooses) and
    ``scorecard`` (:func:`fluxscale.evaluate.scorecard.scorecard`, None: none)."""

    ev: xr.Dataset
    tables: pd.DataFrame
    maps: xr.Dataset | None = None
    static: xr.Dataset | None = None
    fig9_sites: tuple[str, ...] = ()
    scorecard: pd.DataFrame | None = None


def _always(inp: FigureInputs) -> None:
    return None


@dataclass(frozen=True)
class Figure:
    """One figure: ``name`` (its key in the report, ``fig2``), ``file`` (the PNG's stem),
    ``title`` (the report's heading after the number), ``caption`` (what it shows, units,
    sources and data files; starts with its number, ``Fig. 2: ``), ``draw(inputs, out)``
    (returns the matplotlib figure; writes the table it is drawn from into ``out`` where it
    has one) and ``missing(inputs)`` (why it cannot be drawn, or None)."""

    name: str
    file: str
    title: str
    caption: str
    draw: Callable[[FigureInputs, Path], Any]
    missing: Callable[[FigureInputs], str | None] = _always

    def write(self, inp: FigureInputs, out: Path) -> Path:
        """Draw the figure and save it as ``out/<file>.png``; return the path."""
        return save_figure(self.draw(inp, out), out, self.file)
