"""Eddy-covariance towers: FLUXNET2015 daily CSV files and the site table.

FLUXNET2015 FULLSET and SUBSET daily files (``FLX_<SITE>_FLUXNET2015_<SET>_DD_<Y0>-<Y1>_<v>-<r>.csv``)
hold one row per day: ``TIMESTAMP`` as ``YYYYMMDD``, ``NEE_VUT_REF`` (gC m-2 d-1) with
``NEE_VUT_REF_QC`` (fraction of measured or good-quality gap-filled half hours), the
gap-filled meteorology (``TA_F`` degC, ``SW_IN_F`` W m-2, …) and −9999 for missing
values. CSV files carry no units; they are FLUXNET2015's documented units
(:data:`FLUXNET_UNITS`).

The site table is a CSV with one row per tower: an id column (``site``, ``SITE_ID`` or
``id``), latitude (``lat``, ``LOCATION_LAT`` or ``latitude``), longitude (``lon``,
``LOCATION_LONG`` or ``longitude``) and the cross-validation ``fold`` (0–9).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import InputError
from ..schema import NEE_UNITS

__all__ = ["FLUXNET_UNITS", "MISSING", "read_fluxnet_daily", "read_site_table", "fluxnet_site_id"]

MISSING = -9999.0
"""FLUXNET's missing-value code."""

FLUXNET_UNITS: dict[str, str] = {
    "NEE_VUT_REF": NEE_UNITS, "NEE_VUT_USTAR50": NEE_UNITS, "NEE_VUT_MEAN": NEE_UNITS, "NEE_CUT_REF": NEE_UNITS,
    "GPP_NT_VUT_REF": NEE_UNITS, "GPP_DT_VUT_REF": NEE_UNITS, "RECO_NT_VUT_REF": NEE_UNITS,
    "RECO_DT_VUT_REF": NEE_UNITS, "TA_F": "degC", "TA_F_MDS": "degC", "TA_ERA": "degC", "SW_IN_F": "W m-2",
    "SW_IN_POT": "W m-2", "LW_IN_F": "W m-2", "VPD_F": "hPa", "PA_F": "kPa", "P_F": "mm d-1", "WS_F": "m s-1",
    "NETRAD": "W m-2", "PPFD_IN": "umol m-2 s-1", "CO2_F_MDS": "umolCO2 mol-1", "TS_F_MDS_1": "degC",
    "SWC_F_MDS_1": "%", "LE_F_MDS": "W m-2", "H_F_MDS": "W m-2", "G_F_MDS": "W m-2",
}
"""Units of the FLUXNET2015 daily (DD) variables that are read (others are ignored)."""

_FILE = re.compile(r"^FLX_(?P<site>[A-Za-z0-9]+-[A-Za-z0-9]+)_FLUXNET2015_(?P<set>[A-Z]+)_DD_.*\.csv$")


def fluxnet_site_id(path: str | Path) -> tuple[str, str]:
    """``(site id, "FULLSET"|"SUBSET")`` from a FLUXNET2015 daily file name."""
    m = _FILE.match(Path(path).name)
    if m is None:
        raise InputError(path, None, "not a FLUXNET2015 daily file name (FLX_<SITE>_FLUXNET2015_<SET>_DD_*.csv)")
    return m.group("site"), m.group("set")


def _read_table(path: Path) -> pd.DataFrame:
    """A CSV as a DataFrame of stripped strings; ``df.attrs["line"]`` holds each row's
    physical line number in the file (blank lines skipped), for the error messages.

    Parsed with the ``csv`` module rather than pandas: pandas pads a truncated row with
    empty strings and renumbers rows after blank lines, and both must be reported."""
    import csv

    if not path.exists():
        raise InputError(path, None, "file not found")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, skipinitialspace=True)
            header, rows, lines = None, [], []
            for row in reader:
                if not row or all(not c.strip() for c in row):
                    continue
                if header is None:
                    header = [c.strip() for c in row]
                    continue
                if len(row) != len(header):
                    what = "truncated row" if len(row) < len(header) else "too many fields"
                    raise InputError(path, f"line {reader.line_num}", f"{what}: {len(row)} fields, the header has {len(header)}")
                rows.append([c.strip() for c in row])
                lines.append(reader.line_num)
    except (csv.Error, UnicodeDecodeError) as e:
        raise InputError(path, None, f"not a readable CSV table ({type(e).__name__}: {e})") from None
    if header is None:
        raise InputError(path, None, "empty file (no header)")
    if len(set(header)) != len(header):
        dup = sorted({h for h in header if header.count(h) > 1})
        raise InputError(path, "header", f"duplicated column(s) {', '.join(dup)}")
    df = pd.DataFrame(rows, columns=header, dtype=object).astype(str) if rows else pd.DataFrame(columns=header, dtype=str)
    df.attrs["line"] = np.asarray(lines, dtype=np.int64)
    return df


