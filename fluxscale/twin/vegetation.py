"""Twin kernels: a plausible map of plant functional types (IGBP classes) from the twin's
own climate, and the towers' IGBP classes (numpy only, no I/O). The map is written into
``grid.zarr`` (``pft``, ``pft_class``, ``pft_name``; :data:`fluxscale.dataset.schema.NO_PFT` off land).

Every cell's class is a pure function of the seed and of its (lat, lon), like the rest of
the twin: its mean air temperature ``t`` (°C), seasonal half-amplitude ``amp`` (°C) and
wetness ``w`` (0–1) from :func:`fluxscale.twin.climate.cell_climate`, and two smooth seeded
fields (a cropland-suitability field and a wetland field). The rules, in order (the first
that matches wins):

======================================  ===========================================
condition                               class
======================================  ===========================================
w < 0.10                                BSV (barren: deserts, polar deserts)
w < 0.20                                OSH (open shrubland: semi-deserts)
t < −10                                 OSH (tundra)
w ≥ 0.80, wetland field in its top 3 %  WET (sparse permanent wetlands)
10° ≤ |lat| ≤ 55°, t ≥ 4, w ≥ 0.30,     CRO; CVM just below the cropland threshold
cropland field in its top 18 %          (the mosaic around cropland)
t ≥ 20                                  EBF (w ≥ 0.60), WSA (≥ 0.45), SAV (≥ 0.30), GRA
8 ≤ t < 20                              DBF (w ≥ 0.55); w ≥ 0.45: MF (t < 14), WSA;
                                        else GRA (t < 14), CSH (the dry subtropics)
0 ≤ t < 8                               MF (w ≥ 0.45, t ≥ 4), ENF (w ≥ 0.45), GRA
−10 ≤ t < 0                             DNF (amp ≥ 18: the most continental), ENF
                                        (w ≥ 0.30), OSH
======================================  ===========================================

So the wet tropics are evergreen broadleaf forest, the dry tropics savanna and grassland,
the temperate zone deciduous and mixed forest with cropland, the boreal zone needleleaf
forest, the deserts barren or shrubland. Urban, snow/ice and water are never the majority
class of a twin cell (the land mask has no Antarctica; Greenland-like cells are polar
desert or tundra).

A tower's ``igbp`` is its cell's class, except with probability :data:`TOWER_PFT_SWAP`,
a neighbouring class (:data:`NEIGHBOURS`): a tower's footprint is not its 0.5° cell.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from fluxscale.dataset.schema import IGBP_CLASSES, NO_PFT, pft_dataset
from fluxscale.twin.climate import cell_climate, smooth_field

S_FIELD_CROP, S_FIELD_WETLAND, S_TOWER_PFT = 50, 51, 52
TOWER_PFT_SWAP = 0.1
"""Probability that a twin tower's IGBP class is a neighbour of its cell's majority class."""

ID = {abbrev: i for i, abbrev, _ in IGBP_CLASSES}
NEIGHBOURS: dict[str, tuple[str, ...]] = {
    "ENF": ("MF", "DNF"), "EBF": ("WSA",), "DNF": ("ENF",), "DBF": ("MF", "CRO"), "MF": ("DBF", "ENF"),
    "CSH": ("OSH", "GRA"), "OSH": ("GRA", "CSH"), "WSA": ("SAV", "EBF"), "SAV": ("WSA", "GRA"),
    "GRA": ("SAV", "CRO", "OSH"), "WET": ("GRA",), "CRO": ("GRA", "CVM"), "CVM": ("CRO", "DBF"),
    "BSV": ("OSH",),
}
"""The classes a tower of each class may be given instead (the footprint's own class)."""

CROP_QUANTILE, MOSAIC_QUANTILE, WETLAND_QUANTILE = 0.82, 0.74, 0.97
"""Unit-normal quantiles of the smooth fields above which a cell is cropland, mosaic, wetland."""


def _normal_quantile(q: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(q))


def classify_pft(seed: int, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """The majority IGBP class id (1–17, MODIS LC_Type1) of cells at ``lat``, ``lon``
    (degrees, (cell,)) by the rules of the module docstring; int8 (cell,)."""
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    c = cell_climate(seed, lat, lon)
    t, w, amp = c["t_mean"], c["wet"], c["t_amp"]
    crop = smooth_field(seed, S_FIELD_CROP, lat, lon, 12.0)
    wetland = smooth_field(seed, S_FIELD_WETLAND, lat, lon, 4.0)
    absl = np.abs(lat)
    cropland_zone = (absl >= 10) & (absl <= 55) & (t >= 4) & (w >= 0.30)
    rules = [
        (w < 0.10, "BSV"),
        (w < 0.20, "OSH"),
        (t < -10, "OSH"),
        ((w >= 0.80) & (wetland > _normal_quantile(WETLAND_QUANTILE)), "WET"),
        (cropland_zone & (crop > _normal_quantile(CROP_QUANTILE)), "CRO"),
        (cropland_zone & (crop > _normal_quantile(MOSAIC_QUANTILE)), "CVM"),
        ((t >= 20) & (w >= 0.60), "EBF"),
        ((t >= 20) & (w >= 0.45), "WSA"),
        ((t >= 20) & (w >= 0.30), "SAV"),
        (t >= 20, "GRA"),
        ((t >= 8) & (w >= 0.55), "DBF"),
        ((t >= 8) & (w >= 0.45) & (t < 14), "MF"),
        ((t >= 8) & (w >= 0.45), "WSA"),
        ((t >= 8) & (t < 14), "GRA"),
        (t >= 8, "CSH"),
        ((t >= 4) & (w >= 0.45), "MF"),
        ((t >= 0) & (w >= 0.45), "ENF"),
        (t >= 0, "GRA"),
        (amp >= 18, "DNF"),
        (w >= 0.30, "ENF"),
    ]
    out = np.full(lat.shape, ID["OSH"], dtype=np.int8)  # what no rule matches: cold and dry
    done = np.zeros(lat.shape, dtype=bool)
    for cond, name in rules:
        hit = cond & ~done
        out[hit] = ID[name]
        done |= hit
    return out


def tower_igbp(seed: int, cell_pft: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """The IGBP class abbreviation of each tower, (site,) object strings: the class of its
    land cell ``cell_pft[cells]``, or with probability :data:`TOWER_PFT_SWAP` one of
    :data:`NEIGHBOURS` (drawn from the seed's own stream: the towers' other draws do not move)."""
    rng = np.random.default_rng([seed, S_TOWER_PFT])
    name = {i: a for i, a, _ in IGBP_CLASSES}
    own = [name[int(k)] for k in np.asarray(cell_pft)[np.asarray(cells, dtype=np.int64)]]
    swap = rng.random(len(own)) < TOWER_PFT_SWAP
    pick = rng.random(len(own))
    out = []
    for a, s, u in zip(own, swap, pick):
        nb = NEIGHBOURS.get(a, ())
        out.append(nb[int(u * len(nb))] if s and nb else a)
    return np.array(out, dtype=object)


def pft_variables(seed: int, grid: xr.Dataset) -> xr.Dataset:
    """The twin's PFT variables of ``grid.zarr``: ``pft`` (lat, lon) int8 class ids
    (:data:`fluxscale.dataset.schema.NO_PFT` off the land cells) and the class table on ``pft_class``
    (``pft_name``, ``pft_long_name``); assign them to the grid."""
    il, jl = grid.cell_ilat.values, grid.cell_ilon.values
    ids = classify_pft(seed, grid.cell_lat.values, grid.cell_lon.values)
    pft = np.full((grid.sizes["lat"], grid.sizes["lon"]), NO_PFT, dtype=np.int8)
    pft[il, jl] = ids
    return pft_dataset(pft, grid, "fluxscale.twin.vegetation.classify_pft (the twin's climate)")
