"""The synthetic twin Earth's settings (:class:`TwinConfig`), its presets and the ranges that
worlds are drawn from (:data:`KNOB_RANGES`, :func:`draw_world`).

Fluxes are in gC m-2 d-1 (negative = uptake by land), integrals in PgC.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fluxscale.config.base import Settings
from fluxscale.errors import ConfigError

__all__ = ["KNOB_RANGES", "PRESETS", "TwinConfig", "draw_world", "preset_name", "twin_preset"]


@dataclass(frozen=True)
class TwinConfig(Settings):
    """Every knob of the synthetic twin Earth (``fluxscale.twin``).

    The presets (``tiny``, ``small``, ``full``) only choose values of these fields.
    Fluxes are in gC m-2 d-1 (negative = uptake by land), integrals in PgC.
    """

    _section = "twin"
    _noun = "knob"

    # --- grid and time --------------------------------------------------------------
    resolution_deg: float = 0.5
    """Model grid spacing (drivers, truth, prior), degrees. Must divide 0.5° evenly
    into an integer coarsening factor of the shipped 0.5° masks (0.5, 1, 1.5, 2, …)."""
    inversion_resolution_deg: float = 1.0
    """Grid spacing of the inversions and the fire flux, degrees; an integer multiple
    of ``resolution_deg``."""
    start_year: int = 2001
    """First year of the daily record (1 January)."""
    end_year: int = 2017
    """Last year of the daily record (31 December), inclusive."""
    seed: int = 0
    """Seed of every random draw; the same config and seed give bit-identical stores."""

    # --- climate and truth -----------------------------------------------------------
    global_sink: float = -3.0
    """Target mean global NEE of the truth, PgC yr-1 (negative = sink)."""
    tropical_sink_fraction: float = 0.1
    """Sink per unit GPP in the tropics (|lat| < 20°) relative to the extratropics:
    0 makes the tropics exactly neutral on average."""
    heterogeneity: float = 0.5
    """Standard deviation (log-space) of a smooth random field multiplying the local
    sink strength; the part of the truth that no driver explains."""
    enso_amplitude: float = 0.4
    """Scale of the ENSO-like mode's effect on tropical temperature (°C per unit
    index) and water availability; sets the interannual variability of the sink."""
    weather_sd_tair: float = 2.5
    """Day-to-day air-temperature anomaly standard deviation at mid-latitudes, °C."""
    gpp_trend_per_year: float = 0.0005
    """Relative GPP increase per year around the middle of the record (CO2 fertilisation)."""

    # --- towers ----------------------------------------------------------------------
    n_sites: int = 300
    """Number of eddy-covariance towers."""
    site_region_weights: tuple[tuple[str, float], ...] = (
        ("USA", 30.0), ("EU", 32.0), ("CAN", 6.0), ("RUS", 3.0), ("CHN", 5.0), ("KAJ", 4.0),
        ("OCE", 6.0), ("BRA", 2.0), ("SAF", 2.0), ("CAM", 1.5), ("NSA", 0.7), ("SSA", 1.0),
        ("NAF", 0.5), ("EQAF", 0.7), ("CAS", 1.0), ("MIDE", 0.7), ("SAS", 1.0), ("SEAS", 1.5),
    )
    """Relative number of towers per region (Table A1 abbreviations); towers are
    spread uniformly over the land cells of their region."""
    site_years_min: int = 2
    """Shortest tower record, years."""
    site_years_max: int = 8
    """Longest tower record, years."""
    site_gap_fraction: float = 0.25
    """Fraction of days missing inside a tower's record (runs of ~10 days)."""
    obs_noise: float = 0.8
    """Standard deviation of the random error of daily tower NEE, gC m-2 d-1."""
    night_bias_tropics: float = 0.25
    """Fraction of ecosystem respiration missed by tropical towers (the night-time
    low-turbulence bias), which makes their NEE too negative."""
    night_bias_extratropics: float = 0.08
    """The same fraction at extratropical towers (|lat| > 30°; linear in between)."""
    site_offset_sd: float = 0.3
    """Standard deviation of a constant per-tower offset, gC m-2 d-1."""
    tower_tair_noise: float = 0.7
    """Tower-minus-grid air-temperature noise, °C (tower meteorology vs reanalysis)."""

    # --- inversions, fire, GCB, prior -----------------------------------------------
    inversion_systems: tuple[str, ...] = ("CAMS", "CTE", "CarboScope", "UoE", "NISMON")
    """Names of the inversion systems."""
    inversion_regional_error: float = 0.1
    """Relative system-specific error of extratropical regional monthly integrals
    (fraction of the region's seasonal amplitude)."""
    inversion_tropical_error_factor: float = 3.0
    """Multiplier of ``inversion_regional_error`` in tropical regions."""
    inversion_misplacement: float = 0.6
    """Amplitude of flux moved around inside each region by each system (fraction of
    the region's mean absolute flux); leaves the regional integral unchanged."""
    fire_global: float = 2.0
    """Global fire CO2 emission in the fire store, PgC yr-1 (added to the raw
    inversion fluxes, so the fire adjustment matters)."""
    gcb_sigma: float = 0.9
    """Standard deviation of the GCB residual land sink's error, PgC yr-1."""
    prior_bias_scale: float = 1.0
    """Scale of the tower night-time bias inherited by the prior (FLUXCOM role)."""
    prior_noise: float = 0.3
    """Standard deviation of the prior's multiplicative seasonal-amplitude error."""

    # --- storage --------------------------------------------------------------------
    chunk_days: int = 365
    """Zarr chunk length along ``time`` of the daily (time, cell) stores."""
    chunk_cells: int = 2048
    """Zarr chunk length along ``cell``; one twin task writes one cell chunk."""

    def __post_init__(self) -> None:
        ratio = self.inversion_resolution_deg / self.resolution_deg
        for name in ("resolution_deg", "inversion_resolution_deg"):
            k = getattr(self, name) / 0.5  # 0.5° cells per cell side
            if abs(k - round(k)) > 1e-9 or round(k) < 1 or 360 % round(k):
                raise ConfigError(f"{name}={getattr(self, name)}: must be a whole number of 0.5° cells "
                                  f"that divides 180° (0.5, 1, 1.5, 2, 2.5, 3, 4, 4.5, 5, 6, …)")
        if abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
            raise ConfigError(
                f"inversion_resolution_deg={self.inversion_resolution_deg}: must be an integer "
                f"multiple of resolution_deg={self.resolution_deg}"
            )
        if self.end_year < self.start_year + 2:
            raise ConfigError("end_year: the record needs at least 3 years")
        if self.n_sites < 10:
            raise ConfigError(f"n_sites={self.n_sites}: need at least 10 towers (one per fold)")
        if not 1 <= self.site_years_min <= self.site_years_max:
            raise ConfigError("site_years_min/site_years_max: need 1 <= min <= max")
        if not 0 <= self.site_gap_fraction < 0.9:
            raise ConfigError("site_gap_fraction: must be in [0, 0.9)")
        if len(set(self.inversion_systems)) != len(self.inversion_systems) or len(self.inversion_systems) < 2:
            raise ConfigError("inversion_systems: need at least two distinct names")
        if self.chunk_days < 1 or self.chunk_cells < 1:
            raise ConfigError("chunk_days/chunk_cells: must be positive")

    @property
    def n_years(self) -> int:
        return self.end_year - self.start_year + 1


