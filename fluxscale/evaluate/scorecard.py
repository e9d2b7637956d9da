"""The scorecard: every product and baseline scored against one reference at every scale.

The fields are those of :mod:`fluxscale.evaluate.baselines`: ``X (month, cell)`` gC m-2 d-1
on the land cells of the 18 regions, over the months the cube and ``integrals.zarr`` share;
regional integrals ``I (region, month)`` PgC month-1 (18 regions, Eq. 2); annual values are
calendar-year sums over the complete years only. With ``w`` a cell's land area, every
metric is a root-mean-square error (NaN pairs skipped), :data:`METRICS`:

* ``global annual RMSE`` (PgC yr-1): of the global annual sums ``Σ_r Σ_{m ∈ y} I[r, m]``
  over the years;
* ``regional annual RMSE`` (PgC yr-1): of the annual sums, pooled over 18 regions × years;
* ``regional monthly RMSE`` (PgC month-1): of ``I``, pooled over 18 regions × months;
* ``cell mean RMSE`` (gC m-2 yr-1): of each cell's mean annual NEE over the years
  (``Σ_{m ∈ y} X[m, c] · days[m]`` averaged over y), weighted by ``w`` over cells;
* ``cell seasonal-cycle RMSE`` (gC m-2 d-1): of each cell's mean seasonal cycle (the mean
  of each calendar month's ``X`` over the years, minus the mean of the 12), weighted by
  ``w`` over cells × 12 months;
* ``cell IAV RMSE`` (gC m-2 yr-1): of each cell's annual sums minus their mean over the
  years, weighted by ``w`` over cells × years;
* ``daily RMSE at the towers' cells`` (gC m-2 d-1): each product's daily value at the grid
  cell of every tower (``sites.zarr`` ``cell``) on every day that tower has an observation
  (``sites.NEE`` finite), pooled over (tower, day); the cube's ensembles give their daily
  ``NEE``, the other fields their monthly value on each day.

References (:func:`scorecard_references`): on a twin the truth (``truth.zarr``) at every
scale. Without a truth (real data) what is held out: the inversion mean for the regional
scales (not independent of EC-ATM, which is trained on it, nor of the offset baselines),
GCB (``gcb.zarr`` ``NEE``) for the global annual, the towers' own observations (QC ≥
``qc_min``) for the daily scale; the per-cell scales are left out (NaN, reference ``none``).

:func:`scorecard` returns the tidy table (``metric, product, kind, reference, value, unit,
best``): ``best`` marks the lowest value of each metric among the products other than the
reference (ties allowed). :func:`scorecard_wide` is the metric × product view;
:func:`scorecard_checks` the checks of the default product against the best baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fluxscale.evaluate.baselines import (BASELINES, INVERSION_MEAN, OFFSET_BASELINES, CellSpace, Product, cell_space,
                                          default_ensemble, ensemble_label, integrate_cells_monthly,
                                          inversion_mean_integrals, product_list, truth_field)
from fluxscale.evaluate.data import EvalStores

__all__ = ["METRICS", "Metric", "scorecard", "scorecard_wide", "scorecard_checks", "scorecard_summary", "scorecard_markdown",
           "scorecard_references", "complete_years",
           "default_product", "annual_sums", "cell_statistics", "weighted_rmse"]

GLOBAL_ANNUAL, REGIONAL_ANNUAL, REGIONAL_MONTHLY = "global annual RMSE", "regional annual RMSE", "regional monthly RMSE"
CELL_MEAN, CELL_MSC, CELL_IAV = "cell mean RMSE", "cell seasonal-cycle RMSE", "cell IAV RMSE"
DAILY = "daily RMSE at the towers' cells"


@dataclass(frozen=True)
class Metric:
    """One row of the scorecard: ``name``, ``unit``, ``scale`` (global, regional, cell, daily)."""

    name: str
    unit: str
    scale: str


METRICS = (Metric(GLOBAL_ANNUAL, "PgC yr-1", "global"), Metric(REGIONAL_ANNUAL, "PgC yr-1", "regional"),
           Metric(REGIONAL_MONTHLY, "PgC month-1", "regional"), Metric(CELL_MEAN, "gC m-2 yr-1", "cell"),
           Metric(CELL_MSC, "gC m-2 d-1", "cell"), Metric(CELL_IAV, "gC m-2 yr-1", "cell"),
           Metric(DAILY, "gC m-2 d-1", "daily"))
"""The scorecard's metrics, in its order (definitions in the module docstring)."""


# --- kernels (numpy) ---------------------------------------------------------------------------

def complete_years(months: pd.DatetimeIndex) -> np.ndarray:
    """The calendar years with all 12 months in ``months``."""
    y = np.asarray(months.year)
    return np.array([v for v in np.unique(y) if np.sum(y == v) == 12], dtype=np.int64)


