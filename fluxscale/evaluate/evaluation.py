"""Evaluation (paper §4, Tables 2–3, Figs. 2–9): the NEE cube against the inversions, the
Global Carbon Budget, the towers and, for a twin, the truth.

:func:`evaluation_data` gathers everything the tables and figures need, small enough to hold
in memory:

* ``monthly`` ``(source, region, time)`` PgC month-1: regional integrals (Eq. 2) of
  ``EC-ATM`` and ``EC`` (the mean of their members' integrals, computed from the cube's
  ``NEE_member_monthly`` blockwise with :func:`fluxscale.bridges.integrals.integrate_regions`),
  ``prior`` (the FLUXCOM role), ``inversions`` (the mean over systems, fire removed) and
  ``truth`` (a twin only); ``region`` = the 18 regions of Table A1 and ``GLOBAL``;
* ``member_monthly`` ``(member, region, time)``: each member's integrals, ``member_ensemble``
  says whose; ``system_monthly`` ``(system, region, time)``: each inversion's;
* ``gcb`` ``(year)`` and ``gcb_sigma`` PgC yr-1;
* ``oam_monthly`` and ``oam_target`` ``(set, region, time)`` (when one-against-many model
  sets exist, §3.6): each set's EC-ATM integrals and the mean of its systems' integrals;
* ``member_bridge`` ``(member, region, time)``: each member's regional NEE from the bridges
  (Eq. 7) applied to its own monthly NEE at their pixels, for the post-hoc bridge validity
  of §3.5 (when ``bridges.zarr`` exists);
* ``site_obs`` and ``site_<source>`` ``(site, day)`` gC m-2 d-1: the towers' observed daily
  NEE (QC ≥ ``qc_min``, else NaN) and each source at the tower: EC-ATM and EC are their
  members' mean evaluated on the tower's own drivers, the prior is its monthly value at the
  tower's cell, the truth its daily value there; ``site_region`` ``(site)``.

:func:`evaluation_tables` turns them into one long table (``table, model, region,
reference, metric, value``) from which the CSV and markdown tables and ``summary.json`` are
written by :func:`write_tables`. Annual values are calendar-year sums of the monthly
integrals (PgC yr-1); only complete years count.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from fluxscale.evaluate import metrics
from fluxscale.errors import FluxscaleError
from fluxscale.bridges.integrals import G_PER_PG, GLOBAL, checked, integrate_regions
from fluxscale.dataset.stores import open_store, store_path

__all__ = ["ENSEMBLE_LABELS", "MODELS", "evaluation_data", "evaluation_tables", "write_tables", "summary_dict",
           "markdown_table", "pivot_tables", "science_checks", "consistency_checks", "table_value", "annual_complete", "TABLE_TITLES",
           "pft_labels", "pft_composition", "site_scores", "tropical_sites"]

ENSEMBLE_LABELS = {"ecatm": "EC-ATM", "ec": "EC"}
"""Cube ensemble name → the paper's label."""
MODELS = ("EC-ATM", "EC", "prior")
"""The models evaluated (rows of the tables), in the paper's order."""

TABLE_TITLES = {
    "annual": "Table 2: annual regional NEE (PgC yr-1): Pearson R and RMSE",
    "monthly": "Table 3: monthly regional NEE (PgC month-1): Pearson R and RMSE; mean seasonal cycle R and RMSE",
    "nnse": "Fig. 3: normalised Nash-Sutcliffe efficiency of monthly regional NEE",
    "iav": "Fig. 2D: interannual variability (sd of detrended annual NEE, PgC yr-1), with the spread across members",
    "site": "Fig. 8: site-level RMSE of daily NEE (gC m-2 d-1) against the towers",
    "bridge": "§3.5: post-hoc bridge validity, the bridges applied to each member against its full regional "
              "integral (mean over members of mean|bridge - integral| / mean|integral|, and R); 'term rel diff': "
              "the same for the atmospheric term each member was trained with (the bridges, or for EC-ATM with "
              "atm_term = sampled its fixed validation cells)",
    "consistency": "Global consistency: period-mean NEE (PgC yr-1) of every source globally, of each member, and "
                   "in the tropics (|lat| < 23.5°) and extratropics; RMSE of each cell's mean annual NEE against the "
                   "truth (gC m-2 yr-1, land-area weighted)",
    "oam": "§3.6 one-against-many: EC-ATM trained on a subset of the inversion systems, mean seasonal cycle "
           "(PgC month-1) against the mean of its own systems and of all of them; 'main' = the EC-ATM "
           "ensemble trained on all systems, against the same reference",
}


def _members_monthly(cube: xr.Dataset, grid: xr.Dataset, client=None, path: str = "nee.zarr") -> xr.DataArray:
    nee = cube.NEE_member_monthly.rename({"month": "time"})
    nee.attrs.setdefault("units", cube.NEE_member_monthly.attrs.get("units"))
    out = integrate_regions(nee, grid)  # (region, time, member), lazy
    out = client.compute(out, sync=True) if client is not None else out.compute()
    out = checked(out, grid, [(str(path), "NEE_member_monthly", nee)])
    return out.transpose("member", "region", "time")


