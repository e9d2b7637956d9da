"""The simple alternatives a reviewer names first, and the products, as per-cell monthly fields.

Every field here is ``X (month, cell)`` in gC m-2 d-1 (the monthly mean of daily values), on
the land cells of the grid (``grid.cell_ilat`` / ``grid.cell_ilon`` order) that belong to one
of the 18 regions of Table A1, over the months of :class:`CellSpace`. A cell's weight is its
land area ``w`` (m², :func:`fluxscale.dataset.grid.cell_land_area`), its region
``grid.region[ilat, ilon]``. The regional integral of a field (paper Eq. 2) is

    I[r, m] = Σ_{cells c of r} X[m, c] · w[c] · days[m] / 1e15     (PgC month-1),

which reproduces ``integrals.zarr``'s integrals of the prior and the truth
(:func:`integrate_cells_monthly`). The baselines (:data:`BASELINES`):

* ``EC + offset``: the cube's EC ensemble (``NEE_monthly.sel(ensemble="ec")``) plus, per
  region and month, one uniform offset per m² of land, ``(T[r, m] − I[r, m]) · 1e15 /
  (days[m] · A[r])`` with ``A[r] = Σ_r w``, so that its integral equals the inversion mean's
  ``T`` (``integrals.inversions.mean("system")``, fire already removed) (:func:`offset_to`);
* ``prior + offset``: the same for the prior (``prior.zarr`` ``NEE``);
* ``flat inversions``: ``T[r, m]`` spread evenly over the region's land,
  ``T · 1e15 / (days · A)`` (:func:`spread_flat`);
* ``inversions (gridded)``: the systems' mean of ``inversions.zarr`` ``land_flux`` minus
  ``fire.zarr`` ``co2fire`` on their coarser grid (an integer coarsening of the model grid),
  each model cell taking the value of the inversion cell that contains it.

The products scored beside them (:func:`product_list`): every ensemble of the cube (labels
:data:`fluxscale.evaluate.collect.ENSEMBLE_LABELS`, else the ensemble's name), the prior and,
for the regional and global scales only, the inversion mean. Each :class:`Product` loads its
field when asked (one ensemble's ``NEE_monthly`` at a time, never the daily cube) and gives
its daily values at a few cells (:meth:`Product.daily_at`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from fluxscale.bridges.integrals import G_PER_PG, grid_for
from fluxscale.dataset.regions import REGION_ABBREVS
from fluxscale.evaluate.collect import ENSEMBLE_LABELS
from fluxscale.evaluate.data import EvalStores

__all__ = ["BASELINES", "OFFSET_BASELINES", "INVERSION_MEAN", "CellSpace", "Product", "cell_space",
           "integrate_cells_monthly", "offset_to", "spread_flat", "inversion_mean_integrals", "ensemble_field",
           "prior_field", "truth_field", "inversions_gridded_field", "default_ensemble", "ensemble_label",
           "truth_product", "product_list", "compare_label"]

BASELINES = ("EC + offset", "prior + offset", "flat inversions", "inversions (gridded)")
"""The baselines' names, in the scorecard's order."""

OFFSET_BASELINES = ("EC + offset", "prior + offset", "flat inversions")
"""The baselines whose regional integrals equal the inversion mean's by construction."""

INVERSION_MEAN = "inversion mean"
"""The product (and reference) name of the inversions' mean over systems."""


@dataclass(frozen=True)
class CellSpace:
    """The land cells and months every field of the scorecard lives on.

    ``cells`` (n,) indices into the grid's land cells (those in a region); ``il``, ``jl``
    their (lat, lon) indices; ``area`` (n,) land area m²; ``region`` (n,) region id 0–17;
    ``months`` the month starts; ``days`` (month,) days in each month."""

    cells: np.ndarray
    il: np.ndarray
    jl: np.ndarray
    area: np.ndarray
    region: np.ndarray
    months: pd.DatetimeIndex
    days: np.ndarray

    @property
    def region_area(self) -> np.ndarray:
        """(18,) land area of each region, m²."""
        return np.bincount(self.region, weights=self.area, minlength=len(REGION_ABBREVS))


def cell_space(grid: xr.Dataset, months) -> CellSpace:
    """The :class:`CellSpace` of ``grid`` (``grid.zarr``) over ``months`` (month starts)."""
    from fluxscale.dataset.grid import cell_land_area

    il_all, jl_all = grid.cell_ilat.values, grid.cell_ilon.values
    reg = grid.region.values[il_all, jl_all].astype(np.int64)
    cells = np.flatnonzero(reg >= 0)
    months = pd.DatetimeIndex(months)
    return CellSpace(cells, il_all[cells], jl_all[cells], cell_land_area(grid)[cells], reg[cells], months,
                     months.days_in_month.to_numpy().astype(np.float64))


