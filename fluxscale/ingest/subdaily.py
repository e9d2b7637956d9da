"""Half-hourly (HH) and hourly (HR) tower files aggregated to days as ONEFlux makes its DD files.

The HH/HR files of FLUXNET2015, AmeriFlux-FLUXNET, FLUXNET 2025 (FLUXMET) and ICOS ETC L2
share one table layout: ``TIMESTAMP_START`` and ``TIMESTAMP_END`` as ``YYYYMMDDHHMM`` in local
standard time, a record every 30 (HH) or 60 (HR) minutes, −9999 for missing values, columns
in any order. Per record, NEE (``NEE_VUT_REF``) is in µmol CO2 m-2 s-1 with an integer QC
flag ``NEE_VUT_REF_QC`` (0 measured, 1 good, 2 medium, 3 poor gap-filling); TA_F is °C,
SW_IN_F W m-2, VPD_F hPa, P_F mm per record.

A day (records starting 00:00 … 23:30 of a date) becomes, as in the DD product:

* NEE, GPP, RECO: the mean of the day's records × :data:`CO2TOC` → gC m-2 d-1;
* the NEE QC: the fraction of the day's records with QC 0 or 1 (unit 1);
* meteorology: the mean of the day's records (same units); P_F: their sum (mm d-1).

A day is defined only when all its records (48 HH, 24 HR) are in the file with a value:
the partial days at the ends of a file and days with a missing record are NaN. The record
must be one unbroken, ascending sequence; a gap, a duplicated or unordered time, a
``TIMESTAMP_END`` that is not start + step or a start off the half hour (hour) is refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from fluxscale.errors import InputError
from fluxscale.dataset.schema import NEE_UNITS
from fluxscale.ingest.csvtable import line_of, numeric, read_table, timestamps
from fluxscale.ingest.towernames import RESOLUTION_WORDS, TowerName

__all__ = ["CO2TOC", "aggregate_daily", "read_subdaily"]

CO2TOC = 1.03772448
"""gC m-2 d-1 per µmol CO2 m-2 s-1: ONEFlux's ``CO2TOC`` (``oneflux_steps/common/common.h``),
86 400 s × 12.0107 g mol-1 × 1e-6, which its DD files use. (fluxscale's ``M_C`` = 12.011 would
give 1.0377504: 2.5e-5 relative more.)"""

STEP_MINUTES = {"HH": 30, "HR": 60}


def aggregate_daily(values: np.ndarray, first_slot: int, per_day: int, how: str = "mean") -> np.ndarray:
    """Daily aggregates of a regular sub-daily record.

    Parameters
    ----------
    values : ndarray (record,)
        One value per record, NaN where missing, consecutive records ``per_day`` a day.
    first_slot : int
        The first record's slot in its day (0 = starting at midnight).
    per_day : int
        Records per day (48 half-hourly, 24 hourly).
    how : {"mean", "sum"}

    Returns
    -------
    ndarray (day,)
        From the first record's day to the last record's; NaN for a day with any record
        missing or outside the file.
    """
    n_days = -(-(first_slot + values.size) // per_day)
    slots = np.full(n_days * per_day, np.nan, dtype=np.float64)
    slots[first_slot:first_slot + values.size] = values
    days = slots.reshape(n_days, per_day)
    return days.sum(axis=1) if how == "sum" else days.mean(axis=1)


def _a(res: str) -> str:
    return ("an " if res == "HR" else "a ") + RESOLUTION_WORDS[res]


def _check_sequence(df: pd.DataFrame, start: pd.DatetimeIndex, end: pd.DatetimeIndex, res: str, path: Path) -> None:
    """One unbroken ascending record of ``res`` steps, each END = START + step."""
    step = pd.Timedelta(minutes=STEP_MINUTES[res])
    word = "half hour" if res == "HH" else "hour"
    off = np.asarray((start - start.normalize()) % step != pd.Timedelta(0))
    if off.any():
        i = int(np.argmax(off))
        raise InputError(path, f"line {line_of(df, i)}, column TIMESTAMP_START",
                         f"{df['TIMESTAMP_START'].iloc[i]} is not on the {word} ({_a(res)} file)")
    wrong = np.asarray(end - start != step)
    if wrong.any():
        i = int(np.argmax(wrong))
        raise InputError(path, f"line {line_of(df, i)}, column TIMESTAMP_END",
                         f"{df['TIMESTAMP_END'].iloc[i]} is not TIMESTAMP_START {df['TIMESTAMP_START'].iloc[i]} + "
                         f"{STEP_MINUTES[res]} min ({_a(res)} file)")
    dup = np.asarray(start.duplicated())
    if dup.any():
        i = int(np.argmax(dup))
        first = int(np.flatnonzero(start == start[i])[0])
        raise InputError(path, f"line {line_of(df, i)}", f"duplicated TIMESTAMP_START {df['TIMESTAMP_START'].iloc[i]} "
                                                         f"(first at line {line_of(df, first)})")
    d = np.diff(start.values.astype("datetime64[ns]").astype(np.int64))  # ns, like step.value
    if (d < 0).any():
        i = int(np.argmax(d < 0)) + 1
        raise InputError(path, f"line {line_of(df, i)}", f"TIMESTAMP_START {df['TIMESTAMP_START'].iloc[i]} is before "
                                                         f"the previous record's {df['TIMESTAMP_START'].iloc[i - 1]} "
                                                         "(records must be in time order)")
    brk = d != step.value
    if brk.any():
        i = int(np.argmax(brk)) + 1
        n_missing = int(d[i - 1] // step.value) - 1
        raise InputError(path, f"line {line_of(df, i)}",
                         f"gap in the record: {n_missing} {RESOLUTION_WORDS[res]} record(s) missing between "
                         f"{df['TIMESTAMP_START'].iloc[i - 1]} and {df['TIMESTAMP_START'].iloc[i]}")


def read_subdaily(path: str | Path, name: TowerName, *, units: dict[str, str], nee_variable: str = "NEE_VUT_REF",
                  qc_min: float = 0.0) -> xr.Dataset:
    """Read one HH or HR tower file and aggregate it to days (see the module docstring).

    Parameters
    ----------
    path : path
        The file; ``name`` is what its name says (:func:`~.towernames.parse_tower_name`).
    units : dict
        Daily units of the variables to keep (``FLUXNET_UNITS``); those in ``NEE_UNITS``
        are fluxes converted from µmol CO2 m-2 s-1, ``P_F`` is summed, the others averaged.
    nee_variable : str
        The NEE column; its ``<name>_QC`` column (integers 0–3) is required.
    qc_min : float
        Days whose QC fraction is below this lose their NEE (0: keep every defined day).

    Returns
    -------
    xarray.Dataset
        As :func:`~.fluxnet.read_fluxnet_daily`: dimension ``time`` (days), ``NEE``
        (gC m-2 d-1), ``NEE_QC`` (1), the meteorology in daily units; attributes
        ``site``, ``fluxnet_set``, ``product``, ``resolution``, ``records_per_day``,
        ``n_days_below_qc``, ``qc_min``, ``source``.

    Raises
    ------
    InputError
        Naming the file, the line or column: missing columns, a non-numeric cell, a broken
        timestamp sequence, a QC flag that is not an integer 0–3.
    """
    path = Path(path)
    res = name.resolution
    df = read_table(path)
    qc_col = f"{nee_variable}_QC"
    if "TIMESTAMP_START" not in df.columns and "TIMESTAMP" in df.columns:
        raise InputError(path, "header", f"a daily table (column TIMESTAMP, no TIMESTAMP_START) in a file named as "
                                         f"{RESOLUTION_WORDS[res]} ({res}): not a FLUXNET2015 daily file name "
                                         "(…_DD_…) for it; rename the file or check the download")
    missing = [c for c in ("TIMESTAMP_START", "TIMESTAMP_END", nee_variable, qc_col) if c not in df.columns]
    if missing:
        raise InputError(path, "header", f"missing column(s) {', '.join(missing)} "
                                         f"(found: {', '.join(df.columns[:12])}{' …' if df.shape[1] > 12 else ''})")
    if df.empty:
        raise InputError(path, None, "no data rows")
    start, end = (pd.DatetimeIndex(timestamps(df, c, path)) for c in ("TIMESTAMP_START", "TIMESTAMP_END"))
    _check_sequence(df, start, end, res, path)
    per_day = 1440 // STEP_MINUTES[res]
    first_slot = int((start[0] - start[0].normalize()) // pd.Timedelta(minutes=STEP_MINUTES[res]))
    days = pd.date_range(start[0].normalize(), periods=-(-(first_slot + len(df)) // per_day), freq="D")

    nee_hh = numeric(df, nee_variable, path)
    qc_hh = numeric(df, qc_col, path)
    badq = ~np.isnan(qc_hh) & ~np.isin(qc_hh, (0.0, 1.0, 2.0, 3.0))
    if badq.any():
        i = int(np.argmax(badq))
        raise InputError(path, f"line {line_of(df, i)}, column {qc_col}",
                         f"QC {qc_hh[i]:g} outside 0..3 ({RESOLUTION_WORDS[res]} QC flags are the integers 0 measured, "
                         "1 good, 2 medium, 3 poor gap-filling)")
    nee = aggregate_daily(nee_hh, first_slot, per_day) * CO2TOC
    good = np.where(np.isnan(qc_hh), 0.0, (qc_hh <= 1.0).astype(np.float64))
    qc = np.where(np.isnan(nee), np.nan, aggregate_daily(good, first_slot, per_day))
    below = ~np.isnan(nee) & ~(qc >= qc_min) if qc_min > 0 else np.zeros(nee.size, dtype=bool)
    nee[below] = np.nan
    data = {
        "NEE": ("time", nee.astype(np.float32),
                {"units": NEE_UNITS, "long_name": f"{nee_variable}: daily net ecosystem exchange (negative = uptake), "
                                                  f"mean of the {RESOLUTION_WORDS[res]} records"}),
        "NEE_QC": ("time", qc.astype(np.float32),
                   {"units": "1", "long_name": f"{qc_col}: fraction of the day's records measured or good-quality "
                                               "gap-filled (QC 0 or 1)"}),
    }
    for col, u in units.items():
        if col in df.columns and col != nee_variable:
            v = numeric(df, col, path)
            if u == NEE_UNITS:
                daily = aggregate_daily(v, first_slot, per_day) * CO2TOC
            else:
                daily = aggregate_daily(v, first_slot, per_day, "sum" if col == "P_F" else "mean")
            data[col] = ("time", daily.astype(np.float32), {"units": u})
    return xr.Dataset(data, coords={"time": ("time", days.to_numpy().astype("datetime64[ns]"))},
                      attrs={"site": name.site, "fluxnet_set": name.kind, "product": name.product, "resolution": res,
                             "records_per_day": per_day, "source": str(path), "n_days_below_qc": int(below.sum()),
                             "qc_min": float(qc_min)})