def annual_sums(x: np.ndarray, months: pd.DatetimeIndex, axis: int = -1) -> np.ndarray:
    """Kernel: calendar-year sums along ``axis`` (one value per month) over the complete
    years of ``months``; the years' axis replaces ``axis``."""
    y = np.asarray(months.year)
    return np.stack([np.take(x, np.flatnonzero(y == v), axis=axis).sum(axis=axis) for v in complete_years(months)],
                    axis=axis)


def weighted_rmse(a: np.ndarray, b: np.ndarray, w: np.ndarray | None = None) -> float:
    """Kernel: sqrt(Σ w (a − b)² / Σ w) over the pairs where both are finite; ``w``
    broadcasts against ``a`` (default 1). NaN without a pair."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    w = np.broadcast_to(np.ones(1) if w is None else np.asarray(w, dtype=np.float64), d.shape)
    ok = np.isfinite(d) & (w > 0)
    return float(np.sqrt(np.sum(w[ok] * d[ok] ** 2) / np.sum(w[ok]))) if ok.any() else float("nan")


def cell_statistics(x: np.ndarray, space: CellSpace) -> dict[str, np.ndarray]:
    """Kernel: a field ``x (month, cell)`` gC m-2 d-1 → ``mean`` (cell) mean annual NEE
    gC m-2 yr-1, ``msc`` (12, cell) the mean seasonal cycle minus its mean gC m-2 d-1,
    ``iav`` (year, cell) annual sums minus their mean gC m-2 yr-1 (complete years only)."""
    years = complete_years(space.months)
    use = np.isin(space.months.year, years)
    ann = annual_sums(x * space.days[:, None], space.months, axis=0)  # (year, cell)
    mean = ann.mean(axis=0)
    cal = np.asarray(space.months.month)[use]
    msc = np.stack([x[use][cal == m].mean(axis=0) for m in range(1, 13)])
    return {"mean": mean, "msc": msc - msc.mean(axis=0), "iav": ann - mean}


# --- the references and the towers -------------------------------------------------------------

@dataclass(frozen=True)
class _Reference:
    """What every product is scored against: names per scale, the values."""

    names: dict[str, str]
    regional: np.ndarray  # (18, month) PgC month-1
    global_annual: np.ndarray  # (year,) PgC yr-1
    cells: dict[str, np.ndarray] | None  # cell_statistics of the truth, None: no per-cell scales
    daily: np.ndarray  # (tower, day) gC m-2 d-1, NaN where not scored


@dataclass(frozen=True)
class _Towers:
    """The towers scored: ``pos`` (tower,) position of its cell in the space; ``upos`` the
    distinct positions and ``inv`` each tower's index into them; ``days`` indices into the
    cube's ``time``; ``month`` each day's index into the space's months; ``obs`` (tower, day)
    the observations (NaN: none)."""

    pos: np.ndarray
    upos: np.ndarray
    inv: np.ndarray
    days: np.ndarray
    month: np.ndarray
    obs: np.ndarray


def _towers(stores: EvalStores, space: CellSpace, qc_min: float | None) -> _Towers:
    sites = stores.sites
    at = np.searchsorted(space.cells, sites.cell.values.astype(np.int64))
    at = np.clip(at, 0, space.cells.size - 1)
    keep = space.cells[at] == sites.cell.values  # towers in a region's cell
    t = pd.DatetimeIndex(sites.time.values)
    month = space.months.get_indexer(t.to_period("M").to_timestamp())
    days = pd.DatetimeIndex(stores.nee.time.values).get_indexer(t)
    use = (month >= 0) & (days >= 0)
    obs = sites.NEE
    if qc_min is not None:
        obs = obs.where(sites.NEE_QC >= qc_min)
    obs = np.asarray(obs.isel(site=np.flatnonzero(keep), time=np.flatnonzero(use)).values, dtype=np.float64)
    upos, inv = np.unique(at[keep], return_inverse=True)
    return _Towers(at[keep], upos, inv, days[use], month[use], obs)


def _daily(product: Product, field: np.ndarray | None, tw: _Towers) -> np.ndarray | None:
    """The product at the towers' cells on their days ``(tower, day)``."""
    if product.daily is not None:
        return product.daily(tw.upos, tw.days)[tw.inv]
    if field is None:
        return None
    return field[tw.month[None, :], tw.pos[:, None]]


