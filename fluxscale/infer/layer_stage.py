"""The atmospheric layer over the cube (the default product ``dual``, :mod:`fluxscale.infer.layer`):
two passes over the blocks of inference, after every block has written the trained ensembles
and before the cube is committed.

1. **Stats** (one task per band, :func:`layer_stats_block`): the band's EC members' monthly
   NEE from the cube and its daily air temperature from ``drivers.zarr`` give the regional sums
   of :func:`fluxscale.infer.layer.band_stats` (a few hundred kB per band).
2. **Fit** (on the client, small): :func:`fluxscale.infer.layer.fit_layer` against the
   inversion mean of ``integrals.zarr``.
3. **Write** (one task per band, :func:`layer_write_block`): the band's ``dual`` daily NEE
   (``NEE_std``: the EC members' daily spread, which the layer, one for every member, keeps),
   its members' monthly NEE and their mean and spread, into the ``dual`` leads of the cube's
   shards (:func:`fluxscale.infer.block.write_block`).

The fit is written into the cube: ``layer_scale`` (lat, lon) ``λ[r]·|Ē|``, ``layer_level`` (lat,
lon) ``L − Ȳ``, ``layer_offset`` (region, month) ``u`` (the members' mean), all gC m-2 d-1, and
the attribute ``fluxscale_layer`` (JSON: Q10, λ, the residual of each tried Q10), so that
``dual = EC + layer_scale · Q10^((Tair − 15)/10) + layer_level + layer_offset[region, month]``
can be recomputed anywhere (the evaluation does so at the towers, with their own Tair).
The passes are cheap against inference (two reads of the EC monthly members and of Tair,
one of EC's daily mean and spread) and are rerun whole when an interrupted run resumes.
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
from fluxscale.errors import FluxscaleError
from fluxscale.infer import layer
from fluxscale.infer.block import write_block
from fluxscale.infer.plan import Block, CubeLayout

__all__ = ["layer_inputs", "layer_fingerprint", "apply_layer", "layer_stats_block", "layer_write_block", "layer_at"]


def layer_inputs(root: Path, months: pd.DatetimeIndex) -> dict:
    """The inversion mean of ``integrals.zarr`` on the cube's months, ``inv`` (18, month) PgC
    month-1 (NaN where the inversions do not cover a month), ``fit`` (month,) bool, the regions'
    names. A clear error when ``integrals.zarr`` is missing or covers none
    of the months."""
    path = store_path(root, "integrals")
    if not path.exists():
        raise FluxscaleError(f"{path}: not found; the atmospheric layer (infer.layer) needs the inversions' "
                             f"regional integrals: run `fluxscale integrals {root}` first, or set infer.layer=false")
    integ = open_store(path, "integrals").load()
    regions = [str(r) for r in integ.region.values if str(r) != "GLOBAL"]
    if regions != [r.abbrev for r in REGIONS]:  # rows are indexed by the grid's region ids
        raise FluxscaleError(f"{path}: regions {regions} are not Table A1's 18 in order")
    inv = integ.inversions.mean("system").sel(region=regions)
    t = pd.DatetimeIndex(inv.time.values)
    pos = t.get_indexer(months)
    fit = pos >= 0
    if not fit.any():
        raise FluxscaleError(f"{path}: the inversions cover none of the cube's months "
                             f"({months[0]:%Y-%m} … {months[-1]:%Y-%m})")
    vals = np.full((len(regions), months.size), np.nan)
    vals[:, fit] = inv.values[:, pos[fit]]
    if not np.isfinite(vals[:, fit]).all():
        raise FluxscaleError(f"{path}: variable inversions has missing regional values in the cube's months")
    return {"inv": vals, "fit": fit, "regions": regions}


def layer_fingerprint(root: Path, cfg: InferConfig) -> dict:
    """What the layer's values depend on beyond the members and drivers (for the cube's key):
    its settings and the inversion mean's values."""
    integ = open_store(store_path(root, "integrals"), "integrals")
    inv = np.ascontiguousarray(integ.inversions.mean("system").values, dtype=np.float64)
    return {"q10": list(cfg.layer_q10), "pattern_weight": cfg.layer_pattern_weight, "inversions": hashlib.sha256(inv.tobytes()).hexdigest()}