def _members_bridged(root: Path, nee: xr.Dataset, grid: xr.Dataset) -> xr.DataArray:
    """Post-hoc bridge validity (§3.5): each member's regional NEE from the bridges (Eq. 7)
    applied to its own monthly NEE at the contributing pixels, ``(member, region, time)``
    PgC month-1 (18 regions). Reads only the pixels' columns of the cube."""
    from fluxscale.bridges.build import apply_bridges

    br = open_store(store_path(root, "bridges"), "bridges").load()
    pc = br.pixel_cell.values.astype(np.int64)
    il, jl = grid.cell_ilat.values[pc], grid.cell_ilon.values[pc]
    pix = nee.NEE_member_monthly.isel(lat=xr.DataArray(il, dims="cell"), lon=xr.DataArray(jl, dims="cell")).load()
    local = br.assign(pixel_cell=("pixel", np.arange(pc.size)))  # the pixels' own columns
    est = [apply_bridges(local, pix.isel(member=k).rename(month="time").drop_vars(["lat", "lon"], errors="ignore"))
           for k in range(pix.sizes["member"])]
    return xr.concat(est, dim=pix.member.reset_coords(drop=True)).astype(np.float64)


TROPICS_LAT = 23.5
"""Latitude bound of the tropical band (°, both hemispheres) for the tropical / extratropical
totals of the consistency checks."""


def _annual_maps(root: Path, nee: xr.Dataset, grid: xr.Dataset, months: pd.DatetimeIndex) -> xr.Dataset:
    """Mean annual NEE of every land cell over the complete years of ``months``: ``annual_map``
    ``(map_source, cell)`` gC m-2 yr-1 for each ensemble of the cube (mean over its members)
    and the truth (a twin), ``cell_land_area`` (cell) m², ``cell_lat`` (cell) °. Reads the
    cube's ``NEE_monthly`` one month at a time (Dask), never the daily cube."""
    from fluxscale.dataset.grid import cell_land_area

    full = [y for y in np.unique(months.year) if np.sum(months.year == y) == 12]
    use = months[months.year.isin(full)]
    if not full:
        return xr.Dataset()
    days = xr.DataArray(use.days_in_month.to_numpy().astype(np.float64), dims="month", coords={"month": use.values})
    il, jl = grid.cell_ilat.values, grid.cell_ilon.values
    mon = nee.NEE_monthly.sel(month=use.values)
    total = (mon.astype(np.float64) * days).sum("month").values / len(full)  # (ensemble, lat, lon)
    maps = {ENSEMBLE_LABELS.get(str(e), str(e)): total[k][il, jl] for k, e in enumerate(nee.ensemble.values)}
    if store_path(root, "truth").exists():
        truth = open_store(store_path(root, "truth"), "truth")
        tm = truth.NEE_monthly.sel(month=use.values)
        maps["truth"] = ((tm.astype(np.float64) * days).sum("month").values / len(full))
    return xr.Dataset({"annual_map": (("map_source", "cell"), np.stack(list(maps.values()))),
                       "cell_land_area": ("cell", cell_land_area(grid)),
                       "cell_lat": ("cell", np.asarray(grid.cell_lat.values, dtype=np.float64))},
                      coords={"map_source": list(maps)})


def _members_term(root: Path, nee: xr.Dataset, grid: xr.Dataset, bridged: xr.DataArray) -> xr.DataArray | None:
    """Each member's regional NEE as the atmospheric term it was trained with saw it,
    ``(member, region, time)`` PgC month-1: the bridges (``bridged``) for ``atm_term =
    "bridges"`` and for EC; for EC-ATM members trained with ``"sampled"``, the estimate from
    the member's own fixed validation cells (:func:`fluxscale.learn.atm_sample.member_validation_cells`)
    applied to its monthly NEE in the cube. None without ``members.json``."""
    from fluxscale.learn.atm_sample import member_validation_cells
    from fluxscale.config.settings import TrainConfig
    from fluxscale.dataset.grid import cell_land_area
    from fluxscale.learn.model import models_dir

    path = models_dir(root) / "members.json"
    if not path.exists():
        return None
    info = json.loads(path.read_text())
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in info["config"].items() if k in known})
    names = [str(r) for r in bridged.region.values]
    il, jl = grid.cell_ilat.values, grid.cell_ilon.values
    cell_region = grid.region.values[il, jl].astype(np.int64)
    area = cell_land_area(grid)
    days = pd.DatetimeIndex(nee.month.values).days_in_month.to_numpy().astype(np.float64)
    out = bridged.copy()
    for member in out.member.values:
        m = info["members"].get(str(member), {})
        if m.get("variant") != "ecatm" or cfg.atm_term != "sampled":
            continue
        regions = m.get("regions") or names
        ids = [names.index(r) for r in regions]
        cells, col, scale = member_validation_cells(cfg, int(m["fold"]), cell_region, area, ids)
        v = nee.NEE_member_monthly.sel(member=member).isel(lat=xr.DataArray(il[cells], dims="c"),
                                                           lon=xr.DataArray(jl[cells], dims="c")).values  # (month, c)
        est = np.zeros((len(ids), v.shape[0]))
        np.add.at(est, col, (v.astype(np.float64) * scale[None, :]).T)
        est = est * days[None, :] / G_PER_PG
        series = xr.DataArray(est, dims=("region", "time"), coords={"region": regions, "time": nee.month.values})
        out.loc[{"member": member, "region": regions}] = series.sel(time=out.time.values).values
    return out


