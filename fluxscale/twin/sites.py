"""Twin towers: placement, records with gaps, biased noisy observations, folds.

Towers cluster where ``site_region_weights`` says (most in the USA and Europe); each
is observed for ``site_years_min``–``site_years_max`` whole years with gap runs; the
observed NEE = truth − b·Reco + offset + noise, with the night-time bias fraction b
strongest in the tropics (the towers' sink bias). Drivers at the tower are the grid
cell's with tower-meteorology noise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from fluxscale.config import TwinConfig
from fluxscale.dataset.driver_kernels import assemble
from fluxscale.dataset.drivers import day_of_year_index
from fluxscale.dataset.schema import DAILY_DRIVERS, DRIVER_NAMES, DRIVER_UNITS, SEASONAL_DRIVERS, STATIC_DRIVERS
from fluxscale.dataset.regions import region_by_abbrev
from fluxscale.dataset.schema import NEE_UNITS
from fluxscale.twin.fluxes import night_bias_fraction, simulate_cells

S_SITES = 30
_CC = {"USA": "US", "CAN": "CA", "CAM": "MX", "NSA": "CO", "BRA": "BR", "SSA": "AR", "EU": "EU", "NAF": "NE",
       "EQAF": "CG", "SAF": "ZA", "RUS": "RU", "CAS": "KZ", "MIDE": "IL", "CHN": "CN", "KAJ": "JP", "SAS": "IN",
       "SEAS": "MY", "OCE": "AU"}


def place_sites(cfg: TwinConfig, grid: xr.Dataset) -> dict[str, np.ndarray]:
    """Choose tower cells, ids, positions inside their cells, record years and folds.

    Returns a dict of (site,) arrays: ``cell`` (land-cell index), ``site`` (ids),
    ``lat``, ``lon``, ``first_year``, ``last_year``, ``fold`` (0–9, balanced).
    """
    rng = np.random.default_rng([cfg.seed, S_SITES])
    cell_region = grid.region.values[grid.cell_ilat.values, grid.cell_ilon.values]
    weights = dict(cfg.site_region_weights)
    regions = [r for r in weights if np.any(cell_region == region_by_abbrev(r).id) and weights[r] > 0]
    p = np.array([weights[r] for r in regions], dtype=float)
    counts = rng.multinomial(cfg.n_sites, p / p.sum())
    cells, codes = [], []
    for r, k in zip(regions, counts):
        avail = np.flatnonzero(cell_region == region_by_abbrev(r).id)
        take = rng.choice(avail, size=min(k, avail.size), replace=False)
        cells.extend(take.tolist())
        codes.extend([_CC[r]] * take.size)
    cells = np.asarray(cells, dtype=np.int64)
    order = np.argsort(cells, kind="stable")
    cells, codes = cells[order], [codes[i] for i in order]
    n = cells.size
    ids, seen = [], {}
    for cc in codes:
        seen[cc] = seen.get(cc, 0) + 1
        ids.append(f"{cc}-T{seen[cc]:03d}")
    res = float(grid.attrs["resolution_deg"])
    lat = grid.cell_lat.values[cells] + rng.uniform(-0.45, 0.45, n) * res
    lon = grid.cell_lon.values[cells] + rng.uniform(-0.45, 0.45, n) * res
    length = rng.integers(cfg.site_years_min, min(cfg.site_years_max, cfg.n_years) + 1, size=n)
    first = cfg.start_year + rng.integers(0, cfg.n_years - length + 1)
    fold = np.empty(n, dtype=np.int8)
    fold[rng.permutation(n)] = np.arange(n) % 10
    return {"cell": cells, "site": np.array(ids), "lat": lat, "lon": lon, "first_year": first,
            "last_year": first + length - 1, "fold": fold}


def _gap_mask(rng: np.random.Generator, n: int, frac: float, mean_run: float = 10.0) -> np.ndarray:
    """True where a day is missing: a two-state Markov chain with stationary missing
    fraction ``frac`` and mean gap length ``mean_run`` days."""
    if frac <= 0:
        return np.zeros(n, dtype=bool)
    p10 = 1.0 / mean_run
    p01 = frac * p10 / (1.0 - frac)
    u = rng.random(n)
    out = np.empty(n, dtype=bool)
    state = rng.random() < frac
    for i in range(n):
        state = (u[i] >= p10) if state else (u[i] < p01)
        out[i] = state
    return out


def make_sites(cfg: TwinConfig, grid: xr.Dataset, time: pd.DatetimeIndex, enso: np.ndarray,
               sink_scale: float) -> xr.Dataset:
    """The ``sites.zarr`` Dataset (in memory; a few hundred towers × days)."""
    pl = place_sites(cfg, grid)
    cells = pl["cell"]
    sim = simulate_cells(cfg, grid.cell_lat.values[cells], grid.cell_lon.values[cells], cells, time, enso, sink_scale)
    rng = np.random.default_rng([cfg.seed, S_SITES, 1])
    n, nd = cells.size, time.size
    years = time.year.to_numpy()
    nee = np.full((n, nd), np.nan, dtype=np.float32)
    qc = np.full((n, nd), np.nan, dtype=np.float32)
    bias_frac = night_bias_fraction(cfg, pl["lat"]) * np.exp(rng.normal(0.0, 0.3, n))
    offset = rng.normal(0.0, cfg.site_offset_sd, n)
    for i in range(n):
        rec = (years >= pl["first_year"][i]) & (years <= pl["last_year"][i])
        idx = np.flatnonzero(rec)
        keep = idx[~_gap_mask(rng, idx.size, cfg.site_gap_fraction)]
        q = rng.beta(6.0, 1.5, keep.size).astype(np.float32)
        noise = rng.standard_normal(keep.size) * cfg.obs_noise * (1.5 - q)
        obs = sim["NEE"][keep, i] - bias_frac[i] * sim["Reco"][keep, i] + offset[i] + noise
        nee[i, keep] = obs
        qc[i, keep] = q
    block = assemble({n: sim[n] for n in DAILY_DRIVERS}, {n: sim[n] for n in SEASONAL_DRIVERS},
                      {n: sim[n] for n in STATIC_DRIVERS}, day_of_year_index(time))  # (days, sites, 10)
    data = {name: block[:, :, k].T.copy() for k, name in enumerate(DRIVER_NAMES)}
    data["Tair"] = (data["Tair"] + rng.normal(0.0, cfg.tower_tair_noise, (n, nd))).astype(np.float32)
    data["WAI2"] = np.clip(data["WAI2"] * (1.0 + rng.normal(0.0, 0.05, (n, nd))), 0.0, None).astype(np.float32)
    ds = xr.Dataset(
        {
            "NEE": (("site", "time"), nee, {"units": NEE_UNITS, "long_name": "observed daily net ecosystem exchange "
                                             "(negative = uptake)"}),
            "NEE_QC": (("site", "time"), qc, {"units": "1", "long_name": "fraction of good half-hourly data in the day"}),
            **{k: (("site", "time"), v.astype(np.float32), {"units": DRIVER_UNITS[k], "long_name": f"{k} at the tower"})
               for k, v in data.items()},
            "lat": (("site",), pl["lat"], {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": (("site",), pl["lon"], {"units": "degrees_east", "standard_name": "longitude"}),
            "fold": (("site",), pl["fold"], {"long_name": "cross-validation fold (0-9)"}),
            "cell": (("site",), cells.astype(np.int32), {"long_name": "land-cell index of the tower's grid cell"}),
            "first_year": (("site",), pl["first_year"].astype(np.int16), {"long_name": "first year of the record"}),
            "last_year": (("site",), pl["last_year"].astype(np.int16), {"long_name": "last year of the record"}),
            "night_bias_fraction": (("site",), bias_frac.astype(np.float32),
                                    {"units": "1", "long_name": "twin: fraction of Reco missed by the tower"}),
        },
        coords={"site": ("site", pl["site"].astype(object), {"long_name": "tower id", "cf_role": "timeseries_id"}),
                "time": ("time", time, {"standard_name": "time", "long_name": "day", "axis": "T"})},
        attrs={"title": "fluxscale twin: eddy-covariance towers"},
    )
    return ds
