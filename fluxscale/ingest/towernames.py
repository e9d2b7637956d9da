"""Names of eddy-covariance tower files: product, site, set and time step.

The tower products are told apart by their file names (``<…>`` fields, ``A|B`` choices):

==========================  ============================================================================
FLUXNET2015                 ``FLX_<SITE>_FLUXNET2015_<SET>_<RES>_<Y1>-<Y2>_<v>-<r>.csv``
AmeriFlux-FLUXNET           ``AMF_<SITE>_FLUXNET_<SET>_<RES>_<Y1>-<Y2>_<v>-<r>.csv``
FLUXNET 2025 (ONEFlux 1.3)  ``<NET>_<SITE>_FLUXNET_FLUXMET_<RES>_<Y1>-<Y2>_v<v>_r<r>.csv``,
                            NET one of AMF, EUF, ICOS, CNF, JPF, KOF, OZF, TERN, SAEON
ICOS ETC L2                 ``ICOSETC_<SITE>_FLUXNET_HH_L2.csv``
==========================  ============================================================================

``SET`` is FULLSET or SUBSET (tower fluxes) or ERA5, AUXMETEO, AUXNEE (reanalysis and
auxiliary files: not tower NEE); ``RES`` is HH (half-hourly), HR (hourly), DD (daily), WW,
MM, YY (weekly, monthly, yearly). The metadata files beside them — FLUXNET 2025's
``…_FLUXNET_BIF_…``, ``…_FLUXNET_BIFVARINFO_…`` and ``…_FLUXNET_ERA5_…``, ICOS's
``ICOSETC_<SITE>_SITEINFO_L2.csv`` — are recognised too, so that a glob that catches them
can skip them with a reason. Only HH, HR and DD tower-flux files give daily NEE; WW, MM and
YY are coarser than a day and are refused as tower inputs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from fluxscale.errors import InputError

__all__ = ["TowerName", "parse_tower_name", "FLUX_KINDS", "DAILY_RESOLUTIONS", "KNOWN_PATTERNS", "finest_first"]

_SITE = r"(?P<site>[A-Za-z0-9]+-[A-Za-z0-9]+)"
_RES = r"(?P<res>HH|HR|DD|WW|MM|YY)"
_NETS_2025 = ("AMF", "EUF", "ICOS", "CNF", "JPF", "KOF", "OZF", "TERN", "SAEON")

FLUX_KINDS = ("FULLSET", "SUBSET", "FLUXMET", "L2")
"""Sets that hold the tower's own NEE."""
DAILY_RESOLUTIONS = ("HH", "HR", "DD")
"""Time steps that give daily NEE: half-hourly and hourly records are aggregated to days."""
RESOLUTION_WORDS = {"HH": "half-hourly", "HR": "hourly", "DD": "daily", "WW": "weekly", "MM": "monthly",
                    "YY": "yearly"}
_NOT_FLUX = {
    "ERA5": "ERA5 reanalysis meteorology downscaled to the site, not tower NEE",
    "AUXMETEO": "auxiliary meteorology (gap-filling statistics), not tower NEE",
    "AUXNEE": "auxiliary NEE (USTAR filtering and partitioning statistics), not the tower's NEE record",
    "BIF": "site metadata (BADM interchange format): give it as [sites] metadata",
    "BIFVARINFO": "variable metadata (BADM interchange format), not tower NEE",
    "SITEINFO": "site metadata (BADM long format): give it as [sites] metadata",
}

_PATTERNS: tuple[tuple[str, re.Pattern], ...] = (
    ("FLUXNET2015", re.compile(rf"^FLX_{_SITE}_FLUXNET2015_(?P<kind>FULLSET|SUBSET|ERA5|AUXMETEO|AUXNEE)"
                               rf"(?:_{_RES})?_(?P<y0>\d{{4}})-(?P<y1>\d{{4}})_(?P<ver>\d+-\d+)\.csv$")),
    ("AmeriFlux-FLUXNET", re.compile(rf"^AMF_{_SITE}_FLUXNET_(?P<kind>FULLSET|SUBSET|ERA5|AUXMETEO|AUXNEE)"
                                     rf"(?:_{_RES})?_(?P<y0>\d{{4}})-(?P<y1>\d{{4}})_(?P<ver>\d+-\d+)\.csv$")),
    ("FLUXNET2025", re.compile(rf"^(?P<net>{'|'.join(_NETS_2025)})_{_SITE}_FLUXNET_(?P<kind>FLUXMET|ERA5|BIF|BIFVARINFO)"
                               rf"(?:_{_RES})?(?:_(?P<y0>\d{{4}})-(?P<y1>\d{{4}}))?_(?P<ver>v[0-9.]+_r\d+)\.csv$")),
    ("ICOS ETC L2", re.compile(rf"^ICOSETC_{_SITE}_(?:FLUXNET_{_RES}|(?P<kind>SITEINFO))_L2\.csv$")),
)