def _one_against_many(root: Path, grid: xr.Dataset, integ: xr.Dataset, client=None,
                      say=lambda m: None) -> xr.Dataset | None:
    """The one-against-many sets (§3.6) that have a model set and its cube: ``oam_monthly``
    ``(set, region, time)`` the mean of the set's members' integrals and ``oam_target`` the
    mean of the integrals of the systems it was trained on, PgC month-1; ``set_n`` the
    number of systems. None when there is none."""
    import zarr

    from fluxscale.config.settings import InferConfig
    from fluxscale.infer.cube import cube_path
    from fluxscale.learn.model import model_sets

    model, target, names, n_sys = [], [], [], []
    systems_all = [str(s) for s in integ.system.values]
    for name in model_sets(root):
        cube = cube_path(root, InferConfig(model_set=name))
        try:
            attrs = dict(zarr.open_group(str(cube), mode="r").attrs)
        except Exception:  # noqa: BLE001  (no cube yet)
            say(f"evaluate: model set {name} has no cube at {cube} (fluxscale infer --set model_set={name}); left out")
            continue
        if attrs.get("fluxscale_model_set") != name:
            raise FluxscaleError(f"{cube}: written for model set {attrs.get('fluxscale_model_set')!r}, not {name!r}")
        systems = json.loads(attrs.get("fluxscale_train_systems", "[]"))  # recorded by infer from members.json
        if not systems or set(systems) == set(systems_all) or not set(systems) <= set(systems_all):
            continue  # not a one-against-many set
        mem = _members_monthly(open_store(cube, "nee"), grid, client, path=cube).sel(time=integ.time.values,
                                                                          region=integ.region.values)
        model.append(mem.mean("member").reset_coords(drop=True))
        target.append(integ.inversions.sel(system=systems).mean("system").reset_coords(drop=True))
        names.append(name)
        n_sys.append(len(systems))
    if not names:
        return None
    idx = pd.Index(names, name="set")
    return xr.Dataset({"oam_monthly": xr.concat(model, dim=idx), "oam_target": xr.concat(target, dim=idx)}
                      ).assign_coords(set_n=("set", n_sys))


