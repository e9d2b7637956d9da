"""The figures of the towers: Fig. 8 (modelled against observed daily NEE), Fig. 9 (two
tropical towers) and Fig. C2 (the towers by plant functional type), drawn from the towers'
series of :func:`fluxscale.evaluate.evaluation_data`; Figs. 9 and C2 write their scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fluxscale.evaluate.figures.figure import Figure, FigureInputs
from fluxscale.evaluate.figures.style import COLORS, NEE_DAY, pft_order, pyplot
from fluxscale.evaluate.towers import site_scores, tropical_sites

__all__ = ["FIG8", "FIG9", "FIGC2"]


def draw_sites(inp: FigureInputs, out: Path):
    """Fig. 8: modelled against observed daily NEE at the towers (density)."""
    ev, tables = inp.ev, inp.tables
    plt = pyplot()
    models = [m for m in ("EC-ATM", "EC") if f"site_{m}" in ev]
    fig, ax = plt.subplots(1, len(models), figsize=(5.2 * len(models), 4.6))
    obs = ev.site_obs.values.ravel()
    for a, m in zip(np.atleast_1d(ax), models):
        sim = ev[f"site_{m}"].values.ravel()
        ok = np.isfinite(obs) & np.isfinite(sim)
        lim = np.nanpercentile(np.abs(np.r_[obs[ok], sim[ok]]), 99.5) if ok.any() else 1
        hb = a.hexbin(obs[ok], sim[ok], gridsize=60, bins="log", cmap="viridis", extent=(-lim, lim, -lim, lim),
                      mincnt=1)
        plt.colorbar(hb, ax=a, label="tower-days per hexagon (log scale)")
        a.plot([-lim, lim], [-lim, lim], "r-", lw=0.8, label="1:1")
        r = tables[(tables.table == "site") & (tables.model == m) & (tables.region == "ALL") &
                   (tables.reference == "towers") & (tables.metric == "RMSE")].value
        a.set(xlabel="observed NEE (gC m$^{-2}$ d$^{-1}$)", ylabel=f"{m} NEE (gC m$^{{-2}}$ d$^{{-1}}$)",
              title=f"{m}: RMSE {float(r.iloc[0]) if len(r) else np.nan:.3f}, n = {int(ok.sum())}")
    fig.tight_layout()
    return fig


FIG8 = Figure(
    "fig8", "fig8_sites",
    title="modelled against observed daily NEE at the towers",
    caption=("Fig. 8: modelled against observed daily NEE at every tower (gC m-2 d-1); colour: tower-days per "
             "hexagon, log scale; red line 1:1. Source: sites.zarr (QC >= qc_min), the members evaluated on the towers' "
             "drivers."),
    draw=draw_sites)


def _latlon(lat: float, lon: float) -> str:
    return f"{abs(lat):.1f}°{'N' if lat >= 0 else 'S'}, {abs(lon):.1f}°{'E' if lon >= 0 else 'W'}"


def _no_tropical_towers(inp: FigureInputs) -> str | None:
    if "site_lat" not in inp.ev:
        return "no tower positions in the evaluation data"
    if not tropical_sites(inp.ev, 2, tuple(inp.fig9_sites)):
        return "no tropical tower (|lat| < 23.5°) with observed days"
    return None


def draw_tropical_sites(inp: FigureInputs, out: Path):
    """Fig. 9: EC-ATM (blue) and EC (green) against the observed daily NEE at two tropical
    towers (:func:`fluxscale.evaluate.tropical_sites`), 1:1 line; data ``fig9_sites.csv``."""
    ev, names = inp.ev, tuple(inp.fig9_sites)
    plt = pyplot()
    sites = tropical_sites(ev, 2, names)
    models = [m for m in ("EC-ATM", "EC") if f"site_{m}" in ev]
    rows = []
    fig, ax = plt.subplots(1, len(sites), figsize=(5.2 * len(sites), 5.8), squeeze=False)
    for a, s in zip(ax[0], sites):
        e = ev.sel(site=s)
        obs = e.site_obs.values
        pft = str(e.site_pft.values) if "site_pft" in e else (str(e.site_igbp.values) if "site_igbp" in e else "")
        vals = [obs] + [e[f"site_{m}"].values for m in models]
        ok = np.logical_and.reduce([np.isfinite(v) for v in vals])
        lo, hi = (float(np.min([v[ok].min() for v in vals])), float(np.max([v[ok].max() for v in vals]))) \
            if ok.any() else (-1.0, 1.0)
        pad = 0.05 * (hi - lo or 1.0)
        for m in models:
            sc = site_scores(obs[ok], e[f"site_{m}"].values[ok])
            rows.append({"site": s, "lat": float(e.site_lat), "lon": float(e.site_lon), "pft": pft, "model": m, **sc})
        for m in models[::-1]:  # EC-ATM drawn last, on top, in smaller dots: both stay visible
            sc = next(r for r in rows if r["site"] == s and r["model"] == m)
            a.scatter(obs[ok], e[f"site_{m}"].values[ok], s=4 if m == "EC-ATM" else 12, alpha=0.6, color=COLORS[m],
                      marker="o", lw=0, label=f"{m}: RMSE {sc['RMSE']:.2f}, bias {sc['bias']:+.2f}, R {sc['R']:.2f}")
        a.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k-", lw=0.8, label="1:1")
        a.set(xlim=(lo - pad, hi + pad), ylim=(lo - pad, hi + pad), aspect="equal",
              xlabel=f"observed NEE ({NEE_DAY})", ylabel=f"modelled NEE ({NEE_DAY})",
              title=f"{s} ({_latlon(float(e.site_lat), float(e.site_lon))}{', ' + pft if pft else ''}), "
                    f"{int(ok.sum())} days")
        a.legend(loc="upper left", bbox_to_anchor=(0.0, -0.16), fontsize=8, frameon=False)
    pd.DataFrame(rows).to_csv(out / "fig9_sites.csv", index=False)
    fig.suptitle("Fig. 9: EC and EC-ATM against the observed daily NEE at tropical towers")
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return fig


FIG9 = Figure(
    "fig9", "fig9_tropical_sites",
    title="two tropical towers",
    caption=("Fig. 9: EC-ATM (blue) and EC (green) against the observed daily NEE (gC m-2 d-1) at two tropical towers "
             "(EvalConfig.fig9_sites, else the two with |lat| < 23.5° and the most observed days); line 1:1. Data: "
             "fig9_sites.csv (n, RMSE, bias, R). Source: sites.zarr and the members at the towers."),
    draw=draw_tropical_sites,
    missing=_no_tropical_towers)


def _no_site_pft(inp: FigureInputs) -> str | None:
    return None if "site_pft" in inp.ev else "no PFT map (grid.zarr has no pft)"


def draw_sites_by_pft(inp: FigureInputs, out: Path):
    """Fig. C2: modelled against observed daily NEE at the towers, one panel per majority PFT
    of the tower's cell and model (EC-ATM, EC); data ``figC2_sites_by_pft.csv``."""
    ev = inp.ev
    plt = pyplot()
    models = [m for m in ("EC-ATM", "EC") if f"site_{m}" in ev]
    pft = ev.site_pft.values
    classes = pft_order([c for c in np.unique(pft) if c != "none"])
    obs = ev.site_obs.values
    rows = []
    for c in classes:
        k = pft == c
        for m in models:
            rows.append({"pft": c, "model": m, "n_sites": int(k.sum()), **site_scores(obs[k], ev[f"site_{m}"].values[k])})
    df = pd.DataFrame(rows)
    df.to_csv(out / "figC2_sites_by_pft.csv", index=False)
    ok = np.isfinite(obs)
    lim = float(np.nanpercentile(np.abs(np.r_[obs[ok], *[ev[f"site_{m}"].values[ok] for m in models]]), 99.5)) \
        if ok.any() else 1.0
    ncol = 4 if len(models) == 2 else 3
    panels = [(c, m) for c in classes for m in models]
    nrow = max(1, -(-len(panels) // ncol))
    fig, ax = plt.subplots(nrow, ncol, figsize=(3.3 * ncol, 3.1 * nrow), squeeze=False)
    for i, a in enumerate(ax.ravel()):
        if i >= len(panels):
            a.axis("off")
            continue
        c, m = panels[i]
        k = pft == c
        a.scatter(obs[k].ravel(), ev[f"site_{m}"].values[k].ravel(), s=2, alpha=0.25, color=COLORS[m], rasterized=True)
        a.plot([-lim, lim], [-lim, lim], "k-", lw=0.7)
        s = df[(df.pft == c) & (df.model == m)].iloc[0]
        a.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal")
        a.set_title(f"{c}, {m}: {int(s.n_sites)} towers\nRMSE {s.RMSE:.2f}, bias {s.bias:+.2f}, n {int(s.n)}", fontsize=8)
        if i % ncol == 0:
            a.set_ylabel(f"modelled NEE ({NEE_DAY})", fontsize=8)
        if i // ncol == nrow - 1 or i + ncol >= len(panels):
            a.set_xlabel(f"observed NEE ({NEE_DAY})", fontsize=8)
        a.tick_params(labelsize=7)
    fig.suptitle("Fig. C2: daily NEE at the towers by the majority PFT of the tower's cell and model "
                 "(line: 1:1)")
    fig.tight_layout()
    return fig


FIGC2 = Figure(
    "figC2", "figC2_sites_by_pft",
    title="the towers by plant functional type",
    caption=("Fig. C2: modelled against observed daily NEE (gC m-2 d-1) at the towers, by the majority PFT of the "
             "tower's cell (as the paper) and model; line 1:1. Data: figC2_sites_by_pft.csv (towers, n, RMSE, bias, "
             "R). Sources: sites.zarr, grid.zarr (pft)."),
    draw=draw_sites_by_pft,
    missing=_no_site_pft)