PRESETS: dict[str, dict[str, Any]] = {
    # unit tests: 2° land (~3 900 cells), 3 years, writes in a few seconds
    "tiny": dict(resolution_deg=2.0, inversion_resolution_deg=4.0, start_year=2001, end_year=2003,
                 n_sites=40, site_years_min=1, site_years_max=3, chunk_days=366, chunk_cells=1024),
    # the demo: 1° land (~15 500 cells), the paper's 17 years
    "small": dict(resolution_deg=1.0, inversion_resolution_deg=2.0, n_sites=150, chunk_cells=2048),
    # the paper's size: 0.5°, 2001–2017, ~62 000 land cells, 1° inversions
    "full": dict(resolution_deg=0.5, inversion_resolution_deg=1.0, n_sites=300, chunk_cells=2048),
}


KNOB_RANGES: dict[str, tuple[float, float]] = {
    "night_bias_tropics": (0.1, 0.5),
    "night_bias_extratropics": (0.03, 0.15),
    "obs_noise": (0.5, 1.2),
    "site_offset_sd": (0.1, 0.5),
    "site_gap_fraction": (0.1, 0.4),
    "inversion_regional_error": (0.05, 0.2),
    "inversion_tropical_error_factor": (2.0, 4.0),
    "inversion_misplacement": (0.3, 0.9),
    "tropical_sink_fraction": (0.0, 0.3),
    "heterogeneity": (0.3, 0.8),
    "enso_amplitude": (0.2, 0.6),
    "global_sink": (-4.0, -2.0),
    "prior_bias_scale": (0.5, 1.5),
    "prior_noise": (0.1, 0.5),
}
"""The documented range of each twin knob that a world may be drawn from (uniform, inclusive),
beside ``seed`` (any integer) and the tower count (``n_sites``: 0.8–1.2× the preset's):
the worlds in which the dual-constraint claims must hold (``python -m benchmarks.science``
draws its worlds from here; docs/evaluation.md gives the results). The defaults of
:class:`TwinConfig` lie inside every range."""