def evaluation_data(root: str | Path, *, cube: str | Path | None = None, qc_min: float = 0.5,
                    client=None, say=lambda m: None) -> xr.Dataset:
    """Everything the evaluation needs, in memory (see the module docstring).

    Parameters
    ----------
    root : path
        A dataset directory after ``fluxscale integrals``, ``train`` and ``infer``.
    cube : path, optional
        The NEE cube (default ``root/nee.zarr``).
    qc_min : float
        Tower days with a QC fraction below this are not used.
    client : distributed.Client, optional
        Runs the cube's regional integrals (one task per chunk).
    say : callable
        Receives notes (model sets left out).
    """
    from fluxscale.infer.members import list_members
    from fluxscale.learn.model import forward_members, member_weights
    from fluxscale.config.settings import InferConfig
    from fluxscale.dataset.schema import DRIVER_NAMES

    root = Path(root)
    cube_path = Path(cube) if cube is not None else store_path(root, "nee")
    for p, what in ((store_path(root, "integrals"), "fluxscale integrals"), (cube_path, "fluxscale infer")):
        if not p.exists():
            raise FluxscaleError(f"{p}: not found; run `{what} {root}` first")
    grid = open_store(store_path(root, "grid"), "grid").load()
    integ = open_store(store_path(root, "integrals"), "integrals").load()
    nee = open_store(cube_path, "nee")
    gcb = open_store(store_path(root, "gcb"), "gcb").load()

    members = _members_monthly(nee, grid, client, path=cube_path)
    months = pd.DatetimeIndex(members.time.values).intersection(pd.DatetimeIndex(integ.time.values))
    if months.empty:
        raise FluxscaleError(f"{cube_path}: its months do not overlap those of {store_path(root, 'integrals')}")
    members = members.sel(time=months)
    integ = integ.sel(time=months)
    regions = integ.region.values
    member_ens = [str(e) for e in nee.member_ensemble.values]
    sources: dict[str, xr.DataArray] = {}
    for ens in [str(e) for e in nee.ensemble.values]:
        sel = [i for i, e in enumerate(member_ens) if e == ens]
        sources[ENSEMBLE_LABELS.get(ens, ens)] = members.isel(member=sel).mean("member")
    sources["prior"] = integ.prior
    sources["inversions"] = integ.inversions.mean("system")
    if "truth" in integ:
        sources["truth"] = integ.truth
    monthly = xr.concat([v.drop_vars([c for c in v.coords if c not in ("region", "time")]).sel(region=regions)
                         for v in sources.values()], dim=pd.Index(list(sources), name="source"))
    monthly.attrs = {"units": "PgC month-1", "long_name": "regional integral of NEE per month"}

    ds = xr.Dataset({"monthly": monthly,
                     "member_monthly": members.sel(region=regions).assign_coords(member_ensemble=("member", [
                         ENSEMBLE_LABELS.get(e, e) for e in member_ens])),
                     "system_monthly": integ.inversions,
                     "land_area": integ.land_area})
    ds["gcb"] = gcb.NEE
    ds["gcb_sigma"] = gcb.NEE_sigma
    if store_path(root, "bridges").exists():
        ds["member_bridge"] = _members_bridged(root, nee, grid).sel(time=months)
        term = _members_term(root, nee, grid, ds["member_bridge"])
        if term is not None:
            ds["member_term"] = term.sel(time=months)
    ds = ds.merge(_annual_maps(root, nee, grid, months))
    oam = _one_against_many(root, grid, integ, client, say)
    if oam is not None:
        ds = ds.merge(oam)

    # towers: observations and every source at the tower
    sites = open_store(store_path(root, "sites"), "sites")
    site_days = pd.DatetimeIndex(sites.time.values)
    obs = sites.NEE.where(sites.NEE_QC >= qc_min).load()
    x = np.stack([np.asarray(sites[n].values, dtype=np.float32) for n in DRIVER_NAMES], axis=-1)
    flat = x.reshape(-1, len(DRIVER_NAMES))
    ok = np.isfinite(flat).all(axis=1)
    site_vals = {}
    for ens in [str(e) for e in nee.ensemble.values]:
        ms = list_members(root, InferConfig(variants=(ens,)))
        pred = np.full(flat.shape[0], np.nan, dtype=np.float64)
        out = forward_members([member_weights(m.path) for m in ms], np.where(ok[:, None], flat, 0))
        pred[ok] = out.mean(axis=0)[ok]
        site_vals[ENSEMBLE_LABELS.get(ens, ens)] = pred.reshape(x.shape[:2])
    cell = sites.cell.values.astype(np.int64)
    il, jl = grid.cell_ilat.values[cell], grid.cell_ilon.values[cell]
    prior = open_store(store_path(root, "prior"), "prior")
    pm = prior.NEE.isel(lat=xr.DataArray(il, dims="site"), lon=xr.DataArray(jl, dims="site")).load()
    pidx = pd.DatetimeIndex(pm.time.values).to_period("M").get_indexer(site_days.to_period("M"))
    pv = pm.values[np.clip(pidx, 0, None)].T  # (site, time)
    pv[:, pidx < 0] = np.nan
    site_vals["prior"] = pv
    if store_path(root, "truth").exists():
        truth = open_store(store_path(root, "truth"), "truth")
        tidx = pd.DatetimeIndex(truth.time.values).get_indexer(site_days)
        tv = np.asarray(truth.NEE.isel(cell=xr.DataArray(cell, dims="site")).values).T  # (site, truth time)
        tv = tv[:, np.clip(tidx, 0, None)]
        tv[:, tidx < 0] = np.nan
        site_vals["truth"] = tv
    ds["site_obs"] = obs.reset_coords(drop=True).rename(time="day").assign_coords(day=site_days.values)
    for k, v in site_vals.items():
        ds[f"site_{k}"] = (("site", "day"), v.astype(np.float64))
    ds["site_region"] = ("site", np.asarray(regions)[grid.region.values[il, jl].astype(np.int64)])
    ds["site_lat"] = ("site", np.asarray(sites.lat.values, dtype=np.float64), {"units": "degrees_north"})
    ds["site_lon"] = ("site", np.asarray(sites.lon.values, dtype=np.float64), {"units": "degrees_east"})
    if "igbp" in sites:
        ds["site_igbp"] = ("site", np.array([str(v) for v in sites.igbp.values], dtype=object))
    if "pft" in grid:  # the majority class of the tower's cell (Fig. C2, as the paper)
        ds["site_pft"] = ("site", pft_labels(grid, grid.pft.values[il, jl]))
    ds.attrs = {"root": str(root), "cube": str(cube_path), "qc_min": qc_min,
                "cube_provenance": nee.attrs.get("fluxscale_provenance", "{}")}
    return ds


# --- plant functional types and single towers (Figs. 9, B3, B4, C2) -------------------------

def pft_labels(grid: xr.Dataset, ids: np.ndarray) -> np.ndarray:
    """The class abbreviations (``grid.zarr``'s ``pft_name``) of class ids ``ids``, any
    shape; ``"none"`` for :data:`fluxscale.dataset.schema.NO_PFT` or an unknown id. Object strings."""
    table = {int(i): str(n) for i, n in zip(grid.pft_class.values, grid.pft_name.values)}
    ids = np.asarray(ids)
    return np.array([table.get(int(i), "none") for i in ids.ravel()], dtype=object).reshape(ids.shape)


def pft_composition(cell_pft: np.ndarray, cell_region: np.ndarray, pixel_cell: np.ndarray,
                    region_names: list[str] | tuple[str, ...]) -> pd.DataFrame:
    """The PFT composition of the bridges' contributing pixels against that of all land cells
    (Figs. B3, B4): one row per (region, PFT label) with ``bridge_pixels``, ``bridge_fraction``
    (of the region's pixels), ``land_cells``, ``land_fraction`` (of the region's land cells);
    region ``ALL`` = every region together.

    Parameters
    ----------
    cell_pft : (cell,) array of str
        Majority PFT label of every land cell (:func:`pft_labels`).
    cell_region : (cell,) int
        Region id (0–17) of every land cell.
    pixel_cell : (pixel,) int
        Land-cell index of every contributing pixel (``bridges.zarr``'s ``pixel_cell``).
    region_names : sequence of str
        Name of each region id.
    """
    cell_pft = np.asarray(cell_pft, dtype=object)
    cell_region = np.asarray(cell_region, dtype=np.int64)
    pixel_cell = np.asarray(pixel_cell, dtype=np.int64)
    classes = sorted(set(cell_pft.tolist()))
    rows = []
    for name, rid in [("ALL", None)] + [(str(n), k) for k, n in enumerate(region_names)]:
        cells = np.ones(cell_pft.size, bool) if rid is None else cell_region == rid
        pix = pixel_cell if rid is None else pixel_cell[cell_region[pixel_cell] == rid]
        n_land, n_pix = int(cells.sum()), int(pix.size)
        for c in classes:
            nl = int((cell_pft[cells] == c).sum())
            nb = int((cell_pft[pix] == c).sum())
            rows.append({"region": name, "pft": c, "bridge_pixels": nb,
                         "bridge_fraction": nb / n_pix if n_pix else np.nan,
                         "land_cells": nl, "land_fraction": nl / n_land if n_land else np.nan})
    return pd.DataFrame(rows)


