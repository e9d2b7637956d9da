"""CSV tables of the tower products (FLUXNET CSVs, site tables, BIF/SITEINFO metadata).

:func:`read_table` reads a CSV into a DataFrame of stripped strings with each row's line
number in the file, so that every error can name the file, the line and the column;
:func:`numeric` parses one column as float64 with FLUXNET's −9999 as NaN.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fluxscale.errors import InputError

__all__ = ["MISSING", "read_table", "numeric", "line_of", "timestamps"]

MISSING = -9999.0
"""FLUXNET's missing-value code."""


def read_table(path: Path) -> pd.DataFrame:
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


def line_of(df: pd.DataFrame, i: int) -> int:
    """The line in the file of row ``i`` of a :func:`read_table` DataFrame (1 = the header)."""
    return int(df.attrs["line"][i])


def numeric(df: pd.DataFrame, col: str, path: Path) -> np.ndarray:
    """Column ``col`` as float64 (row,); empty cells, ``NaN``/``NA`` and −9999 are NaN; any
    other non-number is an :class:`InputError` naming the line and the column."""
    raw = df[col].str.strip()
    vals = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, copy=True)
    bad = np.isnan(vals) & (raw != "").to_numpy() & ~raw.str.lower().isin(["nan", "na"]).to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(path, f"line {line_of(df, i)}, column {col}", f"non-numeric value {df[col].iloc[i]!r}")
    vals[vals == MISSING] = np.nan
    return vals


_STAMP = {"%Y%m%d": ("a date YYYYMMDD", 8), "%Y%m%d%H%M": ("a time YYYYMMDDHHMM", 12)}


def timestamps(df: pd.DataFrame, col: str, path: Path, fmt: str = "%Y%m%d%H%M") -> pd.Series:
    """FLUXNET's ``TIMESTAMP*`` column ``col`` as datetimes: exactly the digits of ``fmt``
    (``%Y%m%d`` for DD files, ``%Y%m%d%H%M`` for HH/HR), else an error naming the line."""
    what, digits = _STAMP[fmt]
    raw = df[col].str.strip()
    ok = raw.str.fullmatch(rf"\d{{{digits}}}").to_numpy()
    t = pd.to_datetime(raw.where(ok, None), format=fmt, errors="coerce")
    bad = ~ok | t.isna().to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(path, f"line {line_of(df, i)}, column {col}", f"not {what}: {df[col].iloc[i]!r}")
    return t
