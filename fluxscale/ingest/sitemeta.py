"""Tower coordinates and IGBP class from BADM long-format metadata files.

FLUXNET 2025's ``BIF`` files and ICOS's ``ICOSETC_<SITE>_SITEINFO_L2.csv`` hold the site
metadata in the BADM long format: one row per value, columns ``SITE_ID, GROUP_ID,
VARIABLE, DATAVALUE`` (in any order; other columns are ignored). Read here:

* ``LOCATION_LAT``, ``LOCATION_LONG`` (decimal degrees, WGS84) of one ``GROUP_ID``. When a
  site has several location groups (it moved), the one with the latest
  ``LOCATION_DATE_START`` is used (a group without a date counts as the oldest; among
  undated groups, the last in the file);
* ``IGBP``: the vegetation class (one of :data:`IGBP_CLASSES`; the last value in the file).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fluxscale.errors import InputError
from fluxscale.ingest.csvtable import line_of, read_table

__all__ = ["IGBP_CLASSES", "read_site_metadata"]

IGBP_CLASSES = ("ENF", "EBF", "DNF", "DBF", "MF", "CSH", "OSH", "WSA", "SAV", "GRA", "WET", "CRO", "URB", "CVM",
                "SNO", "BSV", "WAT")
"""The 17 IGBP land-cover classes used by FLUXNET."""

_COLS = ("SITE_ID", "GROUP_ID", "VARIABLE", "DATAVALUE")


def _one_file(path: Path) -> pd.DataFrame:
    df = read_table(path)
    missing = [c for c in _COLS if c not in df.columns]
    if missing:
        raise InputError(path, "header", f"missing column(s) {', '.join(missing)}: not BADM long-format site metadata "
                                         f"(SITE_ID, GROUP_ID, VARIABLE, DATAVALUE; found {', '.join(df.columns)})")
    if df.empty:
        raise InputError(path, None, "no metadata rows")
    rows = []
    for site, part in df.groupby("SITE_ID", sort=False):
        idx = part.index.to_numpy()
        var = part["VARIABLE"].to_numpy()
        grp = part["GROUP_ID"].to_numpy()
        val = part["DATAVALUE"].to_numpy()
        loc = np.isin(var, ("LOCATION_LAT", "LOCATION_LONG"))
        if not loc.any():
            raise InputError(path, f"site {site}", "no LOCATION_LAT / LOCATION_LONG: the file gives no coordinates "
                                                   "for this site")
        groups = list(dict.fromkeys(grp[loc]))  # file order
        dated = var == "LOCATION_DATE_START"  # YYYYMMDD[HHMM]: text order is time order
        dates = {g: max(val[dated & (grp == g)], default="") for g in groups}
        best = max(range(len(groups)), key=lambda k: (dates[groups[k]], k))
        g = groups[best]
        coords = {}
        for name in ("LOCATION_LAT", "LOCATION_LONG"):
            hit = np.flatnonzero((grp == g) & (var == name))
            if hit.size == 0:
                raise InputError(path, f"site {site}, GROUP_ID {g}", f"no {name} in the location group")
            i = int(idx[hit[-1]])
            x = pd.to_numeric(pd.Series([df["DATAVALUE"].iloc[i]]), errors="coerce").iloc[0]
            lim = 90.0 if name == "LOCATION_LAT" else 360.0
            if not np.isfinite(x) or abs(x) > lim or (name == "LOCATION_LONG" and x < -180):
                raise InputError(path, f"line {line_of(df, i)}, column DATAVALUE",
                                 f"{name} of site {site} is {df['DATAVALUE'].iloc[i]!r}, not a "
                                 f"{'latitude -90..90' if lim == 90.0 else 'longitude -180..360'}")
            coords[name] = (float(x), line_of(df, i))
        ig = np.flatnonzero(var == "IGBP")
        igbp = ""
        if ig.size:
            i = int(idx[ig[-1]])
            igbp = str(df["DATAVALUE"].iloc[i]).strip().upper()
            if igbp not in IGBP_CLASSES:
                raise InputError(path, f"line {line_of(df, i)}, column DATAVALUE",
                                 f"IGBP of site {site} is {df['DATAVALUE'].iloc[i]!r}, "
                                 f"not one of {', '.join(IGBP_CLASSES)}")
        lon = coords["LOCATION_LONG"][0]
        lon = lon if -180.0 <= lon < 180.0 else (lon + 180.0) % 360.0 - 180.0  # exact when in range
        rows.append((str(site), coords["LOCATION_LAT"][0], lon, igbp, path.name, coords["LOCATION_LAT"][1]))
    return pd.DataFrame(rows, columns=["site", "lat", "lon", "igbp", "source", "line"])


def read_site_metadata(paths: list[Path]) -> pd.DataFrame:
    """Coordinates and IGBP class of every site in BIF / SITEINFO long-format files.

    Parameters
    ----------
    paths : list of paths
        BADM long-format CSVs (one or many sites each).

    Returns
    -------
    pandas.DataFrame
        Indexed by site id: ``lat`` (degrees north), ``lon`` (degrees east, −180…180),
        ``igbp`` (str, '' when the files give none), ``source`` (file name) and ``line``
        (of the latitude in that file).

    Raises
    ------
    InputError
        Naming the file and the site, line or column: not the long format, a site without
        coordinates, a non-numeric or out-of-range coordinate, an unknown IGBP class, or
        two files giving one site different coordinates or classes.
    """
    parts = [_one_file(Path(p)) for p in paths]
    if not parts:
        return pd.DataFrame(columns=["lat", "lon", "igbp", "source", "line"], index=pd.Index([], name="site"))
    out: dict[str, dict] = {}
    for part, path in zip(parts, paths):
        for r in part.itertuples(index=False):
            prev = out.get(r.site)
            if prev is None:
                out[r.site] = r._asdict()
                continue
            if abs(prev["lat"] - r.lat) > 1e-6 or abs(prev["lon"] - r.lon) > 1e-6:
                raise InputError(path, f"site {r.site}", f"coordinates ({r.lat:g}, {r.lon:g}) differ from "
                                                         f"({prev['lat']:g}, {prev['lon']:g}) in {prev['source']}")
            if r.igbp and prev["igbp"] and r.igbp != prev["igbp"]:
                raise InputError(path, f"site {r.site}", f"IGBP {r.igbp} differs from {prev['igbp']} in {prev['source']}")
            prev["igbp"] = prev["igbp"] or r.igbp
    df = pd.DataFrame(list(out.values())).set_index("site")
    return df[["lat", "lon", "igbp", "source", "line"]]
