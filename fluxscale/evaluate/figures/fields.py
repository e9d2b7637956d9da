"""The per-pixel and static fields the maps and Figs. A1, B3, B4 are drawn from, computed from
the stores of :func:`fluxscale.evaluate.data.open_evaluation_stores` (opened once):
:func:`map_fields` and :func:`static_fields`; :func:`evaluation_maps` and :func:`static_data`
do the same from a dataset directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from fluxscale.evaluate import metrics
from fluxscale.evaluate.collect import ENSEMBLE_LABELS
from fluxscale.evaluate.data import EvalStores, open_evaluation_stores
from fluxscale.evaluate.tables import annual_complete
from fluxscale.evaluate.towers import pft_labels

__all__ = ["map_fields", "static_fields", "evaluation_maps", "static_data"]


def map_fields(stores: EvalStores) -> xr.Dataset:
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
    grid = stores.grid
    m = stores.nee.NEE_monthly.compute()
    m = m.assign_coords(ensemble=[ENSEMBLE_LABELS.get(str(e), str(e)) for e in m.ensemble.values])
    m = m.rename(ensemble="source", month="time")
    dim = m.time.dt.days_in_month
    ann = annual_complete(m * dim)
    out = xr.Dataset({"annual_mean": ann.mean("year"), "annual_iav": metrics.iav(ann, "year"),
                      "msc": metrics.mean_seasonal_cycle(m).sel(month=[1, 4, 7, 10])})
    inv, fire = stores.inversions, stores.fire
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
    prior = stores.prior.NEE.compute()
    prior = prior.sel(time=prior.time.isin(m.time.values))
    out["corr_prior"] = metrics.pearson(m.sel(time=prior.time.values), prior.where(grid.land))
    if stores.bridges is not None:
        inc = np.full((grid.sizes["lat"], grid.sizes["lon"]), np.nan)
        inc[grid.cell_ilat.values, grid.cell_ilon.values] = stores.bridges.inclusion_count.values
        out["inclusion"] = (("lat", "lon"), inc)
    return out


def static_fields(stores: EvalStores) -> xr.Dataset:
    """The static fields of Figs. A1, B3 and B4, from ``grid.zarr`` (with its PFT map where it
    has one) and ``bridges.zarr`` (where it exists): ``region`` (lat, lon) region id (−1: none),
    ``region_name`` (region_id), ``cell_region`` (cell), ``cell_land_area`` (cell) m²;
    ``cell_pft`` (cell) majority PFT label and ``pft`` (lat, lon) class id; ``pixel_cell``
    (pixel) the bridges' contributing cells. In memory (a few (lat, lon) grids)."""
    from fluxscale.dataset.grid import cell_land_area

    grid = stores.grid
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
    if stores.bridges is not None:
        ds["pixel_cell"] = ("pixel", stores.bridges.pixel_cell.values.astype(np.int64))
    return ds


def evaluation_maps(root: str | Path, cube: str | Path | None = None) -> xr.Dataset:
    """:func:`map_fields` of the dataset directory ``root`` and the cube ``cube`` (default
    ``root/nee.zarr``)."""
    return map_fields(open_evaluation_stores(root, cube if cube else None))


def static_data(root: str | Path) -> xr.Dataset:
    """:func:`static_fields` of the dataset directory ``root``."""
    return static_fields(open_evaluation_stores(root))