def _line(df: pd.DataFrame, i: int) -> int:
    return int(df.attrs["line"][i])


def _numeric(df: pd.DataFrame, col: str, path: Path) -> np.ndarray:
    raw = df[col].str.strip()
    vals = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, copy=True)
    bad = np.isnan(vals) & (raw != "").to_numpy() & ~raw.str.lower().isin(["nan", "na"]).to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(path, f"line {_line(df, i)}, column {col}", f"non-numeric value {df[col].iloc[i]!r}")
    vals[vals == MISSING] = np.nan
    return vals


def read_fluxnet_daily(path: str | Path, *, nee_variable: str = "NEE_VUT_REF", qc_min: float = 0.0) -> xr.Dataset:
    """Read one FLUXNET2015 daily (DD) CSV file.

    Parameters
    ----------
    path : path
        ``FLX_<SITE>_FLUXNET2015_<FULLSET|SUBSET>_DD_*.csv``.
    nee_variable : str
        The NEE column (default ``NEE_VUT_REF``); its ``<name>_QC`` column is required.
    qc_min : float
        Days whose QC (fraction of good half-hourly data, 0–1) is below this lose their
        NEE (set to NaN); 0 keeps every day with a value.

    Returns
    -------
    xarray.Dataset
        Dimension ``time`` (days, ascending). ``NEE`` (gC m-2 d-1, negative = uptake)
        and ``NEE_QC`` (1); every column of :data:`FLUXNET_UNITS` present in the file,
        with its ``units``; −9999 is NaN. Attributes ``site``, ``fluxnet_set``,
        ``n_days_below_qc``.

    Raises
    ------
    InputError
        Naming the file and the line or column: a wrong header, a truncated row, a
        non-numeric cell, a malformed or duplicated date, a QC outside 0–1.
    """
    path = Path(path)
    site, fset = fluxnet_site_id(path)
    df = _read_table(path)
    qc_col = f"{nee_variable}_QC"
    missing = [c for c in ("TIMESTAMP", nee_variable, qc_col) if c not in df.columns]
    if missing:
        raise InputError(path, "header", f"missing column(s) {', '.join(missing)} "
                                         f"(found: {', '.join(df.columns[:12])}{' …' if df.shape[1] > 12 else ''})")
    if df.empty:
        raise InputError(path, None, "no data rows")
    ts = df["TIMESTAMP"].str.strip()
    ok = ts.str.fullmatch(r"\d{8}").to_numpy()
    time = pd.to_datetime(ts.where(ok, None), format="%Y%m%d", errors="coerce")
    bad = ~ok | time.isna().to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(path, f"line {_line(df, i)}, column TIMESTAMP", f"not a date YYYYMMDD: {df['TIMESTAMP'].iloc[i]!r}")
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
                      attrs={"site": site, "fluxnet_set": fset, "source": str(path),
                             "n_days_below_qc": int(below.sum()), "qc_min": float(qc_min)})


_ID = ("site", "SITE_ID", "site_id", "id")
_LAT = ("lat", "LOCATION_LAT", "latitude")
_LON = ("lon", "LOCATION_LONG", "LOCATION_LON", "longitude")


def read_site_table(path: str | Path) -> pd.DataFrame:
    """Read the site table: a DataFrame indexed by site id with ``lat``, ``lon`` (degrees,
    lon in −180…180), ``fold`` (0–9) and ``line`` (its line in the file).

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
        if hit is None:
            raise InputError(path, "header", f"no {key} column (one of {', '.join(names)}; found {', '.join(df.columns)})")
        cols[key] = hit
    if df.empty:
        raise InputError(path, None, "no sites")
    ids = df[cols["site"]].str.strip()
    lat, lon, fold = (_numeric(df, cols[k], path) for k in ("lat", "lon", "fold"))
    for k, v in (("lat", lat), ("lon", lon), ("fold", fold)):
        if np.isnan(v).any():
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
    return pd.DataFrame({"lat": lat, "lon": lon, "fold": fold.astype(np.int8), "line": df.attrs["line"]},
                        index=pd.Index(ids.to_numpy(), name="site"))
