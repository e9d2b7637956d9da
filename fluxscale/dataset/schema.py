"""The schema of every fluxscale store, in code, and its checks.

Each store is a Zarr v3 group with attribute ``fluxscale_store`` = its name. A
:class:`VarSpec` gives a variable's dims, dtype kind, units, valid range and whether
NaN is allowed. Checks come in two depths:

* **structure** (every open, reads no data variable of a large store): presence,
  dims, dtype, units, store-specific rules on coordinates and the small metadata
  variables (``eager=True``: grid masks, region table, site table, GCB);
* **deep** (:func:`fluxscale.dataset.stores.validate_store` with ``deep=True``, e.g. in
  ``fluxscale run`` and ``fluxscale validate``): NaN and range of every large
  variable, computed chunk by chunk with Dask in one pass.

Every failure raises :class:`fluxscale.errors.StoreError` naming the store, the variable
and the problem.
"""

from __future__ import annotations

from dataclasses import dataclass


__all__ = ["DRIVER_NAMES", "DAILY_DRIVERS", "SEASONAL_DRIVERS", "STATIC_DRIVERS", "DRIVER_UNITS", "VarSpec", "StoreSchema", "SCHEMAS", "STORE_NAMES", "NEE_UNITS", "normalise_units", "var_attrs", "time_coord",
           "IGBP_CLASSES", "NO_PFT"]

# The 10 drivers of Table A2 (a schema fact: drivers.zarr holds them; read by
# fluxscale.dataset.drivers, the config and the twin).
DRIVER_NAMES: tuple[str, ...] = (
    "WAI2", "MSC_EVIRpot", "MSC_FparLST", "MIN_MSC_NDWI", "AMP_Band4",
    "MSC_LST_Night", "Rg_VIMSC", "AMP_MSC_NDVI", "Tair", "AMP_MSC_WAI",
)
"""The drivers in Table A2 order: the feature order of every driver block."""
DAILY_DRIVERS = ("Tair", "WAI2")
SEASONAL_DRIVERS = ("MSC_EVIRpot", "MSC_FparLST", "MSC_LST_Night", "Rg_VIMSC")
STATIC_DRIVERS = ("MIN_MSC_NDWI", "AMP_Band4", "AMP_MSC_NDVI", "AMP_MSC_WAI")
DRIVER_UNITS = {
    "Tair": "degC", "WAI2": "mm", "MSC_EVIRpot": "MJ m-2 d-1", "MSC_FparLST": "K",
    "MSC_LST_Night": "K", "Rg_VIMSC": "MJ m-2 d-1", "MIN_MSC_NDWI": "1", "AMP_Band4": "1",
    "AMP_MSC_NDVI": "1", "AMP_MSC_WAI": "mm",
}

NEE_UNITS = "gC m-2 d-1"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class VarSpec:
    """What one variable (or coordinate) of a store must be.

    ``kind`` is a set of numpy dtype kinds (``"f"`` float, ``"iu"`` integer, ``"b"`` bool,
    ``"M"`` datetime, ``"OUST"`` string). ``valid_range`` is inclusive. ``eager``
    variables are small and checked on every open; the others on a deep validation.
    """

    dims: tuple[str, ...]
    kind: str
    units: str | None = None
    valid_range: tuple[float, float] | None = None
    allow_nan: bool = False
    eager: bool = True
    long_name: str = ""
    standard_name: str | None = None
    optional: bool = False
    """May be absent (e.g. the truth's integrals exist only for a twin)."""


@dataclass(frozen=True)
class StoreSchema:
    name: str
    variables: dict[str, VarSpec]
    description: str = ""


_LAT = VarSpec(("lat",), "f", "degrees_north", (-90, 90), standard_name="latitude")
_LON = VarSpec(("lon",), "f", "degrees_east", (-180, 180), standard_name="longitude")
_STR = "OUST"

