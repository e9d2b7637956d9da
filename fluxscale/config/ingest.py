"""``fluxscale ingest``'s config: the real files that become the stores the twin writes
(:class:`IngestConfig` and its inputs) and its TOML file (:func:`load_ingest_config`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from fluxscale.config.base import parse_toml, read_text, settings_table
from fluxscale.errors import ConfigError

__all__ = ["GcbInput", "GriddedInput", "IngestConfig", "SitesInput", "load_ingest_config"]


@dataclass(frozen=True)
class GriddedInput:
    """One gridded NetCDF product (paths relative to the ingest config file)."""

    files: str | tuple[str, ...] | tuple[tuple[str, str], ...]
    """A glob or list of globs; for inversions also a table ``{system = glob}``
    (stored as ``(system, glob)`` pairs)."""
    variable: str = ""
    """The variable to read ('' → the product's default)."""
    units: str | None = None
    """Override the file's ``units`` attribute (when it is missing or wrong)."""
    species: str | None = None
    """What the mass of a carbon flux counts when the units do not say: C or CO2."""
    basis: str | None = None
    """Whether a flux is per m² of ``land`` or of grid ``cell`` (None: the product's default)."""
    systems: tuple[str, ...] = ()
    """Inversions only: the ensemble members to keep, by name (GCB spellings or the
    paper's short names, :func:`fluxscale.ingest.gcb.choose_members`); () = the paper's
    five where the file has them (CAMS, CTE, CarboScope, UoE, NISMON), else every member.
    For a file without ``ensemble_member_name``: every member's name, in file order."""
    member_dim: str = "ensemble_member"
    """Inversions only: the member dimension of a multi-system file."""


@dataclass(frozen=True)
class SitesInput:
    """Eddy-covariance towers: the tower CSV files, the site table and/or site metadata files."""

    fluxnet: str | tuple[str, ...]
    """Glob(s) of tower files in any layout read (FLUXNET2015, AmeriFlux-FLUXNET, FLUXNET 2025
    FLUXMET, ICOS ETC L2; DD, HH or HR: see :mod:`fluxscale.ingest.towernames`). The finest
    file of each site is read (HH, then HR, then DD; FULLSET over SUBSET); the others, and
    ERA5/AUX/metadata/WW/MM/YY files the globs catch, are skipped with a reason."""
    table: str | None = None
    """Site table CSV (id, lat, lon, fold; optional IGBP). With ``metadata`` its lat/lon
    columns may be left out; without a table, the coordinates come from ``metadata`` and
    the folds are assigned round-robin (sorted site ids, ``i % 10``)."""
    metadata: str | tuple[str, ...] | None = None
    """Glob(s) of BADM long-format site metadata (FLUXNET 2025 ``BIF``, ICOS ``SITEINFO``):
    coordinates (where the table has none) and the IGBP class."""
    drivers: str | None = None
    """Optional NetCDF of the 10 drivers at the towers ``(site, time)``; default: the
    gridded drivers of the tower's cell, with ``Tair`` from the tower's ``TA_F``."""
    nee_variable: str = "NEE_VUT_REF"
    qc_min: float = 0.5
    """A day's NEE is used only when its QC (fraction of good half-hourly data) is at
    least this (0: every day with a value)."""
    tower_tair: bool = True
    """Without a site-drivers file: use the tower's ``TA_F`` for ``Tair`` where present."""


@dataclass(frozen=True)
class GcbInput:
    """The Global Carbon Budget's residual land sink, from a CSV export of its global table."""

    file: str
    year_column: str = "Year"
    sink_column: str = "land sink"
    """Column of S_LAND, PgC yr-1, positive = sink (stored as NEE = -S_LAND)."""
    sigma_column: str | None = None
    """Column of its 1-sigma uncertainty, PgC yr-1; else ``sigma``."""
    sigma: float = 0.9
    """One-sigma uncertainty of S_LAND when there is no column, PgC yr-1."""


@dataclass(frozen=True)
class IngestConfig:
    """``fluxscale ingest CONFIG``: real files → the stores the twin writes.

    Relative paths are relative to ``base`` (the config file's directory).
    """

    base: str
    out: str
    """Dataset directory written (relative to ``base``)."""
    sites: SitesInput
    drivers: tuple[tuple[str, GriddedInput], ...]
    """All ten Table A2 drivers, name → files."""
    prior: GriddedInput
    inversions: GriddedInput
    fire: GriddedInput
    gcb: GcbInput
    resolution_deg: float = 0.5
    """Model grid spacing, degrees (drivers, prior)."""
    inversion_resolution_deg: float | None = None
    """Grid of the inversions and fire, degrees; None: the inversion files' own."""
    start_year: int = 2001
    end_year: int = 2017
    region_mask: str | None = None
    """Region-mask NetCDF (see :func:`fluxscale.dataset.grid.read_region_mask`); default shipped."""
    chunk_days: int = 365
    chunk_cells: int = 2048
    pft: str | None = None
    """Optional map of IGBP classes (NetCDF or Zarr, lat/lon; :mod:`fluxscale.ingest.pft`):
    the majority class of every cell is written into ``grid.zarr`` (``pft``; Figs. B3, B4,
    C2). None: no PFT map, those figures are not drawn."""
    pft_variable: str = ""
    """The class variable of ``pft`` ('' → ``pft``, ``igbp``, ``LC_Type1``…, or the only one)."""

    def path(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else Path(self.base) / p

    @property
    def start(self) -> str:
        return f"{self.start_year}-01-01"

    @property
    def end(self) -> str:
        return f"{self.end_year}-12-31"


def _gridded(raw: Any, where: str, allow_table: bool = False) -> GriddedInput:
    if isinstance(raw, str):
        raw = {"files": raw}
    vals = dict(settings_table(GriddedInput, raw, where))
    if "files" not in vals:
        raise ConfigError(f"{where}: 'files' is required")
    f = vals["files"]
    if isinstance(f, dict):
        if not allow_table:
            raise ConfigError(f"{where}: 'files' must be a glob or a list of globs")
        vals["files"] = tuple((str(k), str(v)) for k, v in f.items())
    elif isinstance(f, list):
        vals["files"] = tuple(str(x) for x in f)
    elif not isinstance(f, str):
        raise ConfigError(f"{where}: 'files' must be a glob or a list of globs")
    if "systems" in vals:
        vals["systems"] = tuple(str(x) for x in vals["systems"])
    if vals.get("basis") not in (None, "land", "cell"):
        raise ConfigError(f"{where}: basis must be 'land' or 'cell', not {vals['basis']!r}")
    if vals.get("species") not in (None, "C", "CO2"):
        raise ConfigError(f"{where}: species must be 'C' or 'CO2', not {vals['species']!r}")
    return GriddedInput(**vals)


def load_ingest_config(path: str | Path, **overrides: Any) -> IngestConfig:
    """Read an ingest TOML file (layout: ``docs`` in :mod:`fluxscale.ingest`).

    Top-level keys are :class:`IngestConfig` fields; tables ``[sites]``, ``[drivers]``
    (driver name = glob or table), ``[prior]``, ``[inversions]``, ``[fire]``, ``[gcb]``.
    ``overrides`` replace top-level fields (e.g. ``out``). Unknown keys are errors.

    The file is read at every call, but parsed once for the same path, text and overrides:
    ``fluxscale run`` checks the dataset in ``data_dir`` against the config, then ingests,
    with one parse (the same frozen :class:`IngestConfig`).
    """
    path = Path(path)
    text = read_text(path)
    base = str(path.parent.resolve())
    try:
        key = tuple(sorted(overrides.items()))
        hash(key)
    except TypeError:  # an override that cannot key the cache (e.g. a list): parse afresh
        return _parse_ingest(path, text, base, overrides)
    return _parse_ingest_once(path, text, base, key)


def _parse_ingest(path: Path, text: str, base: str, overrides: dict[str, Any]) -> IngestConfig:
    """The :class:`IngestConfig` of ``text``, the TOML of ``path``, whose directory resolves
    to ``base`` (see :func:`load_ingest_config`)."""
    from fluxscale.dataset.schema import DRIVER_NAMES

    raw = parse_toml(path, text)
    tables = ("sites", "drivers", "prior", "inversions", "fire", "gcb")
    scalars = {f.name for f in dataclasses.fields(IngestConfig)} - set(tables) - {"base"}
    unknown = set(raw) - scalars - set(tables)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(sorted(scalars | set(tables)))}")
    missing = [t for t in tables if t not in raw]
    if missing:
        raise ConfigError(f"{path}: missing table(s) {', '.join('[' + t + ']' for t in missing)}")
    drv = raw["drivers"]
    if not isinstance(drv, dict):
        raise ConfigError(f"{path} [drivers]: expected a table driver = files")
    bad = sorted(set(drv) - set(DRIVER_NAMES))
    lacking = [n for n in DRIVER_NAMES if n not in drv]
    if bad or lacking:
        raise ConfigError(f"{path} [drivers]: " + "; ".join(
            ([f"unknown driver(s) {', '.join(bad)}"] if bad else []) + ([f"missing {', '.join(lacking)}"] if lacking else []))
            + f" (the ten of Table A2: {', '.join(DRIVER_NAMES)})")
    top = {k: v for k, v in raw.items() if k in scalars}
    top.update(overrides)
    try:
        sites = dict(settings_table(SitesInput, raw["sites"], f"{path} [sites]"))
        if "fluxnet" not in sites:
            raise ConfigError(f"{path} [sites]: 'fluxnet' is required")
        if "table" not in sites and "metadata" not in sites:
            raise ConfigError(f"{path} [sites]: 'table' or 'metadata' is required (where the towers' coordinates are)")
        for k in ("fluxnet", "metadata"):
            if isinstance(sites.get(k), list):
                sites[k] = tuple(sites[k])
        gcb = dict(settings_table(GcbInput, raw["gcb"], f"{path} [gcb]"))
        if "file" not in gcb:
            raise ConfigError(f"{path} [gcb]: 'file' is required")
        cfg = IngestConfig(
            base=base,
            out=str(top.pop("out", "data")),
            sites=SitesInput(**sites),
            drivers=tuple((n, _gridded(drv[n], f"{path} [drivers] {n}")) for n in DRIVER_NAMES),
            prior=_gridded(raw["prior"], f"{path} [prior]"),
            inversions=_gridded(raw["inversions"], f"{path} [inversions]", allow_table=True),
            fire=_gridded(raw["fire"], f"{path} [fire]"),
            gcb=GcbInput(**gcb),
            **top,
        )
    except TypeError as e:
        raise ConfigError(f"{path}: {e}") from None
    if cfg.end_year < cfg.start_year:
        raise ConfigError(f"{path}: end_year {cfg.end_year} is before start_year {cfg.start_year}")
    return cfg


@lru_cache(maxsize=16)
def _parse_ingest_once(path: Path, text: str, base: str, overrides: tuple[tuple[str, Any], ...]) -> IngestConfig:
    """:func:`_parse_ingest`, remembered for its arguments (a config is frozen: one object
    serves every caller)."""
    return _parse_ingest(path, text, base, dict(overrides))