def scorecard_references(stores: EvalStores, space: CellSpace, tw: _Towers) -> _Reference:
    """The truth at every scale on a twin; else the inversion mean (regional), GCB (global
    annual) and the towers (daily), the per-cell scales left out."""
    from fluxscale.evaluate.baselines import truth_product

    years = complete_years(space.months)
    if stores.truth is not None:
        x = truth_field(stores, space)
        reg = integrate_cells_monthly(x, space)
        obs = np.where(np.isfinite(tw.obs), _daily(truth_product(stores, space), x, tw), np.nan)
        return _Reference({m.name: "truth" for m in METRICS}, reg, annual_sums(reg.sum(axis=0), space.months),
                          cell_statistics(x, space), obs)
    reg = inversion_mean_integrals(stores, space)
    gcb = stores.gcb.NEE.reindex(year=years)
    names = {m.name: {"global": "GCB", "regional": INVERSION_MEAN, "cell": "none", "daily": "towers"}[m.scale]
             for m in METRICS}
    return _Reference(names, reg, np.asarray(gcb.values, dtype=np.float64), None, tw.obs)


# --- the scorecard ----------------------------------------------------------------------------

def _scores(product: Product, space: CellSpace, ref: _Reference, tw: _Towers) -> dict[str, float]:
    """Every metric of one product (NaN where it has no value at that scale)."""
    field = product.field() if product.field is not None else None
    reg = integrate_cells_monthly(field, space) if field is not None else product.integrals()
    out = {GLOBAL_ANNUAL: weighted_rmse(annual_sums(reg.sum(axis=0), space.months), ref.global_annual),
           REGIONAL_ANNUAL: weighted_rmse(annual_sums(reg, space.months), annual_sums(ref.regional, space.months)),
           REGIONAL_MONTHLY: weighted_rmse(reg, ref.regional)}
    nan = float("nan")
    if field is not None and ref.cells is not None:
        st = cell_statistics(field, space)
        out[CELL_MEAN] = weighted_rmse(st["mean"], ref.cells["mean"], space.area)
        out[CELL_MSC] = weighted_rmse(st["msc"], ref.cells["msc"], space.area[None, :])
        out[CELL_IAV] = weighted_rmse(st["iav"], ref.cells["iav"], space.area[None, :])
    else:
        out.update({CELL_MEAN: nan, CELL_MSC: nan, CELL_IAV: nan})
    d = _daily(product, field, tw)
    out[DAILY] = weighted_rmse(d, ref.daily) if d is not None else nan
    return out


def scorecard(stores: EvalStores, *, qc_min: float | None = 0.5, extra: list[Product] | tuple[Product, ...] = (),
              compare: dict | None = None, say=lambda m: None) -> pd.DataFrame:
    """Score every product and baseline (:func:`fluxscale.evaluate.baselines.product_list`,
    then ``extra``; ``compare``: label → another cube, whose ensembles are scored too) against
    the reference at every scale (module docstring).

    ``qc_min``: tower days below this QC fraction are not scored against the towers (real
    data; on a twin every observed day counts). One product's field is in memory at a
    time, beside the reference's. Returns the tidy table ``metric, product, kind,
    reference, value, unit, best``."""
    months = pd.DatetimeIndex(stores.nee.month.values).intersection(pd.DatetimeIndex(stores.integrals.time.values))
    space = cell_space(stores.grid, months)
    tw = _towers(stores, space, None if stores.truth is not None else qc_min)
    ref = scorecard_references(stores, space, tw)
    rows = []
    for p in [*product_list(stores, space, compare), *extra]:
        say(f"scorecard: {p.name}")
        for name, value in _scores(p, space, ref, tw).items():
            rows.append({"metric": name, "product": p.name, "kind": p.kind, "reference": ref.names[name],
                         "value": value})
    card = pd.DataFrame(rows)
    card["unit"] = card.metric.map({m.name: m.unit for m in METRICS})
    return _mark_best(card)


def _mark_best(card: pd.DataFrame) -> pd.DataFrame:
    """``best``: the lowest finite value of each metric among the products other than the
    reference and the truth (ties within 1e-9 relative allowed)."""
    card = card.copy()
    card["best"] = False
    for metric, sub in card.groupby("metric", sort=False):
        cand = sub[(sub["product"] != sub.reference) & (sub.kind != "reference") & np.isfinite(sub.value)]
        if len(cand):
            low = cand.value.min()
            card.loc[cand.index[np.isclose(cand.value, low, rtol=1e-9, atol=1e-15)], "best"] = True
    return card


def scorecard_wide(card: pd.DataFrame) -> pd.DataFrame:
    """The metric × product view (rows in :data:`METRICS` order, then ``unit`` and
    ``reference`` columns, then the products in the scorecard's order)."""
    wide = card.pivot_table(index="metric", columns="product", values="value", aggfunc="first", sort=False,
                            dropna=False)
    wide = wide.reindex(index=[m.name for m in METRICS if m.name in set(card.metric)],
                        columns=list(dict.fromkeys(card["product"])))
    meta = card.drop_duplicates("metric").set_index("metric")[["unit", "reference"]]
    out = meta.loc[wide.index].join(wide)
    out.columns.name = None
    return out