_DRIVER_RANGES = {
    "Tair": (-80.0, 60.0), "WAI2": (0.0, 2000.0), "MSC_EVIRpot": (0.0, 60.0), "MSC_FparLST": (0.0, 400.0),
    "MSC_LST_Night": (170.0, 350.0), "Rg_VIMSC": (0.0, 60.0), "MIN_MSC_NDWI": (-1.0, 1.0), "AMP_Band4": (0.0, 1.0),
    "AMP_MSC_NDVI": (0.0, 2.0), "AMP_MSC_WAI": (0.0, 2000.0),
}
_DRIVER_LONG = {
    "Tair": "air temperature", "WAI2": "water availability index",
    "MSC_EVIRpot": "mean seasonal cycle of EVI x Rg", "MSC_FparLST": "mean seasonal cycle of fAPAR x LST_day",
    "MSC_LST_Night": "mean seasonal cycle of night-time land surface temperature",
    "Rg_VIMSC": "mean seasonal cycle of NDVI x Rpot", "MIN_MSC_NDWI": "minimum of the mean seasonal cycle of NDWI",
    "AMP_Band4": "amplitude of MODIS band 4 reflectance", "AMP_MSC_NDVI": "amplitude of the mean seasonal cycle of NDVI",
    "AMP_MSC_WAI": "amplitude of the mean seasonal cycle of WAI",
}


def _driver_dims(name: str, daily: tuple[str, ...]) -> tuple[str, ...]:
    if name in DAILY_DRIVERS:
        return daily
    if name in SEASONAL_DRIVERS:
        return ("doy", "cell")
    assert name in STATIC_DRIVERS
    return ("cell",)


def _drivers() -> dict[str, VarSpec]:
    v = {
        "time": VarSpec(("time",), "M"),
        "doy": VarSpec(("doy",), "iu", None, (1, 366)),
        "cell": VarSpec(("cell",), "iu", None, (0, 10**7)),
        "cell_lat": VarSpec(("cell",), "f", "degrees_north", (-90, 90)),
        "cell_lon": VarSpec(("cell",), "f", "degrees_east", (-180, 180)),
    }
    for n in DRIVER_NAMES:
        v[n] = VarSpec(_driver_dims(n, ("time", "cell")), "f", DRIVER_UNITS[n], _DRIVER_RANGES[n],
                       eager=False, long_name=_DRIVER_LONG[n],
                       standard_name="air_temperature" if n == "Tair" else None)
    return v


def _sites() -> dict[str, VarSpec]:
    v = {
        "site": VarSpec(("site",), _STR),
        "time": VarSpec(("time",), "M"),
        "lat": VarSpec(("site",), "f", "degrees_north", (-90, 90), standard_name="latitude"),
        "lon": VarSpec(("site",), "f", "degrees_east", (-180, 180), standard_name="longitude"),
        "fold": VarSpec(("site",), "iu", None, (0, 9)),
        "cell": VarSpec(("site",), "iu", None, (0, 10**7)),
        "NEE": VarSpec(("site", "time"), "f", NEE_UNITS, (-40, 40), allow_nan=True, eager=False,
                       long_name="observed daily net ecosystem exchange (negative = uptake)"),
        "NEE_QC": VarSpec(("site", "time"), "f", "1", (0, 1), allow_nan=True, eager=False,
                          long_name="fraction of good half-hourly data in the day"),
        "igbp": VarSpec(("site",), _STR, optional=True, long_name="IGBP vegetation class of the tower"),
    }
    for n in DRIVER_NAMES:
        v[n] = VarSpec(("site", "time"), "f", DRIVER_UNITS[n], _DRIVER_RANGES[n], eager=False,
                       long_name=_DRIVER_LONG[n] + " at the tower")
    return v


IGBP_CLASSES: tuple[tuple[int, str, str], ...] = (
    (1, "ENF", "evergreen needleleaf forest"), (2, "EBF", "evergreen broadleaf forest"),
    (3, "DNF", "deciduous needleleaf forest"), (4, "DBF", "deciduous broadleaf forest"), (5, "MF", "mixed forest"),
    (6, "CSH", "closed shrubland"), (7, "OSH", "open shrubland"), (8, "WSA", "woody savanna"), (9, "SAV", "savanna"),
    (10, "GRA", "grassland"), (11, "WET", "permanent wetland"), (12, "CRO", "cropland"), (13, "URB", "urban and built-up"),
    (14, "CVM", "cropland/natural vegetation mosaic"), (15, "SNO", "permanent snow and ice"), (16, "BSV", "barren"),
    (17, "WAT", "water bodies"),
)
"""The 17 IGBP classes as ``(id, abbreviation, name)``, ids as in MODIS MCD12Q1 ``LC_Type1``
(Friedl et al. 2010; the paper's PFTs): the class ids of ``grid.zarr``'s ``pft`` and the towers' ``igbp``."""
NO_PFT = -1
"""``pft`` of a cell that is not a land cell of the grid, or a land cell with no class in the source.

The PFT map lives in ``grid.zarr`` (``pft`` (lat, lon) and the class table on ``pft_class``),
beside the region map it resembles: static, per cell of the model grid, rewritten whenever
the grid is (so never left over from another dataset), and a directory without it (an old
one, or an ingest without a ``pft`` file) stays valid: the figures that need it say so."""

