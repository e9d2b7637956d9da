"""The atmospheric layer (issue 31): the default NEE product ``dual``, EC's network NEE set
onto the inversions post hoc, pure numpy (no I/O; :mod:`fluxscale.infer.layer_stage` runs it
blockwise over the cube).

EC's members learn from the towers how NEE responds to the drivers (seasonal cycle,
interannual anomalies, spatial contrasts), but the towers' night-time flux loss biases
them towards uptake in proportion to ecosystem respiration. The inversions know each
region's monthly total but not where in the region it happens. The layer keeps what each
source knows, in three steps per region ``r`` of Table A1 (18), all fitted against the
inversion mean ``I[r, m]`` (PgC month-1) of the months ``m`` the inversions cover:

1. **A respiration-shaped correction.** With the respiration proxy
   ``q[c, d] = |Ē[c]| · Q10^((T[c, d] − 15 °C) / 10)`` (``Ē[c]`` the EC ensemble's mean NEE of
   cell ``c`` over the fitted months, a productivity scale; ``T`` the daily air temperature
   of the drivers), ``Y = E + λ[r] · q`` with one ``λ[r]`` per region, the least-squares fit
   of the region's monthly residual ``I − ∫E`` on ``∫q``; ``Q10`` is the value of
   :attr:`InferConfig.layer_q10` whose fit leaves the smallest residual over all regions.
   (The towers' loss scales with respiration, and respiration with temperature: the classic
   Q10 model, e.g. Lloyd & Taylor 1994, Reichstein et al. 2005.)
2. **The long-term level from the atmosphere.** Each cell's mean over the fitted months is
   replaced by ``L[c] = −k[r] · (α a[c] + (1 − α) ā[r])``: ``a[c]`` the standard deviation of
   the EC ensemble's monthly NEE of the cell (its seasonal amplitude, a productivity pattern:
   where more carbon cycles, more can be stored), ``ā[r]`` its land-weighted mean over the
   region, ``α`` = :attr:`InferConfig.layer_pattern_weight` (the pattern shrunk half-way to
   even, since the sink's spatial pattern is only partly the productivity's), and ``k[r]``
   such that the region's total over the fitted months equals the inversions'. (A region
   whose amplitudes integrate to 0 gets a level even per m².)
3. **The monthly residual**, ``u[r, m]`` per m² of land, spread evenly over the region's land so
   that every region-month integral equals the inversion mean's.

So ``dual[c, d] = E[c, d] + λ[r] q[c, d] − Ȳ[c] + L[c] + u[r, m(d)]`` with ``Ȳ[c]`` the mean of
``Y`` over the fitted months (days-weighted). Every member gets the same ``λ``, ``Q10`` and
``L`` and its own ``Ȳ`` and ``u``, so the members' mean is the layer of the ensemble mean and
every member meets the inversions. Months outside the inversions' span get the mean ``u`` of
their calendar month.

Units: NEE gC m-2 d-1; areas m²; integrals PgC month-1 (``Σ_c x[c] · w[c] · days / 1e15``).
Arrays are ``(month, cell)`` or ``(member, month, cell)`` over the land cells of a band or of
the globe; the regional sums of the stats step add up over bands.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["N_REGIONS", "T_REF", "LayerFit", "q10_monthly", "band_stats", "add_stats", "fit_layer", "cell_terms",
           "member_monthly", "daily"]

N_REGIONS = 18
T_REF = 15.0
"""Reference temperature of the Q10 proxy, °C."""
G_PER_PG = 1e15


def _rsum(values: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Sum over cells per region: ``values`` (..., cell) → (..., 18)."""
    lead = values.shape[:-1]
    out = np.zeros(lead + (N_REGIONS,), dtype=np.float64)
    flat = values.reshape(-1, values.shape[-1])
    o = out.reshape(-1, N_REGIONS)
    for k in range(flat.shape[0]):
        o[k] = np.bincount(region, weights=flat[k], minlength=N_REGIONS)[:N_REGIONS]
    return out


def q10_monthly(tair: np.ndarray, month_idx: np.ndarray, n_months: int, q10s) -> np.ndarray:
    """Monthly means of ``Q10^((T − 15)/10)`` for each value of ``q10s``: ``tair`` (day, cell) °C,
    ``month_idx`` (day,) → (q10, month, cell) float64."""
    counts = np.bincount(month_idx, minlength=n_months).astype(np.float64)
    out = np.zeros((len(q10s), n_months, tair.shape[1]), dtype=np.float64)
    x = (tair.astype(np.float64) - T_REF) / 10.0
    for k, q in enumerate(q10s):
        f = np.exp(np.log(q) * x)
        np.add.at(out[k], month_idx, f)
    return out / counts[None, :, None]


