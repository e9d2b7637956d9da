"""Twin kernels for the top-down products: inversions, fire, prior, GCB (numpy only).

* Inversions (per system): the truth aggregated to the inversion grid (per m² of land)
  + a system-specific regional monthly error spread evenly over the region (larger in
  tropical regions) + flux moved around inside each region (regional integral kept) +
  the fire flux (the raw inversions see fire; §2.3 subtracts it).
* Fire: savanna belts and boreal forests, dry-season peaks, more fire in El Niño
  years; scaled to ``fire_global`` PgC yr-1.
* Prior (FLUXCOM role): truth with a seasonal-amplitude error, minus the towers'
  night-time bias applied to Reco everywhere: its sink is far too strong.
* GCB: truth global annual + N(0, ``gcb_sigma``).
"""

from __future__ import annotations

import numpy as np

from fluxscale.config import TwinConfig
from fluxscale.dataset.regions import REGIONS
from fluxscale.twin.climate import cell_climate, smooth_field
from fluxscale.twin.fluxes import night_bias_fraction

S_INV, S_MISPLACE, S_PRIOR, S_GCB = 40, 41, 42, 43
G_PER_PG = 1e15


def tropical_regions(region_of_cell: np.ndarray, lat_of_cell: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Boolean (18,): regions whose land-weighted mean |lat| is below 23.5°."""
    out = np.zeros(len(REGIONS), dtype=bool)
    for r in REGIONS:
        m = region_of_cell == r.id
        if m.any():
            out[r.id] = np.average(np.abs(lat_of_cell[m]), weights=weight[m]) < 23.5
    return out


def regional_errors(cfg: TwinConfig, truth_integrals: np.ndarray, tropical: np.ndarray) -> np.ndarray:
    """System-specific errors of regional monthly integrals, PgC per month.

    ``truth_integrals`` (18, months). Returns (systems, 18, months): per system and
    region a constant bias, a seasonal-amplitude error and AR(1) monthly noise, all
    scaled by the region's seasonal amplitude × ``inversion_regional_error`` (× the
    tropical factor in tropical regions).
    """
    rng = np.random.default_rng([cfg.seed, S_INV])
    ns, (nr, nm) = len(cfg.inversion_systems), truth_integrals.shape
    mean = truth_integrals.mean(axis=1, keepdims=True)
    amp = truth_integrals.std(axis=1, keepdims=True) + 0.05 * np.abs(truth_integrals).mean(axis=1, keepdims=True)
    scale = cfg.inversion_regional_error * np.where(tropical, cfg.inversion_tropical_error_factor, 1.0)[:, None] * amp
    bias = rng.normal(0.0, 0.7, (ns, nr, 1))
    seas = rng.normal(0.0, 0.5, (ns, nr, 1))
    z = rng.normal(0.0, 0.6, (ns, nr, nm))
    for m in range(1, nm):
        z[:, :, m] = 0.6 * z[:, :, m - 1] + np.sqrt(1 - 0.36) * z[:, :, m]
    return scale[None] * (bias + seas * (truth_integrals - mean)[None] / amp[None] + z)


def misplacement_fields(cfg: TwinConfig, lat: np.ndarray, lon: np.ndarray, region: np.ndarray,
                        weight: np.ndarray) -> np.ndarray:
    """(systems, cells) smooth fields with zero weighted mean within every region."""
    out = np.zeros((len(cfg.inversion_systems), lat.size))
    for s in range(len(cfg.inversion_systems)):
        z = smooth_field(cfg.seed, S_MISPLACE + 100 * s, lat, lon, 10.0)
        for r in REGIONS:
            m = region == r.id
            if m.any():
                z[m] -= np.average(z[m], weights=weight[m])
        out[s] = z
    return out


def fire_field(cfg: TwinConfig, lat: np.ndarray, lon: np.ndarray, weight: np.ndarray, month_doy: np.ndarray,
               month_days: np.ndarray, month_year_enso: np.ndarray) -> np.ndarray:
    """Fire CO2 emission (months, cells), gC m-2 d-1 per m² of land, ≥ 0, scaled so
    that the global mean is ``fire_global`` PgC yr-1. ``weight`` = area × land fraction."""
    clim = cell_climate(cfg.seed, lat, lon)
    absl = np.abs(lat)
    savanna = np.exp(-(((absl - 12.0) / 9.0) ** 2)) * np.exp(-(((clim["wet"] - 0.4) / 0.2) ** 2))
    boreal = 0.25 * np.exp(-(((absl - 60.0) / 8.0) ** 2))
    peak_sav = np.where(lat >= 0, 15.0, 240.0)
    s_sav = np.exp(2.0 * np.cos(2 * np.pi * (month_doy[:, None] - peak_sav[None, :]) / 365.25))
    s_bor = np.exp(2.0 * np.cos(2 * np.pi * (month_doy[:, None] - 200.0) / 365.25))
    annual = np.clip(1.0 + 0.3 * month_year_enso[:, None] * clim["trop"][None, :], 0.2, None)
    f = (savanna[None, :] * s_sav + boreal[None, :] * s_bor) * annual
    total = (f * weight[None, :] * month_days[:, None]).sum() / G_PER_PG
    n_years = month_days.sum() / 365.25
    return (f * (cfg.fire_global * n_years / total)).astype(np.float32)


def aggregate_to_coarse(field: np.ndarray, fine_weight: np.ndarray, factor: int, coarse_weight: np.ndarray) -> np.ndarray:
    """Land-weighted mean of (…, lat, lon) fine fields on the coarse grid.

    ``fine_weight`` = area × land fraction of fine cells (0 where a field is not
    defined); ``coarse_weight`` the same on the coarse grid. The coarse value times
    its weight equals the sum of the fine values times theirs, so integrals are kept.
    Coarse cells with land but no defined fine cells get 0; cells without land, NaN.
    """
    lead = field.shape[:-2]
    ny, nx = field.shape[-2:]
    sh = lead + (ny // factor, factor, nx // factor, factor)
    contrib = np.where(fine_weight > 0, np.nan_to_num(field) * fine_weight, 0.0).reshape(sh).sum(axis=(-3, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(coarse_weight > 0, contrib / np.where(coarse_weight > 0, coarse_weight, 1.0), np.nan)
    return out


def inversion_fluxes(cfg: TwinConfig, truth_coarse: np.ndarray, region: np.ndarray, weight: np.ndarray,
                     errors: np.ndarray, misplace: np.ndarray, fire: np.ndarray, month_days: np.ndarray) -> np.ndarray:
    """(systems, months, cells) raw inversion land flux on coarse land cells, gC m-2 d-1.

    ``truth_coarse`` (months, cells); ``errors`` (systems, 18, months) PgC per month;
    ``misplace`` (systems, cells); ``fire`` (months, cells).
    """
    ns = errors.shape[0]
    out = np.empty((ns,) + truth_coarse.shape, dtype=np.float64)
    region_area = np.array([weight[region == r.id].sum() for r in REGIONS])
    for s in range(ns):
        f = truth_coarse.copy()
        for r in REGIONS:
            m = region == r.id
            if not m.any():
                continue
            per_m2 = errors[s, r.id, :] * G_PER_PG / (month_days * region_area[r.id])
            mean_abs = (np.abs(truth_coarse[:, m]) * weight[m]).sum(axis=1) / region_area[r.id]
            f[:, m] += per_m2[:, None] + cfg.inversion_misplacement * mean_abs[:, None] * misplace[s, m][None, :]
        out[s] = f + fire
    return out.astype(np.float32)


def prior_flux(cfg: TwinConfig, nee: np.ndarray, reco: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Prior NEE (months, cells) on land cells: amplitude error and the tower bias."""
    amp = 1.0 + cfg.prior_noise * smooth_field(cfg.seed, S_PRIOR, lat, lon, 12.0)
    bias = cfg.prior_bias_scale * night_bias_fraction(cfg, lat)
    return (nee * amp[None, :] - bias[None, :] * reco).astype(np.float32)


def gcb_series(cfg: TwinConfig, truth_annual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """GCB annual global NEE (truth + noise) and its σ, PgC yr-1."""
    rng = np.random.default_rng([cfg.seed, S_GCB])
    return truth_annual + rng.normal(0.0, cfg.gcb_sigma, truth_annual.size), np.full(truth_annual.size, cfg.gcb_sigma)
