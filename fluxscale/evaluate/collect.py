"""Evaluation (paper §4, Tables 2–3, Figs. 2–9): the NEE cube against the inversions, the
Global Carbon Budget, the towers and, for a twin, the truth.

:func:`evaluation_data` gathers everything the tables and figures need, small enough to hold
in memory, from the stores of :func:`fluxscale.evaluate.data.open_evaluation_stores`:

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
* ``annual_map`` ``(map_source, cell)`` gC m-2 yr-1 with ``cell_land_area`` and ``cell_lat``:
  the mean annual NEE of every land cell (the consistency checks);
* ``site_obs`` and ``site_<source>`` ``(site, day)`` gC m-2 d-1: the towers' observed daily
  NEE (QC ≥ ``qc_min``, else NaN) and each source at the tower: EC-ATM and EC are their
  members' mean evaluated on the tower's own drivers, the prior is its monthly value at the
  tower's cell, the truth its daily value there; ``site_region`` ``(site)``.

:func:`fluxscale.evaluate.tables.evaluation_tables` turns them into the tables.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from fluxscale.bridges.integrals import G_PER_PG, checked, integrate_regions
from fluxscale.errors import FluxscaleError
from fluxscale.evaluate.data import EvalStores, open_evaluation_stores
from fluxscale.evaluate.towers import pft_labels

__all__ = ["ENSEMBLE_LABELS", "evaluation_data", "collect_evaluation_data"]

ENSEMBLE_LABELS = {"ecatm": "EC-ATM", "ec": "EC", "dual": "dual"}
"""Cube ensemble name → the paper's label."""


def _members_monthly(cube: xr.Dataset, grid: xr.Dataset, client=None, path: str = "nee.zarr") -> xr.DataArray:
    nee = cube.NEE_member_monthly.rename({"month": "time"})
    nee.attrs.setdefault("units", cube.NEE_member_monthly.attrs.get("units"))
    out = integrate_regions(nee, grid)  # (region, time, member), lazy
    out = client.compute(out, sync=True) if client is not None else out.compute()
    out = checked(out, grid, [(str(path), "NEE_member_monthly", nee)])
    return out.transpose("member", "region", "time")


def _members_bridged(bridges: xr.Dataset, nee: xr.Dataset, grid: xr.Dataset) -> xr.DataArray:
    """Post-hoc bridge validity (§3.5): each member's regional NEE from the bridges (Eq. 7)
    applied to its own monthly NEE at the contributing pixels, ``(member, region, time)``
    PgC month-1 (18 regions). Reads only the pixels' columns of the cube."""
    from fluxscale.bridges.build import apply_bridges

    br = bridges.compute()
    pc = br.pixel_cell.values.astype(np.int64)
    il, jl = grid.cell_ilat.values[pc], grid.cell_ilon.values[pc]
    pix = nee.NEE_member_monthly.isel(lat=xr.DataArray(il, dims="cell"), lon=xr.DataArray(jl, dims="cell")).load()
    local = br.assign(pixel_cell=("pixel", np.arange(pc.size)))  # the pixels' own columns
    est = [apply_bridges(local, pix.isel(member=k).rename(month="time").drop_vars(["lat", "lon"], errors="ignore"))
           for k in range(pix.sizes["member"])]
    return xr.concat(est, dim=pix.member.reset_coords(drop=True)).astype(np.float64)


def _annual_maps(stores: EvalStores, months: pd.DatetimeIndex) -> xr.Dataset:
    """Mean annual NEE of every land cell over the complete years of ``months``: ``annual_map``
    ``(map_source, cell)`` gC m-2 yr-1 for each ensemble of the cube (mean over its members)
    and the truth (a twin), ``cell_land_area`` (cell) m², ``cell_lat`` (cell) °. Reads the
    cube's ``NEE_monthly`` one month at a time (Dask), never the daily cube."""
    from fluxscale.dataset.grid import cell_land_area

    nee, grid = stores.nee, stores.grid
    full = [y for y in np.unique(months.year) if np.sum(months.year == y) == 12]
    use = months[months.year.isin(full)]
    if not full:
        return xr.Dataset()
    days = xr.DataArray(use.days_in_month.to_numpy().astype(np.float64), dims="month", coords={"month": use.values})
    il, jl = grid.cell_ilat.values, grid.cell_ilon.values
    mon = nee.NEE_monthly.sel(month=use.values)
    total = (mon.astype(np.float64) * days).sum("month").values / len(full)  # (ensemble, lat, lon)
    maps = {ENSEMBLE_LABELS.get(str(e), str(e)): total[k][il, jl] for k, e in enumerate(nee.ensemble.values)}
    if stores.truth is not None:
        tm = stores.truth.NEE_monthly.sel(month=use.values)
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
    from fluxscale.config import TrainConfig
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


