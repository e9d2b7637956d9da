"""The global regular lat/lon grids, cell areas, land fraction, land mask and regions.

Conventions (every store uses them):

* ``lat`` ascending, cell centres from ``-90 + r/2`` to ``90 - r/2``; ``lon`` from
  ``-180 + r/2`` to ``180 - r/2`` (r = resolution in degrees), ``degrees_north`` /
  ``degrees_east``.
* Cell areas on a sphere of radius :data:`EARTH_RADIUS_M` (the authalic radius of
  WGS84, so that the sphere has the ellipsoid's surface area).
* ``land_fraction`` comes from the GLOBE 1 km land mask (via the build-time package
  ``global-land-mask``), block-averaged to 0.5° and area-weighted to coarser grids.
* ``land`` = ``land_fraction >= 0.5`` and centre latitude ``>= -60°`` (61 787 cells at
  0.5°). Land cells are also *gathered* on a ``cell`` dimension in row-major
  (lat, lon) order: ``cell_ilat``/``cell_ilon`` index the grid; every (…, cell) store
  uses this order.
* ``region`` holds Table A1 ids 0–17 for every cell with land in it, ``-1`` elsewhere
  (CF flag variable: ``flag_values``/``flag_meanings``).
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

import dask.array
import numpy as np
import xarray as xr

from fluxscale.errors import StoreError
from fluxscale.dataset.regions import NO_REGION, REGION_ABBREVS, REGIONS

__all__ = [
    "EARTH_RADIUS_M",
    "BASE_RESOLUTION_DEG",
    "grid_centres",
    "cell_areas",
    "default_masks",
    "read_region_mask",
    "make_grid",
    "coarsen_grid",
    "gather_cells",
    "scatter_cells",
    "cell_land_area",
]

EARTH_RADIUS_M = 6_371_007.181
"""Radius of the sphere used for cell areas, m: the authalic (equal-area) radius of the
WGS84 ellipsoid. The globe's cells sum to 4·π·R² = 5.100656e14 m²."""

BASE_RESOLUTION_DEG = 0.5
"""Resolution of the shipped land-fraction and region masks."""

_MASK_FILE = "land_regions_0.5deg.npz"


def _factor(resolution_deg: float, base: float = BASE_RESOLUTION_DEG) -> int:
    f = resolution_deg / base
    n = int(round(f))
    if n < 1 or abs(f - n) > 1e-9 or (360 % n) or (720 % n):
        raise ValueError(
            f"resolution_deg={resolution_deg}: must be an integer multiple of {base}° that divides "
            f"the globe evenly (0.5, 1, 1.5, 2, 2.5, 3, 4, 5, …)"
        )
    return n