def _band(spec: dict, block: Block) -> dict:
    """The band's inputs: cells' rows/columns, the EC members' monthly NEE (member, month,
    cell), the daily Tair (day, cell) and the cells' land area and region."""
    import zarr

    lay = CubeLayout(**spec["layout"])
    li = (np.asarray(spec["cell_ilat"][block.cell0:block.cell1]) - block.lat0).astype(np.intp)
    lj = np.asarray(spec["cell_ilon"][block.cell0:block.cell1]).astype(np.intp)
    g = zarr.open_group(spec["cube"], mode="r")
    mm = g["NEE_member_monthly"]
    members = np.stack([np.asarray(mm[k, :, block.lat0:block.lat1, :])[:, li, lj] for k in spec["ec_members"]])
    tair = np.asarray(zarr.open_group(spec["drivers"], mode="r")["Tair"][:, block.cell0:block.cell1])
    if not (np.isfinite(members).all() and np.isfinite(tair).all()):
        raise FluxscaleError(f"{spec['cube']}: EC's monthly NEE or {spec['drivers']}'s Tair has missing values "
                             f"in block {block.index} (grid rows {block.lat0}-{block.lat1})")
    return {"lay": lay, "li": li, "lj": lj, "members": members.astype(np.float64), "tair": tair,
            "weight": np.asarray(spec["weight"][block.cell0:block.cell1]),
            "region": np.asarray(spec["region"][block.cell0:block.cell1])}


def layer_stats_block(block: Block, *, spec: dict) -> dict:
    """Pass 1 for one band: :func:`fluxscale.infer.layer.band_stats`."""
    b = _band(spec, block)
    gq = layer.q10_monthly(b["tair"], spec["month_idx"], len(spec["days"]), spec["q10"])
    return layer.band_stats(b["members"], gq, b["weight"], b["region"], spec["days"], spec["fit"])


def layer_write_block(block: Block, *, spec: dict) -> dict:
    """Pass 3 for one band: compute and write its ``dual`` leads; return the band's
    ``layer_scale`` and ``layer_level`` (cell,)."""
    import zarr

    b = _band(spec, block)
    fit_ = layer.LayerFit(**spec["fit_"])
    month_idx, days, fit = spec["month_idx"], spec["days"], spec["fit"]
    gq = layer.q10_monthly(b["tair"], month_idx, len(days), [fit_.q10])[0]
    members = layer.member_monthly(fit_, b["members"], gq, b["region"], days, fit)
    g = zarr.open_group(spec["cube"], mode="r")
    e_ec = spec["ec_lead"]
    li, lj = b["li"], b["lj"]
    mean_d = np.asarray(g["NEE"][e_ec, :, block.lat0:block.lat1, :])[:, li, lj]
    std_d = np.asarray(g["NEE_std"][e_ec, :, block.lat0:block.lat1, :])[:, li, lj]
    day = layer.daily(fit_, mean_d, b["tair"], month_idx, b["members"], gq, b["region"], days, fit)
    data = {"NEE": day[None], "NEE_std": std_d[None].astype(np.float32),
            "NEE_monthly": members.mean(axis=0)[None].astype(np.float32),
            "NEE_monthly_std": members.std(axis=0)[None].astype(np.float32),
            "NEE_member_monthly": members.astype(np.float32)}
    write_block(spec["cube"], b["lay"], block, li, lj, data, leads=(spec["dual_lead"], spec["dual_member0"]))
    scale, level, _, ybar = layer.cell_terms(fit_, b["members"], gq, b["region"], days, fit)
    return {"block": block.index, "scale": scale, "level": level - ybar}


def apply_layer(root: Path, cfg: InferConfig, cube: Path, layout: CubeLayout, blocks: list[Block], grid: xr.Dataset,
                months: pd.DatetimeIndex, month_idx: np.ndarray, *, client=None, show_progress: bool = True,
                say=lambda m: None) -> layer.LayerFit:
    """Run the three passes of the module docstring on the partial ``cube`` (every block of
    the trained ensembles written) and write the fit's variables and attribute."""
    from fluxscale.dataset.grid import cell_land_area
    from fluxscale.parallel import run_tasks

    t0 = time.perf_counter()
    inputs = layer_inputs(root, months)
    il, jl = grid.cell_ilat.values, grid.cell_ilon.values
    names = list(layout.members)
    ec_members = [k for k, e in enumerate(layout.member_ensemble) if e == "ec"]
    dual = [k for k, e in enumerate(layout.member_ensemble) if e == "dual"]
    days = months.days_in_month.to_numpy().astype(np.float64)
    spec = {"cube": str(cube), "drivers": str(store_path(root, "drivers")), "layout": layout.to_dict(),
            "cell_ilat": il, "cell_ilon": jl, "weight": cell_land_area(grid),
            "region": grid.region.values[il, jl].astype(np.int64), "month_idx": np.asarray(month_idx),
            "days": days, "fit": inputs["fit"], "q10": [float(q) for q in cfg.layer_q10], "ec_members": ec_members,
            "ec_lead": list(layout.ensembles).index("ec"), "dual_lead": list(layout.ensembles).index("dual"),
            "dual_member0": dual[0]}
    stats = None
    for s in run_tasks(layer_stats_block, blocks, client=client, label="infer: layer stats",
                       show_progress=show_progress, retries=cfg.retries, spec=spec):
        stats = layer.add_stats(stats, s)
    fit_ = layer.fit_layer(stats, inputs["inv"], days, inputs["fit"], spec["q10"], months.month.to_numpy(),
                           alpha=cfg.layer_pattern_weight)
    say(f"infer: layer fitted: Q10 {fit_.q10:g}; λ per region {np.round(fit_.lam, 3).tolist()}")
    spec["fit_"] = {f.name: getattr(fit_, f.name) for f in dataclasses.fields(fit_)}
    out = run_tasks(layer_write_block, blocks, client=client, label="infer: layer (dual)",
                    show_progress=show_progress, retries=cfg.retries, spec=spec)
    scale = np.full(grid.land.shape, np.nan, dtype=np.float32)
    level = np.full(grid.land.shape, np.nan, dtype=np.float32)
    for r, b in zip(out, blocks):
        scale[il[b.cell0:b.cell1], jl[b.cell0:b.cell1]] = r["scale"]
        level[il[b.cell0:b.cell1], jl[b.cell0:b.cell1]] = r["level"]
    _write_fit(cube, fit_, scale, level, inputs["regions"], months, names)
    say(f"infer: layer (ensemble dual, the default product) in {time.perf_counter() - t0:.1f} s")
    return fit_