def draw_world(rng: "np.random.Generator", n_sites: int) -> dict[str, Any]:
    """Twin knobs of one world drawn uniformly from :data:`KNOB_RANGES`, a random ``seed``
    (0…9 999) and ``n_sites`` scaled by a factor drawn in [0.8, 1.2]."""
    knobs: dict[str, Any] = {k: round(float(rng.uniform(lo, hi)), 3) for k, (lo, hi) in KNOB_RANGES.items()}
    knobs["seed"] = int(rng.integers(0, 10_000))
    knobs["n_sites"] = max(10, int(round(n_sites * rng.uniform(0.8, 1.2))))
    return knobs


def twin_preset(name: str, **knobs: Any) -> TwinConfig:
    """The :class:`TwinConfig` of preset ``name`` with ``knobs`` overriding its fields."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return TwinConfig().replace(**{**PRESETS[name], **knobs})


def preset_name(cfg: "TwinConfig | dict[str, Any] | None") -> str | None:
    """The preset a twin config was made from, for labels: ``small`` when ``cfg`` is that
    preset (any seed), ``small with n_sites=37`` when some knobs differ (the preset of the
    same grid and years, up to three differences named, then ``…``), ``custom`` when no
    preset has its grid and years; None without a config. ``cfg``: a TwinConfig or the
    ``config`` of a dataset manifest."""
    import json

    if cfg is None:
        return None
    have = json.loads(json.dumps(cfg.to_dict() if isinstance(cfg, TwinConfig) else dict(cfg), default=str))
    best = None
    for name in PRESETS:
        want = json.loads(json.dumps(twin_preset(name, seed=have.get("seed", 0)).to_dict(), default=str))
        if any(have.get(k) != want.get(k) for k in ("resolution_deg", "start_year", "end_year")):
            continue
        diff = [k for k in want if k in have and have[k] != want[k]]
        if best is None or len(diff) < len(best[1]):
            best = (name, diff)
    if best is None:
        return "custom"
    name, diff = best
    if not diff:
        return name
    return f"{name} with " + ", ".join(f"{k}={have[k]}" for k in diff[:3]) + (", …" if len(diff) > 3 else "")

