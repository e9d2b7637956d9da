"""The evaluation's tables (paper Tables 2–3, Figs. 2D, 3, 8, §3.5, §3.6) and the checks on a twin.

:func:`evaluation_tables` turns :func:`fluxscale.evaluate.evaluation_data` into one long table
(``table, model, region, reference, metric, value``), one section (a private function) per
group of tables, their rows in the order of ``metrics.csv``; :func:`write_tables` writes the
CSV and markdown tables and ``summary.json``. Annual values are calendar-year sums of the
monthly integrals (PgC yr-1); only complete years count. :func:`science_checks` and
:func:`consistency_checks` test the paper's claims against the truth of a twin.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import xarray as xr

from fluxscale.bridges.integrals import G_PER_PG, GLOBAL
from fluxscale.evaluate import metrics
from fluxscale.evaluate.towers import TROPICS_LAT

__all__ = ["MODELS", "TABLE_TITLES", "COUNT_METRIC", "annual_complete", "evaluation_tables", "pivot_tables",
           "table_file_name", "markdown_table", "table_value", "science_checks", "consistency_checks",
           "summary_dict", "write_tables"]

MODELS = ("EC-ATM", "EC", "prior")
"""The models evaluated (rows of the tables), in the paper's order."""

TABLE_TITLES = {
    "annual": "Table 2: annual regional NEE (PgC yr-1): Pearson R and RMSE",
    "monthly": "Table 3: monthly regional NEE (PgC month-1): Pearson R and RMSE; mean seasonal cycle R and RMSE",
    "nnse": "Fig. 3: normalised Nash-Sutcliffe efficiency of monthly regional NEE",
    "iav": "Fig. 2D: interannual variability (sd of detrended annual NEE, PgC yr-1), with the spread across members",
    "site": "Fig. 8: site-level RMSE of daily NEE (gC m-2 d-1) against the towers",
    "bridge": "§3.5: post-hoc bridge validity, the bridges applied to each member against its full regional "
              "integral (mean over members of mean|bridge - integral| / mean|integral|, and R); 'term rel diff': "
              "the same for the atmospheric term each member was trained with (the bridges, or for EC-ATM with "
              "atm_term = sampled its fixed validation cells)",
    "consistency": "Global consistency: period-mean NEE (PgC yr-1) of every source globally, of each member, and "
                   "in the tropics (|lat| < 23.5°) and extratropics; RMSE of each cell's mean annual NEE against the "
                   "truth (gC m-2 yr-1, land-area weighted)",
    "oam": "§3.6 one-against-many: EC-ATM trained on a subset of the inversion systems, mean seasonal cycle "
           "(PgC month-1) against the mean of its own systems and of all of them; 'main' = the EC-ATM "
           "ensemble trained on all systems, against the same reference",
}


def annual_complete(monthly: xr.DataArray) -> xr.DataArray:
    """Calendar-year sums of a monthly series over complete years only (PgC yr-1)."""
    t = pd.DatetimeIndex(monthly.time.values)
    full = [y for y in np.unique(t.year) if np.sum(t.year == y) == 12]
    return metrics.annual(monthly).sel(year=full)


def _against_references(add: Callable[..., None], ev: xr.Dataset, models: list[str], refs: list[str]) -> None:
    """Tables 2, 3 and Fig. 3: annual, monthly and mean seasonal cycle R and RMSE and nNSE of
    every model in every region against each reference."""
    mon = ev.monthly
    ann = annual_complete(mon)
    msc = metrics.mean_seasonal_cycle(mon)
    for ref in refs:
        r_a, e_a = metrics.pearson(ann, ann.sel(source=ref), "year"), metrics.rmse(ann, ann.sel(source=ref), "year")
        r_m, e_m = metrics.pearson(mon, mon.sel(source=ref)), metrics.rmse(mon, mon.sel(source=ref))
        r_c, e_c = (metrics.pearson(msc, msc.sel(source=ref), "month"),
                    metrics.rmse(msc, msc.sel(source=ref), "month"))
        n = metrics.nnse(mon, mon.sel(source=ref))
        for m in models:
            for reg in ev.region.values:
                add("annual", m, reg, ref, "R", r_a.sel(source=m, region=reg))
                add("annual", m, reg, ref, "RMSE", e_a.sel(source=m, region=reg))
                add("monthly", m, reg, ref, "R", r_m.sel(source=m, region=reg))
                add("monthly", m, reg, ref, "RMSE", e_m.sel(source=m, region=reg))
                add("monthly", m, reg, ref, "MSC R", r_c.sel(source=m, region=reg))
                add("monthly", m, reg, ref, "MSC RMSE", e_c.sel(source=m, region=reg))
                add("nnse", m, reg, ref, "nNSE", n.sel(source=m, region=reg))