def integrate_cells_monthly(x: np.ndarray, space: CellSpace) -> np.ndarray:
    """Kernel: the regional integrals ``(18, month)`` PgC month-1 of ``x (month, cell)``
    gC m-2 d-1 (formula in the module docstring); NaN cells count as missing (the
    region-month is NaN)."""
    onehot = np.zeros((x.shape[1], len(REGION_ABBREVS)))
    onehot[np.arange(x.shape[1]), space.region] = space.area
    return (x @ onehot).T * space.days[None, :] / G_PER_PG


def _per_area(target: np.ndarray, space: CellSpace) -> np.ndarray:
    """(18, month) PgC month-1 → (month, cell) gC m-2 d-1: each region-month's total spread
    evenly over the region's land."""
    dens = target * G_PER_PG / (space.days[None, :] * space.region_area[:, None])  # (18, month)
    return dens[space.region, :].T


def offset_to(x: np.ndarray, target: np.ndarray, space: CellSpace) -> np.ndarray:
    """Kernel: ``x (month, cell)`` plus one uniform offset per m² per region and month that
    makes its regional integrals equal ``target (18, month)`` PgC month-1."""
    return x + _per_area(target - integrate_cells_monthly(x, space), space)


def spread_flat(target: np.ndarray, space: CellSpace) -> np.ndarray:
    """Kernel: ``target (18, month)`` PgC month-1 spread evenly over each region's land,
    ``(month, cell)`` gC m-2 d-1."""
    return _per_area(target, space)


def inversion_mean_integrals(stores: EvalStores, space: CellSpace) -> np.ndarray:
    """The inversion mean's regional integrals ``(18, month)`` PgC month-1 (``integrals.zarr``,
    fire removed), over the months of ``space``."""
    inv = stores.integrals.inversions.mean("system").sel(region=list(REGION_ABBREVS), time=space.months.values)
    return np.asarray(inv.values, dtype=np.float64)


def _gridded_cells(field: xr.DataArray, space: CellSpace, time: str) -> np.ndarray:
    """``(time, lat, lon)`` gridded field → ``(month, cell)`` float64 at the space's cells
    and months (vectorised isel; reads whole stored chunks only along time)."""
    f = field.sel({time: space.months.values})
    f = f.isel(lat=xr.DataArray(space.il, dims="cell"), lon=xr.DataArray(space.jl, dims="cell"))
    return np.asarray(f.transpose(time, "cell").values, dtype=np.float64)


def ensemble_field(stores: EvalStores, ensemble: str, space: CellSpace) -> np.ndarray:
    """The cube ensemble ``ensemble``'s monthly NEE ``(month, cell)`` gC m-2 d-1 (its members'
    mean, ``NEE_monthly``)."""
    return _gridded_cells(stores.nee.NEE_monthly.sel(ensemble=ensemble), space, "month")


def prior_field(stores: EvalStores, space: CellSpace) -> np.ndarray:
    """The prior's monthly NEE ``(month, cell)`` gC m-2 d-1 (``prior.zarr``, monthly)."""
    return _gridded_cells(stores.prior.NEE, space, "time")


def truth_field(stores: EvalStores, space: CellSpace) -> np.ndarray:
    """The truth's monthly NEE ``(month, cell)`` gC m-2 d-1 (``truth.zarr`` ``NEE_monthly``)."""
    t = stores.truth.NEE_monthly.sel(month=space.months.values).isel(cell=xr.DataArray(space.cells, dims="c"))
    return np.asarray(t.transpose("month", "c").values, dtype=np.float64)