def _one_against_many(stores: EvalStores, integ: xr.Dataset, client=None, say=lambda m: None) -> xr.Dataset | None:
    """The one-against-many sets (§3.6) that have a model set and its cube: ``oam_monthly``
    ``(set, region, time)`` the mean of the set's members' integrals and ``oam_target`` the
    mean of the integrals of the systems it was trained on, PgC month-1; ``set_n`` the
    number of systems. None when there is none."""
    model, target, names, n_sys = [], [], [], []
    for s in stores.set_cubes(say):
        mem = _members_monthly(s.nee, stores.grid, client, path=s.path).sel(time=integ.time.values,
                                                                           region=integ.region.values)
        model.append(mem.mean("member").reset_coords(drop=True))
        target.append(integ.inversions.sel(system=s.systems).mean("system").reset_coords(drop=True))
        names.append(s.name)
        n_sys.append(len(s.systems))
    if not names:
        return None
    idx = pd.Index(names, name="set")
    return xr.Dataset({"oam_monthly": xr.concat(model, dim=idx), "oam_target": xr.concat(target, dim=idx)}
                      ).assign_coords(set_n=("set", n_sys))


def _regional(nee: xr.Dataset, integ: xr.Dataset, members: xr.DataArray, gcb: xr.Dataset) -> xr.Dataset:
    """``monthly``, ``member_monthly``, ``system_monthly``, ``land_area``, ``gcb`` and
    ``gcb_sigma`` (see the module docstring) over the months of ``integ``."""
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
    return ds


def _ensembles_at_towers(stores: EvalStores, x: np.ndarray, il: np.ndarray, jl: np.ndarray,
                         days: pd.DatetimeIndex) -> dict[str, np.ndarray]:
    """Each ensemble's members' mean NEE (gC m-2 d-1) on the towers' drivers ``x``
    ``(site, day, driver)``: ``{label: (site, day)}``, NaN where a driver is missing. The
    layer's ``dual`` is EC's value plus the layer at the tower's grid point ``(il, jl)`` with
    the tower's own Tair (:func:`fluxscale.infer.layer_stage.layer_at`)."""
    from fluxscale.config import InferConfig
    from fluxscale.dataset.schema import DRIVER_NAMES
    from fluxscale.infer.layer_stage import layer_at
    from fluxscale.infer.members import list_members
    from fluxscale.learn.model import forward_members, member_weights

    flat = x.reshape(-1, len(DRIVER_NAMES))
    ok = np.isfinite(flat).all(axis=1)
    site_vals = {}
    ensembles = [str(e) for e in stores.nee.ensemble.values]
    for ens in sorted(ensembles, key=lambda e: e == "dual"):  # dual after EC
        if ens == "dual":
            corr = layer_at(stores.nee, il, jl, x[..., DRIVER_NAMES.index("Tair")], days)
            site_vals[ENSEMBLE_LABELS[ens]] = site_vals[ENSEMBLE_LABELS["ec"]] + corr
            continue
        ms = list_members(stores.root, InferConfig(variants=(ens,)))
        pred = np.full(flat.shape[0], np.nan, dtype=np.float64)
        out = forward_members([member_weights(m.path) for m in ms], np.where(ok[:, None], flat, 0))
        pred[ok] = out.mean(axis=0)[ok]
        site_vals[ENSEMBLE_LABELS.get(ens, ens)] = pred.reshape(x.shape[:2])
    return site_vals


