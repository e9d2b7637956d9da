"""Global Carbon Budget (GCB) inversion files: member names, system choice, NaN checks.

The GCB ships its atmospheric inversions as one NetCDF per release,
``GCP20xx_inversions_1x1_version*.nc``::

    land_flux_only_fossil_cement_adjusted (ensemble_member, time, latitude, longitude)
        PgC m-2 yr-1 per m² of grid cell, latitude south → north, 1°
    ensemble_member_name (ensemble_member, nchar)   char array, space/NUL padded

with 9 (GCB2022) to 14 (GCB2023) members in an order that is neither alphabetical nor
the same between releases; some members are all NaN outside their own record.
GCB2022 also has ``land_flux_fossil_cement_and_river_adjusted``, dropped in GCB2023.

This module:

* decodes ``ensemble_member_name`` (char array, fixed-width bytes or strings) into
  names (:func:`member_names`);
* chooses the inversion systems (:func:`choose_members`): by name when the config
  lists ``[inversions] systems`` (exact, then case/punctuation-insensitive, then the
  paper's aliases: ``CTE`` = "CarbonTracker Europe", ``CarboScope`` = "Jena CarboScope",
  ``NISMON`` = "NISMON-CO2", …), else the paper's five (:data:`PAPER_SYSTEMS`) where
  present, else every member (with a note);
* checks the members' values in the record period on the land cells of the target
  grid (:func:`nan_report`): a member without a single value is refused when it was
  asked for by name and skipped (with the reason in the ingest log) when it was
  chosen by default; a member with NaN on some land cells or months is reported
  (first month and cell).

Values are never loaded whole: the NaN check is one Dask reduction to
``(member, time)`` counts, plus one month of one member per reported gap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from fluxscale.errors import InputError

__all__ = ["PAPER_SYSTEMS", "DROPPED_VARIABLES", "member_names", "canonical_system", "choose_members",
           "check_variable", "nan_report", "Choice"]

PAPER_SYSTEMS: tuple[str, ...] = ("CAMS", "CTE", "CarboScope", "UoE", "NISMON")
"""The five inversions of Upton et al. (Table 1: CAMS, CarbonTracker Europe, Jena
CarboScope, UoE in situ, NISMON-CO2), by fluxscale's short names."""

# normalised spellings (lower case, letters and digits only) that mean one of the five;
# other GCB members (CAMS-Satellite, CT-NOAA, CMS-Flux, MIROC4-ACTM, …) match none
_ALIASES: dict[str, tuple[str, ...]] = {
    "CAMS": ("cams", "camsinsitu", "camsv21r1"),
    "CTE": ("cte", "carbontrackereurope", "carbontrackereuropecte", "ctecarbontrackereurope", "cteinsitu"),
    "CarboScope": ("carboscope", "jenacarboscope", "jenacarboscopesextocneet", "carboscopesextocneet",
                   "jenacarboscopev2022", "jenacarboscopeinsitu"),
    "UoE": ("uoe", "uoeinsitu", "universityofedinburgh", "edinburgh"),
    "NISMON": ("nismon", "nismonco2", "nismomco2", "nismonco2v20221"),
}

DROPPED_VARIABLES: dict[str, str] = {
    "land_flux_fossil_cement_and_river_adjusted": "GCB2023",
}
"""GCB inversion variables that later releases no longer have: name → first release without it."""