def default_product(stores: EvalStores) -> str:
    """The scorecard name of the cube's default ensemble (``fluxscale_default_ensemble``, else ``ecatm``)."""
    return ensemble_label(default_ensemble(stores.nee))


def _value(card: pd.DataFrame, metric: str, product: str) -> float:
    v = card[(card.metric == metric) & (card["product"] == product)].value
    return float(v.iloc[0]) if len(v) else float("nan")


def _best_of(card: pd.DataFrame, metric: str, products, exclude: str) -> tuple[str | None, float]:
    vals = {p: _value(card, metric, p) for p in products if p != exclude}
    vals = {p: v for p, v in vals.items() if np.isfinite(v)}
    if not vals:
        return None, float("nan")
    low = min(vals.values())
    p = next(p for p, v in vals.items() if np.isclose(v, low, rtol=1e-9, atol=1e-15))  # ties: the first named
    return p, vals[p]


def scorecard_checks(card: pd.DataFrame, default: str) -> list[dict[str, Any]]:
    """The checks of the product ``default`` against the simple alternatives (issue 31),
    against the truth only (empty without one). The comparators leave ``default`` itself out:

    * its cell mean RMSE and cell seasonal-cycle RMSE each ≤ the best baseline's
      (:data:`fluxscale.evaluate.baselines.BASELINES`);
    * its cell IAV RMSE ≤ the best of EC, EC + offset, flat inversions and inversions
      (gridded) (not the prior: a twin's prior carries the truth's IAV);
    * its regional monthly and regional annual RMSE ≤ 1.1 × the best offset baseline's
      (:data:`fluxscale.evaluate.baselines.OFFSET_BASELINES`);
    * its global annual RMSE ≤ 1.1 × the inversion mean's;
    * its daily RMSE at the towers' cells ≤ EC's.

    Each: ``{"check", "value", "bound", "passed", "best", "best_value"}`` (``best``: the
    comparator with the lowest value); a check whose values are missing is left out."""
    if not (card.reference == "truth").any():
        return []
    plan = [(CELL_MEAN, BASELINES, 1.0), (CELL_MSC, BASELINES, 1.0),
            (CELL_IAV, ("EC", "EC + offset", "flat inversions", "inversions (gridded)"), 1.0),
            (REGIONAL_MONTHLY, OFFSET_BASELINES, 1.1), (REGIONAL_ANNUAL, OFFSET_BASELINES, 1.1),
            (GLOBAL_ANNUAL, (INVERSION_MEAN,), 1.1), (DAILY, ("EC",), 1.0)]
    unit = {m.name: m.unit for m in METRICS}
    out = []
    for metric, against, factor in plan:
        value = _value(card, metric, default)
        best, best_value = _best_of(card, metric, against, default)
        if best is None or not np.isfinite(value):
            continue
        bound = factor * best_value
        scale = "" if factor == 1.0 else f"{factor:g} × "
        out.append({"check": f"scorecard: {metric} vs truth, {default} ({unit[metric]})", "value": value,
                    "bound": f"<= {scale}{best_value:.4g} ({best})", "passed": bool(value <= bound * (1 + 1e-12)),
                    "best": best, "best_value": best_value})
    return out


def scorecard_summary(card: pd.DataFrame) -> dict[str, Any]:
    """``summary.json``'s ``scorecard``: ``{metric: {product: value}}``, plus ``best``
    ``{metric: [products]}``, ``reference`` and ``unit`` ``{metric: …}`` (NaN → None)."""
    out: dict[str, Any] = {}
    for r in card.itertuples(index=False):
        out.setdefault(r.metric, {})[r.product] = float(r.value) if np.isfinite(r.value) else None
    first = card.drop_duplicates("metric").set_index("metric")
    out["best"] = {m: list(card[(card.metric == m) & card.best]["product"]) for m in first.index}
    out["reference"] = first.reference.to_dict()
    out["unit"] = first.unit.to_dict()
    return out


def _cell(v: float, best: bool) -> str:
    if not np.isfinite(v):
        return "–"
    text = f"{v:.4g}"
    return f"**{text}**" if best else text


def scorecard_markdown(card: pd.DataFrame, default: str) -> str:
    """The scorecard as a markdown section: one row per metric (unit, reference), one column
    per product, the best of each row in bold, ``default`` marked with ``*``."""
    products = list(dict.fromkeys(card["product"]))
    head = ["metric", "unit", "reference", *[p + (" *" if p == default else "") for p in products]]
    lines = [f"## Scorecard: every product and baseline at every scale (* the default product, {default}; "
             "bold: the best of the row)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in [m.name for m in METRICS if m.name in set(card.metric)]:
        sub = card[card.metric == m].set_index("product")
        row = [m, str(sub.unit.iloc[0]), str(sub.reference.iloc[0])]
        row += [_cell(float(sub.value[p]), bool(sub.best[p])) if p in sub.index else "–" for p in products]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)