def _towers(stores: EvalStores, regions: np.ndarray, qc_min: float) -> dict:
    """The towers' variables of the evaluation data (``site_obs``, ``site_<source>``,
    ``site_region``, ``site_lat``, ``site_lon``, ``site_igbp``, ``site_pft``; see the module
    docstring), in the order they are added."""
    from fluxscale.dataset.schema import DRIVER_NAMES

    grid, sites = stores.grid, stores.sites
    site_days = pd.DatetimeIndex(sites.time.values)
    obs = sites.NEE.where(sites.NEE_QC >= qc_min).load()
    x = np.stack([np.asarray(sites[n].values, dtype=np.float32) for n in DRIVER_NAMES], axis=-1)
    cell = sites.cell.values.astype(np.int64)
    il, jl = grid.cell_ilat.values[cell], grid.cell_ilon.values[cell]
    site_vals = _ensembles_at_towers(stores, x, il, jl, site_days)
    pm = stores.prior.NEE.isel(lat=xr.DataArray(il, dims="site"), lon=xr.DataArray(jl, dims="site")).load()
    pidx = pd.DatetimeIndex(pm.time.values).to_period("M").get_indexer(site_days.to_period("M"))
    pv = pm.values[np.clip(pidx, 0, None)].T  # (site, time)
    pv[:, pidx < 0] = np.nan
    site_vals["prior"] = pv
    if stores.truth is not None:
        truth = stores.truth
        tidx = pd.DatetimeIndex(truth.time.values).get_indexer(site_days)
        tv = np.asarray(truth.NEE.isel(cell=xr.DataArray(cell, dims="site")).values).T  # (site, truth time)
        tv = tv[:, np.clip(tidx, 0, None)]
        tv[:, tidx < 0] = np.nan
        site_vals["truth"] = tv
    out = {"site_obs": obs.reset_coords(drop=True).rename(time="day").assign_coords(day=site_days.values)}
    for k, v in site_vals.items():
        out[f"site_{k}"] = (("site", "day"), v.astype(np.float64))
    out["site_region"] = ("site", np.asarray(regions)[grid.region.values[il, jl].astype(np.int64)])
    out["site_lat"] = ("site", np.asarray(sites.lat.values, dtype=np.float64), {"units": "degrees_north"})
    out["site_lon"] = ("site", np.asarray(sites.lon.values, dtype=np.float64), {"units": "degrees_east"})
    if "igbp" in sites:
        out["site_igbp"] = ("site", np.array([str(v) for v in sites.igbp.values], dtype=object))
    if "pft" in grid:  # the majority class of the tower's cell (Fig. C2, as the paper)
        out["site_pft"] = ("site", pft_labels(grid, grid.pft.values[il, jl]))
    return out


def collect_evaluation_data(stores: EvalStores, *, qc_min: float = 0.5, client=None,
                            say=lambda m: None) -> xr.Dataset:
    """:func:`evaluation_data` from stores already opened (:class:`fluxscale.evaluate.data.EvalStores`)."""
    stores.require()
    grid, integ, nee, gcb = stores.grid, stores.integrals, stores.nee, stores.gcb

    members = _members_monthly(nee, grid, client, path=stores.cube_path)
    months = pd.DatetimeIndex(members.time.values).intersection(pd.DatetimeIndex(integ.time.values))
    if months.empty:
        raise FluxscaleError(f"{stores.cube_path}: its months do not overlap those of {stores.path('integrals')}")
    members = members.sel(time=months)
    integ = integ.sel(time=months)
    ds = _regional(nee, integ, members, gcb)
    if stores.bridges is not None:
        ds["member_bridge"] = _members_bridged(stores.bridges, nee, grid).sel(time=months)
        term = _members_term(stores.root, nee, grid, ds["member_bridge"])
        if term is not None:
            ds["member_term"] = term.sel(time=months)
    ds = ds.merge(_annual_maps(stores, months))
    oam = _one_against_many(stores, integ, client, say)
    if oam is not None:
        ds = ds.merge(oam)
    for k, v in _towers(stores, integ.region.values, qc_min).items():
        ds[k] = v
    ds.attrs = {"root": str(stores.root), "cube": str(stores.cube_path), "qc_min": qc_min,
                "cube_provenance": nee.attrs.get("fluxscale_provenance", "{}")}
    return ds


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
    return collect_evaluation_data(open_evaluation_stores(root, cube), qc_min=qc_min, client=client, say=say)
