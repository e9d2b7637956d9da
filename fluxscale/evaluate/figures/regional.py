"""The regional figures: Fig. 2 (global annual NEE), Fig. 3 (nNSE by region), Fig. 4 and
Fig. C1 (mean seasonal cycles) and Figs. C3–C5 (one-against-many), drawn from the regional
integrals of :func:`fluxscale.evaluate.evaluation_data` and the tables."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import xarray as xr

from fluxscale.bridges.integrals import GLOBAL
from fluxscale.evaluate import metrics
from fluxscale.evaluate.figures.figure import Figure, FigureInputs
from fluxscale.evaluate.figures.style import COLORS, PGC_MONTH, PGC_YEAR, label, legend_outside, pyplot
from fluxscale.evaluate.tables import annual_complete

__all__ = ["FIG2", "FIG3", "FIG4", "FIGC1", "FIGC3", "FIGC4", "FIGC5", "OAM_FIGURES"]


def _legend_below(fig, ax, ncol: int = 4, fontsize: float = 9) -> None:
    """One legend for the whole figure, from ``ax``'s labelled artists, in a band below the
    panels (never over the data)."""
    handles, labels = ax.get_legend_handles_labels()
    rows = -(-len(labels) // ncol)
    band = min(0.04 + 0.035 * rows * fontsize / 9 * 8.5 / fig.get_figheight(), 0.3)
    fig.tight_layout(rect=(0, band, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=fontsize, frameon=False,
               bbox_to_anchor=(0.5, 0.0))


def draw_global_annual(inp: FigureInputs, out: Path):
    """Fig. 2: global annual NEE (ensembles ±1σ over members, inversions and each system,
    GCB ± σ, prior, truth), the period mean, detrended anomalies and IAV magnitude."""
    ev = inp.ev
    plt = pyplot()
    ann = annual_complete(ev.monthly.sel(region=GLOBAL))
    mem = annual_complete(ev.member_monthly.sel(region=GLOBAL))
    sysa = annual_complete(ev.system_monthly.sel(region=GLOBAL))
    years = ann.year.values
    gcb = ev.gcb.reindex(year=years)
    gsig = ev.gcb_sigma.reindex(year=years)
    fig, ax = plt.subplots(2, 2, figsize=(13, 8.5), gridspec_kw={"width_ratios": [3, 1]})
    a = ax[0, 0]
    for ens in np.unique(ev.member_ensemble.values):
        m = mem.where(ev.member_ensemble == ens, drop=True)
        mu, sd = m.mean("member"), m.std("member")
        a.plot(years, mu, color=COLORS.get(str(ens)), lw=2, label=f"{ens} (mean of {m.sizes['member']})")
        a.fill_between(years, mu - sd, mu + sd, color=COLORS.get(str(ens)), alpha=0.25)
    for k, s in enumerate(sysa.system.values):
        a.plot(years, sysa.sel(system=s), color=COLORS["inversions"], ls=":", lw=1,
               label=f"inversion systems (each of {sysa.sizes['system']})" if k == 0 else None)
    a.plot(years, ann.sel(source="inversions"), color=COLORS["inversions"], lw=2, label=label("inversions"))
    a.plot(years, gcb, color=COLORS["GCB"], lw=2, label="GCB residual land sink")
    a.fill_between(years, gcb - gsig, gcb + gsig, color=COLORS["GCB"], alpha=0.2)
    a.plot(years, ann.sel(source="prior"), color=COLORS["prior"], lw=2, label=label("prior"))
    if "truth" in ann.source:
        a.plot(years, ann.sel(source="truth"), color="black", lw=1.5, ls="--", label=label("truth"))
    a.set(title="(A) global annual NEE", ylabel=PGC_YEAR, xlabel="year")
    srcs = [str(s) for s in ann.source.values]
    b = ax[0, 1]
    means = [float(ann.sel(source=s).mean()) for s in srcs] + [float(gcb.mean())]
    names = srcs + ["GCB"]
    b.bar(range(len(names)), means, color=[COLORS.get(n, "gray") for n in names])
    b.set_xticks(range(len(names)), [label(n) for n in names], rotation=60, ha="right", fontsize=8)
    b.set(title=f"(B) mean {years[0]}–{years[-1]}", ylabel=PGC_YEAR)
    c = ax[1, 0]

    def detrended(y: xr.DataArray) -> np.ndarray:
        v = np.asarray(y, dtype=float)
        ok = np.isfinite(v)
        if ok.sum() < 3:
            return np.full_like(v, np.nan)
        p = np.polyfit(years[ok], v[ok], 1)
        return v - np.polyval(p, years)

    for s in srcs:
        c.plot(years, detrended(ann.sel(source=s)), color=COLORS.get(s, "gray"), lw=1.8, label=label(s))
    c.plot(years, detrended(gcb), color=COLORS["GCB"], lw=1.8, label="GCB")
    c.axhline(0, color="k", lw=0.5)
    c.set(title="(C) detrended anomalies", ylabel=PGC_YEAR, xlabel="year")
    d = ax[1, 1]
    iav = metrics.iav(ann, "year")
    vals = [float(iav.sel(source=s)) for s in srcs] + [float(metrics.iav(gcb, "year"))]
    d.bar(range(len(names)), vals, color=[COLORS.get(n, "gray") for n in names])
    mem_iav = metrics.iav(mem, "year")
    for i, n in enumerate(names):
        if n in np.unique(ev.member_ensemble.values):
            v = mem_iav.where(ev.member_ensemble == n, drop=True).values
            # the members' own IAVs: each can exceed the ensemble mean's (averaging damps IAV)
            d.vlines(i, v.min(), v.max(), color="k")
            d.plot([i, i], [v.min(), v.max()], "k_", ms=10)
    d.set_xticks(range(len(names)), [label(n) for n in names], rotation=60, ha="right", fontsize=8)
    d.set(title="(D) IAV (bars: range over members)", ylabel=PGC_YEAR)
    _legend_below(fig, a)  # outside the data: panel (A)'s bands and the lines of (A) and (C), same colours
    return fig


FIG2 = Figure(
    "fig2", "fig2_global_annual",
    title="global annual NEE",
    caption=("Fig. 2: global annual NEE (PgC yr-1) of EC-ATM and EC (±1σ over members), each inversion and their "
             "mean (fire removed), the GCB residual land sink ±σ, the prior and (a twin) the truth; the period means, "
             "the detrended anomalies and the IAV. Sources: nee.zarr, integrals.zarr, gcb.zarr."),
    draw=draw_global_annual)


def draw_nnse(inp: FigureInputs, out: Path):
    """Fig. 3: nNSE of monthly regional NEE against the inversion mean, regions ordered by
    EC-ATM."""
    tables = inp.tables
    plt = pyplot()
    d = tables[(tables.table == "nnse") & (tables.reference == "inversions")]
    w = d.pivot_table(index="region", columns="model", values="value", sort=False)
    if "EC-ATM" in w:
        w = w.sort_values("EC-ATM", ascending=False)
    fig, ax = plt.subplots(figsize=(12, 4.5))
    width = 0.8 / max(len(w.columns), 1)
    for k, m in enumerate(w.columns):
        ax.bar(np.arange(len(w)) + k * width, w[m].values, width, color=COLORS.get(m, "gray"), label=label(m))
    ax.axhline(0.5, color="k", lw=0.8, ls="--")
    ax.set_xticks(np.arange(len(w)) + 0.4 - width / 2, w.index, rotation=45, ha="right")
    ax.set(ylim=(0, 1), ylabel="nNSE", title="Normalised Nash–Sutcliffe efficiency of monthly regional NEE "
                                              "against the inversion mean (0.5 = the reference's own mean)")
    legend_outside(ax)
    return fig


FIG3 = Figure(
    "fig3", "fig3_nnse",
    title="nNSE of monthly regional NEE by region",
    caption=("Fig. 3: normalised Nash-Sutcliffe efficiency of monthly regional NEE against the inversion mean, by "
             "region (dimensionless). Sources: nee.zarr, integrals.zarr."),
    draw=draw_nnse)


def _msc_panel(ax, ev: xr.Dataset, region: str, legend: bool) -> None:
    mon = ev.monthly.sel(region=region)
    msc = metrics.mean_seasonal_cycle(mon)
    mem = metrics.mean_seasonal_cycle(ev.member_monthly.sel(region=region))
    x = msc.month.values
    for s in [str(v) for v in msc.source.values]:
        ax.plot(x, msc.sel(source=s), color=COLORS.get(s, "gray"), lw=1.8 if s != "truth" else 1.2,
                ls="--" if s == "truth" else "-", label=label(s))
        if s in np.unique(ev.member_ensemble.values):
            sd = mem.where(ev.member_ensemble == s, drop=True).std("member")
            ax.fill_between(x, msc.sel(source=s) - sd, msc.sel(source=s) + sd, color=COLORS.get(s), alpha=0.25)
    sysm = metrics.mean_seasonal_cycle(ev.system_monthly.sel(region=region))
    sd = sysm.std("system")
    inv = msc.sel(source="inversions")
    ax.fill_between(x, inv - sd, inv + sd, color=COLORS["inversions"], alpha=0.12)
    ax.set_title(region)
    ax.set_xticks([1, 4, 7, 10], ["Jan", "Apr", "Jul", "Oct"])
    ax.axhline(0, color="k", lw=0.4)


def draw_msc(inp: FigureInputs, out: Path, regions: tuple[str, ...] = ("BRA", "EU", GLOBAL)):
    """Fig. 4: mean seasonal cycles (±1σ over members / systems) of BRA, EU and GLOBAL."""
    ev = inp.ev
    plt = pyplot()
    regions = [r for r in regions if r in ev.region.values]
    fig, ax = plt.subplots(1, len(regions), figsize=(5 * len(regions), 4))
    for i, (a, r) in enumerate(zip(np.atleast_1d(ax), regions)):
        _msc_panel(a, ev, r, legend=i == 0)
        a.set_ylabel(PGC_MONTH if i == 0 else "")
    fig.suptitle("Mean seasonal cycle of monthly NEE (shading: ±1σ across members, inversion systems)")
    _legend_below(fig, np.atleast_1d(ax)[0], ncol=6)
    return fig


FIG4 = Figure(
    "fig4", "fig4_msc",
    title="mean seasonal cycles of BRA, EU and GLOBAL",
    caption=("Fig. 4: mean seasonal cycle of monthly NEE (PgC month-1) in BRA, EU and GLOBAL; shading ±1σ across "
             "members and inversion systems. Sources: nee.zarr, integrals.zarr."),
    draw=draw_msc)


def draw_msc_all(inp: FigureInputs, out: Path):
    """Fig. C1: the mean seasonal cycle of every region and GLOBAL."""
    ev = inp.ev
    plt = pyplot()
    regions = [str(r) for r in ev.region.values]
    ncol = 5
    nrow = -(-len(regions) // ncol)
    fig, ax = plt.subplots(nrow, ncol, figsize=(3.4 * ncol, 2.8 * nrow))
    for i, a in enumerate(ax.ravel()):
        if i < len(regions):
            _msc_panel(a, ev, regions[i], legend=i == 0)
        else:
            a.axis("off")
    fig.suptitle(f"Mean seasonal cycles of monthly NEE by region ({PGC_MONTH})")
    _legend_below(fig, ax.ravel()[0], ncol=6)
    return fig


FIGC1 = Figure(
    "figC1", "figC1_msc_regions",
    title="mean seasonal cycles of every region",
    caption="Fig. C1: mean seasonal cycle of monthly NEE (PgC month-1) of every region of Table A1 and GLOBAL.",
    draw=draw_msc_all)


OAM_FIGURES = {1: ("figC3", "one system"), 2: ("figC4", "two systems"), 3: ("figC5", "three or more systems")}
"""Figs. C3–C5: the one-against-many sets by how many inversion systems trained them."""


def _no_sets(inp: FigureInputs, n_systems: int) -> str | None:
    """Why Fig. C3 (C4, C5) cannot be drawn: no one-against-many set trained on ``n_systems``
    systems (3: three or more)."""
    ev = inp.ev
    if "set_n" in ev and bool((ev.set_n >= 3 if n_systems == 3 else ev.set_n == n_systems).any()):
        return None
    return (f"no one-against-many run trained on {OAM_FIGURES[n_systems][1]} "
            f"(fluxscale one-against-many {ev.attrs.get('root', 'DIR')})")


def draw_one_against_many(inp: FigureInputs, out: Path, n_systems: int):
    """Figs. C3 (one system), C4 (two) and C5 (three or more, ``n_systems`` = 3): the mean
    seasonal cycle of every region and GLOBAL of each EC-ATM set trained on that many systems
    (solid) and of the mean of its systems (dotted, same colour); the EC-ATM ensemble trained
    on all systems (black) and the mean of all inversions (grey) for reference."""
    ev = inp.ev
    plt = pyplot()
    name, words = OAM_FIGURES[n_systems]
    k = ev.set_n >= 3 if n_systems == 3 else ev.set_n == n_systems
    sets = [str(s) for s in ev.set.values[k.values]]
    c_set = metrics.mean_seasonal_cycle(ev.oam_monthly.sel(set=sets))
    c_own = metrics.mean_seasonal_cycle(ev.oam_target.sel(set=sets))
    c_ref = metrics.mean_seasonal_cycle(ev.monthly.sel(source=["EC-ATM", "inversions"]))
    regions = [str(r) for r in ev.region.values]
    ncol = 5
    nrow = -(-len(regions) // ncol)
    fig, ax = plt.subplots(nrow, ncol, figsize=(3.4 * ncol, 2.8 * nrow))
    colors = plt.get_cmap("tab10").colors
    x = c_set.month.values
    for i, a in enumerate(ax.ravel()):
        if i >= len(regions):
            a.axis("off")
            continue
        r = regions[i]
        a.plot(x, c_ref.sel(source="EC-ATM", region=r), color="k", lw=1.2, label="EC-ATM (all systems)")
        a.plot(x, c_ref.sel(source="inversions", region=r), color="0.6", lw=1.2, label="inversions (mean of all)")
        for j, s in enumerate(sets):
            col = colors[j % len(colors)]
            a.plot(x, c_set.sel(set=s, region=r), color=col, lw=1.6, label=f"EC-ATM trained on {s}")
            a.plot(x, c_own.sel(set=s, region=r), color=col, lw=1.2, ls=":", label=f"{s} (inversion)")
        a.set_title(r)
        a.set_xticks([1, 4, 7, 10], ["Jan", "Apr", "Jul", "Oct"])
        a.axhline(0, color="k", lw=0.4)
        if i == 0:
            a.set_ylabel(PGC_MONTH)
    fig.suptitle(f"One-against-many: EC-ATM trained on {words} (solid) and the MSC of those systems (dotted), "
                 f"{PGC_MONTH}")
    _legend_below(fig, ax.ravel()[0], ncol=4, fontsize=8)
    return fig


FIGC3 = Figure(
    "figC3", "figC3_one_against_many",
    title="one-against-many: one inversion system",
    caption=("Fig. C3: one-against-many, EC-ATM trained on one inversion system (solid) and that system (dotted), "
             "mean seasonal cycles in PgC month-1."),
    draw=partial(draw_one_against_many, n_systems=1),
    missing=partial(_no_sets, n_systems=1))


FIGC4 = Figure(
    "figC4", "figC4_one_against_many",
    title="one-against-many: two systems",
    caption="Fig. C4: one-against-many, EC-ATM trained on two systems (solid) and their mean (dotted), PgC month-1.",
    draw=partial(draw_one_against_many, n_systems=2),
    missing=partial(_no_sets, n_systems=2))


FIGC5 = Figure(
    "figC5", "figC5_one_against_many",
    title="one-against-many: three or more systems",
    caption=("Fig. C5: one-against-many, EC-ATM trained on three or more systems (solid) and their mean (dotted), "
             "PgC month-1."),
    draw=partial(draw_one_against_many, n_systems=3),
    missing=partial(_no_sets, n_systems=3))