KNOWN_PATTERNS = (
    "FLX_<SITE>_FLUXNET2015_<FULLSET|SUBSET>_<HH|HR|DD>_<Y1>-<Y2>_<v>-<r>.csv (FLUXNET2015)",
    "AMF_<SITE>_FLUXNET_<FULLSET|SUBSET>_<HH|HR|DD>_<Y1>-<Y2>_<v>-<r>.csv (AmeriFlux-FLUXNET)",
    f"<{'|'.join(_NETS_2025)}>_<SITE>_FLUXNET_FLUXMET_<HH|HR|DD>_<Y1>-<Y2>_v<v>_r<r>.csv (FLUXNET 2025)",
    "ICOSETC_<SITE>_FLUXNET_HH_L2.csv (ICOS ETC L2)",
)
"""The tower-flux file names that are read, as shown in error messages."""

_PRODUCT_ORDER = {"FLUXNET2025": 0, "ICOS ETC L2": 1, "AmeriFlux-FLUXNET": 2, "FLUXNET2015": 3}


@dataclass(frozen=True)
class TowerName:
    """What a tower file's name says."""

    product: str
    """``FLUXNET2015``, ``AmeriFlux-FLUXNET``, ``FLUXNET2025`` or ``ICOS ETC L2``."""
    site: str
    kind: str
    """FULLSET, SUBSET, FLUXMET, L2 (tower fluxes) or ERA5, AUXMETEO, AUXNEE, BIF, BIFVARINFO, SITEINFO."""
    resolution: str | None
    """HH, HR, DD, WW, MM, YY; None for metadata files."""
    last_year: int | None = None
    network: str | None = None

    @property
    def problem(self) -> str | None:
        """Why this file cannot be a tower's daily NEE record (None: it can)."""
        if self.kind not in FLUX_KINDS:
            return f"{self.kind}: {_NOT_FLUX[self.kind]}"
        if self.resolution not in DAILY_RESOLUTIONS:
            return (f"{RESOLUTION_WORDS[self.resolution]} ({self.resolution}) values are coarser than daily; "
                    f"towers need the daily (DD), half-hourly (HH) or hourly (HR) file")
        return None

    @property
    def rank(self) -> tuple:
        """Sort key, finest first: time step (HH, HR, DD), then FULLSET/FLUXMET/L2 before
        SUBSET, then the newer product, then the longer record."""
        return (DAILY_RESOLUTIONS.index(self.resolution) if self.resolution in DAILY_RESOLUTIONS else 9,
                int(self.kind == "SUBSET"), _PRODUCT_ORDER[self.product], -(self.last_year or 0))


def parse_tower_name(path: str | Path) -> TowerName:
    """The :class:`TowerName` of a tower file, from its name alone.

    Raises
    ------
    InputError
        The name follows none of the known layouts; the message lists them.
    """
    name = Path(path).name
    for product, rx in _PATTERNS:
        m = rx.match(name)
        if m is None:
            continue
        g = m.groupdict()
        kind = g.get("kind") or ("L2" if product == "ICOS ETC L2" else None)
        net = g.get("net") or {"FLUXNET2015": "FLX", "AmeriFlux-FLUXNET": "AMF", "ICOS ETC L2": "ICOSETC"}.get(product)
        if kind in FLUX_KINDS and g.get("res") is None:
            break  # a flux file must say its time step
        return TowerName(product, g["site"], kind, g.get("res"), int(g["y1"]) if g.get("y1") else None, net)
    raise InputError(path, None, "not a known tower file name (not a FLUXNET2015 daily file name, nor any other "
                                 "tower layout read: " + "; ".join(KNOWN_PATTERNS) + ")")


def finest_first(names: list[TowerName]) -> list[int]:
    """Indices of ``names`` (usable tower-flux files of one site), the one to read first."""
    return sorted(range(len(names)), key=lambda i: names[i].rank)
