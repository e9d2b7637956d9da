"""The maps: Figs. 5 (mean annual NEE and its IAV), 6 (January, April, July and October NEE),
7 (correlation with the inversions and the prior) and B2 (where the bridges' pixels are),
drawn from :func:`fluxscale.evaluate.figures.evaluation_maps`, with the shipped coastline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from fluxscale.evaluate.figures.figure import Figure, FigureInputs
from fluxscale.evaluate.figures.style import add_coastline, pyplot

__all__ = ["FIG5", "FIG6", "FIG7", "FIGB2"]


def _no_maps(inp: FigureInputs) -> str | None:
    return "no maps" if inp.maps is None else None


def _no_inclusion(inp: FigureInputs) -> str | None:
    if inp.maps is None:
        return "no maps"
    return None if "inclusion" in inp.maps else "no bridges.zarr"


def _geo_axes(ax, labels: bool = True, fontsize: float = 6) -> None:
    """Equal-aspect lon/lat axes over the land grid (60°S–90°N) with degree ticks."""
    ax.set(xlim=(-180, 180), ylim=(-60, 90), aspect="equal")
    ax.set_xticks(np.arange(-120, 181, 60), [f"{abs(v)}°{'E' if v > 0 else 'W' if v < 0 else ''}"
                                             for v in range(-120, 181, 60)] if labels else [])
    ax.set_yticks(np.arange(-30, 91, 30), [f"{abs(v)}°{'N' if v > 0 else 'S' if v < 0 else ''}"
                                           for v in range(-30, 91, 30)] if labels else [])
    ax.tick_params(labelsize=fontsize, length=2)


def _map(ax, da: xr.DataArray, title: str, cmap: str, units: str, vmin=None, vmax=None, lat="lat", lon="lon",
         norm=None):
    plt = pyplot()
    im = ax.pcolormesh(da[lon].values, da[lat].values, da.transpose(lat, lon).values, cmap=cmap, vmin=vmin,
                       vmax=vmax, shading="auto", norm=norm)
    add_coastline(ax)
    _geo_axes(ax)
    ax.set_title(title, fontsize=9)
    plt.colorbar(im, ax=ax, shrink=0.7, label=units)
    return im


def _sym(*arrays) -> float:
    v = np.concatenate([np.abs(np.asarray(a)).ravel() for a in arrays])
    v = v[np.isfinite(v)]
    return float(np.percentile(v, 98)) if v.size else 1.0


def draw_annual_maps(inp: FigureInputs, out: Path):
    """Fig. 5: per-pixel mean annual NEE and its IAV: EC-ATM, EC, inversion mean."""
    maps = inp.maps
    plt = pyplot()
    srcs = [str(s) for s in maps.source.values]
    fig, ax = plt.subplots(2, len(srcs) + 1, figsize=(5 * (len(srcs) + 1), 6.4))
    lim = _sym(maps.annual_mean, maps.inv_annual_mean)
    top = _sym(maps.annual_iav, maps.inv_annual_iav)
    u = "gC m$^{-2}$ yr$^{-1}$"
    for k, s in enumerate(srcs):
        _map(ax[0, k], maps.annual_mean.sel(source=s), f"{s}: mean annual NEE", "RdBu_r", u, -lim, lim)
        _map(ax[1, k], maps.annual_iav.sel(source=s), f"{s}: IAV (sd of detrended annual NEE)", "viridis", u, 0, top)
    _map(ax[0, -1], maps.inv_annual_mean, "inversions (mean): mean annual NEE", "RdBu_r", u, -lim, lim, "ilat", "ilon")
    _map(ax[1, -1], maps.inv_annual_iav, "inversions (mean): IAV", "viridis", u, 0, top, "ilat", "ilon")
    fig.tight_layout()
    return fig


FIG5 = Figure(
    "fig5", "fig5_annual_maps",
    title="maps of mean annual NEE and its IAV",
    caption=("Fig. 5: per-pixel mean annual NEE and its IAV (gC m-2 yr-1) of EC-ATM, EC and the inversion mean (on "
             "its coarser grid); lines: the coastline of the shipped 0.5° land mask. Sources: nee.zarr, "
             "inversions.zarr, fire.zarr."),
    draw=draw_annual_maps,
    missing=_no_maps)


def draw_monthly_maps(inp: FigureInputs, out: Path):
    """Fig. 6: mean Jan/Apr/Jul/Oct NEE of EC and EC-ATM and their difference."""
    maps = inp.maps
    plt = pyplot()
    srcs = [s for s in ("EC", "EC-ATM") if s in maps.source.values]
    fig, ax = plt.subplots(4, len(srcs) + 1, figsize=(5 * (len(srcs) + 1), 11))
    lim = _sym(maps.msc)
    u = "gC m$^{-2}$ d$^{-1}$"
    names = {1: "January", 4: "April", 7: "July", 10: "October"}
    for i, mo in enumerate(maps.msc.month.values):
        for k, s in enumerate(srcs):
            _map(ax[i, k], maps.msc.sel(source=s, month=mo), f"{s}, {names[int(mo)]}", "RdBu_r", u, -lim, lim)
        if len(srcs) == 2:
            d = maps.msc.sel(source="EC-ATM", month=mo) - maps.msc.sel(source="EC", month=mo)
            dl = _sym(d)
            _map(ax[i, -1], d, f"EC-ATM − EC, {names[int(mo)]}", "PuOr_r", u, -dl, dl)
    fig.tight_layout()
    return fig


FIG6 = Figure(
    "fig6", "fig6_monthly_maps",
    title="maps of January, April, July and October NEE",
    caption=("Fig. 6: January, April, July and October mean NEE (gC m-2 d-1) of EC and EC-ATM and their difference "
             "(EC-ATM − EC). Source: nee.zarr."),
    draw=draw_monthly_maps,
    missing=_no_maps)


def draw_correlation_maps(inp: FigureInputs, out: Path):
    """Fig. 7: per-pixel R of monthly NEE with the inversion mean (top) and the prior
    (bottom) for EC-ATM and EC, and EC-ATM − EC."""
    maps = inp.maps
    plt = pyplot()
    srcs = [s for s in ("EC-ATM", "EC") if s in maps.source.values]
    fig, ax = plt.subplots(2, 3, figsize=(15, 6.4))
    for row, (var, ref, la, lo) in enumerate((("corr_inv", "inversions (mean)", "ilat", "ilon"),
                                              ("corr_prior", "prior", "lat", "lon"))):
        for k, s in enumerate(srcs):
            _map(ax[row, k], maps[var].sel(source=s), f"R({s}, {ref})", "RdYlBu_r", "R", -1, 1, la, lo)
        if len(srcs) == 2:
            d = maps[var].sel(source="EC-ATM") - maps[var].sel(source="EC")
            _map(ax[row, 2], d, f"R(EC-ATM) − R(EC), {ref}", "PuOr_r", "ΔR", -1, 1, la, lo)
    fig.tight_layout()
    return fig


FIG7 = Figure(
    "fig7", "fig7_correlation_maps",
    title="maps of the correlation with the inversions and the prior",
    caption=("Fig. 7: per-pixel Pearson R of monthly NEE with the inversion mean (on its grid) and with the prior, "
             "and R(EC-ATM) − R(EC). Sources: nee.zarr, inversions.zarr, prior.zarr."),
    draw=draw_correlation_maps,
    missing=_no_maps)


def draw_inclusion(inp: FigureInputs, out: Path):
    """Fig. B2: how often each cell was kept by the robustness repeats of the bridges: land
    cells never kept in light grey, the others coloured by their count (log scale when the
    counts span more than a factor of 10), coastlines and degree axes."""
    maps = inp.maps
    from matplotlib.colors import ListedColormap, LogNorm, Normalize

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(12, 5.6))
    land = maps.inclusion.notnull()
    ax.pcolormesh(maps.lon.values, maps.lat.values, land.where(land).transpose("lat", "lon").values,
                  cmap=ListedColormap(["0.85"]), shading="auto")
    inc = maps.inclusion.where(maps.inclusion > 0)
    top = float(inc.max()) if inc.notnull().any() else 1.0
    norm = LogNorm(1, max(top, 2)) if top > 10 else Normalize(0, max(top, 1))
    n_cells = int(inc.notnull().sum())
    _map(ax, inc, f"Fig. B2: cells kept by the bridges' robustness repeats ({n_cells} of {int(land.sum())} land "
                  f"cells; grey: never kept)", "plasma_r", "repeats in which the cell was a contributing pixel",
         lat="lat", lon="lon", norm=norm)
    ax.set(xlabel="longitude", ylabel="latitude")
    ax.tick_params(labelsize=8)
    return fig


FIGB2 = Figure(
    "figB2", "figB2_bridge_inclusion",
    title="where the bridges' pixels are",
    caption=("Fig. B2: how often each land cell was a contributing pixel of the bridges over the robustness repeats "
             "(count, log colour scale when the counts span more than a factor of 10; grey: land cells never kept; "
             "lines: the coastline of the shipped 0.5° land mask). Source: bridges.zarr."),
    draw=draw_inclusion,
    missing=_no_inclusion)
