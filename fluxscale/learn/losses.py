"""The objective functions of the EC and EC-ATM models (paper §3.2–3.4, Eq. 4–14).

All functions take and return torch tensors and are differentiable. Units: NEE in
gC m-2 d-1 (EC term), regional integrals in PgC month-1 (ATM term).
"""

from __future__ import annotations

import torch

__all__ = ["ec_loss", "atm_loss", "atm_loss_terms", "uncertainty_weighted", "CUBE_ROOT_EPS"]

CUBE_ROOT_EPS = 1e-12
"""Added under the cube root of Eq. 8 (PgC³ month⁻³): the root's derivative is infinite at
0, and a region whose prediction equals every inversion would turn the gradient into NaN.
Typical terms are ≥ 1e-6, so the shift is below 1e-4 PgC month⁻¹ at worst."""


def ec_loss(pred: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
    """Eq. 5: mean squared error between predicted and observed NEE over the non-NaN
    observations (any shape; ``pred`` and ``obs`` broadcast). NaN if none is observed."""
    pred, obs = torch.broadcast_tensors(pred, obs)
    ok = ~torch.isnan(obs)
    return ((pred[ok] - obs[ok]) ** 2).mean()


def atm_loss_terms(pred: torch.Tensor, inversions: torch.Tensor) -> torch.Tensor:
    """Eq. 8–10 per month and region: ``L_{r,m} / (1 + range_{r,m})``.

    ``pred`` (months, regions) the bridge estimates (Eq. 7); ``inversions`` (systems,
    months, regions). Returns (months, regions).
    """
    if inversions.dim() != 3 or inversions.shape[1:] != pred.shape:
        raise ValueError(f"inversions {tuple(inversions.shape)} must be (systems, *pred.shape) with pred "
                         f"{tuple(pred.shape)} = (months, regions)")
    l3 = (torch.abs(inversions - pred.unsqueeze(0)) ** 3).mean(dim=0)            # Eq. 8, under the root
    l_rm = torch.pow(l3 + CUBE_ROOT_EPS, 1.0 / 3.0)
    spread = inversions.max(dim=0).values - inversions.min(dim=0).values          # Eq. 9
    return l_rm / (1.0 + spread)                                                  # Eq. 10, per month


def atm_loss(pred: torch.Tensor, inversions: torch.Tensor, area_weights: torch.Tensor,
             annual_weight: float = 0.0, years: torch.Tensor | None = None,
             annual_target: str = "systems") -> torch.Tensor:
    """Eq. 8–11: the atmospheric loss.

    Parameters
    ----------
    pred : (months, regions)
        Regional monthly NEE from the bridges (Eq. 7), PgC month-1.
    inversions : (systems, months, regions)
        The inversions' regional integrals (fire-adjusted), PgC month-1.
    area_weights : (regions,)
        Land area of each region over the global land area (sums to 1).

    annual_weight : float
        0 (the paper): the monthly terms alone. Otherwise the same Eq. 8–10 terms on each
        region's calendar-year sums (pred and inversions summed over the months of each year
        in ``years``), averaged over years and added with this weight: an annual total is what
        the inversions constrain best, and a per-month loss barely feels an offset that is
        small against the seasonal cycle but adds up over a year. The annual values are
        means per month (sums / months), so both parts have the monthly terms' scale.
    annual_target : str
        ``"systems"``: the annual part is Eq. 8–10 on the annual means (ℓ3 over the systems);
        ``"mean"``: |mean over systems − pred| / (1 + range) on them, which pulls to the
        systems' mean everywhere, where the ℓ3 over systems is nearly flat inside their range.
    years : (months,), optional
        Calendar year of each month (needed with ``annual_weight``; only complete years are
        summed — the caller passes whole years).

    Returns
    -------
    Scalar: per month and region the ℓ3 norm over systems of |inversion − pred| divided by
    1 + the range over systems, averaged over months, summed over regions with the weights
    (plus ``annual_weight`` × the same on annual sums).
    """
    if area_weights.shape != pred.shape[-1:]:
        raise ValueError(f"area_weights {tuple(area_weights.shape)} must be (regions,) = {tuple(pred.shape[-1:])}")
    loss = (atm_loss_terms(pred, inversions).mean(dim=0) * area_weights).sum()
    if annual_weight:
        if years is None:
            raise ValueError("atm_loss: annual_weight needs the year of each month")
        uniq, idx = torch.unique(years, return_inverse=True)
        p_y = torch.zeros((uniq.numel(), pred.shape[1]), dtype=pred.dtype, device=pred.device).index_add(0, idx, pred)
        i_y = torch.zeros((inversions.shape[0], uniq.numel(), inversions.shape[2]), dtype=inversions.dtype,
                          device=inversions.device).index_add(1, idx, inversions)
        n = torch.bincount(idx, minlength=uniq.numel()).to(pred.dtype)  # months per year
        p_y, i_y = p_y / n[:, None], i_y / n[None, :, None]  # annual means, PgC month-1: the monthly terms' scale
        if annual_target == "mean":
            spread = i_y.max(dim=0).values - i_y.min(dim=0).values
            terms = (i_y.mean(dim=0) - p_y).abs() / (1.0 + spread)
        else:
            terms = atm_loss_terms(p_y, i_y)
        loss = loss + annual_weight * (terms.mean(dim=0) * area_weights).sum()
    return loss


def uncertainty_weighted(l_ec: torch.Tensor, l_atm: torch.Tensor, log_var_ec: torch.Tensor,
                         log_var_atm: torch.Tensor) -> torch.Tensor:
    """Eq. 12–14 (Kendall et al. 2018) with learned log-variances ``s = log σ²``:
    ``Σ ½·e^(−s)·L + ½·s`` over the EC and ATM terms (``½·s = log σ`` of Eq. 13)."""
    return (0.5 * torch.exp(-log_var_ec) * l_ec + 0.5 * log_var_ec
            + 0.5 * torch.exp(-log_var_atm) * l_atm + 0.5 * log_var_atm)