def site_scores(obs: np.ndarray, sim: np.ndarray) -> dict[str, float]:
    """Scores of daily NEE at towers over the (site, day) pairs where both are finite: ``n``,
    ``RMSE`` and ``bias`` (sim − obs, gC m-2 d-1) and Pearson ``R``."""
    obs, sim = np.asarray(obs, dtype=np.float64).ravel(), np.asarray(sim, dtype=np.float64).ravel()
    ok = np.isfinite(obs) & np.isfinite(sim)
    n = int(ok.sum())
    if n == 0:
        return {"n": 0, "RMSE": np.nan, "bias": np.nan, "R": np.nan}
    d = sim[ok] - obs[ok]
    r = np.corrcoef(obs[ok], sim[ok])[0, 1] if n > 1 and obs[ok].std() > 0 and sim[ok].std() > 0 else np.nan
    return {"n": n, "RMSE": float(np.sqrt(np.mean(d * d))), "bias": float(d.mean()), "R": float(r)}


def tropical_sites(ev: xr.Dataset, k: int = 2, names: tuple[str, ...] = ()) -> list[str]:
    """The towers of Fig. 9: ``names`` when given (each must be a tower of ``ev``), else the
    ``k`` towers within the tropics (|lat| < :data:`TROPICS_LAT`) with the most days on which
    the observation and every ensemble at the tower are finite (ties: site order)."""
    sites = [str(s) for s in ev.site.values]
    if names:
        missing = [n for n in names if n not in sites]
        if missing:
            raise FluxscaleError(f"Fig. 9: no tower {', '.join(missing)} in sites.zarr")
        return list(names)
    ok = np.isfinite(ev.site_obs.values)
    for m in ("EC-ATM", "EC"):
        if f"site_{m}" in ev:
            ok &= np.isfinite(ev[f"site_{m}"].values)
    days = ok.sum(axis=1)
    trop = np.abs(ev.site_lat.values) < TROPICS_LAT
    order = [i for i in np.argsort(-days, kind="stable") if trop[i] and days[i] > 0]
    return [sites[i] for i in order[:k]]


# --- tables ---------------------------------------------------------------------------------

def annual_complete(monthly: xr.DataArray) -> xr.DataArray:
    """Calendar-year sums of a monthly series over complete years only (PgC yr-1)."""
    t = pd.DatetimeIndex(monthly.time.values)
    full = [y for y in np.unique(t.year) if np.sum(t.year == y) == 12]
    return metrics.annual(monthly).sel(year=full)


