"""The atmospheric layer over the cube (the default product ``dual``, :mod:`fluxscale.infer.layer`):
three passes over the blocks of inference, after every block has written the trained
ensembles and before the cube is committed. Each task reads its band's EC members' monthly
NEE from the cube, its daily air temperature from ``drivers.zarr`` and each inversion
system's flux (``inversions.zarr`` ``land_flux`` minus ``fire.zarr`` ``co2fire``, on the
inversion cells holding the band's cells).

1. **Pass 1** (:func:`layer_stats_block`): the regional sums of
   :func:`fluxscale.infer.layer.band_stats`; on the client :func:`fluxscale.infer.layer.fit_layer`
   (Q10, λ, the level).
2. **Pass 2** (:func:`layer_stats_block` with the fit): the sums of
   :func:`fluxscale.infer.layer.fusion_stats`; on the client :func:`fluxscale.infer.layer.fit_fusion`
   (the fusion's weights, each member's residual).
3. **Pass 3** (:func:`layer_write_block`): the band's ``dual`` daily NEE (``NEE_std``: the EC
   members' daily spread), its members' monthly NEE and their mean and spread, into the
   ``dual`` leads of the cube's shards (:func:`fluxscale.infer.block.write_block`).

The fit is written into the cube: ``layer_scale`` (lat, lon) ``λ[r]·|Ē|`` and ``layer_monthly``
(month, lat, lon) the members' mean monthly part, gC m-2 d-1, and the attribute
``fluxscale_layer`` (JSON: Q10, λ, the fusion's weights, the residual of each tried Q10), so
that ``dual = EC + layer_scale · Q10^((Tair − 15)/10) + layer_monthly[month]`` can be
recomputed anywhere (the evaluation does so at the towers, with their own Tair). The
passes are cheap against inference and are rerun whole when an interrupted run resumes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from fluxscale.config import InferConfig
from fluxscale.dataset.regions import REGIONS
from fluxscale.dataset.stores import open_store, store_path
from fluxscale.errors import FluxscaleError, StoreError
from fluxscale.infer import layer
from fluxscale.infer.block import write_block
from fluxscale.infer.plan import Block, CubeLayout, plan_blocks

__all__ = ["layer_inputs", "layer_fingerprint", "apply_layer", "layer_stats_block", "layer_write_block", "layer_at"]


def _open_integrals(root: Path) -> xr.Dataset:
    path = store_path(root, "integrals")
    if not path.exists():
        raise FluxscaleError(f"{path}: not found; the atmospheric layer (infer.layer) needs the inversions' "
                             f"regional integrals: run `fluxscale integrals {root}` first, or set infer.layer=false")
    return open_store(path, "integrals")


def layer_inputs(root: Path, months: pd.DatetimeIndex) -> dict:
    """The inversion mean's regional integrals of ``integrals.zarr`` on the cube's months,
    ``inv`` (18, month) PgC month-1 (NaN where the inversions do not cover a month), ``fit``
    (month,) bool, and the regions' names. A clear error when ``integrals.zarr`` is missing or
    covers none of the months."""
    path = store_path(root, "integrals")
    integ = _open_integrals(root).load()
    regions = [str(r) for r in integ.region.values if str(r) != "GLOBAL"]
    if regions != [r.abbrev for r in REGIONS]:  # rows are indexed by the grid's region ids
        raise FluxscaleError(f"{path}: regions {regions} are not Table A1's 18 in order")
    inv = integ.inversions.mean("system").sel(region=regions)
    pos = pd.DatetimeIndex(inv.time.values).get_indexer(months)
    fit = pos >= 0
    if not fit.any():
        raise FluxscaleError(f"{path}: the inversions cover none of the cube's months "
                             f"({months[0]:%Y-%m} … {months[-1]:%Y-%m}); set infer.layer=false")
    vals = np.full((len(regions), months.size), np.nan)
    vals[:, fit] = inv.values[:, pos[fit]]
    if not np.isfinite(vals[:, fit]).all():
        raise FluxscaleError(f"{path}: variable inversions has missing regional values in the cube's months")
    return {"inv": vals, "fit": fit, "regions": regions}


def layer_fingerprint(root: Path, cfg: InferConfig) -> dict:
    """The layer's settings and the inversion mean's regional integrals (a rewritten
    ``integrals.zarr`` changes the cube's key; the drivers and the gridded inversions are in
    the dataset's fingerprint already)."""
    integ = _open_integrals(root)
    inv = np.ascontiguousarray(integ.inversions.mean("system").values, dtype=np.float64)
    return {"q10": list(cfg.layer_q10), "pattern_weight": cfg.layer_pattern_weight,
            "inversions": hashlib.sha256(inv.tobytes()).hexdigest()}


def _band(spec: dict, block: Block) -> dict:
    """The band's inputs: cells' rows/columns, the EC members' monthly NEE (member, month,
    cell), the daily Tair (day, cell), each inversion system's gridded flux minus fire at the
    cells (system, month, cell; NaN in months the inversions do not cover), the cells' land
    area and region."""
    import zarr

    lay = CubeLayout(**spec["layout"])
    li = (np.asarray(spec["cell_ilat"][block.cell0:block.cell1]) - block.lat0).astype(np.intp)
    lj = np.asarray(spec["cell_ilon"][block.cell0:block.cell1]).astype(np.intp)
    g = zarr.open_group(spec["cube"], mode="r")
    mm = g["NEE_member_monthly"]
    members = np.stack([np.asarray(mm[k, :, block.lat0:block.lat1, :])[:, li, lj] for k in spec["ec_members"]])
    tair = np.asarray(zarr.open_group(spec["drivers"], mode="r")["Tair"][:, block.cell0:block.cell1])
    f = spec["coarsen"]
    c0, c1 = block.lat0 // f, (block.lat1 - 1) // f + 1
    ci, cj = (li + block.lat0) // f - c0, lj // f
    flux = np.asarray(zarr.open_group(spec["inversions"], mode="r")["land_flux"][:, :, c0:c1, :], dtype=np.float64)
    fire = np.asarray(zarr.open_group(spec["fire"], mode="r")["co2fire"][:, c0:c1, :], dtype=np.float64)
    pos, fit = spec["inv_pos"], spec["fit"]
    systems = np.full((flux.shape[0], fit.size, li.size), np.nan)
    systems[:, fit] = (flux[:, pos[fit]] - fire[None, pos[fit]])[:, :, ci, cj]
    if not (np.isfinite(members).all() and np.isfinite(tair).all() and np.isfinite(systems[:, fit]).all()):
        raise FluxscaleError(f"{spec['cube']}: EC's monthly NEE, {spec['drivers']}'s Tair or the inversions' "
                             f"fluxes at the land cells have missing values in block {block.index} "
                             f"(grid rows {block.lat0}-{block.lat1})")
    return {"lay": lay, "li": li, "lj": lj, "members": members.astype(np.float64), "tair": tair, "systems": systems,
            "weight": np.asarray(spec["weight"][block.cell0:block.cell1]),
            "region": np.asarray(spec["region"][block.cell0:block.cell1])}


def layer_stats_block(block: Block, *, spec: dict) -> dict:
    """Pass 1 (``spec`` without a fit) or pass 2 (with ``fit_``) for one band:
    :func:`fluxscale.infer.layer.band_stats` or :func:`fluxscale.infer.layer.fusion_stats`."""
    b = _band(spec, block)
    if "fit_" not in spec:
        gq = layer.q10_monthly(b["tair"], spec["month_idx"], len(spec["days"]), spec["q10"])
        return layer.band_stats(b["members"], gq, b["systems"], b["weight"], b["region"], spec["days"], spec["fit"])
    fit_ = layer.LayerFit(**spec["fit_"])
    gq = layer.q10_monthly(b["tair"], spec["month_idx"], len(spec["days"]), [fit_.q10])[0]
    f = spec["coarsen"]
    group = ((b["li"] + block.lat0) // f) * (spec["n_lon"] // f + 1) + b["lj"] // f  # the inversion cell
    return layer.fusion_stats(fit_, b["members"], gq, b["systems"], b["weight"], b["region"], spec["days"],
                              spec["fit"], spec["moy"], group)


def layer_write_block(block: Block, *, spec: dict) -> dict:
    """Pass 3 for one band: compute and write its ``dual`` leads; return the band's
    ``scale`` (cell,) and members' mean monthly part ``monthly`` (month, cell)."""
    import zarr

    b = _band(spec, block)
    fit_ = layer.LayerFit(**spec["fit_"])
    month_idx, days, fit, moy = spec["month_idx"], spec["days"], spec["fit"], spec["moy"]
    gq = layer.q10_monthly(b["tair"], month_idx, len(days), [fit_.q10])[0]
    scale, part, _ = layer.monthly_part(fit_, b["members"], gq, b["systems"], b["region"], days, fit, moy)
    members = b["members"] + (scale * gq)[None] + part
    monthly = part.mean(axis=0)
    g = zarr.open_group(spec["cube"], mode="r")
    e_ec = spec["ec_lead"]
    li, lj = b["li"], b["lj"]
    mean_d = np.asarray(g["NEE"][e_ec, :, block.lat0:block.lat1, :])[:, li, lj]
    std_d = np.asarray(g["NEE_std"][e_ec, :, block.lat0:block.lat1, :])[:, li, lj]
    day = layer.daily(scale, monthly, fit_.q10, mean_d, b["tair"], month_idx)
    data = {"NEE": day[None], "NEE_std": std_d[None].astype(np.float32),
            "NEE_monthly": members.mean(axis=0)[None].astype(np.float32),
            "NEE_monthly_std": members.std(axis=0)[None].astype(np.float32),
            "NEE_member_monthly": members.astype(np.float32)}
    write_block(spec["cube"], b["lay"], block, li, lj, data, leads=(spec["dual_lead"], spec["dual_member0"]))
    return {"block": block.index, "scale": scale.astype(np.float32), "monthly": monthly.astype(np.float32)}


def apply_layer(root: Path, cfg: InferConfig, cube: Path, layout: CubeLayout, blocks: list[Block], grid: xr.Dataset,
                months: pd.DatetimeIndex, month_idx: np.ndarray, *, client=None, show_progress: bool = True,
                say=lambda m: None) -> layer.LayerFit:
    """Run the passes of the module docstring on the partial ``cube`` (every block of the
    trained ensembles written) and write the fit's variables and attributes."""
    from fluxscale.dataset.grid import cell_land_area
    from fluxscale.parallel import run_tasks

    t0 = time.perf_counter()
    inputs = layer_inputs(root, months)
    inv_path = store_path(root, "inversions")
    inv = open_store(inv_path, "inversions")
    factor, rem = divmod(grid.sizes["lat"], inv.sizes["lat"])
    if rem or grid.sizes["lon"] != factor * inv.sizes["lon"]:
        raise StoreError(str(inv_path), "land_flux", f"grid {inv.sizes['lat']}x{inv.sizes['lon']} is not an integer "
                                                     f"coarsening of the model grid {grid.sizes['lat']}x{grid.sizes['lon']}")
    il, jl = grid.cell_ilat.values, grid.cell_ilon.values
    ec_members = [k for k, e in enumerate(layout.member_ensemble) if e == "ec"]
    dual = [k for k, e in enumerate(layout.member_ensemble) if e == "dual"]
    days = months.days_in_month.to_numpy().astype(np.float64)
    spec = {"cube": str(cube), "drivers": str(store_path(root, "drivers")), "inversions": str(inv_path),
            "fire": str(store_path(root, "fire")), "coarsen": grid.sizes["lat"] // inv.sizes["lat"],
            "n_lon": grid.sizes["lon"],
            "inv_pos": pd.DatetimeIndex(inv.time.values).get_indexer(months), "layout": layout.to_dict(),
            "cell_ilat": il, "cell_ilon": jl, "weight": cell_land_area(grid),
            "region": grid.region.values[il, jl].astype(np.int64), "month_idx": np.asarray(month_idx),
            "days": days, "fit": inputs["fit"], "moy": months.month.to_numpy(),
            "q10": [float(q) for q in cfg.layer_q10], "ec_members": ec_members,
            "ec_lead": list(layout.ensembles).index("ec"), "dual_lead": list(layout.ensembles).index("dual"),
            "dual_member0": dual[0]}
    stats1 = None
    for s in run_tasks(layer_stats_block, blocks, client=client, label="infer: layer, pass 1 of 3",
                       show_progress=show_progress, retries=cfg.retries, spec=spec):
        stats1 = layer.add_stats(stats1, s)
    fit_ = layer.fit_layer(stats1, inputs["inv"], days, inputs["fit"], spec["q10"], alpha=cfg.layer_pattern_weight)
    spec["fit_"] = _fields(fit_)
    # pass 2 on bands of whole inversion cells (its representation error groups by them)
    rows = spec["coarsen"] * max(1, round(layout.lat_rows / spec["coarsen"]))
    stats2 = None
    for s in run_tasks(layer_stats_block, plan_blocks(il, grid.sizes["lat"], rows), client=client, label="infer: layer, pass 2 of 3",
                       show_progress=show_progress, retries=cfg.retries, spec=spec):
        stats2 = layer.add_stats(stats2, s)
    fit_ = layer.fit_fusion(fit_, {**stats1, **stats2}, days, inputs["fit"], spec["moy"])
    spec["fit_"] = _fields(fit_)
    say(f"infer: layer fitted: Q10 {fit_.q10:g}; weight of EC's seasonal cycle per region "
        f"{np.round(fit_.beta_s, 2).tolist()}, of its anomalies {np.round(fit_.beta_i, 2).tolist()}")
    out = run_tasks(layer_write_block, blocks, client=client, label="infer: layer, pass 3 of 3 (dual)",
                    show_progress=show_progress, retries=cfg.retries, spec=spec)
    scale = np.full(grid.land.shape, np.nan, dtype=np.float32)
    monthly = np.full((months.size,) + grid.land.shape, np.nan, dtype=np.float32)
    for r, b in zip(out, blocks):
        scale[il[b.cell0:b.cell1], jl[b.cell0:b.cell1]] = r["scale"]
        monthly[:, il[b.cell0:b.cell1], jl[b.cell0:b.cell1]] = r["monthly"]
    _write_fit(cube, fit_, scale, monthly, inputs["regions"], list(layout.members))
    say(f"infer: layer (ensemble dual, the default product) in {time.perf_counter() - t0:.1f} s")
    return fit_


def _fields(fit_: layer.LayerFit) -> dict:
    return {f.name: getattr(fit_, f.name) for f in dataclasses.fields(fit_)}


def _write_fit(cube: Path, fit_: layer.LayerFit, scale: np.ndarray, monthly: np.ndarray, regions: list[str],
               members: list[str]) -> None:
    """Add ``layer_scale``, ``layer_monthly`` and the ``fluxscale_layer`` and
    ``fluxscale_default_ensemble`` attributes to the (partial) cube."""
    import zarr

    from fluxscale.dataset.schema import NEE_UNITS

    ds = xr.Dataset({
        "layer_scale": (("lat", "lon"), scale, {
            "units": NEE_UNITS, "long_name": "atmospheric layer: lambda[region] * |EC mean|, the scale of the "
                                             "respiration-shaped correction (times Q10^((Tair - 15)/10))"}),
        "layer_monthly": (("month", "lat", "lon"), monthly, {
            "units": NEE_UNITS, "long_name": "atmospheric layer: its monthly part (the level from the inversions, "
                                             "the fused anomalies and the regional residual, less EC's mean)"}),
    })
    encoding = {"layer_monthly": {"chunks": (monthly.shape[0], min(monthly.shape[1], 90), monthly.shape[2])}}
    attrs = dict(zarr.open_group(str(cube), mode="r").attrs)  # xarray's append replaces the group's attributes
    with warnings.catch_warnings():  # zarr: consolidated metadata is not in the v3 spec (the stores carry it)
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        ds.to_zarr(str(cube), mode="a", consolidated=True, zarr_format=3, encoding=encoding)
    g = zarr.open_group(str(cube), mode="r+")
    g.attrs.update({**attrs,
                    "fluxscale_layer": json.dumps({
                        "q10": fit_.q10, "lam": dict(zip(regions, fit_.lam.tolist())),
                        "weight_ec_seasonal": dict(zip(regions, fit_.beta_s.tolist())),
                        "weight_ec_anomalies": dict(zip(regions, fit_.beta_i.tolist())),
                        "pattern_weight": fit_.alpha, "level_flat": [r for r, f in zip(regions, fit_.level_flat) if f],
                        "residual": fit_.residual, "members": members}),
                    "fluxscale_default_ensemble": "dual"})
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        zarr.consolidate_metadata(str(cube))


def layer_at(cube: xr.Dataset, ilat: np.ndarray, ilon: np.ndarray, tair: np.ndarray,
             days: pd.DatetimeIndex) -> np.ndarray:
    """The layer's correction (``dual`` − EC) at grid points ``(ilat, ilon)`` (site,) on
    ``days`` with air temperature ``tair`` (site, day) °C, gC m-2 d-1 (site, day), from the fit
    stored in ``cube`` (NaN on a day outside the cube's months). With a tower's own Tair it is
    what the layer adds to the tower's EC prediction."""
    q10 = float(json.loads(cube.attrs["fluxscale_layer"])["q10"])
    scale = cube.layer_scale.values[ilat, ilon].astype(np.float64)
    pos = pd.DatetimeIndex(cube.month.values).get_indexer(days.to_period("M").to_timestamp())
    monthly = cube.layer_monthly.isel(lat=xr.DataArray(ilat, dims="site"),
                                      lon=xr.DataArray(ilon, dims="site")).values.astype(np.float64)  # (month, site)
    m = monthly[np.clip(pos, 0, None)].T  # (site, day)
    m[:, pos < 0] = np.nan
    f = np.exp(np.log(q10) * (np.asarray(tair, dtype=np.float64) - layer.T_REF) / 10.0)
    return scale[:, None] * f + m
