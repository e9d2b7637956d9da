"""The atmospheric layer (issue 31): the default NEE product ``dual``, EC's network NEE and the
inversions' gridded fluxes fused post hoc, pure numpy (no I/O; :mod:`fluxscale.infer.layer_stage`
runs it blockwise over the cube).

EC's members learn from the towers how NEE responds to the drivers, but the towers' night-time
flux loss biases them towards uptake in proportion to ecosystem respiration. The inversions know
each region's monthly total, and their gridded fluxes carry some of the pattern inside it, with
errors their systems' spread partly shows. The layer keeps what each source knows. Per region
``r`` of Table A1 (18), with ``G[c, m]`` the inversion mean's gridded flux (land flux minus fire,
mean over systems) at cell ``c`` (the inversion cell that holds it) and ``T[r, m]`` the inversion
mean's regional integral (``integrals.zarr``: each system's flux minus fire integrated on its own
grid, the mean over systems) in the months ``m`` the inversions cover:

1. **A respiration-shaped correction.** With the respiration proxy
   ``q[c, d] = |Ē[c]| · Q10^((Tair[c, d] − 15 °C) / 10)`` (``Ē[c]`` the EC ensemble's mean NEE of
   the cell over the fitted months, a productivity scale), ``Y = E + λ[r] · q`` with one ``λ[r]``
   per region, the least-squares fit of the region's monthly residual ``T − ∫E`` on ``∫q``;
   ``Q10`` is the value of :attr:`InferConfig.layer_q10` whose fit leaves the smallest residual
   over all regions. (The towers' loss scales with respiration, and respiration with
   temperature: the Q10 model of Lloyd & Taylor 1994 and Reichstein et al. 2005.)
2. **The long-term level from the atmosphere.** Each cell's mean over the fitted months becomes
   ``L[c] = −k[r] · (α a[c] + (1 − α) ā[r])``: ``a[c]`` the standard deviation of the EC
   ensemble's monthly NEE (its seasonal amplitude, a productivity pattern: where more carbon
   cycles, more can be stored), ``ā[r]`` its land-weighted regional mean, ``α`` =
   :attr:`InferConfig.layer_pattern_weight`, and ``k[r]`` such that the region's total over the
   fitted months is ``T``'s. (A region whose amplitudes integrate to 0 gets an even level.)
3. **The anomalies, fused.** ``Y``'s and ``G``'s anomalies (each cell's mean removed) are split
   into their mean seasonal cycle (``s``) and the rest (interannual and month-to-month, ``i``)
   and each part is combined as ``β[r] · Y′ + (1 − β[r]) · G′``, with the inverse-variance weight
   ``β[r] = σ²_G / (σ²_G + σ²_Y) = σ²_G / ⟨(Y′ − G′)²⟩``: ``σ²_G`` the inversion mean's error
   variance, the squared standard error of the systems' mean (their spread² / n) plus the
   representation error of a field on the inversion grid (``Y′``'s variance inside each inversion
   cell), land-weighted over the region's cells and months, and
   ``⟨(Y′ − G′)²⟩ = σ²_Y + σ²_G`` when the two errors are independent (clipped to [0, 1]).
4. **The monthly residual**, ``u[r, m]`` per m² of land, spread evenly over the region's land so
   that every region-month integral equals ``T``: what the inversions state for the region.
   (Integrating ``G`` over the model's land instead was better on five of six tuning worlds and
   worse on a test world with accurate inversions: it scales the inversions' fluxes, and their
   errors, by the ratio of the two grids' land areas.)

So ``dual[c, d] = E[c, d] + λ[r] q[c, d] + M[c, m(d)]`` with the monthly part
``M = L − Ȳ + (1 − β_s)(G_s − Y_s) + (1 − β_i)(G_i − Y_i) + u`` (``Ȳ`` the days-weighted mean of
``Y`` over the fitted months). Every member gets the same ``λ``, ``Q10``, ``L`` and fusion, and its
own ``Ȳ`` and ``u``, so that the members' mean is the layer of the ensemble mean and every member
meets the inversions. Months the inversions do not cover get the seasonal part of the fusion
and the mean ``u`` of their calendar month.

Units: NEE gC m-2 d-1; areas m²; integrals PgC month-1 (``Σ_c x[c] · w[c] · days / 1e15``).
Arrays are ``(month, cell)`` or ``(member, month, cell)`` over the land cells of a band or of
the globe; the regional sums of the two stats passes add up over bands.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["N_REGIONS", "T_REF", "LayerFit", "q10_monthly", "band_stats", "add_stats", "fit_layer",
           "fusion_stats", "fit_fusion", "monthly_part", "member_monthly", "daily"]

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


def _integral(x: np.ndarray, weight: np.ndarray, region: np.ndarray, days: np.ndarray) -> np.ndarray:
    """(…, month, cell) gC m-2 d-1 → (…, 18, month) PgC month-1."""
    return np.swapaxes(_rsum(x * (weight / G_PER_PG), region), -1, -2) * days


def q10_monthly(tair: np.ndarray, month_idx: np.ndarray, n_months: int, q10s) -> np.ndarray:
    """Monthly means of ``Q10^((T − 15)/10)`` for each value of ``q10s``: ``tair`` (day, cell) °C,
    ``month_idx`` (day,) → (q10, month, cell) float64."""
    counts = np.bincount(month_idx, minlength=n_months).astype(np.float64)
    out = np.zeros((len(q10s), n_months, tair.shape[1]), dtype=np.float64)
    x = (tair.astype(np.float64) - T_REF) / 10.0
    for k, q in enumerate(q10s):
        np.add.at(out[k], month_idx, np.exp(np.log(q) * x))
    return out / counts[None, :, None]


def _fit_weights(days: np.ndarray, fit: np.ndarray) -> np.ndarray:
    return days[fit] / days[fit].sum()


def band_stats(members: np.ndarray, gq: np.ndarray, systems: np.ndarray, weight: np.ndarray, region: np.ndarray,
               days: np.ndarray, fit: np.ndarray) -> dict[str, np.ndarray]:
    """Pass 1: the regional sums one band contributes to :func:`fit_layer`.

    ``members`` (member, month, cell) EC members' monthly NEE; ``gq`` (q10, month, cell) from
    :func:`q10_monthly`; ``systems`` (system, month, cell) each inversion system's gridded flux
    at the cells (NaN outside ``fit``; not used here, the signature is pass 2's); ``weight``
    (cell) land area m²; ``region`` (cell) 0–17; ``days`` (month,) days in each month; ``fit``
    (month,) bool, the months the inversions cover. Returns: ``member_int`` (member, 18, month)
    ∫E_k; ``q_int`` (q10, 18, month) ∫q; ``qbar_int`` (q10, 18) Σ_c w·|Ē|·mean_fit(gq) and ``ebar_int`` (member, 18)
    Σ_c w·Ē_k, ``amp_int`` (18,) Σ_c w·a, all per day (PgC d-1); ``area`` (18,) Σ_c w, m².
    """
    wd = _fit_weights(days, fit)
    mean = members.mean(axis=0)
    r = np.abs(np.tensordot(wd, mean[fit], axes=(0, 0)))
    scale = weight / G_PER_PG
    return {"member_int": _integral(members, weight, region, days),
            "q_int": _integral(gq * r, weight, region, days),
            "qbar_int": _rsum(np.tensordot(wd, gq[:, fit], axes=(0, 1)) * (r * scale), region),
            "ebar_int": _rsum(np.tensordot(members[:, fit], wd, axes=(1, 0)) * scale, region),
            "amp_int": _rsum(mean.std(axis=0) * scale, region), "area": _rsum(weight, region)}


def add_stats(a: dict[str, np.ndarray] | None, b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The sum of two bands' stats (:func:`band_stats`, :func:`fusion_stats`)."""
    return dict(b) if a is None else {k: a[k] + b[k] for k in a}


@dataclass(frozen=True)
class LayerFit:
    """The fitted layer (module docstring).

    ``q10``; ``lam`` (18,) λ (gC m-2 d-1 per unit proxy); ``level_k`` (18,) k; ``amp_mean`` (18,) ā
    (gC m-2 d-1); ``alpha``; ``level_flat`` (18,) True where the level is even (then L =
    ``level_k``); ``target`` (18, month) T, PgC month-1 (NaN outside the fitted months);
    ``beta_s``, ``beta_i`` (18,) the fusion's weights of Y (1 until :func:`fit_fusion`); ``u``
    (member, 18, month) gC m-2 d-1 (zeros until :func:`fit_fusion`); ``residual``: the sum of
    squared monthly residuals (PgC month-1)² of each tried Q10."""

    q10: float
    lam: np.ndarray
    level_k: np.ndarray
    amp_mean: np.ndarray
    alpha: float
    level_flat: np.ndarray
    target: np.ndarray
    beta_s: np.ndarray
    beta_i: np.ndarray
    u: np.ndarray
    residual: dict


def fit_layer(stats: dict[str, np.ndarray], inv: np.ndarray, days: np.ndarray, fit: np.ndarray, q10s,
              alpha: float = 0.5) -> LayerFit:
    """Steps 1–2 of the module docstring from the summed :func:`band_stats`: ``inv`` (18,
    month) the inversion mean's regional integrals T, PgC month-1; ``fit`` (month,) the months
    the inversions cover."""
    mint, qint = stats["member_int"], stats["q_int"]
    target = np.where(fit[None, :], inv, np.nan)
    res = (target - mint.mean(axis=0))[:, fit]
    tried = {}
    for k, q in enumerate(q10s):
        s = qint[k][:, fit]
        den = (s * s).sum(axis=1)
        lam = np.where(den > 0, (res * s).sum(axis=1) / np.where(den > 0, den, 1.0), 0.0)
        tried[float(q)] = (float(((res - lam[:, None] * s) ** 2).sum()), lam)
    q10 = min(tried, key=lambda q: tried[q][0])
    area = stats["area"]
    per_day = target[:, fit].sum(axis=1) / days[fit].sum()  # PgC d-1
    amp = stats["amp_int"]
    flat = ~(np.abs(amp) > 0)
    level_k = np.where(flat, per_day * G_PER_PG / np.where(area > 0, area, 1.0), per_day / np.where(flat, 1.0, -amp))
    n_m = mint.shape[0]
    return LayerFit(q10=q10, lam=tried[q10][1], level_k=level_k,
                    amp_mean=amp * G_PER_PG / np.where(area > 0, area, 1.0), alpha=float(alpha), level_flat=flat,
                    target=target, beta_s=np.ones(N_REGIONS), beta_i=np.ones(N_REGIONS),
                    u=np.zeros((n_m, N_REGIONS, days.size)), residual={str(q): v[0] for q, v in tried.items()})


def _seasonal(x: np.ndarray, month_of_year: np.ndarray, fit: np.ndarray) -> np.ndarray:
    """The mean seasonal cycle of ``x`` (…, month, cell) over the fitted months, on every month."""
    out = np.zeros_like(x)
    for m in range(1, 13):
        sel = fit & (month_of_year == m)
        if sel.any():
            out[..., month_of_year == m, :] = x[..., sel, :].mean(axis=-2, keepdims=True)
    return out


def _parts(fit_: LayerFit, members: np.ndarray, gq: np.ndarray, systems: np.ndarray, days: np.ndarray,
           fit: np.ndarray, month_of_year: np.ndarray, region: np.ndarray) -> dict[str, np.ndarray]:
    """Per cell of a band: ``scale`` = λ|Ē| (cell,), ``level`` L (cell,), ``ybar_k`` (member,
    cell), ``ybar`` (cell,), and the anomalies' parts ``ys``, ``yi``, ``gs``, ``gi`` (month,
    cell) and the systems' ``ss``, ``si`` (system, month, cell); ``gq`` (month, cell) for the
    chosen Q10."""
    wd = _fit_weights(days, fit)
    mean = members.mean(axis=0)
    ebar_k = np.tensordot(members[:, fit], wd, axes=(1, 0))
    scale = fit_.lam[region] * np.abs(ebar_k.mean(axis=0))
    amp = mean.std(axis=0)
    pattern = fit_.alpha * amp + (1.0 - fit_.alpha) * fit_.amp_mean[region]
    level = np.where(fit_.level_flat[region], fit_.level_k[region], -fit_.level_k[region] * pattern)
    ybar_k = ebar_k + (scale * np.tensordot(wd, gq[fit], axes=(0, 0)))[None, :]
    y = mean + scale * gq - ybar_k.mean(axis=0)
    s_anom = systems - np.tensordot(systems[:, fit], wd, axes=(1, 0))[:, None, :]
    s_anom = np.where(fit[None, :, None], s_anom, 0.0)
    g = s_anom.mean(axis=0)
    ys, gs, ss = (_seasonal(v, month_of_year, fit) for v in (y, g, s_anom))
    return {"scale": scale, "level": level, "ybar_k": ybar_k, "ybar": ybar_k.mean(axis=0), "ys": ys,
            "yi": np.where(fit[:, None], y - ys, 0.0), "gs": gs, "gi": g - np.where(fit[:, None], gs, 0.0),
            "ss": ss, "si": s_anom - np.where(fit[None, :, None], ss, 0.0)}


def _subgrid(x: np.ndarray, group: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Σ over months of each cell's squared deviation from the land-weighted mean of its group
    (inversion cell): ``x`` (month, cell) → (cell,)."""
    _, g = np.unique(group, return_inverse=True)
    wsum = np.bincount(g, weights=weight)
    mean = np.stack([np.bincount(g, weights=row * weight) / wsum for row in x])  # (month, group)
    return ((x - mean[:, g]) ** 2).sum(axis=0)


def fusion_stats(fit_: LayerFit, members: np.ndarray, gq: np.ndarray, systems: np.ndarray, weight: np.ndarray,
                 region: np.ndarray, days: np.ndarray, fit: np.ndarray, month_of_year: np.ndarray,
                 group: np.ndarray) -> dict:
    """Pass 2: a band's sums for :func:`fit_fusion`: per part (``s``, ``i``) the land-weighted
    sums over the region's cells and fitted months of the inversion mean's error variance
    (``var_<p>``: the systems' squared standard error, spread² / n, plus the representation error
    of a field on the inversion grid, estimated by ``Y′``'s variance inside each inversion cell
    ``group`` (cell,); the band must hold whole inversion cells) and of ``(Y′ − G′)²``
    (``diff_<p>``), m² (gC m-2 d-1)², and ``int_<p>`` (18, month) ∫(G′ − Y′), PgC month-1."""
    p = _parts(fit_, members, gq, systems, days, fit, month_of_year, region)
    n_sys = systems.shape[0]
    out = {}
    for part in ("s", "i"):
        y, g, s = p["y" + part][fit], p["g" + part][fit], p["s" + part][:, fit]
        var = s.var(axis=0, ddof=1).sum(axis=0) / n_sys if n_sys > 1 else np.zeros(y.shape[1])
        var = var + _subgrid(y, group, weight)
        out["var_" + part] = _rsum(var * weight, region)
        out["diff_" + part] = _rsum(((y - g) ** 2).sum(axis=0) * weight, region)
        out["int_" + part] = _integral(p["g" + part] - p["y" + part], weight, region, days)
    return out


def fit_fusion(fit_: LayerFit, stats: dict[str, np.ndarray], days: np.ndarray, fit: np.ndarray,
               month_of_year: np.ndarray) -> LayerFit:
    """Steps 3–4 of the module docstring: ``stats`` holds the summed :func:`band_stats` and
    :func:`fusion_stats` (their keys do not overlap)."""
    beta = {}
    for part in ("s", "i"):
        v, d = stats["var_" + part], stats["diff_" + part]
        beta[part] = np.clip(np.where(d > 0, v / np.where(d > 0, d, 1.0), 1.0), 0.0, 1.0)
    fused_int = (1 - beta["s"])[:, None] * stats["int_s"] + (1 - beta["i"])[:, None] * stats["int_i"]
    kq = [float(k) for k in fit_.residual].index(fit_.q10)
    mint, qint = stats["member_int"], stats["q_int"][kq]
    ybar = stats["ebar_int"] + (fit_.lam * stats["qbar_int"][kq])[None, :]  # (member, 18) PgC d-1
    level_int = fit_.target[:, fit].sum(axis=1) / days[fit].sum()
    y_int = (mint + fit_.lam[None, :, None] * qint[None] + (level_int[None, :] - ybar)[:, :, None] * days
             + fused_int[None])
    area = stats["area"]
    per = np.where(area > 0, area, np.nan)[None, :, None] * days[None, None, :] / G_PER_PG
    u = (fit_.target[None] - y_int) / per
    clim = np.zeros(u.shape[:2] + (12,))
    for m in range(1, 13):
        sel = fit & (month_of_year == m)
        clim[:, :, m - 1] = u[:, :, sel].mean(axis=2) if sel.any() else 0.0
    u = np.nan_to_num(np.where(fit[None, None, :], u, clim[:, :, month_of_year - 1]))
    return LayerFit(**{**fit_.__dict__, "beta_s": beta["s"], "beta_i": beta["i"], "u": u})


def monthly_part(fit_: LayerFit, members: np.ndarray, gq: np.ndarray, systems: np.ndarray, region: np.ndarray,
                 days: np.ndarray, fit: np.ndarray, month_of_year: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """The layer's terms on a band: ``scale`` (cell,) λ|Ē| and ``M`` (member, month, cell) each
    member's monthly part (``dual_k = E_k + scale · gq + M_k``), and the parts of
    :func:`_parts`."""
    p = _parts(fit_, members, gq, systems, days, fit, month_of_year, region)
    fused = (1 - fit_.beta_s[region]) * (p["gs"] - p["ys"]) + (1 - fit_.beta_i[region]) * (p["gi"] - p["yi"])
    u = fit_.u[:, region, :].transpose(0, 2, 1)  # (member, month, cell)
    return p["scale"], (p["level"][None, None, :] - p["ybar_k"][:, None, :]) + fused[None] + u, p


def member_monthly(fit_: LayerFit, members: np.ndarray, gq: np.ndarray, systems: np.ndarray, region: np.ndarray,
                   days: np.ndarray, fit: np.ndarray, month_of_year: np.ndarray) -> np.ndarray:
    """Each member's layered monthly NEE (member, month, cell), gC m-2 d-1, float64."""
    scale, m, _ = monthly_part(fit_, members, gq, systems, region, days, fit, month_of_year)
    return members + (scale * gq)[None] + m


def daily(scale: np.ndarray, monthly: np.ndarray, q10: float, mean_daily: np.ndarray, tair: np.ndarray,
          month_idx: np.ndarray) -> np.ndarray:
    """The layered daily NEE of the ensemble mean (day, cell), float32: ``mean_daily`` (day,
    cell) the EC ensemble's daily mean, ``tair`` (day, cell) °C, ``month_idx`` (day,) each day's
    month, ``scale`` (cell,) and ``monthly`` (month, cell) the members' mean of
    :func:`monthly_part`'s. Its monthly means equal the mean of :func:`member_monthly`."""
    f = np.exp(np.log(q10) * (tair.astype(np.float64) - T_REF) / 10.0)
    return (mean_daily + scale[None, :] * f + monthly[month_idx]).astype(np.float32)