def evaluation_tables(ev: xr.Dataset) -> pd.DataFrame:
    """The long table of every figure of merit: columns ``table, model, region, reference,
    metric, value`` (see :data:`TABLE_TITLES`). References: ``inversions`` (their mean),
    ``GCB`` (GLOBAL annual only), ``truth`` (a twin), ``towers`` (site table)."""
    src = [str(s) for s in ev.source.values]
    refs = ["inversions"] + (["truth"] if "truth" in src else [])
    models = [m for m in MODELS if m in src]
    mon = ev.monthly
    ann = annual_complete(mon)
    rows: list[dict[str, Any]] = []

    def add(table, model, region, ref, metric, value):
        rows.append({"table": table, "model": model, "region": str(region), "reference": ref, "metric": metric,
                     "value": float(value)})

    msc = metrics.mean_seasonal_cycle(mon)
    for ref in refs:
        r_a, e_a = metrics.pearson(ann, ann.sel(source=ref), "year"), metrics.rmse(ann, ann.sel(source=ref), "year")
        r_m, e_m = metrics.pearson(mon, mon.sel(source=ref)), metrics.rmse(mon, mon.sel(source=ref))
        r_c, e_c = (metrics.pearson(msc, msc.sel(source=ref), "month"),
                    metrics.rmse(msc, msc.sel(source=ref), "month"))
        n = metrics.nnse(mon, mon.sel(source=ref))
        for m in models:
            for reg in ev.region.values:
                add("annual", m, reg, ref, "R", r_a.sel(source=m, region=reg))
                add("annual", m, reg, ref, "RMSE", e_a.sel(source=m, region=reg))
                add("monthly", m, reg, ref, "R", r_m.sel(source=m, region=reg))
                add("monthly", m, reg, ref, "RMSE", e_m.sel(source=m, region=reg))
                add("monthly", m, reg, ref, "MSC R", r_c.sel(source=m, region=reg))
                add("monthly", m, reg, ref, "MSC RMSE", e_c.sel(source=m, region=reg))
                add("nnse", m, reg, ref, "nNSE", n.sel(source=m, region=reg))
    # GLOBAL annual against the Global Carbon Budget
    g = ann.sel(region=GLOBAL)
    years = np.intersect1d(g.year.values, ev.gcb.year.values)
    gcb = ev.gcb.sel(year=years)
    for m in models:
        add("annual", m, GLOBAL, "GCB", "R", metrics.pearson(g.sel(source=m, year=years), gcb, "year"))
        add("annual", m, GLOBAL, "GCB", "RMSE", metrics.rmse(g.sel(source=m, year=years), gcb, "year"))
    # IAV of every source, and its spread across the members of each ensemble
    iav = metrics.iav(ann, "year")
    mem_iav = metrics.iav(annual_complete(ev.member_monthly), "year")
    sys_iav = metrics.iav(annual_complete(ev.system_monthly), "year")
    for reg in ev.region.values:
        for s in src:
            add("iav", s, reg, "-", "IAV", iav.sel(source=s, region=reg))
        for ens in np.unique(ev.member_ensemble.values):
            v = mem_iav.sel(region=reg).where(ev.member_ensemble == ens, drop=True)
            add("iav", str(ens), reg, "-", "IAV members sd", v.std(ddof=1) if v.size > 1 else np.nan)
            add("iav", str(ens), reg, "-", "IAV members min", v.min())
            add("iav", str(ens), reg, "-", "IAV members max", v.max())
        add("iav", "inversions", reg, "-", "IAV systems sd", sys_iav.sel(region=reg).std(ddof=1))
    add("iav", "GCB", GLOBAL, "-", "IAV", metrics.iav(ev.gcb.sel(year=years), "year"))
    # post-hoc bridge validity: the bridges on each member vs its full integral (§3.5)
    if "member_bridge" in ev:
        regs = [str(r) for r in ev.member_bridge.region.values if str(r) != GLOBAL]  # bridges are regional
        full = ev.member_monthly.sel(region=regs)
        b = ev.member_bridge
        rel = abs(b - full).mean("time") / abs(full).mean("time")
        r = metrics.pearson(b, full)
        rel_t = abs(ev.member_term - full).mean("time") / abs(full).mean("time") if "member_term" in ev else None
        for ens in np.unique(ev.member_ensemble.values):
            k = ev.member_ensemble == ens
            for reg in regs:
                add("bridge", str(ens), reg, "full integral", "rel diff", rel.sel(region=reg).where(k, drop=True).mean())
                add("bridge", str(ens), reg, "full integral", "R", r.sel(region=reg).where(k, drop=True).mean())
                if rel_t is not None:
                    add("bridge", str(ens), reg, "full integral", "term rel diff",
                        rel_t.sel(region=reg).where(k, drop=True).mean())
    # global consistency (absolute): period means, bands, members, pixels
    mean = ann.mean("year")
    for s in src:
        if s in ("prior",):
            continue
        add("consistency", s, GLOBAL, "-", "mean", mean.sel(source=s, region=GLOBAL))
        if "truth" in src and s != "truth":
            g = ann.sel(region=GLOBAL)
            add("consistency", s, GLOBAL, "truth", "annual RMSE", metrics.rmse(g.sel(source=s), g.sel(source="truth"), "year"))
    mem_mean = annual_complete(ev.member_monthly.sel(region=GLOBAL)).mean("year")
    for k, name in enumerate(ev.member.values):
        add("consistency", str(ev.member_ensemble.values[k]), f"member {name}", "-", "mean", mem_mean.isel(member=k))
    for ens in np.unique(ev.member_ensemble.values):
        v = mem_mean.where(ev.member_ensemble == ens, drop=True)
        add("consistency", str(ens), GLOBAL, "-", "members sd", v.std(ddof=1) if v.size > 1 else np.nan)
        add("consistency", str(ens), GLOBAL, "-", "members range", v.max() - v.min())
    if "annual_map" in ev:
        area = ev.cell_land_area
        trop = abs(ev.cell_lat) < TROPICS_LAT
        for s in ev.map_source.values:
            m = ev.annual_map.sel(map_source=s)
            add("consistency", str(s), "TROPICS", "-", "mean", (m * area).where(trop).sum() / G_PER_PG)
            add("consistency", str(s), "EXTRATROPICS", "-", "mean", (m * area).where(~trop).sum() / G_PER_PG)
            if "truth" in ev.map_source.values and s != "truth":
                d = m - ev.annual_map.sel(map_source="truth")
                add("consistency", str(s), "PIXELS", "truth", "RMSE mean annual",
                    np.sqrt(float((d * d * area).sum() / area.sum())))
    # one-against-many (§3.6): does a set move towards the systems it was trained on?
    if "oam_monthly" in ev:
        c_set = metrics.mean_seasonal_cycle(ev.oam_monthly)
        c_own = metrics.mean_seasonal_cycle(ev.oam_target)
        c_all, c_main = msc.sel(source="inversions"), msc.sel(source="EC-ATM")
        for name in ev.set.values:
            model = f"EC-ATM[{name}]"
            for ref, target in (("own systems", c_own.sel(set=name)), ("inversions", c_all)):
                r = metrics.pearson(c_set.sel(set=name), target, "month")
                e = metrics.rmse(c_set.sel(set=name), target, "month")
                e_main = metrics.rmse(c_main, target, "month")
                for reg in ev.region.values:
                    add("oam", model, reg, ref, "MSC R", r.sel(region=reg))
                    add("oam", model, reg, ref, "MSC RMSE", e.sel(region=reg))
                    add("oam", model, reg, ref, "MSC RMSE main", e_main.sel(region=reg))
    # towers: RMSE of daily NEE over every valid (site, day), overall and by region
    obs = ev.site_obs
    site_refs = [("towers", obs)] + ([("truth", ev.site_truth)] if "site_truth" in ev else [])
    if "site_truth" in ev:  # how far the truth itself is from the (biased, noisy) towers
        add("site", "truth", "ALL", "towers", "RMSE", metrics.rmse(ev.site_truth, obs, ("site", "day")))
        add("site", "truth", "ALL", "towers", "bias", metrics.bias(ev.site_truth, obs, ("site", "day")))
    for ref, target in site_refs:
        for m in models:
            sim = ev[f"site_{m}"]
            add("site", m, "ALL", ref, "RMSE", metrics.rmse(sim, target, ("site", "day")))
            add("site", m, "ALL", ref, "bias", metrics.bias(sim, target, ("site", "day")))
            add("site", m, "ALL", ref, "n", int((sim.notnull() & target.notnull()).sum()))
            for reg in np.unique(ev.site_region.values):
                k = ev.site_region == reg
                add("site", m, reg, ref, "RMSE", metrics.rmse(sim.where(k, drop=True), target.where(k, drop=True),
                                                              ("site", "day")))
    return pd.DataFrame(rows)


