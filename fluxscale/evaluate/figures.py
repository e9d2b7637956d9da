"""The paper's figures (PNG, matplotlib's Agg backend: no display needed).

Each ``fig_*`` function takes the output of :func:`fluxscale.evaluate.evaluation_data`
(and :func:`evaluation_maps` for the maps), writes one PNG into ``out`` and returns its
path. :func:`write_figures` writes all of them and returns ``{name: path}``; a figure
whose inputs are missing (e.g. no bridges store) is skipped with the reason in
``skipped``. Figs. A1, B3, B4 read :func:`static_data` (grid, PFT map, bridges); the figures
drawn from a table also write it beside the PNG (``fig9_sites.csv``, ``figA1_regions.csv``,
``figB3_pft_composition.csv``, ``figB4_pft_by_region.csv``, ``figC2_sites_by_pft.csv``).
:data:`CAPTIONS` gives each figure's caption in the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from fluxscale.evaluate import metrics
from fluxscale.evaluate.evaluation import annual_complete
from fluxscale.bridges.integrals import GLOBAL
from fluxscale.dataset.stores import open_store, store_path

__all__ = ["evaluation_maps", "static_data", "write_figures", "CAPTIONS", "TITLES", "coastline", "add_coastline"]

COLORS = {"EC-ATM": "tab:blue", "EC": "tab:green", "prior": "gold", "inversions": "tab:red", "truth": "black",
          "GCB": "dimgray"}
LABELS = {"prior": "prior (FLUXCOM role)", "inversions": "inversions (mean)", "truth": "truth (twin)"}
PGC_MONTH, PGC_YEAR = "PgC month$^{-1}$", "PgC yr$^{-1}$"


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def _save(fig, out: Path, name: str) -> Path:
    from matplotlib.ticker import MaxNLocator

    for ax in fig.axes:  # years are integers (not on maps: their x axis is longitude)
        if (ax.get_xlabel() == "year" or "annual" in ax.get_title()) and ax.get_aspect() == "auto":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    p = out / f"{name}.png"
    fig.savefig(p, dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return p


def _label(s: str) -> str:
    return LABELS.get(s, s)


# --- regional figures ---------------------------------------------------------------------

def fig2_global_annual(ev: xr.Dataset, out: Path) -> Path:
    """Fig. 2: global annual NEE (ensembles ±1σ over members, inversions and each system,
    GCB ± σ, prior, truth), the period mean, detrended anomalies and IAV magnitude."""
    plt = _plt()
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
    a.plot(years, ann.sel(source="inversions"), color=COLORS["inversions"], lw=2, label=_label("inversions"))
    a.plot(years, gcb, color=COLORS["GCB"], lw=2, label="GCB residual land sink")
    a.fill_between(years, gcb - gsig, gcb + gsig, color=COLORS["GCB"], alpha=0.2)
    a.plot(years, ann.sel(source="prior"), color=COLORS["prior"], lw=2, label=_label("prior"))
    if "truth" in ann.source:
        a.plot(years, ann.sel(source="truth"), color="black", lw=1.5, ls="--", label=_label("truth"))
    a.set(title="(A) global annual NEE", ylabel=PGC_YEAR, xlabel="year")
    srcs = [str(s) for s in ann.source.values]
    b = ax[0, 1]
    means = [float(ann.sel(source=s).mean()) for s in srcs] + [float(gcb.mean())]
    names = srcs + ["GCB"]
    b.bar(range(len(names)), means, color=[COLORS.get(n, "gray") for n in names])
    b.set_xticks(range(len(names)), [_label(n) for n in names], rotation=60, ha="right", fontsize=8)
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
        c.plot(years, detrended(ann.sel(source=s)), color=COLORS.get(s, "gray"), lw=1.8, label=_label(s))
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
    d.set_xticks(range(len(names)), [_label(n) for n in names], rotation=60, ha="right", fontsize=8)
    d.set(title="(D) IAV (bars: range over members)", ylabel=PGC_YEAR)
    _legend_below(fig, a)  # outside the data: panel (A)'s bands and the lines of (A) and (C), same colours
    return _save(fig, out, "fig2_global_annual")


def _legend_below(fig, ax, ncol: int = 4, fontsize: float = 9) -> None:
    """One legend for the whole figure, from ``ax``'s labelled artists, in a band below the
    panels (never over the data)."""
    handles, labels = ax.get_legend_handles_labels()
    rows = -(-len(labels) // ncol)
    band = min(0.04 + 0.035 * rows * fontsize / 9 * 8.5 / fig.get_figheight(), 0.3)
    fig.tight_layout(rect=(0, band, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=fontsize, frameon=False,
               bbox_to_anchor=(0.5, 0.0))


def fig3_nnse(tables: pd.DataFrame, out: Path) -> Path:
    """Fig. 3: nNSE of monthly regional NEE against the inversion mean, regions ordered by
    EC-ATM."""
    plt = _plt()
    d = tables[(tables.table == "nnse") & (tables.reference == "inversions")]
    w = d.pivot_table(index="region", columns="model", values="value", sort=False)
    if "EC-ATM" in w:
        w = w.sort_values("EC-ATM", ascending=False)
    fig, ax = plt.subplots(figsize=(12, 4.5))
    width = 0.8 / max(len(w.columns), 1)
    for k, m in enumerate(w.columns):
        ax.bar(np.arange(len(w)) + k * width, w[m].values, width, color=COLORS.get(m, "gray"), label=_label(m))
    ax.axhline(0.5, color="k", lw=0.8, ls="--")
    ax.set_xticks(np.arange(len(w)) + 0.4 - width / 2, w.index, rotation=45, ha="right")
    ax.set(ylim=(0, 1), ylabel="nNSE", title="Normalised Nash–Sutcliffe efficiency of monthly regional NEE "
                                              "against the inversion mean (0.5 = the reference's own mean)")
    _legend_outside(ax)
    return _save(fig, out, "fig3_nnse")


def _msc_panel(ax, ev: xr.Dataset, region: str, legend: bool) -> None:
    mon = ev.monthly.sel(region=region)
    msc = metrics.mean_seasonal_cycle(mon)
    mem = metrics.mean_seasonal_cycle(ev.member_monthly.sel(region=region))
    x = msc.month.values
    for s in [str(v) for v in msc.source.values]:
        ax.plot(x, msc.sel(source=s), color=COLORS.get(s, "gray"), lw=1.8 if s != "truth" else 1.2,
                ls="--" if s == "truth" else "-", label=_label(s))
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


def fig4_msc(ev: xr.Dataset, out: Path, regions: tuple[str, ...] = ("BRA", "EU", GLOBAL)) -> Path:
    """Fig. 4: mean seasonal cycles (±1σ over members / systems) of BRA, EU and GLOBAL."""
    plt = _plt()
    regions = [r for r in regions if r in ev.region.values]
    fig, ax = plt.subplots(1, len(regions), figsize=(5 * len(regions), 4))
    for i, (a, r) in enumerate(zip(np.atleast_1d(ax), regions)):
        _msc_panel(a, ev, r, legend=i == 0)
        a.set_ylabel(PGC_MONTH if i == 0 else "")
    fig.suptitle("Mean seasonal cycle of monthly NEE (shading: ±1σ across members, inversion systems)")
    _legend_below(fig, np.atleast_1d(ax)[0], ncol=6)
    return _save(fig, out, "fig4_msc")


def figC1_msc_all(ev: xr.Dataset, out: Path) -> Path:
    """Fig. C1: the mean seasonal cycle of every region and GLOBAL."""
    plt = _plt()
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
    return _save(fig, out, "figC1_msc_regions")


OAM_FIGURES = {1: ("figC3", "one system"), 2: ("figC4", "two systems"), 3: ("figC5", "three or more systems")}
"""Figs. C3–C5: the one-against-many sets by how many inversion systems trained them."""


def figC3_one_against_many(ev: xr.Dataset, out: Path, n_systems: int) -> Path:
    """Figs. C3 (one system), C4 (two) and C5 (three or more, ``n_systems`` = 3): the mean
    seasonal cycle of every region and GLOBAL of each EC-ATM set trained on that many systems
    (solid) and of the mean of its systems (dotted, same colour); the EC-ATM ensemble trained
    on all systems (black) and the mean of all inversions (grey) for reference."""
    plt = _plt()
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
    return _save(fig, out, f"{name}_one_against_many")


def fig8_sites(ev: xr.Dataset, tables: pd.DataFrame, out: Path) -> Path:
    """Fig. 8: modelled against observed daily NEE at the towers (density)."""
    plt = _plt()
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
    return _save(fig, out, "fig8_sites")


# --- maps -----------------------------------------------------------------------------------

def evaluation_maps(root: str | Path, cube: str | Path | None = None) -> xr.Dataset:
    """Per-pixel fields for Figs. 5–7 and B2 (in memory; the cube's monthly means only):

    * ``annual_mean``, ``annual_iav`` ``(source, lat, lon)`` gC m-2 yr-1 for the ensembles
      on the model grid; ``inv_annual_mean``, ``inv_annual_iav`` ``(ilat, ilon)`` for the
      inversion mean on its grid;
    * ``msc`` ``(source, month, lat, lon)`` gC m-2 d-1, months 1/4/7/10;
    * ``corr_inv`` ``(source, ilat, ilon)``: Pearson R of the monthly means (coarsened to the
      inversions' grid, land cells averaged) with the inversion mean; ``corr_prior``
      ``(source, lat, lon)``: with the prior;
    * ``inclusion`` ``(lat, lon)``: the bridges' inclusion counts (when ``bridges.zarr`` exists).
    """
    from fluxscale.evaluate.evaluation import ENSEMBLE_LABELS

    root = Path(root)
    nee = open_store(Path(cube) if cube else store_path(root, "nee"), "nee")
    grid = open_store(store_path(root, "grid"), "grid").load()
    m = nee.NEE_monthly.load()
    m = m.assign_coords(ensemble=[ENSEMBLE_LABELS.get(str(e), str(e)) for e in m.ensemble.values])
    m = m.rename(ensemble="source", month="time")
    dim = m.time.dt.days_in_month
    ann = annual_complete(m * dim)
    out = xr.Dataset({"annual_mean": ann.mean("year"), "annual_iav": metrics.iav(ann, "year"),
                      "msc": metrics.mean_seasonal_cycle(m).sel(month=[1, 4, 7, 10])})
    inv = open_store(store_path(root, "inversions"), "inversions")
    fire = open_store(store_path(root, "fire"), "fire")
    iv = (inv.land_flux.astype(np.float64) - fire.co2fire.astype(np.float64)).mean("system").load()
    iv = iv.sel(time=iv.time.isin(m.time.values))
    f = grid.sizes["lat"] // inv.sizes["lat"]
    # the model on the inversions' grid: the mean of the land cells in each coarse cell
    mc = m.sel(time=iv.time.values).coarsen(lat=f, lon=f, boundary="trim").mean()
    mc = mc.assign_coords(lat=inv.lat.values[:mc.sizes["lat"]], lon=inv.lon.values[:mc.sizes["lon"]])
    iv = iv.where(mc.isel(source=0, time=0, drop=True).notnull())  # coarse cells with model land
    iann = annual_complete(iv * iv.time.dt.days_in_month)
    out["inv_annual_mean"] = iann.mean("year").rename(lat="ilat", lon="ilon")
    out["inv_annual_iav"] = metrics.iav(iann, "year").rename(lat="ilat", lon="ilon")
    out["corr_inv"] = metrics.pearson(mc, iv).rename(lat="ilat", lon="ilon")
    prior = open_store(store_path(root, "prior"), "prior").NEE.load()
    prior = prior.sel(time=prior.time.isin(m.time.values))
    out["corr_prior"] = metrics.pearson(m.sel(time=prior.time.values), prior.where(grid.land))
    if store_path(root, "bridges").exists():
        br = open_store(store_path(root, "bridges"), "bridges")
        inc = np.full((grid.sizes["lat"], grid.sizes["lon"]), np.nan)
        inc[grid.cell_ilat.values, grid.cell_ilon.values] = br.inclusion_count.values
        out["inclusion"] = (("lat", "lon"), inc)
    return out


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
    plt = _plt()
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


def fig5_annual_maps(maps: xr.Dataset, out: Path) -> Path:
    """Fig. 5: per-pixel mean annual NEE and its IAV: EC-ATM, EC, inversion mean."""
    plt = _plt()
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
    return _save(fig, out, "fig5_annual_maps")


def fig6_monthly_maps(maps: xr.Dataset, out: Path) -> Path:
    """Fig. 6: mean Jan/Apr/Jul/Oct NEE of EC and EC-ATM and their difference."""
    plt = _plt()
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
    return _save(fig, out, "fig6_monthly_maps")


def fig7_correlation_maps(maps: xr.Dataset, out: Path) -> Path:
    """Fig. 7: per-pixel R of monthly NEE with the inversion mean (top) and the prior
    (bottom) for EC-ATM and EC, and EC-ATM − EC."""
    plt = _plt()
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
    return _save(fig, out, "fig7_correlation_maps")


def figB2_inclusion(maps: xr.Dataset, out: Path) -> Path:
    """Fig. B2: how often each cell was kept by the robustness repeats of the bridges: land
    cells never kept in light grey, the others coloured by their count (log scale when the
    counts span more than a factor of 10), coastlines and degree axes."""
    from matplotlib.colors import ListedColormap, LogNorm, Normalize

    plt = _plt()
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
    return _save(fig, out, "figB2_bridge_inclusion")


# --- regions, plant functional types and single towers (Figs. 9, A1, B3, B4, C2) -------------

PFT_COLORS = {"ENF": "#05450a", "EBF": "#086a10", "DNF": "#54a708", "DBF": "#78d203", "MF": "#009900",
              "CSH": "#c6b044", "OSH": "#dcd159", "WSA": "#dade48", "SAV": "#fbff13", "GRA": "#b6ff05",
              "WET": "#27ff87", "CRO": "#c24f44", "URB": "#a5a5a5", "CVM": "#ff6d4c", "SNO": "#69fff8",
              "BSV": "#f9ffa4", "WAT": "#1c0dff", "none": "#ffffff"}
"""The MODIS land-cover colours of the IGBP classes."""
NEE_DAY = "gC m$^{-2}$ d$^{-1}$"


def static_data(root: str | Path) -> xr.Dataset:
    """The static fields of Figs. A1, B3 and B4, from ``grid.zarr`` (with its PFT map where it
    has one) and ``bridges.zarr`` (where it exists): ``region`` (lat, lon) region id (−1: none),
    ``region_name`` (region_id), ``cell_region`` (cell), ``cell_land_area`` (cell) m²;
    ``cell_pft`` (cell) majority PFT label and ``pft`` (lat, lon) class id; ``pixel_cell``
    (pixel) the bridges' contributing cells. In memory (a few (lat, lon) grids)."""
    from fluxscale.evaluate.evaluation import pft_labels
    from fluxscale.dataset.grid import cell_land_area

    root = Path(root)
    grid = open_store(store_path(root, "grid"), "grid").load()
    il, jl = grid.cell_ilat.values, grid.cell_ilon.values
    ds = xr.Dataset({"region": grid.region.astype(np.int16),
                     "region_name": ("region_id", np.array([str(a) for a in grid.region_abbrev.values], dtype=object)),
                     "region_long_name": ("region_id", np.array([str(a) for a in grid.region_name.values], dtype=object)),
                     "cell_region": ("cell", grid.region.values[il, jl].astype(np.int64)),
                     "cell_land_area": ("cell", cell_land_area(grid)),
                     "cell_lat": ("cell", grid.cell_lat.values), "cell_lon": ("cell", grid.cell_lon.values)},
                    coords={"lat": grid.lat, "lon": grid.lon, "region_id": grid.region_id.values})
    if "pft" in grid:
        ds["pft"] = (("lat", "lon"), grid.pft.values)
        ds["cell_pft"] = ("cell", pft_labels(grid, grid.pft.values[il, jl]))
    if store_path(root, "bridges").exists():
        br = open_store(store_path(root, "bridges"), "bridges")
        ds["pixel_cell"] = ("pixel", br.pixel_cell.values.astype(np.int64))
    return ds


def _legend_outside(ax, reverse: bool = False, **kw) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if reverse:  # a stacked bar: the legend in the order of the stack, top first
        handles, labels = handles[::-1], labels[::-1]
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=8, **kw)


def figA1_regions(static: xr.Dataset, out: Path) -> Path:
    """Fig. A1: the 18 regions of Table A1 on the model grid (land cells), with the table
    ``figA1_regions.csv``: id, abbreviation, name, land cells, land area (10⁶ km²)."""
    from matplotlib.colors import BoundaryNorm, ListedColormap

    plt = _plt()
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
    return _save(fig, out, "figA1_regions")


def _composition(static: xr.Dataset) -> pd.DataFrame:
    from fluxscale.evaluate.evaluation import pft_composition

    return pft_composition(static.cell_pft.values, static.cell_region.values, static.pixel_cell.values,
                           [str(n) for n in static.region_name.values])


def _pft_order(classes) -> list[str]:
    order = list(PFT_COLORS)
    return sorted(classes, key=lambda c: order.index(c) if c in order else len(order))


def figB3_pft_bridges(static: xr.Dataset, out: Path) -> Path:
    """Fig. B3: the share of each majority PFT among the bridges' contributing pixels of all
    regions (bars) and among all land cells (black outlines); data ``figB3_pft_composition.csv``."""
    plt = _plt()
    comp = _composition(static)
    allr = comp[comp.region == "ALL"].set_index("pft").loc[_pft_order(comp.pft.unique())]
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
    _legend_outside(ax)
    return _save(fig, out, "figB3_pft_bridges")


def figB4_pft_by_region(static: xr.Dataset, out: Path) -> Path:
    """Fig. B4: per region, the PFT composition of its contributing pixels (left bar, "P")
    beside that of its land cells (right bar, "L"); data ``figB4_pft_by_region.csv``."""
    plt = _plt()
    comp = _composition(static)
    comp[comp.region != "ALL"].to_csv(out / "figB4_pft_by_region.csv", index=False)
    regions = [str(n) for n in static.region_name.values]
    classes = _pft_order(comp.pft.unique())
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
    _legend_outside(ax, reverse=True, title="majority PFT")
    return _save(fig, out, "figB4_pft_by_region")


def figC2_sites_by_pft(ev: xr.Dataset, out: Path) -> Path:
    """Fig. C2: modelled against observed daily NEE at the towers, one panel per majority PFT
    of the tower's cell and model (EC-ATM, EC); data ``figC2_sites_by_pft.csv``."""
    from fluxscale.evaluate.evaluation import site_scores

    plt = _plt()
    models = [m for m in ("EC-ATM", "EC") if f"site_{m}" in ev]
    pft = ev.site_pft.values
    classes = _pft_order([c for c in np.unique(pft) if c != "none"])
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
    return _save(fig, out, "figC2_sites_by_pft")


def _latlon(lat: float, lon: float) -> str:
    return f"{abs(lat):.1f}°{'N' if lat >= 0 else 'S'}, {abs(lon):.1f}°{'E' if lon >= 0 else 'W'}"


def fig9_tropical_sites(ev: xr.Dataset, out: Path, names: tuple[str, ...] = ()) -> Path:
    """Fig. 9: EC-ATM (blue) and EC (green) against the observed daily NEE at two tropical
    towers (:func:`fluxscale.evaluate.tropical_sites`), 1:1 line; data ``fig9_sites.csv``."""
    from fluxscale.evaluate.evaluation import site_scores, tropical_sites

    plt = _plt()
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
    return _save(fig, out, "fig9_tropical_sites")


CAPTIONS = {
    "fig2": "Fig. 2: global annual NEE (PgC yr-1) of EC-ATM and EC (±1σ over members), each inversion and their "
            "mean (fire removed), the GCB residual land sink ±σ, the prior and (a twin) the truth; the period means, "
            "the detrended anomalies and the IAV. Sources: nee.zarr, integrals.zarr, gcb.zarr.",
    "fig3": "Fig. 3: normalised Nash-Sutcliffe efficiency of monthly regional NEE against the inversion mean, by "
            "region (dimensionless). Sources: nee.zarr, integrals.zarr.",
    "fig4": "Fig. 4: mean seasonal cycle of monthly NEE (PgC month-1) in BRA, EU and GLOBAL; shading ±1σ across "
            "members and inversion systems. Sources: nee.zarr, integrals.zarr.",
    "figC1": "Fig. C1: mean seasonal cycle of monthly NEE (PgC month-1) of every region of Table A1 and GLOBAL.",
    "fig5": "Fig. 5: per-pixel mean annual NEE and its IAV (gC m-2 yr-1) of EC-ATM, EC and the inversion mean (on "
            "its coarser grid); lines: the coastline of the shipped 0.5° land mask. Sources: nee.zarr, "
            "inversions.zarr, fire.zarr.",
    "fig6": "Fig. 6: January, April, July and October mean NEE (gC m-2 d-1) of EC and EC-ATM and their difference "
            "(EC-ATM − EC). Source: nee.zarr.",
    "fig7": "Fig. 7: per-pixel Pearson R of monthly NEE with the inversion mean (on its grid) and with the prior, "
            "and R(EC-ATM) − R(EC). Sources: nee.zarr, inversions.zarr, prior.zarr.",
    "fig8": "Fig. 8: modelled against observed daily NEE at every tower (gC m-2 d-1); colour: tower-days per "
            "hexagon, log scale; red line 1:1. Source: sites.zarr (QC >= qc_min), the members evaluated on the towers' "
            "drivers.",
    "fig9": "Fig. 9: EC-ATM (blue) and EC (green) against the observed daily NEE (gC m-2 d-1) at two tropical towers "
            "(EvalConfig.fig9_sites, else the two with |lat| < 23.5° and the most observed days); line 1:1. Data: "
            "fig9_sites.csv (n, RMSE, bias, R). Source: sites.zarr and the members at the towers.",
    "figA1": "Fig. A1: the 18 regions of Table A1 (RECCAP2-like) on the land cells of the model grid. Data: "
             "figA1_regions.csv (land cells, land area 10^6 km2). Source: grid.zarr.",
    "figB2": "Fig. B2: how often each land cell was a contributing pixel of the bridges over the robustness repeats "
             "(count, log colour scale when the counts span more than a factor of 10; grey: land cells never kept; "
             "lines: the coastline of the shipped 0.5° land mask). Source: bridges.zarr.",
    "figB3": "Fig. B3: share (%) of each majority PFT among the bridges' contributing pixels of all regions (bars) "
             "and among all land cells (black outlines). Data: figB3_pft_composition.csv. Sources: bridges.zarr, "
             "grid.zarr (pft).",
    "figB4": "Fig. B4: per region, the PFT composition (%) of its contributing pixels (P; their number below) and "
             "of all its land cells (L). Data: figB4_pft_by_region.csv. Sources: bridges.zarr, grid.zarr (pft).",
    "figC2": "Fig. C2: modelled against observed daily NEE (gC m-2 d-1) at the towers, by the majority PFT of the "
             "tower's cell (as the paper) and model; line 1:1. Data: figC2_sites_by_pft.csv (towers, n, RMSE, bias, "
             "R). Sources: sites.zarr, grid.zarr (pft).",
    "figC3": "Fig. C3: one-against-many, EC-ATM trained on one inversion system (solid) and that system (dotted), "
             "mean seasonal cycles in PgC month-1.",
    "figC4": "Fig. C4: one-against-many, EC-ATM trained on two systems (solid) and their mean (dotted), PgC month-1.",
    "figC5": "Fig. C5: one-against-many, EC-ATM trained on three or more systems (solid) and their mean (dotted), "
             "PgC month-1.",
}
"""The caption of each figure in the report: what it shows, units, sources and data files."""

TITLES = {"fig2": "global annual NEE", "fig3": "nNSE of monthly regional NEE by region",
          "fig4": "mean seasonal cycles of BRA, EU and GLOBAL", "figC1": "mean seasonal cycles of every region",
          "fig5": "maps of mean annual NEE and its IAV", "fig6": "maps of January, April, July and October NEE",
          "fig7": "maps of the correlation with the inversions and the prior",
          "fig8": "modelled against observed daily NEE at the towers", "fig9": "two tropical towers",
          "figA1": "the 18 regions of Table A1", "figB2": "where the bridges' pixels are",
          "figB3": "PFTs of the bridges' pixels", "figB4": "PFT composition per region",
          "figC2": "the towers by plant functional type", "figC3": "one-against-many: one inversion system",
          "figC4": "one-against-many: two systems", "figC5": "one-against-many: three or more systems"}
"""A short title of each figure, the report's heading (``Fig. 2: global annual NEE``)."""


def write_figures(ev: xr.Dataset, tables: pd.DataFrame, out: str | Path, maps: xr.Dataset | None = None,
                  static: xr.Dataset | None = None, fig9_sites: tuple[str, ...] = ()
                  ) -> tuple[dict[str, Path], dict[str, str]]:
    """Every figure whose inputs exist; returns ``({name: png}, {name: why skipped})``.

    ``static``: :func:`static_data` (Figs. A1, B3, B4; None: not drawn); ``fig9_sites``:
    the towers of Fig. 9 (default: :func:`fluxscale.evaluate.tropical_sites`)."""
    from fluxscale.evaluate.evaluation import tropical_sites

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    done: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    jobs: list[tuple[str, Any]] = [
        ("fig2", lambda: fig2_global_annual(ev, out)), ("fig3", lambda: fig3_nnse(tables, out)),
        ("fig4", lambda: fig4_msc(ev, out)), ("figC1", lambda: figC1_msc_all(ev, out)),
        ("fig8", lambda: fig8_sites(ev, tables, out))]
    if "site_lat" not in ev:
        skipped["fig9"] = "no tower positions in the evaluation data"
    elif not tropical_sites(ev, 2, tuple(fig9_sites)):
        skipped["fig9"] = "no tropical tower (|lat| < 23.5°) with observed days"
    else:
        jobs.append(("fig9", lambda: fig9_tropical_sites(ev, out, tuple(fig9_sites))))
    if maps is not None:
        jobs += [("fig5", lambda: fig5_annual_maps(maps, out)), ("fig6", lambda: fig6_monthly_maps(maps, out)),
                 ("fig7", lambda: fig7_correlation_maps(maps, out))]
        if "inclusion" in maps:
            jobs.append(("figB2", lambda: figB2_inclusion(maps, out)))
        else:
            skipped["figB2"] = "no bridges.zarr"
    else:
        skipped.update({k: "no maps" for k in ("fig5", "fig6", "fig7", "figB2")})
    for n, (name, words) in OAM_FIGURES.items():
        if "set_n" in ev and bool((ev.set_n >= 3 if n == 3 else ev.set_n == n).any()):
            jobs.append((name, lambda n=n: figC3_one_against_many(ev, out, n)))
        else:
            skipped[name] = (f"no one-against-many run trained on {words} "
                             f"(fluxscale one-against-many {ev.attrs.get('root', 'DIR')})")
    if static is not None:
        jobs.append(("figA1", lambda: figA1_regions(static, out)))
    else:
        skipped["figA1"] = "no grid given"
    if static is None or "cell_pft" not in static:
        skipped.update({k: "no PFT map (grid.zarr has no pft)" for k in ("figB3", "figB4")})
    elif "pixel_cell" not in static:
        skipped.update({k: "no bridges.zarr" for k in ("figB3", "figB4")})
    else:
        jobs += [("figB3", lambda: figB3_pft_bridges(static, out)), ("figB4", lambda: figB4_pft_by_region(static, out))]
    if "site_pft" in ev:
        jobs.append(("figC2", lambda: figC2_sites_by_pft(ev, out)))
    else:
        skipped["figC2"] = "no PFT map (grid.zarr has no pft)"
    for name, job in jobs:
        done[name] = job()
    return done, skipped