def grid_centres(resolution_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Cell-centre latitudes (ascending) and longitudes of the global grid, degrees."""
    nlat = int(round(180 / resolution_deg))
    nlon = int(round(360 / resolution_deg))
    if abs(nlat * resolution_deg - 180) > 1e-9:
        raise ValueError(f"resolution_deg={resolution_deg} does not divide 180°")
    lat = -90 + resolution_deg * (np.arange(nlat) + 0.5)
    lon = -180 + resolution_deg * (np.arange(nlon) + 0.5)
    return lat, lon


def _lat_lon_coords(lat: np.ndarray, lon: np.ndarray) -> dict[str, xr.DataArray]:
    return {
        "lat": xr.DataArray(lat, dims="lat", attrs={"units": "degrees_north", "standard_name": "latitude", "long_name": "latitude of cell centre", "axis": "Y"}),
        "lon": xr.DataArray(lon, dims="lon", attrs={"units": "degrees_east", "standard_name": "longitude", "long_name": "longitude of cell centre", "axis": "X"}),
    }


def _cell_areas_np(resolution_deg: float, radius: float) -> np.ndarray:
    lat, lon = grid_centres(resolution_deg)
    edges = np.deg2rad(np.linspace(-90.0, 90.0, lat.size + 1))
    band = radius**2 * np.deg2rad(resolution_deg) * np.diff(np.sin(edges))  # m², per cell of the band
    return np.repeat(band[:, None], lon.size, axis=1)


def cell_areas(resolution_deg: float, radius: float = EARTH_RADIUS_M) -> xr.DataArray:
    """Area of every cell of the global regular grid, on a sphere.

    ``A = R² · Δλ · (sin φ_north − sin φ_south)``, exact for a sphere; the cells sum to
    ``4πR²`` (to ~1e-15 relative in float64).

    Parameters
    ----------
    resolution_deg : float
        Grid spacing in degrees (must divide 180).
    radius : float
        Sphere radius in m; default :data:`EARTH_RADIUS_M`.

    Returns
    -------
    xarray.DataArray
        ``(lat, lon)`` float64, m².
    """
    lat, lon = grid_centres(resolution_deg)
    return xr.DataArray(
        _cell_areas_np(resolution_deg, radius),
        dims=("lat", "lon"),
        coords=_lat_lon_coords(lat, lon),
        name="cell_area",
        attrs={"units": "m2", "standard_name": "cell_area", "long_name": "area of grid cell on a sphere",
               "earth_radius_m": radius},
    )


@functools.lru_cache(maxsize=1)
def _base_masks() -> tuple[np.ndarray, np.ndarray, str]:
    ref = resources.files("fluxscale") / "data" / _MASK_FILE
    with resources.as_file(ref) as path, np.load(path, allow_pickle=False) as f:
        lf = f["land_fraction"].astype(np.float64)
        region = f["region"].astype(np.int8)
        source = str(f["source"]) if "source" in f else "unknown"
    return lf, region, source


def coarsen_masks(land_fraction: np.ndarray, region: np.ndarray, factor: int, areas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coarsen a land-fraction and region mask by an integer ``factor``.

    The coarse land fraction is the area-weighted mean of the sub-cells; the coarse
    region is the region with the largest land area among the sub-cells (``-1`` where
    no sub-cell has a region).
    """
    if factor == 1:
        return land_fraction.copy(), region.copy()
    ny, nx = land_fraction.shape
    sh = (ny // factor, factor, nx // factor, factor)
    a = areas.reshape(sh)
    land_area = (land_fraction * areas).reshape(sh)
    lf = land_area.sum(axis=(1, 3)) / a.sum(axis=(1, 3))
    best = np.full(lf.shape, -1.0)
    out = np.full(lf.shape, NO_REGION, dtype=np.int8)
    reg = region.reshape(sh)
    for r in REGIONS:
        area_r = np.where(reg == r.id, land_area, 0.0).sum(axis=(1, 3))
        take = (area_r > best) & (area_r > 0)
        out[take] = r.id
        best = np.where(take, area_r, best)
    return lf, out


def default_masks(resolution_deg: float) -> tuple[xr.DataArray, xr.DataArray]:
    """The shipped land fraction and region masks at ``resolution_deg``.

    Built from real data (GLOBE 1 km land mask; Natural Earth 10 m admin-0 outlines
    and ``fluxscale/data/country_regions.csv``), see ``tools/build_masks.py``.

    Returns
    -------
    land_fraction, region : xarray.DataArray
        ``(lat, lon)``: float64 in [0, 1], and int8 region ids (-1 = none).
    """
    lf, region, source = _base_masks()
    factor = _factor(resolution_deg)
    areas = _cell_areas_np(BASE_RESOLUTION_DEG, EARTH_RADIUS_M)
    lf_c, reg_c = coarsen_masks(lf, region, factor, areas)
    lat, lon = grid_centres(resolution_deg)
    coords = _lat_lon_coords(lat, lon)
    return (
        xr.DataArray(lf_c, dims=("lat", "lon"), coords=coords, name="land_fraction", attrs={"source": source}),
        xr.DataArray(reg_c, dims=("lat", "lon"), coords=coords, name="region", attrs={"source": source}),
    )


def read_region_mask(path: str | Path, resolution_deg: float) -> xr.DataArray:
    """Read a user's region-mask NetCDF onto the grid of ``resolution_deg``.

    Accepted layouts: an integer variable ``region`` (or the only 2-D integer
    variable) on ``(lat, lon)`` holding Table A1 ids 0–17 (anything else, or the
    file's ``_FillValue``, means no region); or a ``MASK`` variable
    ``(region, lat, lon)`` of 0/1 (or fractions) whose region axis follows Table A1
    order, each cell taking its largest entry. Latitude may be descending and
    longitude 0…360; both are normalised.

    Raises
    ------
    StoreError
        Naming the file and variable when the layout, the grid or the ids do not match.
    """
    path = Path(path)
    if not path.exists():
        raise StoreError(str(path), None, "region-mask file not found")
    try:
        ds = xr.open_dataset(path)
    except Exception as e:  # noqa: BLE001 - any reader failure becomes one clear message
        raise StoreError(str(path), None, f"cannot be read as NetCDF ({type(e).__name__}: {e})") from None
    with ds:
        lat_name = next((n for n in ("lat", "latitude", "y") if n in ds.dims), None)
        lon_name = next((n for n in ("lon", "longitude", "x") if n in ds.dims), None)
        if lat_name is None or lon_name is None:
            raise StoreError(str(path), None, f"needs lat and lon dimensions, found {tuple(ds.dims)}")
        ds = ds.rename({lat_name: "lat", lon_name: "lon"})
        ds = ds.assign_coords(lon=((ds.lon + 180) % 360) - 180).sortby(["lat", "lon"])
        lat, lon = grid_centres(resolution_deg)
        if ds.sizes["lat"] != lat.size or ds.sizes["lon"] != lon.size or not (
            np.allclose(ds.lat.values, lat, atol=1e-4) and np.allclose(ds.lon.values, lon, atol=1e-4)
        ):
            raise StoreError(
                str(path), None,
                f"grid is {ds.sizes['lat']}x{ds.sizes['lon']} (lat {float(ds.lat.min()):g}..{float(ds.lat.max()):g}), "
                f"expected the {resolution_deg}° global grid {lat.size}x{lon.size} with cell centres",
            )
        if "MASK" in ds:
            m = ds["MASK"]
            rdim = next((d for d in m.dims if d not in ("lat", "lon")), None)
            if m.ndim != 3 or rdim is None or m.sizes[rdim] != len(REGIONS):
                raise StoreError(str(path), "MASK", f"expected (region={len(REGIONS)}, lat, lon), found {dict(m.sizes)}")
            vals = np.nan_to_num(m.transpose(rdim, "lat", "lon").values.astype(np.float64))
            ids = np.where(vals.max(axis=0) > 0, vals.argmax(axis=0), NO_REGION).astype(np.int8)
            name = "MASK"
        else:
            cands = [n for n, v in ds.data_vars.items() if v.dims == ("lat", "lon")]
            name = "region" if "region" in ds else (cands[0] if len(cands) == 1 else None)
            if name is None:
                raise StoreError(str(path), None, f"no 'region' or 'MASK' variable (found {list(ds.data_vars)})")
            raw = ds[name].transpose("lat", "lon").values
            if np.issubdtype(raw.dtype, np.floating):
                finite = np.isfinite(raw)
                if np.any(finite & (raw != np.round(raw))):
                    raise StoreError(str(path), name, "region ids must be integers")
                raw = np.where(finite, raw, NO_REGION)
            raw = raw.astype(np.int64)
            bad = (raw >= len(REGIONS)) | (raw < NO_REGION)
            if bad.any():
                raise StoreError(str(path), name, f"unknown region ids {sorted(set(raw[bad].tolist()))[:10]} (valid: 0–17, -1)")
            ids = raw.astype(np.int8)
    return xr.DataArray(ids, dims=("lat", "lon"), coords=_lat_lon_coords(lat, lon), name="region",
                        attrs={"source": str(path)})


def make_grid(
    resolution_deg: float,
    region_mask: str | Path | None = None,
    min_land_fraction: float = 0.5,
    min_lat: float = -60.0,
) -> xr.Dataset:
    """The grid Dataset written to ``grid.zarr``.

    Parameters
    ----------
    resolution_deg : float
        0.5 or an integer multiple of it.
    region_mask : path, optional
        A user's region-mask NetCDF (see :func:`read_region_mask`); default: the
        shipped Natural Earth–based mask.
    min_land_fraction, min_lat : float
        Land mask thresholds (land fraction, latitude of the cell centre in degrees).

    Returns
    -------
    xarray.Dataset
        ``cell_area`` (lat, lon) m²; ``land_fraction`` (lat, lon) 1; ``land`` (lat, lon)
        bool; ``region`` (lat, lon) int8; the region table on ``region_id``
        (``region_abbrev``, ``region_name``); the gathered land cells on ``cell``
        (``cell_ilat``, ``cell_ilon``, coords ``cell_lat``, ``cell_lon``). In memory.
    """
    lf, region = default_masks(resolution_deg)
    region_source = region.attrs.get("source", "")
    if region_mask is not None:
        region = read_region_mask(region_mask, resolution_deg)
        region_source = str(region_mask)
    return _build_grid(resolution_deg, lf.values, region.values, min_land_fraction, min_lat,
                       mask_source=lf.attrs.get("source", ""), region_source=region_source)


def _build_grid(resolution_deg: float, lf: np.ndarray, region: np.ndarray, min_land_fraction: float,
                min_lat: float, mask_source: str, region_source: str) -> xr.Dataset:
    area = cell_areas(resolution_deg)
    lat2d = np.broadcast_to(area.lat.values[:, None], area.shape)
    land = (lf >= min_land_fraction) & (lat2d >= min_lat)
    # Every land cell needs a region; a mask that leaves land uncovered is refused.
    if np.any(land & (region < 0)):
        n = int(np.sum(land & (region < 0)))
        raise StoreError(region_source or _MASK_FILE, "region", f"{n} land cells have no region")
    ilat, ilon = np.nonzero(land)
    return xr.Dataset(
        {
            "cell_area": area.variable,
            "land_fraction": (("lat", "lon"), lf.astype(np.float32),
                              {"units": "1", "standard_name": "land_area_fraction",
                               "long_name": "fraction of cell that is land (GLOBE 1 km)"}),
            "land": (("lat", "lon"), land,
                     {"long_name": f"land mask: land_fraction >= {min_land_fraction} and lat >= {min_lat}"}),
            "region": (("lat", "lon"), np.where(lf > 0, region, NO_REGION).astype(np.int8),
                       {"long_name": "region id of Table A1 (-1 = none)",
                        "flag_values": np.arange(len(REGIONS), dtype=np.int8),
                        "flag_meanings": " ".join(REGION_ABBREVS)}),
            "region_abbrev": (("region_id",), np.array(REGION_ABBREVS, dtype=object),
                              {"long_name": "region abbreviation (Table A1)"}),
            "region_name": (("region_id",), np.array([r.name for r in REGIONS], dtype=object),
                            {"long_name": "region name (Table A1)"}),
            "cell_ilat": (("cell",), ilat.astype(np.int32), {"long_name": "lat index of land cell"}),
            "cell_ilon": (("cell",), ilon.astype(np.int32), {"long_name": "lon index of land cell"}),
        },
        coords={
            **_lat_lon_coords(area.lat.values, area.lon.values),
            "region_id": ("region_id", np.arange(len(REGIONS), dtype=np.int8)),
            "cell": ("cell", np.arange(ilat.size, dtype=np.int32),
                     {"long_name": "land cell index (row-major lat, lon)"}),
            "cell_lat": ("cell", area.lat.values[ilat],
                         {"units": "degrees_north", "long_name": "latitude of land cell centre"}),
            "cell_lon": ("cell", area.lon.values[ilon],
                         {"units": "degrees_east", "long_name": "longitude of land cell centre"}),
        },
        attrs={
            "title": "fluxscale grid",
            "resolution_deg": float(resolution_deg),
            "earth_radius_m": EARTH_RADIUS_M,
            "min_land_fraction": float(min_land_fraction),
            "min_lat": float(min_lat),
            "mask_source": mask_source,
            "region_source": region_source,
            "Conventions": "CF-1.10",
        },
    )


def coarsen_grid(grid: xr.Dataset, factor: int) -> xr.Dataset:
    """The grid of ``grid`` coarsened by an integer factor (for the inversions' grid).

    Land fraction: area-weighted mean; region: the sub-cells' region with the most
    land area; the land mask is re-derived with the same thresholds. Cell areas are
    recomputed exactly.
    """
    res = float(grid.attrs["resolution_deg"]) * factor
    lf, reg = coarsen_masks(grid.land_fraction.values.astype(np.float64), grid.region.values, factor,
                            grid.cell_area.values)
    return _build_grid(res, lf, reg, grid.attrs["min_land_fraction"], grid.attrs["min_lat"],
                       mask_source=grid.attrs.get("mask_source", ""),
                       region_source=grid.attrs.get("region_source", ""))


def _take_cells(block: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return block[..., idx[0], idx[1]]


def gather_cells(field: xr.DataArray, grid: xr.Dataset) -> xr.DataArray:
    """Pick the land cells of a gridded ``(…, lat, lon)`` field: returns ``(…, cell)``.

    Lazy for dask-backed input; chunks along the leading dims are kept and ``cell`` is
    one chunk. When ``lat`` and ``lon`` are one chunk each (a whole grid per block),
    one blockwise task per block takes the cells, and the cell index is one graph key
    shared by every task: vectorised ``isel`` (dask ``vindex``) copies the index into
    every task, ~1 MB each at 0.5°, which made a 17-year daily driver's graph ~70 MB.
    """
    ilat, ilon = grid.cell_ilat.values, grid.cell_ilon.values
    coords = dict(cell=grid.cell.values, cell_lat=("cell", grid.cell_lat.values), cell_lon=("cell", grid.cell_lon.values))
    data = field.data
    if (isinstance(data, dask.array.Array) and field.dims[-2:] == ("lat", "lon")
            and len(data.chunks[-1]) == 1 and len(data.chunks[-2]) == 1):
        lead = tuple(f"d{i}" for i in range(field.ndim - 2))
        idx = dask.array.from_array(np.stack([ilat, ilon]).astype(np.intp), chunks=-1)
        out = dask.array.blockwise(_take_cells, lead + ("cell",), data, lead + ("lat", "lon"), idx, ("two", "cell"),
                                   concatenate=True, dtype=data.dtype)
        keep = {k: v for k, v in field.coords.items() if not set(v.dims) & {"lat", "lon"}}
        return xr.DataArray(out, dims=(*field.dims[:-2], "cell"), coords=keep, name=field.name,
                            attrs=field.attrs).assign_coords(coords)
    return field.isel(lat=xr.DataArray(ilat, dims="cell"), lon=xr.DataArray(ilon, dims="cell")).assign_coords(
        coords).drop_vars(["lat", "lon"], errors="ignore")


def _scatter(values: np.ndarray, ilat: np.ndarray, ilon: np.ndarray, nlat: int, nlon: int) -> np.ndarray:
    out = np.full(values.shape[:-1] + (nlat, nlon), np.nan, dtype=values.dtype if values.dtype.kind == "f" else np.float64)
    out[..., ilat, ilon] = values
    return out


def scatter_cells(values: xr.DataArray, grid: xr.Dataset) -> xr.DataArray:
    """Put a ``(…, cell)`` field back on the ``(…, lat, lon)`` grid, NaN off land.

    Dask input is mapped blockwise over the leading dims (the ``cell`` dim is
    brought into one chunk); output chunks: input's leading chunks × full (lat, lon).
    """
    ilat, ilon = grid.cell_ilat.values, grid.cell_ilon.values
    nlat, nlon = grid.sizes["lat"], grid.sizes["lon"]
    if values.chunks is not None:
        values = values.chunk({"cell": -1})
    out = xr.apply_ufunc(
        _scatter, values, input_core_dims=[["cell"]], output_core_dims=[["lat", "lon"]],
        kwargs=dict(ilat=ilat, ilon=ilon, nlat=nlat, nlon=nlon), dask="parallelized",
        output_dtypes=[values.dtype if values.dtype.kind == "f" else np.float64],
        dask_gufunc_kwargs={"output_sizes": {"lat": nlat, "lon": nlon}},
    )
    drop = [c for c in ("cell_lat", "cell_lon") if c in out.coords]
    return out.drop_vars(drop).assign_coords(lat=grid.lat, lon=grid.lon)


def cell_land_area(grid: xr.Dataset) -> np.ndarray:
    """Land area of each gathered land cell, m² (float64): ``cell_area × land_fraction``."""
    il, jl = grid.cell_ilat.values, grid.cell_ilon.values
    return grid.cell_area.values[il, jl] * grid.land_fraction.values[il, jl].astype(np.float64)