def _write_fit(cube: Path, fit_: layer.LayerFit, scale: np.ndarray, level: np.ndarray, regions: list[str],
               months: pd.DatetimeIndex, members: list[str]) -> None:
    """Add ``layer_scale``, ``layer_level``, ``layer_offset`` and the ``fluxscale_layer`` and
    ``fluxscale_default_ensemble`` attributes to the (partial) cube."""
    import zarr

    from fluxscale.dataset.schema import NEE_UNITS

    units = NEE_UNITS
    ds = xr.Dataset({
        "layer_scale": (("lat", "lon"), scale, {"units": units, "long_name": "atmospheric layer: λ[region]·|EC mean| "
                                                "(times Q10^((Tair-15)/10) the respiration-shaped correction)"}),
        "layer_level": (("lat", "lon"), level, {"units": units, "long_name": "atmospheric layer: long-term level "
                                                "from the inversions minus EC's corrected mean (L - Ybar)"}),
        "layer_offset": (("region", "month"), fit_.u.mean(axis=0).astype(np.float32),
                         {"units": units, "long_name": "atmospheric layer: each region-month's residual per m2 of land"}),
    }, coords={"region": ("region", np.array(regions, dtype=object))})
    with warnings.catch_warnings():  # zarr: consolidated metadata is not in the v3 spec (the stores carry it)
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        ds.to_zarr(str(cube), mode="a", consolidated=True, zarr_format=3)
    g = zarr.open_group(str(cube), mode="r+")
    g.attrs.update({"fluxscale_layer": json.dumps({"q10": fit_.q10, "lam": dict(zip(regions, fit_.lam.tolist())),
                                                   "level_flat": [r for r, f in zip(regions, fit_.level_flat) if f],
                                                   "residual": fit_.residual, "members": members}),
                    "fluxscale_default_ensemble": "dual"})
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        zarr.consolidate_metadata(str(cube))


def layer_at(cube: xr.Dataset, ilat: np.ndarray, ilon: np.ndarray, region: np.ndarray, tair: np.ndarray,
             days: pd.DatetimeIndex) -> np.ndarray:
    """The layer's correction (``dual`` − EC) at grid points ``(ilat, ilon)`` (site,) of
    regions ``region`` (site,) 0–17, on ``days`` with air temperature ``tair`` (site, day) °C,
    gC m-2 d-1 (site, day), from the fit stored in ``cube`` (NaN on a day outside the cube's
    months). With a tower's own Tair it is what the layer adds to the tower's EC prediction."""
    q10 = float(json.loads(cube.attrs["fluxscale_layer"])["q10"])
    scale = cube.layer_scale.values[ilat, ilon].astype(np.float64)
    level = cube.layer_level.values[ilat, ilon].astype(np.float64)
    offset = cube.layer_offset.values.astype(np.float64)  # (region, month)
    pos = pd.DatetimeIndex(cube.month.values).get_indexer(days.to_period("M").to_timestamp())
    u = offset[np.asarray(region)[:, None], np.clip(pos, 0, None)[None, :]]
    u[:, pos < 0] = np.nan
    f = np.exp(np.log(q10) * (np.asarray(tair, dtype=np.float64) - layer.T_REF) / 10.0)
    return scale[:, None] * f + level[:, None] + u
