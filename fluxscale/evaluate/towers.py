"""Plant functional types and single towers (Figs. 9, B3, B4, C2): class labels, the PFT
composition of the bridges' pixels, scores of daily NEE at towers and the choice of Fig. 9's
tropical towers. Plain numpy and pandas on in-memory arrays."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from fluxscale.errors import FluxscaleError

__all__ = ["TROPICS_LAT", "pft_labels", "pft_composition", "site_scores", "tropical_sites"]

TROPICS_LAT = 23.5
"""Latitude bound of the tropical band (°, both hemispheres) for the tropical / extratropical
totals of the consistency checks."""


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