def band_stats(members: np.ndarray, gq: np.ndarray, weight: np.ndarray, region: np.ndarray,
               days: np.ndarray, fit: np.ndarray) -> dict[str, np.ndarray]:
    """The regional sums one band contributes to :func:`fit_layer`.

    ``members`` (member, month, cell) EC members' monthly NEE; ``gq`` (q10, month, cell) from
    :func:`q10_monthly`; ``weight`` (cell) land area m²; ``region`` (cell) 0–17; ``days``
    (month,) days in each month; ``fit`` (month,) bool, the months the inversions cover.
    Returns PgC sums: ``member_int`` (member, 18, month) ∫E_k; ``q_int`` (q10, 18, month) ∫q;
    ``qbar_int`` (q10, 18) Σ_c w·|Ē|·mean_fit(gq) per day; ``ebar_int`` (member, 18) Σ_c w·Ē_k
    per day; ``amp_int`` (18,) Σ_c w·a per day; ``area`` (18,) Σ_c w, m².
    """
    wd = days[fit] / days[fit].sum()
    mean = members.mean(axis=0)
    ebar = np.tensordot(wd, mean[fit], axes=(0, 0))  # (cell,)
    r = np.abs(ebar)
    amp = mean.std(axis=0)
    scale = weight / G_PER_PG
    return {"member_int": _rsum(members * scale, region) .transpose(0, 2, 1) * days[None, None, :],
            "q_int": _rsum(gq * (r * scale), region).transpose(0, 2, 1) * days[None, None, :],
            "qbar_int": _rsum(np.tensordot(wd, gq[:, fit], axes=(0, 1)) * (r * scale), region),
            "ebar_int": _rsum(np.tensordot(members[:, fit], wd, axes=(1, 0)) * scale, region),
            "amp_int": _rsum(amp * scale, region), "area": _rsum(weight, region)}


def add_stats(a: dict[str, np.ndarray] | None, b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The sum of two bands' :func:`band_stats`."""
    return dict(b) if a is None else {k: a[k] + b[k] for k in a}


@dataclass(frozen=True)
class LayerFit:
    """The fitted layer: ``q10``; ``lam`` (18,) λ per region (gC m-2 d-1 per unit proxy);
    ``level_k`` (18,) k per region; ``amp_mean`` (18,) ā per region (gC m-2 d-1); ``alpha`` the
    pattern's weight (L = −k·(α·a + (1−α)·ā)); ``level_flat`` (18,) True where the level is even
    per m² (then L = ``level_k``); ``u`` (member, 18, month) gC m-2 d-1 per member; ``ybar_int``
    (member, 18) the members' Σ_c w·Ȳ_k per day (PgC d-1); ``residual`` the fit's sum of squared
    monthly residuals (PgC month-1)² per tried Q10."""

    q10: float
    lam: np.ndarray
    level_k: np.ndarray
    amp_mean: np.ndarray
    alpha: float
    level_flat: np.ndarray
    u: np.ndarray
    residual: dict

    def to_dict(self) -> dict:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in asdict(self).items()}


