"""The settings of the pipeline's stages: bridges (:class:`BridgeConfig`), training
(:class:`TrainConfig`), inference (:class:`InferConfig`) and evaluation (:class:`EvalConfig`).

Every field is documented with its unit. A field declared ``NOT_IN_KEY``
(:data:`fluxscale.config.base.NOT_IN_KEY`) does not change what its stage writes, and
``key_dict()`` leaves it out of the stage's key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from fluxscale.config.base import NOT_IN_KEY, Settings
from fluxscale.errors import ConfigError

__all__ = ["BridgeConfig", "EvalConfig", "InferConfig", "PAPER_TRAIN", "TrainConfig", "valid_set_name"]


@dataclass(frozen=True)
class BridgeConfig(Settings):
    """DTW, clustering, candidate sampling and the Lasso bridge models (paper §3.3.1)."""

    _section = "bridge"

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
        self.refuse_invalid(checks)


def valid_set_name(name: str) -> bool:
    """A model-set name is '' or letters, digits and ``_ - + .`` (it names a directory)."""
    return name == "" or (re.fullmatch(r"[A-Za-z0-9_+.-]+", name) is not None and name not in (".", ".."))


@dataclass(frozen=True)
class TrainConfig(Settings):
    """Training of the EC and EC-ATM ensembles (paper §3.2–3.4, §3.6, Table B1)."""

    _section = "train"

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
    # retries and group_size decide how the members' training is cut into tasks and retried,
    # not the weights it writes: they are not in the train stage's key (key_dict)
    retries: int = field(default=2, metadata=NOT_IN_KEY)
    """Times a training group's task is retried when its worker is lost (the retry writes the
    same weights)."""
    group_size: int = field(default=0, metadata=NOT_IN_KEY)
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
        self.refuse_invalid({"epochs": self.epochs >= 1, "steps_per_epoch": self.steps_per_epoch >= 1,
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
                             "model_set": valid_set_name(self.model_set)})


PAPER_TRAIN: dict[str, object] = {"atm_term": "bridges", "kendall_init": "zero", "lr_schedule": "constant",
                                  "selection": "relative_sum", "atm_annual_weight": 0.0, "ema_decay": 0.0,
                                  "tower_bias": "none"}
"""The training settings of the paper's own formulation of EC-ATM (Upton et al.: the Lasso
bridges as the atmospheric term, σ² from 1, a constant rate, the relative-sum best epoch, no
annual part, no weight averaging, no tower-bias head): ``TrainConfig(**PAPER_TRAIN)``, or
``fluxscale train DIR --set model_set=paper --set variants=ecatm`` plus ``--set NAME=VALUE`` for
each (docs/evaluation.md, "The default product")."""


@dataclass(frozen=True)
class InferConfig(Settings):
    """Global inference: every trained member over every land cell and day (paper §3.4).

    The cube (``<data_dir>/<out>``) is blocked in bands of ``lat_rows`` grid rows × every
    day: one Dask task and one Zarr shard per band and variable. Per-task memory is about
    ``4 B × n_days × lat_rows × n_lon × (2 × ensembles + written members)`` for the daily
    arrays, plus one driver time chunk of the band's cells; ``block_memory_mib`` bounds it.
    """

    _section = "infer"

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
    layer: bool = True
    """Write the default product, ensemble ``dual``: EC's members set onto the inversions by
    the atmospheric layer (:mod:`fluxscale.infer.layer`; it reads ``integrals.zarr``). Only
    when ``ec`` is among the variants (see :attr:`layer_active`). The cube's
    ``fluxscale_default_ensemble`` names the default product: ``dual``, else ``ecatm``, else
    ``ec``."""
    layer_q10: tuple[float, ...] = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0)
    """The Q10 values the layer's respiration proxy may take; the fit keeps the one that
    leaves the smallest monthly residual against the inversions."""
    layer_pattern_weight: float = 0.5
    """Weight α of EC's seasonal amplitude in the layer's long-term level (0: even per m² of
    each region; 1: proportional to the amplitude). 0.5 won on the tuning worlds (per-cell
    RMSE of the long-term mean 6–14 % below the flat inversions', where 1 lost in one of
    three; docs/evaluation.md)."""

    def __post_init__(self) -> None:
        self.refuse_invalid({"variants": set(self.variants) <= {"ec", "ecatm"} and len(self.variants) > 0,
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
                             "model_set": valid_set_name(self.model_set),
                             "layer_q10": len(self.layer_q10) > 0 and all(q > 0 for q in self.layer_q10),
                             "layer_pattern_weight": 0 <= self.layer_pattern_weight <= 1})

    @property
    def layer_active(self) -> bool:
        """Whether the cube gets the ``dual`` ensemble (``layer`` set and ``ec`` run)."""
        return self.layer and "ec" in self.variants

    @property
    def default_ensemble(self) -> str:
        """The ensemble the cube names as its product (``fluxscale_default_ensemble``)."""
        return "dual" if self.layer_active else ("ecatm" if "ecatm" in self.variants else self.variants[0])


@dataclass(frozen=True)
class EvalConfig(Settings):
    """Evaluation and the report (paper §4): tables, figures and an HTML report."""

    _section = "evaluate"

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
    compare: tuple[str, ...] = ()
    """Other cubes (relative to the data directory unless absolute) whose ensembles the
    scorecard scores beside this run's, named ``<ensemble> [<cube>]`` (``nee-paper.zarr`` →
    ``EC-ATM [paper]``): e.g. the paper's formulation trained as model set ``paper``
    (docs/evaluation.md, "The default product")."""

    def __post_init__(self) -> None:
        if not 0 <= self.qc_min <= 1:
            raise ConfigError(f"evaluate config: qc_min={self.qc_min!r} is not in [0, 1]")
        if not self.out or not self.cube:
            raise ConfigError("evaluate config: out and cube must be paths")