def pivot_tables(df: pd.DataFrame, table: str) -> dict[str, pd.DataFrame]:
    """``table``'s rows as wide tables, one per reference: rows = regions, columns =
    ``"<model> <metric>"``."""
    d = df[df.table == table]
    out = {}
    for ref in d.reference.unique():
        sub = d[d.reference == ref]
        wide = sub.pivot_table(index="region", columns=["model", "metric"], values="value", aggfunc="first",
                               sort=False)
        wide.columns = [f"{m} {k}" for m, k in wide.columns]
        wide.index.name = "region"
        wide = wide.reindex(list(sub.region.unique()))
        for c in wide.columns:
            if c.endswith(f" {COUNT_METRIC}"):  # counts as integers (202846, not 202846.000)
                wide[c] = wide[c].round().astype("Int64")
        out[ref] = wide
    return out


COUNT_METRIC = "n"
"""The metric that is a count (days at the towers): written and shown as an integer."""


def table_file_name(table: str, reference: str) -> str:
    """The file stem of a wide table: ``<table>_vs_<reference>`` with spaces as underscores
    (``bridge_vs_full_integral``); ``<table>`` for a table without a reference."""
    return table if reference == "-" else f"{table}_vs_{reference}".replace(" ", "_")


def _fmt(v: Any) -> str:
    if v is pd.NA:
        return "–"
    if isinstance(v, (float, np.floating)):
        return "–" if not np.isfinite(v) else f"{v:.3f}"
    return str(v)