def fit_layer(stats: dict[str, np.ndarray], inv: np.ndarray, days: np.ndarray, fit: np.ndarray, q10s,
              month_of_year: np.ndarray, alpha: float = 0.5) -> LayerFit:
    """Fit the layer (module docstring) from the summed :func:`band_stats`.

    ``inv`` (18, month) the inversion mean, PgC month-1 (NaN outside ``fit``);
    ``month_of_year`` (month,) 1–12; ``alpha`` the amplitude pattern's weight in the level
    (the pattern's integral does not depend on it). The regions' land areas are the sums of the cells'
    (``stats["area"]``), so that the integrals close exactly on the cube's cells.
    """
    land_area = stats["area"]
    mint, qint = stats["member_int"], stats["q_int"]
    e_int = mint.mean(axis=0)  # (18, month)
    res = (inv - e_int)[:, fit]
    tried = {}
    for k, q in enumerate(q10s):
        s = qint[k][:, fit]
        den = (s * s).sum(axis=1)
        lam = np.where(den > 0, (res * s).sum(axis=1) / np.where(den > 0, den, 1.0), 0.0)
        tried[float(q)] = (float(((res - lam[:, None] * s) ** 2).sum()), lam)
    q10 = min(tried, key=lambda q: tried[q][0])
    lam = tried[q10][1]
    kq = list(map(float, q10s)).index(q10)
    # the level: L = −k·a with the region's total over the fitted months equal to the inversions'
    total_days = days[fit].sum()
    inv_per_day = inv[:, fit].sum(axis=1) / total_days  # PgC d-1
    amp = stats["amp_int"]
    flat = ~(np.abs(amp) > 0)
    level_k = np.where(flat, inv_per_day * G_PER_PG / np.where(land_area > 0, land_area, 1.0),
                       inv_per_day / np.where(flat, 1.0, -amp))
    level_int = inv_per_day  # Σ_c w·L per day, PgC d-1, by construction
    # each member: Ȳ_k = Ē_k + λ·|Ē|·mean_fit(gq); u from the remaining monthly residual
    ybar = stats["ebar_int"] + (lam * stats["qbar_int"][kq])[None, :]  # (member, 18) PgC d-1
    y_int = mint + lam[None, :, None] * qint[kq][None] + (level_int[None, :] - ybar)[:, :, None] * days[None, None, :]
    per = np.where(land_area > 0, land_area, np.nan)[None, :, None] * days[None, None, :] / G_PER_PG
    u = (inv[None] - y_int) / per  # (member, 18, month), gC m-2 d-1
    clim = np.zeros(u.shape[:2] + (12,))
    for m in range(1, 13):
        sel = fit & (month_of_year == m)
        clim[:, :, m - 1] = u[:, :, sel].mean(axis=2) if sel.any() else 0.0
    u = np.where(fit[None, None, :], u, clim[:, :, month_of_year - 1])
    u = np.nan_to_num(u)  # regions without land
    amp_mean = amp * G_PER_PG / np.where(land_area > 0, land_area, 1.0)
    return LayerFit(q10=q10, lam=lam, level_k=level_k, amp_mean=amp_mean, alpha=float(alpha), level_flat=flat, u=u,
                    residual={str(q): v[0] for q, v in tried.items()})


def cell_terms(fit_: LayerFit, members: np.ndarray, gq: np.ndarray, region: np.ndarray, days: np.ndarray,
                fit: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per cell of a band: the proxy scale ``λ[r]·|Ē|``, the level ``L``, and each member's
    ``Ȳ_k`` and the mean's ``Ȳ`` (gC m-2 d-1). ``gq`` (month, cell) for the chosen Q10."""
    wd = days[fit] / days[fit].sum()
    mean = members.mean(axis=0)
    ebar_k = np.tensordot(members[:, fit], wd, axes=(1, 0))  # (member, cell)
    ebar = ebar_k.mean(axis=0)
    scale = fit_.lam[region] * np.abs(ebar)
    amp = mean.std(axis=0)
    pattern = fit_.alpha * amp + (1.0 - fit_.alpha) * fit_.amp_mean[region]
    level = np.where(fit_.level_flat[region], fit_.level_k[region], -fit_.level_k[region] * pattern)
    gbar = np.tensordot(wd, gq[fit], axes=(0, 0))
    ybar_k = ebar_k + (scale * gbar)[None, :]
    return scale, level, ybar_k, ybar_k.mean(axis=0)


def member_monthly(fit_: LayerFit, members: np.ndarray, gq: np.ndarray, region: np.ndarray, days: np.ndarray,
                   fit: np.ndarray) -> np.ndarray:
    """Each member's layered monthly NEE (member, month, cell), gC m-2 d-1, float64."""
    scale, level, ybar_k, _ = cell_terms(fit_, members, gq, region, days, fit)
    u = fit_.u[:, region, :].transpose(0, 2, 1)  # (member, month, cell)
    return members + (scale * gq)[None] + (level[None, :] - ybar_k)[:, None, :] + u


def daily(fit_: LayerFit, mean_daily: np.ndarray, tair: np.ndarray, month_idx: np.ndarray, members: np.ndarray,
          gq: np.ndarray, region: np.ndarray, days: np.ndarray, fit: np.ndarray) -> np.ndarray:
    """The layered daily NEE of the ensemble mean (day, cell), float32: ``mean_daily`` (day,
    cell) the EC ensemble's daily mean, ``tair`` (day, cell) °C, ``month_idx`` (day,) each
    day's month; ``members``/``gq`` as for :func:`member_monthly`. Its monthly means equal the
    mean of :func:`member_monthly` over the members."""
    scale, level, _, ybar = cell_terms(fit_, members, gq, region, days, fit)
    u = fit_.u.mean(axis=0)[region, :].T  # (month, cell)
    f = np.exp(np.log(fit_.q10) * (tair.astype(np.float64) - T_REF) / 10.0)
    return (mean_daily + scale[None, :] * f + (level - ybar)[None, :] + u[month_idx]).astype(np.float32)