def _against_gcb(add: Callable[..., None], ev: xr.Dataset, models: list[str]) -> None:
    """Table 2's GLOBAL annual R and RMSE against the Global Carbon Budget."""
    ann = annual_complete(ev.monthly)
    g = ann.sel(region=GLOBAL)
    years = np.intersect1d(g.year.values, ev.gcb.year.values)
    gcb = ev.gcb.sel(year=years)
    for m in models:
        add("annual", m, GLOBAL, "GCB", "R", metrics.pearson(g.sel(source=m, year=years), gcb, "year"))
        add("annual", m, GLOBAL, "GCB", "RMSE", metrics.rmse(g.sel(source=m, year=years), gcb, "year"))


def _iav(add: Callable[..., None], ev: xr.Dataset, src: list[str]) -> None:
    """Fig. 2D: the IAV of every source, and its spread across the members of each ensemble."""
    ann = annual_complete(ev.monthly)
    years = np.intersect1d(ann.sel(region=GLOBAL).year.values, ev.gcb.year.values)
    iav = metrics.iav(ann, "year")
    mem_iav = metrics.iav(annual_complete(ev.member_monthly), "year")
    sys_iav = metrics.iav(annual_complete(ev.system_monthly), "year")
    for reg in ev.region.values:
        for s in src:
            add("iav", s, reg, "-", "IAV", iav.sel(source=s, region=reg))
        for ens in np.unique(ev.member_ensemble.values):
            v = mem_iav.sel(region=reg).where(ev.member_ensemble == ens, drop=True)
            add("iav", str(ens), reg, "-", "IAV members sd", v.std(ddof=1) if v.size > 1 else np.nan)
            add("iav", str(ens), reg, "-", "IAV members min", v.min())
            add("iav", str(ens), reg, "-", "IAV members max", v.max())
        add("iav", "inversions", reg, "-", "IAV systems sd", sys_iav.sel(region=reg).std(ddof=1))
    add("iav", "GCB", GLOBAL, "-", "IAV", metrics.iav(ev.gcb.sel(year=years), "year"))


def _bridge_validity(add: Callable[..., None], ev: xr.Dataset) -> None:
    """§3.5: the bridges on each member against its full integral."""
    regs = [str(r) for r in ev.member_bridge.region.values if str(r) != GLOBAL]  # bridges are regional
    full = ev.member_monthly.sel(region=regs)
    b = ev.member_bridge
    rel = abs(b - full).mean("time") / abs(full).mean("time")
    r = metrics.pearson(b, full)
    rel_t = abs(ev.member_term - full).mean("time") / abs(full).mean("time") if "member_term" in ev else None
    for ens in np.unique(ev.member_ensemble.values):
        k = ev.member_ensemble == ens
        for reg in regs:
            add("bridge", str(ens), reg, "full integral", "rel diff", rel.sel(region=reg).where(k, drop=True).mean())
            add("bridge", str(ens), reg, "full integral", "R", r.sel(region=reg).where(k, drop=True).mean())
            if rel_t is not None:
                add("bridge", str(ens), reg, "full integral", "term rel diff",
                    rel_t.sel(region=reg).where(k, drop=True).mean())