def markdown_table(wide: pd.DataFrame) -> str:
    """A DataFrame as a GitHub markdown table (index first), floats to 3 decimals."""
    head = [wide.index.name or "", *map(str, wide.columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for idx, row in wide.iterrows():
        lines.append("| " + " | ".join([str(idx), *(_fmt(v) for v in row.values)]) + " |")
    return "\n".join(lines)


def table_value(df: pd.DataFrame, table: str, model: str, region: str, reference: str, metric: str) -> float:
    """One figure of merit from :func:`evaluation_tables` (NaN when absent)."""
    v = df[(df.table == table) & (df.model == model) & (df.region == region) & (df.reference == reference)
           & (df.metric == metric)].value
    return float(v.iloc[0]) if len(v) else float("nan")


def science_checks(df: pd.DataFrame) -> list[dict[str, Any]]:
    """The dual-constraint claims, checked on a twin (issue 7 §6; they need the truth):

    * EC-ATM's global annual RMSE against the truth is at most a third of EC's;
    * EC-ATM's monthly R against the inversion mean is at least EC's in 12 or more of the
      18 regions;
    * EC-ATM's site RMSE against the towers is within 15 % of EC's.

    Returns one ``{"check", "value", "bound", "passed"}`` per claim (empty without truth).
    """
    get = lambda *key: table_value(df, *key)  # noqa: E731

    if not (df.reference == "truth").any():
        return []
    out = []
    a, e = get("annual", "EC-ATM", GLOBAL, "truth", "RMSE"), get("annual", "EC", GLOBAL, "truth", "RMSE")
    out.append({"check": "global annual RMSE vs truth, EC-ATM / EC", "value": a / e, "bound": "<= 1/3",
                "passed": bool(a <= e / 3)})
    m = df[(df.table == "monthly") & (df.reference == "inversions") & (df.metric == "R") & (df.region != GLOBAL)]
    w = m.pivot_table(index="region", columns="model", values="value")
    n = int((w["EC-ATM"] >= w["EC"]).sum())
    out.append({"check": "regions where EC-ATM's monthly R vs inversions >= EC's", "value": n,
                "bound": f">= 12 of {len(w)}", "passed": bool(n >= 12)})
    a, e = get("site", "EC-ATM", "ALL", "towers", "RMSE"), get("site", "EC", "ALL", "towers", "RMSE")
    out.append({"check": "site RMSE vs towers, EC-ATM / EC", "value": a / e, "bound": "<= 1.15",
                "passed": bool(a <= 1.15 * e),
                # the truth's own ratio: above 1.15 the towers' bias makes the check unreachable for a
                # model that matches the truth
                "truth_value": get("site", "truth", "ALL", "towers", "RMSE") / e})
    return out + consistency_checks(df)


def consistency_checks(df: pd.DataFrame) -> list[dict[str, Any]]:
    """The absolute global-consistency claims on a twin (issue 24): EC-ATM's global annual
    RMSE against the truth ≤ 1 PgC/yr and ≤ 2× the inversion mean's; every EC-ATM member's
    period-mean global NEE within 2 PgC/yr of the truth's; EC-ATM's tropical (|lat| < 23.5°)
    and extratropical period means each within 1 PgC/yr of the truth's; the decoupling of
    EC-ATM's atmospheric term (mean over regions of mean|term − integral| / mean|integral|,
    the term being the bridges or its sampled cells, whichever it trained with) no worse
    than EC's bridge decoupling (§3.5); EC-ATM's per-cell RMSE of mean annual NEE against the truth ≤ EC's.
    A check whose inputs are missing (no bridges, no maps) is left out."""
    get = lambda *key: table_value(df, *key)  # noqa: E731

    out = []

    def check(name: str, value: float, bound: str, passed: bool) -> None:
        if np.isfinite(value):
            out.append({"check": name, "value": float(value), "bound": bound, "passed": bool(passed)})

    a, inv = (get("consistency", m, GLOBAL, "truth", "annual RMSE") for m in ("EC-ATM", "inversions"))
    check("global annual RMSE vs truth, EC-ATM (PgC/yr)", a, "<= 1.0", a <= 1.0)
    if np.isfinite(inv) and inv > 0:
        check("global annual RMSE vs truth, EC-ATM / inversion mean", a / inv, "<= 2", a <= 2 * inv)
    truth = get("consistency", "truth", GLOBAL, "-", "mean")
    mem = df[(df.table == "consistency") & (df.model == "EC-ATM") & df.region.str.startswith("member ")]
    if len(mem) and np.isfinite(truth):
        worst = float(np.max(np.abs(mem.value.to_numpy() - truth)))
        check("largest error of an EC-ATM member's global mean vs truth (PgC/yr)", worst, "<= 2.0", worst <= 2.0)
    for band in ("TROPICS", "EXTRATROPICS"):
        d = abs(get("consistency", "EC-ATM", band, "-", "mean") - get("consistency", "truth", band, "-", "mean"))
        check(f"error of EC-ATM's {band.lower()} mean vs truth (PgC/yr)", d, "<= 1.0", d <= 1.0)
    b = df[(df.table == "bridge") & (df.metric == "term rel diff")]
    if len(b):
        w = b.groupby("model").value.mean()
        if {"EC-ATM", "EC"} <= set(w.index):
            check("decoupling of the atmospheric term (rel diff vs full integral), EC-ATM / EC", w["EC-ATM"] / w["EC"],
                  "<= 1.0", w["EC-ATM"] <= w["EC"])
    pa, pe = (get("consistency", m, "PIXELS", "truth", "RMSE mean annual") for m in ("EC-ATM", "EC"))
    check("per-cell RMSE of mean annual NEE vs truth, EC-ATM / EC", pa / pe, "<= 1.0", pa <= pe)
    return out


def summary_dict(df: pd.DataFrame, ev: xr.Dataset | None = None) -> dict[str, Any]:
    """``{model: {region: {"<table> <metric> vs <reference>": value}}}`` plus ``meta`` and
    ``science_checks`` (:func:`science_checks`, on a twin)."""
    out: dict[str, Any] = {}
    for r in df.itertuples(index=False):
        key = f"{r.table} {r.metric}" + ("" if r.reference == "-" else f" vs {r.reference}")
        out.setdefault(r.model, {}).setdefault(r.region, {})[key] = None if not np.isfinite(r.value) else r.value
    meta = {"tables": TABLE_TITLES}
    if ev is not None:
        t = pd.DatetimeIndex(ev.time.values)
        meta.update(root=ev.attrs.get("root"), cube=ev.attrs.get("cube"), months=[str(t[0].date()), str(t[-1].date())],
                    sources=[str(s) for s in ev.source.values], sites=int(ev.sizes.get("site", 0)))
    return {"meta": meta, "models": out, "science_checks": science_checks(df)}


def write_tables(df: pd.DataFrame, out: str | Path, ev: xr.Dataset | None = None) -> dict[str, Path]:
    """Write ``<table>_vs_<reference>.csv`` for every table, ``tables.md`` (all of them, markdown),
    ``metrics.csv`` (the long table) and ``summary.json`` into ``out``; return the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"metrics": out / "metrics.csv", "summary": out / "summary.json", "markdown": out / "tables.md"}
    df.to_csv(paths["metrics"], index=False)
    md = []
    for t, title in TABLE_TITLES.items():
        if not (df.table == t).any():
            continue
        md += [f"## {title}", ""]
        for ref, wide in pivot_tables(df, t).items():
            name = table_file_name(t, ref)
            wide.to_csv(out / f"{name}.csv")
            paths[name] = out / f"{name}.csv"
            md += ([] if ref == "-" else [f"against {ref}:", ""]) + [markdown_table(wide), ""]
    paths["markdown"].write_text("\n".join(md))
    paths["summary"].write_text(json.dumps(summary_dict(df, ev), indent=1))
    return paths