_GRIDDED_MONTHLY = ("time", "lat", "lon")
_PGC_MONTH = "PgC month-1"

SCHEMAS: dict[str, StoreSchema] = {
    "grid": StoreSchema("grid", {
        "lat": _LAT, "lon": _LON,
        "cell_area": VarSpec(("lat", "lon"), "f", "m2", (0.0, 2e11), standard_name="cell_area"),
        "land_fraction": VarSpec(("lat", "lon"), "f", "1", (0.0, 1.0), standard_name="land_area_fraction"),
        "land": VarSpec(("lat", "lon"), "b"),
        "region": VarSpec(("lat", "lon"), "iu", None, (-1, 17)),
        "region_id": VarSpec(("region_id",), "iu", None, (0, 17)),
        "region_abbrev": VarSpec(("region_id",), _STR),
        "region_name": VarSpec(("region_id",), _STR),
        "cell": VarSpec(("cell",), "iu", None, (0, 10**7)),
        "cell_ilat": VarSpec(("cell",), "iu", None, (0, 10**5)),
        "cell_ilon": VarSpec(("cell",), "iu", None, (0, 10**5)),
        "cell_lat": VarSpec(("cell",), "f", "degrees_north", (-90, 90)),
        "cell_lon": VarSpec(("cell",), "f", "degrees_east", (-180, 180)),
        # plant functional types (optional: the twin, or ingest with a ``pft`` file; Figs. B3, B4, C2)
        "pft": VarSpec(("lat", "lon"), "iu", None, (NO_PFT, 17), optional=True,
                       long_name="majority IGBP class of the cell (-1: not a land cell, or no class)"),
        "pft_class": VarSpec(("pft_class",), "iu", None, (1, 17), optional=True,
                             long_name="IGBP class id (MODIS LC_Type1)"),
        "pft_name": VarSpec(("pft_class",), _STR, optional=True, long_name="IGBP class abbreviation"),
        "pft_long_name": VarSpec(("pft_class",), _STR, optional=True, long_name="IGBP class name"),
    }, "global grid, land mask, regions, plant functional types (optional) and the gathered land cells"),
    "drivers": StoreSchema("drivers", _drivers(), "the 10 drivers of Table A2 on land cells"),
    "sites": StoreSchema("sites", _sites(), "eddy-covariance towers: NEE with QC and the drivers at the tower"),
    "inversions": StoreSchema("inversions", {
        "system": VarSpec(("system",), _STR), "time": VarSpec(("time",), "M"), "lat": _LAT, "lon": _LON,
        "land_flux": VarSpec(("system", *_GRIDDED_MONTHLY), "f", NEE_UNITS, (-60, 60), allow_nan=True, eager=False,
                             long_name="monthly mean land-atmosphere CO2 flux of each inversion, fire included "
                                       "(negative = uptake)"),
    }, "atmospheric inversions, monthly, before the fire adjustment"),
    "fire": StoreSchema("fire", {
        "time": VarSpec(("time",), "M"), "lat": _LAT, "lon": _LON,
        "co2fire": VarSpec(_GRIDDED_MONTHLY, "f", NEE_UNITS, (0, 200), allow_nan=True, eager=False,
                           long_name="monthly mean fire CO2 emission (GFAS role, positive = to atmosphere)"),
    }, "fire CO2 emissions on the inversions' grid"),
    "prior": StoreSchema("prior", {
        "time": VarSpec(("time",), "M"), "lat": _LAT, "lon": _LON,
        "NEE": VarSpec(_GRIDDED_MONTHLY, "f", NEE_UNITS, (-40, 40), allow_nan=True, eager=False,
                       long_name="prior monthly mean NEE (FLUXCOM RS+METEO role, negative = uptake)"),
    }, "prior NEE (FLUXCOM role) on the model grid"),
    "gcb": StoreSchema("gcb", {
        "year": VarSpec(("year",), "iu", None, (1900, 2200)),
        "NEE": VarSpec(("year",), "f", "PgC yr-1", (-30, 30),
                       long_name="global annual NEE from the GCB residual land sink (= -S_LAND, negative = uptake)"),
        "NEE_sigma": VarSpec(("year",), "f", "PgC yr-1", (0, 20), long_name="1-sigma uncertainty of NEE"),
    }, "Global Carbon Budget residual land sink"),
    "truth": StoreSchema("truth", {
        "time": VarSpec(("time",), "M"), "month": VarSpec(("month",), "M"), "year": VarSpec(("year",), "iu"),
        "cell": VarSpec(("cell",), "iu", None, (0, 10**7)),
        "cell_lat": VarSpec(("cell",), "f", "degrees_north", (-90, 90)),
        "cell_lon": VarSpec(("cell",), "f", "degrees_east", (-180, 180)),
        "NEE": VarSpec(("time", "cell"), "f", NEE_UNITS, (-60, 60), eager=False, long_name="true daily NEE"),
        "NEE_monthly": VarSpec(("month", "cell"), "f", NEE_UNITS, (-60, 60), eager=False, long_name="true monthly mean NEE"),
        "GPP_monthly": VarSpec(("month", "cell"), "f", NEE_UNITS, (0, 80), eager=False, long_name="true monthly mean GPP"),
        "Reco_monthly": VarSpec(("month", "cell"), "f", NEE_UNITS, (0, 80), eager=False,
                                long_name="true monthly mean ecosystem respiration"),
        "NEE_global_annual": VarSpec(("year",), "f", "PgC yr-1", (-60, 60), long_name="true global annual NEE"),
    }, "the twin's true fluxes on land cells"),
    "integrals": StoreSchema("integrals", {
        "region": VarSpec(("region",), _STR), "time": VarSpec(("time",), "M"), "system": VarSpec(("system",), _STR),
        "prior": VarSpec(("region", "time"), "f", _PGC_MONTH, (-100, 100), long_name="regional integral of the prior"),
        "inversions": VarSpec(("system", "region", "time"), "f", _PGC_MONTH, (-100, 100),
                              long_name="regional integral of each inversion minus fire"),
        "fire": VarSpec(("region", "time"), "f", _PGC_MONTH, (0, 100), long_name="regional integral of fire"),
        "truth": VarSpec(("region", "time"), "f", _PGC_MONTH, (-100, 100), optional=True,
                         long_name="regional integral of the twin's truth"),
        "land_area": VarSpec(("region",), "f", "m2", (0, 2e14)),
        "land_area_inversions": VarSpec(("region",), "f", "m2", (0, 2e14)),
    }, "regional monthly integrals (PgC per month) of the prior, the fire-adjusted inversions, fire and truth"),
    "bridges": StoreSchema("bridges", {
        "region": VarSpec(("region",), _STR), "cell": VarSpec(("cell",), "iu", None, (0, 10**7)),
        "bias": VarSpec(("region",), "f", "PgC month-1", allow_nan=True),
        "alpha": VarSpec(("region",), "f", None, (0, 1e6), allow_nan=True),
        "r2_train": VarSpec(("region",), "f", "1", (-1e6, 1), allow_nan=True),
        "r2_cv": VarSpec(("region",), "f", "1", (-1e6, 1), allow_nan=True),
        "n_pixels": VarSpec(("region",), "iu", None, (0, 10**6)),
        "pixel_region": VarSpec(("pixel",), "iu", None, (0, 17)),
        "pixel_cell": VarSpec(("pixel",), "iu", None, (0, 10**7)),
        "weight": VarSpec(("pixel",), "f", "PgC month-1 (gC m-2 d-1)-1"),
        "cluster": VarSpec(("cell",), "iu", None, (-1, 10**4)),
        "inclusion_count": VarSpec(("cell",), "iu", None, (0, 10**9)),
        "candidate_count": VarSpec(("cell",), "iu", None, (0, 10**9)),
    }, "Lasso bridge models per region, their contributing pixels, clusters and inclusion counts"),
    "nee": StoreSchema("nee", {
        "ensemble": VarSpec(("ensemble",), _STR), "member": VarSpec(("member",), _STR),
        "member_ensemble": VarSpec(("member",), _STR), "time": VarSpec(("time",), "M"),
        "month": VarSpec(("month",), "M"), "lat": _LAT, "lon": _LON,
        "cell_area": VarSpec(("lat", "lon"), "f", "m2", (0, 1e11)),
        "land": VarSpec(("lat", "lon"), "b"),
        "NEE": VarSpec(("ensemble", "time", "lat", "lon"), "f", NEE_UNITS, (-200, 200), allow_nan=True, eager=False,
                       long_name="daily NEE, mean over the ensemble's members (negative = uptake)"),
        "NEE_std": VarSpec(("ensemble", "time", "lat", "lon"), "f", NEE_UNITS, (0, 200), allow_nan=True, eager=False,
                           long_name="daily NEE, standard deviation over the ensemble's members"),
        "NEE_monthly": VarSpec(("ensemble", "month", "lat", "lon"), "f", NEE_UNITS, (-200, 200), allow_nan=True,
                               eager=False, long_name="monthly mean NEE, mean over the ensemble's members"),
        "NEE_monthly_std": VarSpec(("ensemble", "month", "lat", "lon"), "f", NEE_UNITS, (0, 200), allow_nan=True,
                                   eager=False, long_name="monthly mean NEE, standard deviation over members"),
        "NEE_member_monthly": VarSpec(("member", "month", "lat", "lon"), "f", NEE_UNITS, (-200, 200), allow_nan=True,
                                      eager=False, long_name="monthly mean NEE of each member"),
        "NEE_member": VarSpec(("member", "time", "lat", "lon"), "f", NEE_UNITS, (-200, 200), allow_nan=True,
                              eager=False, optional=True, long_name="daily NEE of each member"),
        "layer_scale": VarSpec(("lat", "lon"), "f", NEE_UNITS, (-1e4, 1e4), allow_nan=True, optional=True,
                               long_name="atmospheric layer: the respiration proxy's scale"),
        "layer_monthly": VarSpec(("month", "lat", "lon"), "f", NEE_UNITS, (-1e4, 1e4), allow_nan=True, optional=True,
                                 eager=False, long_name="atmospheric layer: its monthly part"),
    }, "global NEE cubes of the trained ensembles (fluxscale infer)"),
}
STORE_NAMES: tuple[str, ...] = tuple(SCHEMAS)
REQUIRED_STORES: tuple[str, ...] = ("grid", "drivers", "sites", "inversions", "fire", "prior", "gcb")
INPUT_STORES: tuple[str, ...] = (*REQUIRED_STORES, "truth")
"""What the twin (or ingest) writes; the others are derived by the stages from these."""
DERIVED_STORES: tuple[str, ...] = tuple(n for n in SCHEMAS if n not in INPUT_STORES)
"""Stage outputs; rewriting the inputs removes them (they would be stale)."""


