"""One typed configuration tree for fluxscale.

Library code receives these frozen dataclasses; only the CLI (``fluxscale.run.cli``) and
``deploy/`` build them from flags or files. Every field is documented with its unit.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluxscale.errors import ConfigError

__all__ = ["KNOB_RANGES", "draw_world", "TwinConfig", "EvalConfig", "BridgeConfig", "ClusterConfig", "RunConfig", "PRESETS", "twin_preset", "preset_name", "load_config",
           "TrainConfig", "InferConfig", "GriddedInput", "SitesInput", "GcbInput", "IngestConfig", "load_ingest_config"]


@dataclass(frozen=True)
class TwinConfig:
    """Every knob of the synthetic twin Earth (``fluxscale.twin``).

    The presets (``tiny``, ``small``, ``full``) only choose values of these fields.
    Fluxes are in gC m-2 d-1 (negative = uptake by land), integrals in PgC.
    """

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

    def replace(self, **changes: Any) -> "TwinConfig":
        """Return a copy with ``changes`` applied (unknown names raise ConfigError)."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ConfigError(f"unknown twin knob(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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


@dataclass(frozen=True)
class BridgeConfig:
    """DTW, clustering, candidate sampling and the Lasso bridge models (paper §3.3.1)."""

    dtw_window: int | None = 6
    """Sakoe–Chiba radius of the DTW between the prior's monthly series, months; 6 lets
    seasonal cycles up to half a year (opposite phase) align, a wider band would pair
    different years. None: no band."""
    dtw_tile: int = 1024
    """Side of the square tiles of a region's DTW matrix (one Dask task and one Zarr
    chunk each; memory per task ≈ 2 × tile² × 4 bytes)."""
    n_clusters: int = 8
    """Spectral clusters per region."""
    max_exact_cells: int = 5000
    """Regions with more land cells are clustered by the Nyström approximation (dask-ml)
    instead of the full DTW matrix."""
    nystrom_components: int = 300
    """Sampled pixels of the Nyström approximation."""
    n_candidates: int = 100
    """Candidate pixels per region, drawn from the clusters proportionally to their size
    (all cells when the region has fewer)."""
    r2_threshold: float = 0.95
    """Training R² at which lowering alpha stops (paper: 0.95)."""
    n_alphas: int = 60
    """Points of the geometric alpha path from alpha_max (all weights zero) down to
    ``alpha_min_ratio`` × alpha_max."""
    alpha_min_ratio: float = 1e-4
    """Smallest alpha of the path, relative to alpha_max."""
    cv_folds: int = 5
    """k of the k-fold cross-validation, folds = contiguous blocks of months."""
    repeats: int = 1000
    """Robustness repeats (fresh stratified samples) per region (paper: 1000)."""
    repeats_per_task: int = 50
    """Repeats run by one Dask task (a task should run ≥ 0.3 s; a repeat takes ~5–10 ms)."""
    seed: int = 0
    """Seed of the clustering and of every sample."""

    def __post_init__(self) -> None:
        checks = {"dtw_tile": self.dtw_tile >= 16, "n_clusters": self.n_clusters >= 1,
                  "n_candidates": self.n_candidates >= 1, "r2_threshold": 0 < self.r2_threshold < 1,
                  "n_alphas": self.n_alphas >= 2, "alpha_min_ratio": 0 < self.alpha_min_ratio < 1,
                  "cv_folds": self.cv_folds >= 2, "repeats": self.repeats >= 0,
                  "repeats_per_task": self.repeats_per_task >= 1, "max_exact_cells": self.max_exact_cells >= 2,
                  "nystrom_components": self.nystrom_components >= 2,
                  "dtw_window": self.dtw_window is None or self.dtw_window >= 0}
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"bridge config: invalid value for {', '.join(bad)}: "
                              + ", ".join(f"{k}={getattr(self, k)!r}" for k in bad))

    def replace(self, **changes: Any) -> "BridgeConfig":
        """Return a copy with ``changes`` applied (unknown names raise ConfigError)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown bridge setting(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def valid_set_name(name: str) -> bool:
    """A model-set name is '' or letters, digits and ``_ - + .`` (it names a directory)."""
    return name == "" or (re.fullmatch(r"[A-Za-z0-9_+.-]+", name) is not None and name not in (".", ".."))


@dataclass(frozen=True)
class TrainConfig:
    """Training of the EC and EC-ATM ensembles (paper §3.2–3.4, §3.6, Table B1)."""

    epochs: int = 30
    """Epochs per member; the weights of the best validation epoch are kept."""
    steps_per_epoch: int = 40
    """Optimiser steps per epoch (each: one EC batch; for EC-ATM also one training year)."""
    learning_rate: float = 0.003
    """Adam learning rate (Table B1)."""
    ec_batch: int = 10000
    """Tower-days per EC batch (Table B1)."""
    folds: tuple[int, ...] = tuple(range(10))
    """Members to train: member k validates on the towers of fold k."""
    variants: tuple[str, ...] = ("ec", "ecatm")
    """``ec``: the tower term alone; ``ecatm``: plus the atmospheric term (Eq. 14)."""
    systems: tuple[str, ...] = ()
    """Inversion systems of the ATM term (one-against-many, §3.6); () = all of them."""
    model_set: str = ""
    """Name of a separate set of members (``models/sets/<name>/``), e.g. a one-against-many
    run trained on ``systems``; '' = the main ensembles in ``models/``."""
    holdout_years: int = 2
    """Random years held out of the ATM term for its validation (per fold)."""
    seed: int = 0
    """Seed of the initial weights (per fold, shared by EC and EC-ATM), batches and years."""
    threads: int | None = None
    """torch threads per member; None: the Dask worker's thread count (1 outside Dask)."""
    device: str = "auto"
    """``auto`` (CUDA when torch sees a device), ``cpu`` or ``cuda``."""
    decoupling_cells: int = 200
    """Land cells per region in the per-epoch bridge-validity monitor (§3.5)."""
    decoupling_max: float | None = None
    """Stop a member when the monitor's relative decoupling passes this (None: never)."""
    retries: int = 2
    """Times a training group's task is retried when its worker is lost (the retry writes the
    same weights)."""
    group_size: int = 0
    """Members trained together in one task (:func:`fluxscale.learn.fit.train_group`, stacked
    weights). 0: one group per worker thread of the cluster (at most one per fold, EC and
    EC-ATM of a fold always together), split further where a group's sampling pools would
    pass half a worker's memory."""
    atm_term: str = "sampled"
    """How EC-ATM's atmospheric term gets the model's regional integrals: ``"bridges"``, the
    paper's Lasso bridges on their contributing pixels (Eq. 7); ``"sampled"``, a fresh
    random sample of each region's land cells and days every step, unbiased for the full
    integral (:mod:`fluxscale.learn.atm_sample`; docs/evaluation.md compares them)."""
    atm_pool_cells: int = 256
    """Sampled term: land cells per region held in memory per member (regions with fewer
    contribute all of theirs); ≈ 8 B × days × 18 × this, 229 MB for 17 years."""
    atm_sample_cells: int = 32
    """Sampled term: cells per region in each step's sample."""
    atm_sample_days: int = 8
    """Sampled term: days per month in each step's sample (their mean estimates Eq. 6)."""
    atm_val_cells: int = 32
    """Sampled term: fixed cells per region for the held-out years' ATM loss."""
    atm_control_variate: bool = False
    """Sampled term: subtract from each step's sample the model's last-seen monthly values at
    the same cells and add them back summed over the whole pool (a SAGA-style control
    variate, :func:`fluxscale.learn.atm_sample.control_variate_estimate`): still unbiased, with
    the cell-sampling noise of the loss's value cut to the drift since each cell was last
    seen. False: the plain sample mean."""
    atm_annual_weight: float = 1.0
    """Weight of the ATM term's annual part (:func:`fluxscale.learn.losses.atm_loss`): the same
    Eq. 8–10 terms on each region's calendar-year totals, added to the monthly ones; 0 = the
    paper's monthly term alone."""
    atm_annual_target: str = "systems"
    """The annual part's target: ``systems`` (Eq. 8–10, ℓ3 over the systems) or ``mean``
    (absolute difference from the systems' mean ÷ (1 + range))."""
    tower_bias: str = "linear"
    """EC-ATM only: ``linear``: the EC term compares the towers with the network plus a
    learned linear function of the standardised drivers (zero at the start: the towers'
    systematic error, e.g. night-time respiration they miss); the network alone is the NEE
    (the ATM term, inference, evaluation). ``none``: the paper's EC term, network alone."""
    ema_decay: float = 0.99
    """Validate and keep an exponential moving average of the weights, updated every step
    with this decay (0.99: over the last ~100 steps); 0 = the trained weights themselves."""
    kendall_init: str = "initial_losses"
    """Initial log-variances of Eq. 12–14: ``zero`` (σ = 1) or ``initial_losses`` (log of each
    term's loss before training, the weighting's equilibrium)."""
    lr_schedule: str = "cosine"
    """``constant`` (Table B1) or ``cosine``: decay to ``learning_rate × lr_final`` by the last step."""
    lr_final: float = 0.1
    """The cosine schedule's final learning rate as a fraction of ``learning_rate``."""
    selection: str = "val_atm"
    """EC-ATM's best epoch: ``relative_sum`` (val_ec/val_ec⁰ + val_atm/val_atm⁰) or
    ``val_atm`` (the held-out years' ATM loss); EC always keeps its lowest val_ec."""

    def __post_init__(self) -> None:
        bad = [k for k, ok in {"epochs": self.epochs >= 1, "steps_per_epoch": self.steps_per_epoch >= 1,
                               "learning_rate": self.learning_rate > 0, "ec_batch": self.ec_batch >= 1,
                               "group_size": self.group_size >= 0,
                               "folds": all(0 <= f <= 9 for f in self.folds) and len(self.folds) > 0,
                               "variants": set(self.variants) <= {"ec", "ecatm"} and len(self.variants) > 0,
                               "holdout_years": self.holdout_years >= 0,
                               "device": self.device in ("auto", "cpu", "cuda"),
                               "decoupling_cells": self.decoupling_cells >= 1,
                               "atm_term": self.atm_term in ("bridges", "sampled"),
                               "atm_pool_cells": self.atm_pool_cells >= 1, "atm_sample_cells": self.atm_sample_cells >= 1,
                               "atm_sample_days": self.atm_sample_days >= 1, "atm_val_cells": self.atm_val_cells >= 1,
                               "lr_schedule": self.lr_schedule in ("constant", "cosine"),
                               "kendall_init": self.kendall_init in ("zero", "initial_losses"),
                               "atm_annual_weight": self.atm_annual_weight >= 0,
                               "ema_decay": 0 <= self.ema_decay < 1,
                               "atm_annual_target": self.atm_annual_target in ("systems", "mean"),
                               "tower_bias": self.tower_bias in ("none", "linear"),
                               "lr_final": 0 < self.lr_final <= 1,
                               "selection": self.selection in ("relative_sum", "val_atm"),
                               "model_set": valid_set_name(self.model_set)}.items() if not ok]
        if bad:
            raise ConfigError(f"train config: invalid value for {', '.join(bad)}: "
                              + ", ".join(f"{k}={getattr(self, k)!r}" for k in bad))

    def replace(self, **changes: Any) -> "TrainConfig":
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown train setting(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class InferConfig:
    """Global inference: every trained member over every land cell and day (paper §3.4).

    The cube (``<data_dir>/<out>``) is blocked in bands of ``lat_rows`` grid rows × every
    day: one Dask task and one Zarr shard per band and variable. Per-task memory is about
    ``4 B × n_days × lat_rows × n_lon × (2 × ensembles + written members)`` for the daily
    arrays, plus one driver time chunk of the band's cells; ``block_memory_mib`` bounds it.
    """

    members: tuple[str, ...] = ()
    """Members to run, by name (``ecatm-fold3``); () = every member that training wrote."""
    variants: tuple[str, ...] = ("ec", "ecatm")
    """Ensembles to run (``ec``, ``ecatm``); each must have at least one member."""
    write_members: bool = False
    """Also write every member's daily cube (``NEE_member``); 20 members at 0.5° are ~130 GB
    before compression. Monthly values of every member are always written."""
    out: str = "nee.zarr"
    """The cube's store, relative to the data directory (or absolute). With a ``model_set``
    and this default, the cube is ``nee-<model_set>.zarr``."""
    model_set: str = ""
    """Run the members of ``models/sets/<name>/`` (see ``TrainConfig.model_set``); '' = ``models/``."""
    lat_rows: int | None = None
    """Grid rows per block (and per shard); None: ``n_lat // min_blocks`` rows, fewer if
    ``block_memory_mib`` needs it."""
    min_blocks: int = 64
    """With ``lat_rows`` None, cut the grid into at least this many bands, so that blocks of
    unequal land balance over the workers (at 0.5°: 5 rows, ~1 100 land cells per block)."""
    block_memory_mib: float = 1024.0
    """Target memory of one block task, MiB (bounds ``lat_rows`` when it is None)."""
    chunk_mib: float = 1.0
    """Uncompressed size of a stored chunk, MiB, when ``time_chunk`` is None. Zarr pays
    ~0.4 ms per chunk written; at ~1 MiB this is a few % of a block, and a day's global map
    (``n_lat × n_lon × time_chunk`` values) and a pixel's series both read in ~0.1 s."""
    time_chunk: int | None = None
    """Days per stored chunk; None: from ``chunk_mib``."""
    lon_chunks: int = 1
    """Stored chunks along longitude per shard."""
    batch: int = 8192
    """Samples per forward call on the CPU (torch's activations stay in cache; larger is slower)."""
    gpu_batch: int = 1 << 20
    """Samples per forward call on a GPU."""
    device: str = "auto"
    """``auto`` (CUDA when torch sees a device on the worker), ``cpu`` or ``cuda``."""
    gpu_workers: bool = False
    """Ask for a ``GPU`` resource per block task (workers started with ``--resources GPU=1``)."""
    retries: int = 3
    """Times a block is retried after an error in its task (lost workers are rescheduled anyway)."""
    compressor: str = "lz4"
    """Blosc codec of the cube (``lz4`` writes ~2x faster than ``zstd`` at the same ratio here)."""
    shuffle: str = "noshuffle"
    """Blosc shuffle (``noshuffle``, ``shuffle``, ``bitshuffle``). On NEE bands with ocean
    NaN, lz4 without shuffle compressed 3.3x faster than with it and ~8 % smaller."""
    clevel: int = 1
    """Blosc compression level. On a 0.5° NEE chunk (72 days × 5 rows, a third ocean) lz4
    level 1 compressed at 5.1 GB/s against level 5's 1.6 GB/s, to the same ratio (1.44 and
    1.45)."""

    def __post_init__(self) -> None:
        bad = [k for k, ok in {"variants": set(self.variants) <= {"ec", "ecatm"} and len(self.variants) > 0,
                               "lat_rows": self.lat_rows is None or self.lat_rows >= 1,
                               "block_memory_mib": self.block_memory_mib > 0,
                               "time_chunk": self.time_chunk is None or self.time_chunk >= 1,
                               "min_blocks": self.min_blocks >= 1, "chunk_mib": self.chunk_mib > 0,
                               "lon_chunks": self.lon_chunks >= 1, "batch": self.batch >= 1,
                               "gpu_batch": self.gpu_batch >= 1, "device": self.device in ("auto", "cpu", "cuda"),
                               "retries": self.retries >= 0,
                               "compressor": self.compressor in ("lz4", "lz4hc", "zstd", "zlib", "blosclz"),
                               "clevel": 0 <= self.clevel <= 9,
                               "shuffle": self.shuffle in ("noshuffle", "shuffle", "bitshuffle"), "out": bool(self.out),
                               "model_set": valid_set_name(self.model_set)}.items() if not ok]
        if bad:
            raise ConfigError(f"infer config: invalid value for {', '.join(bad)}: "
                              + ", ".join(f"{k}={getattr(self, k)!r}" for k in bad))

    def replace(self, **changes: Any) -> "InferConfig":
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown infer setting(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation and the report (paper §4): tables, figures and an HTML report."""

    out: str = "report"
    """Report directory, relative to the data directory unless absolute."""
    cube: str = "nee.zarr"
    """The NEE cube to evaluate, relative to the data directory unless absolute."""
    qc_min: float = 0.5
    """Tower days whose QC fraction is below this are left out of the site RMSE."""
    maps: bool = True
    """Draw the map figures (5, 6, 7, B2): they read the cube's monthly means whole."""
    fig9_sites: tuple[str, ...] = ()
    """Tower ids of Fig. 9 (EC and EC-ATM against the observations at single towers); empty:
    the two tropical towers (|lat| < 23.5°) with the most observed days."""

    def __post_init__(self) -> None:
        if not 0 <= self.qc_min <= 1:
            raise ConfigError(f"evaluate config: qc_min={self.qc_min!r} is not in [0, 1]")
        if not self.out or not self.cube:
            raise ConfigError("evaluate config: out and cube must be paths")

    def replace(self, **changes: Any) -> "EvalConfig":
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown evaluate setting(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ClusterConfig:
    """Where stages run (the ``[cluster]`` section; :mod:`fluxscale.cluster` builds it).

    ``kind`` picks the cluster:

    * ``local``: a ``LocalCluster`` of ``n_workers`` processes of ``threads_per_worker``
      threads bound to ``host``;
    * ``existing``: connect to ``scheduler_address`` or ``scheduler_file`` (a given address
      or file implies this kind);
    * ``slurm`` / ``pbs``: dask-jobqueue (``pip install fluxscale[jobqueue]``); the YAML file
      ``jobqueue_config`` is merged into ``dask.config`` and ``jobqueue`` (keyword arguments
      of ``SLURMCluster``/``PBSCluster``) wins over it; ``n_workers`` jobs are requested;
    * ``kubernetes``: the Dask operator's ``KubeCluster`` (``pip install fluxscale[kubernetes]``)
      with ``k8s_image`` in ``k8s_namespace``;
    * ``ssh``: ``distributed.SSHCluster`` on ``ssh_hosts`` (the first runs the scheduler).

    Every kind waits for ``wait_workers`` workers (default ``n_workers``; 0: none) for at most
    ``wait_timeout_s`` seconds. ``dashboard_address=None`` disables the dashboard.
    """

    kind: str = "local"
    scheduler_address: str | None = None
    scheduler_file: str | None = None
    """A scheduler file written by ``dask scheduler --scheduler-file`` (kind ``existing``)."""
    n_workers: int = 2
    """Worker processes (local, ssh: per host), jobs (slurm, pbs) or pods (kubernetes)."""
    threads_per_worker: int = 1
    memory_limit: str = "6GiB"
    host: str = "127.0.0.1"
    """Address the scheduler, the workers and the dashboard bind to (local, ssh; slurm/pbs
    without an ``interface``); not exposed unless changed."""
    dashboard_address: str | None = ":0"
    connect_timeout_s: float = 10.0
    """How long to try reaching ``scheduler_address`` before failing, seconds."""
    wait_workers: int | None = None
    """Workers to wait for before running (None: ``n_workers`` for the kinds that start
    workers, 1 for ``existing``)."""
    wait_timeout_s: float = 300.0
    """Fail when the workers have not all arrived after this many seconds."""
    preload: bool = True
    """Start workers with ``--preload fluxscale.cluster.preload`` (torch and numba threads = the
    worker's threads)."""
    gpu: bool = False
    """Workers declare the resource ``GPU=1`` (one worker process per GPU): training and,
    with ``infer.gpu_workers``, inference tasks ask for it."""
    jobqueue_config: str | None = None
    """slurm/pbs: a dask-jobqueue YAML (``jobqueue: slurm: {cores: …}``) merged into dask.config."""
    jobqueue: dict = field(default_factory=dict)
    """slurm/pbs: keyword arguments of the jobqueue cluster class; they win over the YAML."""
    ssh_hosts: tuple[str, ...] = ()
    """ssh: hosts; the first runs the scheduler, the rest one worker group each."""
    ssh_port: int | None = None
    """ssh: the sshd port (default 22)."""
    ssh_user: str | None = None
    """ssh: the login name (default: this user's)."""
    ssh_key_file: str | None = None
    """ssh: the client's private key file (default: asyncssh's, ~/.ssh/id_*)."""
    ssh_known_hosts: str | None = None
    """ssh: a known_hosts file with the hosts' keys (default ~/.ssh/known_hosts)."""
    k8s_image: str = "fluxscale:latest"
    k8s_namespace: str | None = None
    k8s_name: str = "fluxscale"
    tls_ca_file: str | None = None
    """TLS: the CA certificate (PEM); with ``tls_cert_file`` and ``tls_key_file`` every
    connection is ``tls://`` and a peer without a certificate from this CA is refused."""
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    performance_report: str | None = None
    """Write a Dask performance report (inline HTML, opens without network) of the run here."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "ssh_hosts", tuple(self.ssh_hosts))  # TOML gives lists
        kinds = ("local", "existing", "slurm", "pbs", "kubernetes", "ssh")
        if self.kind not in kinds:
            raise ConfigError(f"cluster config: kind={self.kind!r}; one of {', '.join(kinds)}")
        tls = [self.tls_ca_file, self.tls_cert_file, self.tls_key_file]
        if any(tls) and not all(tls):
            raise ConfigError("cluster config: TLS needs tls_ca_file, tls_cert_file and tls_key_file together")
        if self.kind == "ssh" and not self.ssh_hosts:
            raise ConfigError("cluster config: kind='ssh' needs ssh_hosts (the first runs the scheduler)")
        if self.n_workers < 0 or self.threads_per_worker < 1 or self.wait_timeout_s <= 0:
            raise ConfigError("cluster config: n_workers >= 0, threads_per_worker >= 1 and wait_timeout_s > 0")
        if self.n_workers == 0 and self.kind == "local" and not (self.scheduler_address or self.scheduler_file):
            raise ConfigError("cluster config: n_workers=0 (--workers 0): a LocalCluster needs at least one worker")

    @property
    def resolved_kind(self) -> str:
        """``existing`` when an address or scheduler file is given, else ``kind``."""
        return "existing" if (self.scheduler_address or self.scheduler_file) else self.kind

    @property
    def tls(self) -> bool:
        return bool(self.tls_ca_file)

    def replace(self, **changes: Any) -> "ClusterConfig":
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown cluster setting(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RunConfig:
    """``fluxscale run``: the whole pipeline on one dataset directory (see
    :mod:`fluxscale.run.pipeline`): the twin (or ingest) in ``data_dir``, validation,
    integrals, bridges, training, inference and evaluation, each with its section here.
    """

    data_dir: str = "fluxscale-run/data"
    twin: TwinConfig = field(default_factory=lambda: twin_preset("small"))
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    bridge: BridgeConfig = field(default_factory=BridgeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    infer: InferConfig = field(default_factory=InferConfig)
    evaluate: EvalConfig = field(default_factory=EvalConfig)
    reuse: bool = True
    """Reuse a complete twin (or ingest) in ``data_dir`` written with the same config."""
    ingest: str | None = None
    """An ingest TOML (see :func:`load_ingest_config`): the stages run on the real files it
    names, ingested into ``data_dir``, instead of on a twin."""


def _read_toml(path: Path) -> dict[str, Any]:
    import tomllib

    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None


def _section(cls, values: Any, where: str, strict: bool = False):
    """The settings table ``values`` of config dataclass ``cls``: unknown names refused and,
    with ``strict``, every value checked against its field's type (:func:`coerce_setting`)."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a table of settings")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(known)
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(sorted(known))}")
    return {k: coerce_setting(cls, k, v, where) for k, v in values.items()} if strict else values


_TRUE, _FALSE = ("true", "1"), ("false", "0")


def coerce_setting(cls, name: str, value: Any, where: str) -> Any:
    """``value`` as field ``name`` of config dataclass ``cls``, following the field's type
    exactly: a TOML value, or the text of ``--set NAME=VALUE``.

    ``bool`` from true/false/1/0 only; ``int`` from whole numbers (not true/false, not 2.5);
    ``float`` from numbers; ``X | None`` from ``none`` (any case) or an ``X``; tuples from
    TOML arrays or comma-separated text, item by item. The error names ``where``, the
    setting, the value and the expected type."""
    import typing

    typ = typing.get_type_hints(cls)[name]
    return _coerce(typ, value, f"{where}: {name} = {value!r}")


def _type_name(typ) -> str:
    import typing

    args = typing.get_args(typ)
    if typing.get_origin(typ) is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            plural = {int: "integers", float: "numbers", str: "strings", bool: "true/false values"}
            return f"a list of {plural.get(args[0]) or _type_name(args[0]).replace('a list', 'lists')}"
        return "a list [" + ", ".join(_type_name(a).removeprefix("a ").removeprefix("an ") for a in args) + "]"
    if args and type(None) in args:
        return " or ".join(_type_name(a) for a in args if a is not type(None)) + " or none"
    if args:
        return " or ".join(_type_name(a) for a in args)
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(typ, getattr(typ, "__name__", str(typ)))


def _coerce(typ, value: Any, what: str) -> Any:
    import typing

    origin, args = typing.get_origin(typ), typing.get_args(typ)
    bad = ConfigError(f"{what}: expected {_type_name(typ)}")
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise bad
        out = []
        for v in value:
            try:
                out.append(_coerce(args[0], v, what))
            except ConfigError:
                raise ConfigError(f"{what}: expected {_type_name(typ)} (item {v!r} is not "
                                  f"{_type_name(args[0])})") from None
        return tuple(out)
    if origin is tuple:  # fixed length, e.g. (region, weight)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise bad
        return tuple(_coerce(a, v, what) for a, v in zip(args, value))
    if args:  # a union: X | None, str | tuple[...]
        if type(None) in args and (value is None or (isinstance(value, str) and value.strip().lower() == "none")):
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, what)
            except ConfigError:
                continue
        raise bad
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise bad
    if typ in (int, float):  # not bool (an int subclass); int not from 2.5
        ok = (int,) if typ is int else (int, float)
        if isinstance(value, ok) and not isinstance(value, bool):
            return typ(value)
        if isinstance(value, str):
            try:
                return typ(value.strip())
            except ValueError:
                raise bad from None
        raise bad
    if typ is str:
        if isinstance(value, str):
            return value
        raise bad
    if typ is dict:
        if isinstance(value, dict):
            return value
        raise ConfigError(f"{what}: expected a table (set it in the TOML config, not with --set)")
    return value


def load_config(path: str | Path) -> RunConfig:
    """Read a TOML config file into a :class:`RunConfig`.

    Layout (every key optional; unknown keys are errors)::

        data_dir = "fluxscale-run/data"
        ingest = "ingest.toml"   # optional: real files instead of the twin
        [twin]      # preset = "small" plus any TwinConfig field
        [cluster]   # ClusterConfig fields, e.g. scheduler_address = "tcp://host:8786"
        [bridge]    # BridgeConfig fields, e.g. repeats = 200, dtw_window = 6
        [train]     # TrainConfig fields, e.g. epochs = 30, systems = ["CAMS"]
        [infer]     # InferConfig fields, e.g. write_members = true
        [evaluate]  # EvalConfig fields, e.g. out = "report", maps = false
    """
    path = Path(path)
    raw = _read_toml(path)
    top = {"data_dir", "reuse", "ingest", "twin", "cluster", "bridge", "train", "infer", "evaluate"}
    unknown = set(raw) - top
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(top))}")
    twin = dict(raw.get("twin", {}))
    preset = twin.pop("preset", "small")
    try:
        return RunConfig(
            data_dir=str(raw.get("data_dir", RunConfig.data_dir)),
            twin=twin_preset(preset, **_section(TwinConfig, twin, "[twin]", strict=True)),
            cluster=ClusterConfig(**_section(ClusterConfig, raw.get("cluster", {}), "[cluster]", strict=True)),
            bridge=BridgeConfig(**_section(BridgeConfig, raw.get("bridge", {}), "[bridge]", strict=True)),
            train=TrainConfig(**_section(TrainConfig, raw.get("train", {}), "[train]", strict=True)),
            infer=InferConfig(**_section(InferConfig, raw.get("infer", {}), "[infer]", strict=True)),
            evaluate=EvalConfig(**_section(EvalConfig, raw.get("evaluate", {}), "[evaluate]", strict=True)),
            reuse=_coerce(bool, raw.get("reuse", True), "reuse"),
            ingest=str(path.parent / raw["ingest"]) if raw.get("ingest") else None,
        )
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


# --- ingest ------------------------------------------------------------------------------

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
    vals = dict(_section(GriddedInput, raw, where))
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
    """
    from fluxscale.dataset.schema import DRIVER_NAMES

    path = Path(path)
    raw = _read_toml(path)
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
        sites = dict(_section(SitesInput, raw["sites"], f"{path} [sites]"))
        if "fluxnet" not in sites:
            raise ConfigError(f"{path} [sites]: 'fluxnet' is required")
        if "table" not in sites and "metadata" not in sites:
            raise ConfigError(f"{path} [sites]: 'table' or 'metadata' is required (where the towers' coordinates are)")
        for k in ("fluxnet", "metadata"):
            if isinstance(sites.get(k), list):
                sites[k] = tuple(sites[k])
        gcb = dict(_section(GcbInput, raw["gcb"], f"{path} [gcb]"))
        if "file" not in gcb:
            raise ConfigError(f"{path} [gcb]: 'file' is required")
        cfg = IngestConfig(
            base=str(path.parent.resolve()),
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