def _norm(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


def canonical_system(name: str) -> str | None:
    """The paper system (one of :data:`PAPER_SYSTEMS`) a GCB member name means, or None.

    Case, spaces, hyphens and a parenthesised suffix are ignored: "Jena CarboScope",
    "Jena CarboScope (sEXTocNEET)" and "carboscope" are ``CarboScope``; "CAMS-Satellite"
    is not ``CAMS``.
    """
    forms = {_norm(name), _norm(re.sub(r"\(.*?\)", "", name))}
    for system, aliases in _ALIASES.items():
        if forms & set(aliases) or _norm(system) in forms:
            return system
    return None


def _decode(v) -> str:
    if isinstance(v, bytes):
        v = v.decode("utf-8", errors="replace")
    return str(v).replace("\x00", "").strip()


def member_names(ds: xr.Dataset, member_dim: str) -> list[str] | None:
    """Names of the members along ``member_dim`` from ``ensemble_member_name`` (or
    ``system``/``model``/``member_name``): a char array ``(member, nchar)`` of ``S1``,
    fixed-width bytes or strings; padding (spaces, NUL) stripped. None when absent."""
    for cand in ("ensemble_member_name", "system", "model", "member_name"):
        if cand in ds.variables and ds[cand].dims and ds[cand].dims[0] == member_dim:
            vals = np.asarray(ds[cand].values)
            if vals.ndim == 2:  # char array not concatenated by the backend
                vals = np.array([b"".join(np.asarray(r, dtype="S1").tolist()) if r.dtype.kind == "S"
                                 else "".join(map(str, r)) for r in vals], dtype=object)
            return [_decode(v) for v in vals.ravel()]
    return None


def check_variable(ds: xr.Dataset, path: Path | str, variable: str) -> None:
    """Refuse a missing inversion variable, naming those present (and the GCB release
    that dropped it, for ``land_flux_fossil_cement_and_river_adjusted``)."""
    if variable in ds.data_vars:
        return
    present = ", ".join(sorted(str(v) for v in ds.data_vars if v != "ensemble_member_name")) or "no variables"
    if variable in DROPPED_VARIABLES:
        raise InputError(path, f"variable {variable!r}",
                         f"missing: it was dropped from the GCB inversions file in {DROPPED_VARIABLES[variable]} "
                         f"(use variable = \"land_flux_only_fossil_cement_adjusted\"; the file has {present})")
    raise InputError(path, f"variable {variable!r}", f"missing (the file has {present})")


@dataclass
class Choice:
    """The members to keep: their positions in the file, store names, and whether the
    config named them (``explicit``) or the default chose them."""

    index: list[int]
    names: list[str]
    file_names: list[str]
    explicit: bool
    notes: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def choose_members(names: list[str], wanted: tuple[str, ...] | list[str], path: Path | str) -> Choice:
    """Which members of a GCB file to keep.

    Parameters
    ----------
    names : list of str
        The file's member names, in file order.
    wanted : names from ``[inversions] systems``
        Empty: the paper's five (:data:`PAPER_SYSTEMS`) that the file has, in the
        paper's order and under the paper's short names; if none is present, every
        member under its own name (with a note). Non-empty: exactly these, in this
        order, under these names; each is matched to one member exactly, else
        ignoring case and punctuation, else through the paper's aliases.

    Raises
    ------
    InputError
        A name that matches no member (the members present are listed), or two.
    """
    where = "variable 'ensemble_member_name'"
    listed = ", ".join(names)
    if wanted:
        idx: list[int] = []
        for w in wanted:
            hits = [i for i, n in enumerate(names) if n == w]
            if not hits:
                hits = [i for i, n in enumerate(names) if _norm(n) == _norm(w)]
            if not hits and canonical_system(w) is not None:
                hits = [i for i, n in enumerate(names) if canonical_system(n) == canonical_system(w)]
            if not hits:
                raise InputError(path, where, f"no member {w!r} (the file has {listed})")
            if len(hits) > 1:
                raise InputError(path, where, f"{w!r} matches {len(hits)} members "
                                              f"({', '.join(names[i] for i in hits)}): name one exactly")
            if hits[0] in idx:
                raise InputError(path, where, f"{w!r} is member {names[hits[0]]!r}, already chosen under another name")
            idx.append(hits[0])
        ch = Choice(idx, list(wanted), [names[i] for i in idx], explicit=True)
        ch.skipped += [(f"{Path(path).name}: member {n}", "not in [inversions] systems")
                       for i, n in enumerate(names) if i not in idx]
        return ch
    idx, out = [], []
    notes: list[str] = []
    for system in PAPER_SYSTEMS:
        hits = [i for i, n in enumerate(names) if canonical_system(n) == system]
        if hits:
            idx.append(hits[0])
            out.append(system)
            if names[hits[0]] != system:
                notes.append(f"{Path(path).name}: member {names[hits[0]]!r} taken as {system}")
            if len(hits) > 1:
                notes.append(f"{Path(path).name}: {system} matches {', '.join(names[i] for i in hits)}; "
                             f"took {names[hits[0]]!r} (name one in [inversions] systems to choose)")
    if not idx:
        ch = Choice(list(range(len(names))), list(names), list(names), explicit=False)
        ch.notes.append(f"{Path(path).name}: none of the paper's inversions ({', '.join(PAPER_SYSTEMS)}) is a member; "
                        f"using all {len(names)} members ({listed})")
        return ch
    absent = [s for s in PAPER_SYSTEMS if s not in out]
    if absent:
        notes.append(f"{Path(path).name}: the paper's {', '.join(absent)} not in the file (it has {listed})")
    ch = Choice(idx, out, [names[i] for i in idx], explicit=False, notes=notes)
    ch.skipped += [(f"{Path(path).name}: member {n}", "not one of the paper's five inversions (default choice)")
                   for i, n in enumerate(names) if i not in idx]
    return ch


@dataclass(frozen=True)
class MemberGaps:
    """NaN of one member on the target's land cells in the record period."""

    member: str
    n_months_with_nan: int
    n_months: int
    all_nan: bool
    first_month: pd.Timestamp | None
    first_cell: tuple[float, float] | None  # (lat, lon) of the first NaN land cell of first_month


def nan_report(da: xr.DataArray, land: np.ndarray, dim: str = "system") -> list[MemberGaps]:
    """NaN of each member of ``da (dim, time, lat, lon)`` on ``land`` (bool ``(lat, lon)``).

    One Dask pass computes the ``(member, time)`` count of NaN land cells; the first
    NaN land cell is then looked up in the first gappy month of each gappy member only.
    """
    landx = xr.DataArray(np.asarray(land, dtype=bool), dims=("lat", "lon"))
    n_land = int(landx.sum())
    counts = np.asarray(da.isnull().where(landx, False).sum(("lat", "lon")).values)  # (member, time)
    time = pd.DatetimeIndex(da.time.values)
    out = []
    for m, name in enumerate(da[dim].values):
        c = counts[m]
        gappy = np.flatnonzero(c > 0)
        first_month = first_cell = None
        all_nan = n_land > 0 and bool((c == n_land).all())
        if gappy.size and not all_nan:
            t = int(gappy[0])
            month = np.asarray(da.isel({dim: m, "time": t}).values)
            i, j = np.argwhere(np.isnan(month) & np.asarray(land, dtype=bool))[0]
            first_month, first_cell = time[t], (float(da.lat.values[i]), float(da.lon.values[j]))
        elif gappy.size:
            first_month = time[int(gappy[0])]
        out.append(MemberGaps(str(name), int(gappy.size), int(c.size), all_nan, first_month, first_cell))
    return out