def inversions_gridded_field(stores: EvalStores, space: CellSpace) -> np.ndarray:
    """The inversion mean on its own grid given to every model cell inside each inversion
    cell, ``(month, cell)`` gC m-2 d-1 (land flux minus fire, mean over systems)."""
    inv = stores.inversions
    grid_for(inv, stores.grid, str(stores.path("inversions")))  # refuses a non-integer coarsening
    f = stores.grid.sizes["lat"] // inv.sizes["lat"]
    mean = (inv.land_flux.astype(np.float64) - stores.fire.co2fire.astype(np.float64)).mean("system")
    mean = mean.sel(time=space.months.values).isel(lat=xr.DataArray(space.il // f, dims="cell"),
                                                   lon=xr.DataArray(space.jl // f, dims="cell"))
    return np.asarray(mean.transpose("time", "cell").values, dtype=np.float64)


def default_ensemble(nee: xr.Dataset) -> str:
    """The cube's default product ensemble: attribute ``fluxscale_default_ensemble``, else ``ecatm``."""
    return str(nee.attrs.get("fluxscale_default_ensemble", "ecatm"))


def ensemble_label(ensemble: str) -> str:
    """The scorecard's name of a cube ensemble."""
    return ENSEMBLE_LABELS.get(ensemble, ensemble)


@dataclass(frozen=True)
class Product:
    """One field the scorecard scores: ``name``; ``kind`` (``product``, ``baseline``,
    ``reference``); ``field()`` its ``(month, cell)`` gC m-2 d-1 field (None: regional only);
    ``integrals()`` its ``(18, month)`` PgC month-1 when it has no field; ``daily`` (cells,
    day indices into the cube's ``time``) → ``(cell, day)`` daily values, None: its monthly
    value on each day."""

    name: str
    kind: str
    field: Callable[[], np.ndarray] | None = None
    integrals: Callable[[], np.ndarray] | None = None
    daily: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None


def _cube_daily(nee: xr.Dataset, ensemble: str, space: CellSpace) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def daily(pos: np.ndarray, days: np.ndarray) -> np.ndarray:
        """``pos``: positions in ``space``'s cells; ``days``: indices into the cube's time."""
        v = nee.NEE.sel(ensemble=ensemble).isel(lat=xr.DataArray(space.il[pos], dims="c"),
                                                lon=xr.DataArray(space.jl[pos], dims="c"))
        return np.asarray(v.isel(time=days).transpose("c", "time").values, dtype=np.float64)
    return daily


def truth_product(stores: EvalStores, space: CellSpace, name: str = "truth") -> Product:
    """The truth as a product (a twin): its monthly field and its daily ``NEE``; scores 0 on
    every metric against itself (the checks' control)."""
    truth = stores.truth

    def daily(pos: np.ndarray, days: np.ndarray) -> np.ndarray:
        t = pd.DatetimeIndex(stores.nee.time.values[days])
        idx = pd.DatetimeIndex(truth.time.values).get_indexer(t)
        v = truth.NEE.isel(cell=xr.DataArray(space.cells[pos], dims="c"), time=np.clip(idx, 0, None))
        out = np.asarray(v.transpose("c", "time").values, dtype=np.float64)
        out[:, idx < 0] = np.nan
        return out
    return Product(name, "reference", field=lambda: truth_field(stores, space), daily=daily)


def compare_label(path) -> str:
    """The scorecard's name of a compared cube: ``nee-paper.zarr`` → ``paper``."""
    from pathlib import Path

    name = Path(path).name.removesuffix(".zarr")
    return name.removeprefix("nee-") if name != "nee" else name


def product_list(stores: EvalStores, space: CellSpace, compare: dict[str, xr.Dataset] | None = None) -> list[Product]:
    """Every product and baseline of the scorecard, nothing loaded yet: each cube ensemble,
    each ensemble of the ``compare`` cubes (label → opened cube, named ``<ensemble>
    [<label>]``), the prior, the inversion mean (regional only), then :data:`BASELINES`
    (``EC + offset`` only when the cube has an ``ec`` ensemble)."""
    ensembles = [str(e) for e in stores.nee.ensemble.values]
    target = lambda: inversion_mean_integrals(stores, space)  # noqa: E731
    out = [Product(ensemble_label(e), "product", field=lambda e=e: ensemble_field(stores, e, space),
                   daily=_cube_daily(stores.nee, e, space)) for e in ensembles]
    for label, cube in (compare or {}).items():
        for e in [str(e) for e in cube.ensemble.values]:
            out.append(Product(f"{ensemble_label(e)} [{label}]", "product",
                               field=lambda e=e, cube=cube: _gridded_cells(cube.NEE_monthly.sel(ensemble=e), space,
                                                                           "month"),
                               daily=_cube_daily(cube, e, space)))
    out += [Product("prior", "product", field=lambda: prior_field(stores, space)),
            Product(INVERSION_MEAN, "product", integrals=target)]
    if "ec" in ensembles:
        out.append(Product("EC + offset", "baseline",
                           field=lambda: offset_to(ensemble_field(stores, "ec", space), target(), space)))
    out += [Product("prior + offset", "baseline", field=lambda: offset_to(prior_field(stores, space), target(), space)),
            Product("flat inversions", "baseline", field=lambda: spread_flat(target(), space)),
            Product("inversions (gridded)", "baseline", field=lambda: inversions_gridded_field(stores, space))]
    return out
