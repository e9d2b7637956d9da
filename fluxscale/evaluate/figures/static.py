"""The figures of the grid and the bridges' pixels: Fig. A1 (the 18 regions), Fig. B3 (PFTs
of the bridges' pixels) and Fig. B4 (PFT composition per region), drawn from
:func:`fluxscale.evaluate.figures.static_data`; each writes the table it is drawn from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from fluxscale.evaluate.figures.figure import Figure, FigureInputs
from fluxscale.evaluate.figures.style import PFT_COLORS, add_coastline, legend_outside, pft_order, pyplot
from fluxscale.evaluate.towers import pft_composition

__all__ = ["FIGA1", "FIGB3", "FIGB4"]


def _no_grid(inp: FigureInputs) -> str | None:
    return "no grid given" if inp.static is None else None


def _no_pft_pixels(inp: FigureInputs) -> str | None:
    if inp.static is None or "cell_pft" not in inp.static:
        return "no PFT map (grid.zarr has no pft)"
    return None if "pixel_cell" in inp.static else "no bridges.zarr"


def draw_regions(inp: FigureInputs, out: Path):
    """Fig. A1: the 18 regions of Table A1 on the model grid (land cells), with the table
    ``figA1_regions.csv``: id, abbreviation, name, land cells, land area (10⁶ km²)."""
    static = inp.static
    from matplotlib.colors import BoundaryNorm, ListedColormap

    plt = pyplot()
    names = [str(n) for n in static.region_name.values]
    n = len(names)
    counts = np.bincount(static.cell_region.values, minlength=n)
    area = np.bincount(static.cell_region.values, weights=static.cell_land_area.values, minlength=n)
    pd.DataFrame({"id": static.region_id.values, "abbrev": names, "name": static.region_long_name.values,
                  "land_cells": counts, "land_area_1e6km2": area / 1e12}).to_csv(out / "figA1_regions.csv", index=False)
    cols = [plt.get_cmap("tab20")(k % 20) for k in range(n)]
    cmap = ListedColormap(cols).with_extremes(bad="white")
    norm = BoundaryNorm(np.arange(-0.5, n), n)
    fig, ax = plt.subplots(figsize=(12, 5.6))
    reg = static.region.where(static.region >= 0)
    im = ax.pcolormesh(static.lon.values, static.lat.values, reg.values, cmap=cmap, norm=norm, shading="auto")
    for k, name in enumerate(names):
        m = static.cell_region.values == k
        if m.any():  # the label at the cell nearest the region's median position
            la, lo = np.median(static.cell_lat.values[m]), np.median(static.cell_lon.values[m])
            j = np.argmin((static.cell_lat.values[m] - la) ** 2 + (static.cell_lon.values[m] - lo) ** 2)
            ax.text(static.cell_lon.values[m][j], static.cell_lat.values[m][j], name, fontsize=7, ha="center",
                    va="center", bbox={"facecolor": "white", "alpha": 0.7, "pad": 1, "lw": 0})
    add_coastline(ax)
    ax.set(xlim=(-180, 180), ylim=(-60, 90), xlabel="longitude (°E)", ylabel="latitude (°N)", aspect="equal",
           title="Fig. A1: the 18 regions of Table A1 (land cells of the model grid)")
    cb = plt.colorbar(im, ax=ax, ticks=np.arange(n), shrink=0.9, pad=0.01)
    cb.ax.set_yticklabels([f"{k} {a}" for k, a in enumerate(names)], fontsize=7)
    cb.set_label("region (id, abbreviation)")
    return fig


FIGA1 = Figure(
    "figA1", "figA1_regions",
    title="the 18 regions of Table A1",
    caption=("Fig. A1: the 18 regions of Table A1 (RECCAP2-like) on the land cells of the model grid. Data: "
             "figA1_regions.csv (land cells, land area 10^6 km2). Source: grid.zarr."),
    draw=draw_regions,
    missing=_no_grid)


def _composition(static: xr.Dataset) -> pd.DataFrame:
    return pft_composition(static.cell_pft.values, static.cell_region.values, static.pixel_cell.values,
                           [str(n) for n in static.region_name.values])


def draw_pft_bridges(inp: FigureInputs, out: Path):
    """Fig. B3: the share of each majority PFT among the bridges' contributing pixels of all
    regions (bars) and among all land cells (black outlines); data ``figB3_pft_composition.csv``."""
    static = inp.static
    plt = pyplot()
    comp = _composition(static)
    allr = comp[comp.region == "ALL"].set_index("pft").loc[pft_order(comp.pft.unique())]
    allr.reset_index().drop(columns="region").to_csv(out / "figB3_pft_composition.csv", index=False)
    fig, ax = plt.subplots(figsize=(10, 4.6))
    x = np.arange(len(allr))
    ax.bar(x, 100 * allr.bridge_fraction, color=[PFT_COLORS.get(c, "gray") for c in allr.index], edgecolor="0.4",
           lw=0.5, label=f"contributing pixels (n = {int(allr.bridge_pixels.sum())})")
    ax.bar(x, 100 * allr.land_fraction, fill=False, edgecolor="black", lw=1.4,
           label=f"all land cells (n = {int(allr.land_cells.sum())})")
    ax.set_xticks(x, allr.index, rotation=0)
    ax.set(ylabel="share (%)", xlabel="majority PFT of the cell (IGBP)",
           title="Fig. B3: PFTs of the bridges' contributing pixels, all regions")
    legend_outside(ax)
    return fig


FIGB3 = Figure(
    "figB3", "figB3_pft_bridges",
    title="PFTs of the bridges' pixels",
    caption=("Fig. B3: share (%) of each majority PFT among the bridges' contributing pixels of all regions (bars) "
             "and among all land cells (black outlines). Data: figB3_pft_composition.csv. Sources: bridges.zarr, "
             "grid.zarr (pft)."),
    draw=draw_pft_bridges,
    missing=_no_pft_pixels)


def draw_pft_by_region(inp: FigureInputs, out: Path):
    """Fig. B4: per region, the PFT composition of its contributing pixels (left bar, "P")
    beside that of its land cells (right bar, "L"); data ``figB4_pft_by_region.csv``."""
    static = inp.static
    plt = pyplot()
    comp = _composition(static)
    comp[comp.region != "ALL"].to_csv(out / "figB4_pft_by_region.csv", index=False)
    regions = [str(n) for n in static.region_name.values]
    classes = pft_order(comp.pft.unique())
    fig, ax = plt.subplots(figsize=(14, 5.2))
    x = np.arange(len(regions)) * 3.0
    for col, off in (("bridge_fraction", 0.0), ("land_fraction", 1.05)):
        bottom = np.zeros(len(regions))
        for c in classes:
            v = np.array([float(comp[(comp.region == r) & (comp.pft == c)][col].fillna(0).sum()) for r in regions]) * 100
            ax.bar(x + off, v, bottom=bottom, width=1.0, color=PFT_COLORS.get(c, "gray"), edgecolor="0.3", lw=0.3,
                   label=c if off == 0 else None)
            bottom += v
    npix = comp[comp.region != "ALL"].groupby("region").bridge_pixels.sum()
    ax.set_xticks(np.r_[x, x + 1.05], [f"P\n{r}\n({int(npix.get(r, 0))})" for r in regions] + ["L"] * len(regions),
                  fontsize=7)
    ax.set(ylabel="share (%)", ylim=(0, 100),
           title="Fig. B4: PFT composition per region: contributing pixels (P, their number below) and all land "
                 "cells (L)")
    legend_outside(ax, reverse=True, title="majority PFT")
    return fig


FIGB4 = Figure(
    "figB4", "figB4_pft_by_region",
    title="PFT composition per region",
    caption=("Fig. B4: per region, the PFT composition (%) of its contributing pixels (P; their number below) and "
             "of all its land cells (L). Data: figB4_pft_by_region.csv. Sources: bridges.zarr, grid.zarr (pft)."),
    draw=draw_pft_by_region,
    missing=_no_pft_pixels)