def _consistency(add: Callable[..., None], ev: xr.Dataset, src: list[str]) -> None:
    """Global consistency (absolute): period means, bands, members, pixels."""
    ann = annual_complete(ev.monthly)
    mean = ann.mean("year")
    for s in src:
        if s in ("prior",):
            continue
        add("consistency", s, GLOBAL, "-", "mean", mean.sel(source=s, region=GLOBAL))
        if "truth" in src and s != "truth":
            g = ann.sel(region=GLOBAL)
            add("consistency", s, GLOBAL, "truth", "annual RMSE", metrics.rmse(g.sel(source=s), g.sel(source="truth"), "year"))
    mem_mean = annual_complete(ev.member_monthly.sel(region=GLOBAL)).mean("year")
    for k, name in enumerate(ev.member.values):
        add("consistency", str(ev.member_ensemble.values[k]), f"member {name}", "-", "mean", mem_mean.isel(member=k))
    for ens in np.unique(ev.member_ensemble.values):
        v = mem_mean.where(ev.member_ensemble == ens, drop=True)
        add("consistency", str(ens), GLOBAL, "-", "members sd", v.std(ddof=1) if v.size > 1 else np.nan)
        add("consistency", str(ens), GLOBAL, "-", "members range", v.max() - v.min())
    if "annual_map" in ev:
        area = ev.cell_land_area
        trop = abs(ev.cell_lat) < TROPICS_LAT
        for s in ev.map_source.values:
            m = ev.annual_map.sel(map_source=s)
            add("consistency", str(s), "TROPICS", "-", "mean", (m * area).where(trop).sum() / G_PER_PG)
            add("consistency", str(s), "EXTRATROPICS", "-", "mean", (m * area).where(~trop).sum() / G_PER_PG)
            if "truth" in ev.map_source.values and s != "truth":
                d = m - ev.annual_map.sel(map_source="truth")
                add("consistency", str(s), "PIXELS", "truth", "RMSE mean annual",
                    np.sqrt(float((d * d * area).sum() / area.sum())))


def _one_against_many(add: Callable[..., None], ev: xr.Dataset) -> None:
    """§3.6: does a set move towards the systems it was trained on?"""
    msc = metrics.mean_seasonal_cycle(ev.monthly)
    c_set = metrics.mean_seasonal_cycle(ev.oam_monthly)
    c_own = metrics.mean_seasonal_cycle(ev.oam_target)
    c_all, c_main = msc.sel(source="inversions"), msc.sel(source="EC-ATM")
    for name in ev.set.values:
        model = f"EC-ATM[{name}]"
        for ref, target in (("own systems", c_own.sel(set=name)), ("inversions", c_all)):
            r = metrics.pearson(c_set.sel(set=name), target, "month")
            e = metrics.rmse(c_set.sel(set=name), target, "month")
            e_main = metrics.rmse(c_main, target, "month")
            for reg in ev.region.values:
                add("oam", model, reg, ref, "MSC R", r.sel(region=reg))
                add("oam", model, reg, ref, "MSC RMSE", e.sel(region=reg))
                add("oam", model, reg, ref, "MSC RMSE main", e_main.sel(region=reg))


def _towers(add: Callable[..., None], ev: xr.Dataset, models: list[str]) -> None:
    """Fig. 8: RMSE of daily NEE over every valid (site, day), overall and by region."""
    obs = ev.site_obs
    site_refs = [("towers", obs)] + ([("truth", ev.site_truth)] if "site_truth" in ev else [])
    if "site_truth" in ev:  # how far the truth itself is from the (biased, noisy) towers
        add("site", "truth", "ALL", "towers", "RMSE", metrics.rmse(ev.site_truth, obs, ("site", "day")))
        add("site", "truth", "ALL", "towers", "bias", metrics.bias(ev.site_truth, obs, ("site", "day")))
    for ref, target in site_refs:
        for m in models:
            sim = ev[f"site_{m}"]
            add("site", m, "ALL", ref, "RMSE", metrics.rmse(sim, target, ("site", "day")))
            add("site", m, "ALL", ref, "bias", metrics.bias(sim, target, ("site", "day")))
            add("site", m, "ALL", ref, "n", int((sim.notnull() & target.notnull()).sum()))
            for reg in np.unique(ev.site_region.values):
                k = ev.site_region == reg
                add("site", m, reg, ref, "RMSE", metrics.rmse(sim.where(k, drop=True), target.where(k, drop=True),
                                                              ("site", "day")))