def normalise_units(units: str) -> str:
    """Spelling-insensitive form of a units string (spaces, ``*``, ``^`` and case ignored)."""
    return "".join(units.replace("*", " ").replace("^", "").lower().split())


def var_attrs(store: str, var: str) -> dict[str, str]:
    """The CF attributes (``long_name``, ``units``, ``standard_name``) of a schema variable,
    for the writers of a store (twin, ingest)."""
    spec = SCHEMAS[store].variables[var]
    a = {"long_name": spec.long_name or var}
    if spec.units:
        a["units"] = spec.units
    if spec.standard_name:
        a["standard_name"] = spec.standard_name
    return a


def pft_dataset(pft, grid, source: str):
    """The PFT variables of ``grid.zarr`` for the writers (twin, ingest): ``pft`` (lat, lon)
    int8 class ids (:data:`NO_PFT` where none) with its ``source``, and the class table of
    :data:`IGBP_CLASSES` on ``pft_class`` (``pft_name``, ``pft_long_name``); on ``grid``'s
    lat and lon."""
    import numpy as np
    import xarray as xr

    return xr.Dataset(
        {"pft": (("lat", "lon"), pft, {**var_attrs("grid", "pft"), "source": source}),
         "pft_name": (("pft_class",), np.array([a for _, a, _ in IGBP_CLASSES], dtype=object),
                      var_attrs("grid", "pft_name")),
         "pft_long_name": (("pft_class",), np.array([n for _, _, n in IGBP_CLASSES], dtype=object),
                           var_attrs("grid", "pft_long_name"))},
        coords={"lat": grid.lat, "lon": grid.lon,
                "pft_class": ("pft_class", np.array([i for i, _, _ in IGBP_CLASSES], dtype=np.int8),
                              var_attrs("grid", "pft_class"))})


def time_coord(dim: str, values, long_name: str) -> tuple:
    """A CF time coordinate ``(dim, values, attrs)`` for the writers of a store (encoded by
    xarray as days since the first date)."""
    return (dim, values, {"standard_name": "time", "long_name": long_name, "axis": "T"})
