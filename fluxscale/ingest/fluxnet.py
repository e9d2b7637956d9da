"""Eddy-covariance towers: the tower CSV files (any of the layouts read) and the site table.

:func:`read_fluxnet_daily` returns a tower's daily record whatever the file's layout
(:mod:`fluxscale.ingest.towernames`): daily (DD) files are read as they are; half-hourly
(HH) and hourly (HR) files are aggregated to days as ONEFlux makes its DD files
(:mod:`fluxscale.ingest.subdaily`). Weekly, monthly and yearly files, ERA5 and auxiliary
files are refused.

Daily files (``FLX_<SITE>_FLUXNET2015_<SET>_DD_<Y1>-<Y2>_<v>-<r>.csv`` and the same layout
from AmeriFlux-FLUXNET and FLUXNET 2025) hold one row per day: ``TIMESTAMP`` as
``YYYYMMDD``, ``NEE_VUT_REF`` (gC m-2 d-1) with ``NEE_VUT_REF_QC`` (fraction of measured or
good-quality gap-filled half hours), the gap-filled meteorology (``TA_F`` degC, ``SW_IN_F``
W m-2, ``VPD_F`` hPa, ``P_F`` mm d-1 …) and −9999 for missing values. CSV files carry no
units; they are FLUXNET's documented units (:data:`FLUXNET_UNITS`).

The site table is a CSV with one row per tower: an id column (``site``, ``SITE_ID`` or
``id``), latitude (``lat``, ``LOCATION_LAT`` or ``latitude``), longitude (``lon``,
``LOCATION_LONG`` or ``longitude``), the cross-validation ``fold`` (0–9) and optionally the
IGBP class (``IGBP`` or ``igbp``). With ``coords_required=False`` (coordinates from BIF or
SITEINFO files, :mod:`fluxscale.ingest.sitemeta`) the latitude and longitude columns may be
left out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from fluxscale.errors import InputError
from fluxscale.dataset.schema import NEE_UNITS
from fluxscale.ingest.csvtable import MISSING
from fluxscale.ingest.csvtable import line_of as _line
from fluxscale.ingest.csvtable import numeric as _numeric
from fluxscale.ingest.csvtable import read_table as _read_table
from fluxscale.ingest.csvtable import timestamps
from fluxscale.ingest.subdaily import read_subdaily
from fluxscale.ingest.towernames import TowerName, parse_tower_name

__all__ = ["FLUXNET_UNITS", "MISSING", "read_fluxnet_daily", "read_site_table", "fluxnet_site_id"]

FLUXNET_UNITS: dict[str, str] = {
    "NEE_VUT_REF": NEE_UNITS, "NEE_VUT_USTAR50": NEE_UNITS, "NEE_VUT_MEAN": NEE_UNITS, "NEE_CUT_REF": NEE_UNITS,
    "GPP_NT_VUT_REF": NEE_UNITS, "GPP_DT_VUT_REF": NEE_UNITS, "RECO_NT_VUT_REF": NEE_UNITS,
    "RECO_DT_VUT_REF": NEE_UNITS, "TA_F": "degC", "TA_F_MDS": "degC", "TA_ERA": "degC", "SW_IN_F": "W m-2",
    "SW_IN_POT": "W m-2", "LW_IN_F": "W m-2", "VPD_F": "hPa", "PA_F": "kPa", "P_F": "mm d-1", "WS_F": "m s-1",
    "NETRAD": "W m-2", "PPFD_IN": "umol m-2 s-1", "CO2_F_MDS": "umolCO2 mol-1", "TS_F_MDS_1": "degC",
    "SWC_F_MDS_1": "%", "LE_F_MDS": "W m-2", "H_F_MDS": "W m-2", "G_F_MDS": "W m-2",
}
"""Daily units of the FLUXNET variables that are read (others are ignored); in HH/HR files the
fluxes (those in gC m-2 d-1 here) are µmol CO2 m-2 s-1 and P_F is mm per record."""


def fluxnet_site_id(path: str | Path) -> tuple[str, str]:
    """``(site id, set)`` of a tower file from its name (set: FULLSET, SUBSET, FLUXMET, L2, …);
    see :func:`~.towernames.parse_tower_name` for the full reading."""
    n = parse_tower_name(path)
    return n.site, n.kind


def read_fluxnet_daily(path: str | Path, *, nee_variable: str = "NEE_VUT_REF", qc_min: float = 0.0) -> xr.Dataset:
    """Read one tower file as the tower's daily record, whatever its layout and time step.

    Parameters
    ----------
    path : path
        A daily (DD), half-hourly (HH) or hourly (HR) tower-flux file of FLUXNET2015,
        AmeriFlux-FLUXNET, FLUXNET 2025 (FLUXMET) or ICOS ETC L2, recognised by its name
        (:data:`~.towernames.KNOWN_PATTERNS`). HH/HR records are aggregated to days as in the
        DD product (:mod:`~.subdaily`).
    nee_variable : str
        The NEE column (default ``NEE_VUT_REF``); its ``<name>_QC`` column is required.
    qc_min : float
        Days whose QC (fraction of measured or good gap-filled records, 0–1) is below this
        lose their NEE (set to NaN); 0 keeps every day with a value.

    Returns
    -------
    xarray.Dataset
        Dimension ``time`` (days, ascending). ``NEE`` (gC m-2 d-1, negative = uptake)
        and ``NEE_QC`` (1); every column of :data:`FLUXNET_UNITS` present in the file,
        in its daily units; −9999 is NaN. Attributes ``site``, ``fluxnet_set``,
        ``product``, ``resolution`` (of the file), ``n_days_below_qc``, ``qc_min``, ``source``.

    Raises
    ------
    InputError
        Naming the file and the line or column: an unknown file name (listing the known
        layouts), a weekly/monthly/yearly, ERA5 or auxiliary file, a wrong header, a
        truncated row, a non-numeric cell, a malformed, duplicated or (HH/HR) broken
        time sequence, a QC outside 0–1 (DD) or 0–3 (HH/HR).
    """
    path = Path(path)
    name = parse_tower_name(path)
    if name.problem:
        raise InputError(path, None, f"not a tower's daily NEE record: {name.problem}")
    if name.resolution == "DD":
        return _read_dd(path, name, nee_variable=nee_variable, qc_min=qc_min)
    return read_subdaily(path, name, units=FLUXNET_UNITS, nee_variable=nee_variable, qc_min=qc_min)


def _read_dd(path: Path, name: TowerName, *, nee_variable: str, qc_min: float) -> xr.Dataset:
    """A daily (DD) file (see :func:`read_fluxnet_daily`)."""
    site, fset = name.site, name.kind
    df = _read_table(path)
    qc_col = f"{nee_variable}_QC"
    missing = [c for c in ("TIMESTAMP", nee_variable, qc_col) if c not in df.columns]
    if missing:
        raise InputError(path, "header", f"missing column(s) {', '.join(missing)} "
                                         f"(found: {', '.join(df.columns[:12])}{' …' if df.shape[1] > 12 else ''})")
    if df.empty:
        raise InputError(path, None, "no data rows")
    time = timestamps(df, "TIMESTAMP", path, "%Y%m%d")
    dup = time.duplicated().to_numpy()
    if dup.any():
        i = int(np.argmax(dup))
        first = int(np.flatnonzero((time == time.iloc[i]).to_numpy())[0])
        raise InputError(path, f"line {_line(df, i)}", f"duplicated date {time.iloc[i].date()} (first at line {_line(df, first)})")
    nee = _numeric(df, nee_variable, path)
    qc = _numeric(df, qc_col, path)
    if np.any((qc < 0) | (qc > 1)):
        i = int(np.argmax((qc < 0) | (qc > 1)))
        raise InputError(path, f"line {_line(df, i)}, column {qc_col}", f"QC {qc[i]:g} outside 0..1")
    # a day without a QC value counts as below any positive threshold
    below = ~np.isnan(nee) & ~(qc >= qc_min) if qc_min > 0 else np.zeros(nee.size, dtype=bool)
    nee[below] = np.nan
    order = np.argsort(time.to_numpy(), kind="stable")
    data = {
        "NEE": ("time", nee[order].astype(np.float32),
                {"units": NEE_UNITS, "long_name": f"{nee_variable}: daily net ecosystem exchange (negative = uptake)"}),
        "NEE_QC": ("time", qc[order].astype(np.float32),
                   {"units": "1", "long_name": f"{qc_col}: fraction of good half-hourly data in the day"}),
    }
    for col, units in FLUXNET_UNITS.items():
        if col in df.columns and col != nee_variable:
            data[col] = ("time", _numeric(df, col, path)[order].astype(np.float32), {"units": units})
    return xr.Dataset(data, coords={"time": ("time", time.to_numpy()[order])},
                      attrs={"site": site, "fluxnet_set": fset, "product": name.product, "resolution": "DD", "source": str(path),
                             "n_days_below_qc": int(below.sum()), "qc_min": float(qc_min)})


_ID = ("site", "SITE_ID", "site_id", "id")
_LAT = ("lat", "LOCATION_LAT", "latitude")
_LON = ("lon", "LOCATION_LONG", "LOCATION_LON", "longitude")


def read_site_table(path: str | Path, *, coords_required: bool = True) -> pd.DataFrame:
    """Read the site table: a DataFrame indexed by site id with ``lat``, ``lon`` (degrees,
    lon in −180…180), ``fold`` (0–9), ``igbp`` (str, '' when not given) and ``line`` (its
    line in the file).

    With ``coords_required=False`` the table may have no latitude and longitude columns
    (then ``lat`` and ``lon`` are NaN: the coordinates come from BIF/SITEINFO files).

    Raises
    ------
    InputError
        Missing columns, non-numeric or out-of-range coordinates (a site outside the
        grid), folds outside 0–9, duplicated ids; each names the file and the line.
    """
    path = Path(path)
    df = _read_table(path)
    cols = {}
    for key, names in (("site", _ID), ("lat", _LAT), ("lon", _LON), ("fold", ("fold", "FOLD"))):
        hit = next((c for c in names if c in df.columns), None)
        if hit is None and key in ("lat", "lon") and not coords_required:
            continue
        if hit is None:
            raise InputError(path, "header", f"no {key} column (one of {', '.join(names)}; found {', '.join(df.columns)})")
        cols[key] = hit
    if ("lat" in cols) != ("lon" in cols):
        have, lack = ("lat", "lon") if "lat" in cols else ("lon", "lat")
        raise InputError(path, "header", f"a {have} column without a {lack} column")
    if df.empty:
        raise InputError(path, None, "no sites")
    ids = df[cols["site"]].str.strip()
    fold = _numeric(df, cols["fold"], path)
    nan = np.full(len(df), np.nan)
    lat, lon = (_numeric(df, cols[k], path) if k in cols else nan for k in ("lat", "lon"))
    for k, v in (("lat", lat), ("lon", lon), ("fold", fold)):
        if k in cols and np.isnan(v).any():
            i = int(np.argmax(np.isnan(v)))
            raise InputError(path, f"line {_line(df, i)}, column {cols[k]}", f"site {ids.iloc[i]} has no {k}")
    off = (np.abs(lat) > 90) | (lon < -180) | (lon > 360)
    if off.any():
        i = int(np.argmax(off))
        raise InputError(path, f"line {_line(df, i)}", f"site {ids.iloc[i]} at ({lat[i]:g}, {lon[i]:g}) is outside the grid "
                                                f"(lat -90..90, lon -180..360)")
    badf = (fold != np.round(fold)) | (fold < 0) | (fold > 9)
    if badf.any():
        i = int(np.argmax(badf))
        raise InputError(path, f"line {_line(df, i)}, column {cols['fold']}", f"fold {fold[i]:g} is not an integer 0..9")
    dup = ids.duplicated().to_numpy()
    if dup.any():
        i = int(np.argmax(dup))
        raise InputError(path, f"line {_line(df, i)}", f"duplicated site id {ids.iloc[i]}")
    lon = (lon + 180.0) % 360.0 - 180.0
    igbp_col = next((c for c in ("IGBP", "igbp") if c in df.columns), None)
    igbp = df[igbp_col].str.strip().to_numpy(dtype=object) if igbp_col else np.full(len(df), "", dtype=object)
    return pd.DataFrame({"lat": lat, "lon": lon, "fold": fold.astype(np.int8), "igbp": igbp, "line": df.attrs["line"]},
                        index=pd.Index(ids.to_numpy(), name="site"))