def evaluation_tables(ev: xr.Dataset) -> pd.DataFrame:
    """The long table of every figure of merit: columns ``table, model, region, reference,
    metric, value`` (see :data:`TABLE_TITLES`). References: ``inversions`` (their mean),
    ``GCB`` (GLOBAL annual only), ``truth`` (a twin), ``towers`` (site table)."""
    src = [str(s) for s in ev.source.values]
    refs = ["inversions"] + (["truth"] if "truth" in src else [])
    models = [m for m in MODELS if m in src]
    rows: list[dict[str, Any]] = []

    def add(table, model, region, ref, metric, value):
        rows.append({"table": table, "model": model, "region": str(region), "reference": ref, "metric": metric,
                     "value": float(value)})

    _against_references(add, ev, models, refs)
    _against_gcb(add, ev, models)
    _iav(add, ev, src)
    if "member_bridge" in ev:
        _bridge_validity(add, ev)
    _consistency(add, ev, src)
    if "oam_monthly" in ev:
        _one_against_many(add, ev)
    _towers(add, ev, models)
    return pd.DataFrame(rows)


def pivot_tables(df: pd.DataFrame, table: str) -> dict[str, pd.DataFrame]:
    """``table``'s rows as wide tables, one per reference: rows = regions, columns =
    ``"<model> <metric>"``."""
    d = df[df.table == table]
    out = {}
    for ref in d.reference.unique():
        sub = d[d.reference == ref]
        wide = sub.pivot_table(index="region", columns=["model", "metric"], values="value", aggfunc="first",
                               sort=False)
        wide.columns = [f"{m} {k}" for m, k in wide.columns]
        wide.index.name = "region"
        wide = wide.reindex(list(sub.region.unique()))
        for c in wide.columns:
            if c.endswith(f" {COUNT_METRIC}"):  # counts as integers (202846, not 202846.000)
                wide[c] = wide[c].round().astype("Int64")
        out[ref] = wide
    return out


COUNT_METRIC = "n"
"""The metric that is a count (days at the towers): written and shown as an integer."""


def table_file_name(table: str, reference: str) -> str:
    """The file stem of a wide table: ``<table>_vs_<reference>`` with spaces as underscores
    (``bridge_vs_full_integral``); ``<table>`` for a table without a reference."""
    return table if reference == "-" else f"{table}_vs_{reference}".replace(" ", "_")


def _fmt(v: Any) -> str:
    if v is pd.NA:
        return "–"
    if isinstance(v, (float, np.floating)):
        return "–" if not np.isfinite(v) else f"{v:.3f}"
    return str(v)


def markdown_table(wide: pd.DataFrame) -> str:
    """A DataFrame as a GitHub markdown table (index first), floats to 3 decimals."""
    head = [wide.index.name or "", *map(str, wide.columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for idx, row in wide.iterrows():
        lines.append("| " + " | ".join([str(idx), *(_fmt(v) for v in row.values)]) + " |")
    return "\n".join(lines)


def table_value(df: pd.DataFrame, table: str, model: str, region: str, reference: str, metric: str) -> float:
    """One figure of merit from :func:`evaluation_tables` (NaN when absent)."""
    v = df[(df.table == table) & (df.model == model) & (df.region == region) & (df.reference == reference)
           & (df.metric == metric)].value
    return float(v.iloc[0]) if len(v) else float("nan")


def science_checks(df: pd.DataFrame, card: pd.DataFrame | None = None, default: str = "EC-ATM"
                   ) -> list[dict[str, Any]]:
    """The checks on a twin (they need the truth): the absolute global-consistency checks of
    the product ``default`` (:func:`consistency_checks`) and, given the scorecard ``card``,
    its checks against the best simple alternative at every scale
    (:func:`fluxscale.evaluate.scorecard.scorecard_checks`). Each ``{"check", "value",
    "bound", "passed"}`` (the scorecard's also ``best`` and ``best_value``); empty without
    a truth."""
    from fluxscale.evaluate.scorecard import scorecard_checks

    if not (df.reference == "truth").any():
        return []
    return consistency_checks(df, default) + (scorecard_checks(card, default) if card is not None else [])


def consistency_checks(df: pd.DataFrame, model: str = "EC-ATM") -> list[dict[str, Any]]:
    """The absolute global-consistency claims on a twin (issue 24) for ``model``: its global
    annual RMSE against the truth ≤ 1 PgC/yr; every one of its members' period-mean global
    NEE within 2 PgC/yr of the truth's; its tropical (|lat| < 23.5°) and extratropical period
    means each within 1 PgC/yr of the truth's. A check whose inputs are missing is left out
    (the comparisons with the simple alternatives are the scorecard's,
    :func:`fluxscale.evaluate.scorecard.scorecard_checks`)."""
    get = lambda *key: table_value(df, *key)  # noqa: E731

    out = []

    def check(name: str, value: float, bound: str, passed: bool) -> None:
        if np.isfinite(value):
            out.append({"check": name, "value": float(value), "bound": bound, "passed": bool(passed)})

    a = get("consistency", model, GLOBAL, "truth", "annual RMSE")
    check(f"global annual RMSE vs truth, {model} (PgC/yr)", a, "<= 1.0", a <= 1.0)
    truth = get("consistency", "truth", GLOBAL, "-", "mean")
    mem = df[(df.table == "consistency") & (df.model == model) & df.region.str.startswith("member ")]
    if len(mem) and np.isfinite(truth):
        worst = float(np.max(np.abs(mem.value.to_numpy() - truth)))
        article = "an" if model[:1].upper() in "AEIOU" else "a"
        check(f"largest error of {article} {model} member's global mean vs truth (PgC/yr)", worst, "<= 2.0",
              worst <= 2.0)
    for band in ("TROPICS", "EXTRATROPICS"):
        d = abs(get("consistency", model, band, "-", "mean") - get("consistency", "truth", band, "-", "mean"))
        check(f"error of {model}'s {band.lower()} mean vs truth (PgC/yr)", d, "<= 1.0", d <= 1.0)
    return out


def summary_dict(df: pd.DataFrame, ev: xr.Dataset | None = None, card: pd.DataFrame | None = None,
                 default: str = "EC-ATM") -> dict[str, Any]:
    """``{model: {region: {"<table> <metric> vs <reference>": value}}}`` plus ``meta``,
    ``science_checks`` (:func:`science_checks` of the product ``default``, on a twin) and,
    given the scorecard ``card``, ``scorecard``
    (:func:`fluxscale.evaluate.scorecard.scorecard_summary`, with ``default``)."""
    out: dict[str, Any] = {}
    for r in df.itertuples(index=False):
        key = f"{r.table} {r.metric}" + ("" if r.reference == "-" else f" vs {r.reference}")
        out.setdefault(r.model, {}).setdefault(r.region, {})[key] = None if not np.isfinite(r.value) else r.value
    meta = {"tables": TABLE_TITLES}
    if ev is not None:
        t = pd.DatetimeIndex(ev.time.values)
        meta.update(root=ev.attrs.get("root"), cube=ev.attrs.get("cube"), months=[str(t[0].date()), str(t[-1].date())],
                    sources=[str(s) for s in ev.source.values], sites=int(ev.sizes.get("site", 0)))
    res = {"meta": meta, "models": out, "science_checks": science_checks(df, card, default)}
    if card is not None:
        from fluxscale.evaluate.scorecard import scorecard_summary

        res["scorecard"] = {**scorecard_summary(card), "default": default}
    return res


def write_tables(df: pd.DataFrame, out: str | Path, ev: xr.Dataset | None = None, card: pd.DataFrame | None = None,
                 default: str = "EC-ATM") -> dict[str, Path]:
    """Write ``<table>_vs_<reference>.csv`` for every table, ``tables.md`` (all of them, markdown),
    ``metrics.csv`` (the long table) and ``summary.json`` into ``out``; given the scorecard
    ``card`` also ``scorecard.csv`` (the tidy table) and its section in ``tables.md`` and
    ``summary.json``; return the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"metrics": out / "metrics.csv", "summary": out / "summary.json", "markdown": out / "tables.md"}
    df.to_csv(paths["metrics"], index=False)
    md = []
    for t, title in TABLE_TITLES.items():
        if not (df.table == t).any():
            continue
        md += [f"## {title}", ""]
        for ref, wide in pivot_tables(df, t).items():
            name = table_file_name(t, ref)
            wide.to_csv(out / f"{name}.csv")
            paths[name] = out / f"{name}.csv"
            md += ([] if ref == "-" else [f"against {ref}:", ""]) + [markdown_table(wide), ""]
    if card is not None:
        from fluxscale.evaluate.scorecard import scorecard_markdown

        paths["scorecard"] = out / "scorecard.csv"
        card.to_csv(paths["scorecard"], index=False)
        md += [scorecard_markdown(card, default), ""]
    paths["markdown"].write_text("\n".join(md))
    paths["summary"].write_text(json.dumps(summary_dict(df, ev, card, default), indent=1))
    return paths
