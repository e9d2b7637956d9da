"""``fluxscale evaluate``: tables, figures and a self-contained HTML report.

:func:`evaluate` writes into ``<data_dir>/<EvalConfig.out>``:

* ``summary.json`` (per model and region, every figure of merit, the scorecard and the
  checks; see :func:`fluxscale.evaluate.summary_dict`), ``metrics.csv`` (the long table),
  ``<table>_vs_<reference>.csv``, ``scorecard.csv`` (:mod:`fluxscale.evaluate.scorecard`)
  and ``tables.md``;
* ``fig*.png`` (:mod:`fluxscale.evaluate.figures`), and the tables some are drawn from (``fig*.csv``);
* ``report.html``: the scorecard, the tables, the figures (embedded as base64 PNG, each with its caption,
  :data:`fluxscale.evaluate.figures.CAPTIONS`) and the run's
  provenance (config, versions, seeds, store paths, timings per stage). It loads nothing
  from the network.

The report is written to ``report.partial`` and moved into place when complete.
"""

from __future__ import annotations

import base64
import html
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fluxscale.config import EvalConfig
from fluxscale.dataset.stores import open_store, read_manifest
from fluxscale.errors import FluxscaleError
from fluxscale.evaluate.baselines import compare_label
from fluxscale.evaluate.collect import ENSEMBLE_LABELS, collect_evaluation_data
from fluxscale.evaluate.data import open_evaluation_stores
from fluxscale.evaluate.tables import (TABLE_TITLES, evaluation_tables, pivot_tables, science_checks, table_value,
                                       write_tables)

__all__ = ["EvalReport", "evaluate", "render_html", "headline_numbers", "truth_note", "figure_number", "display_names"]


@dataclass
class EvalReport:
    """What :func:`evaluate` wrote."""

    out: str
    html: str
    summary: str
    figures: dict[str, str]
    skipped: dict[str, str]
    seconds: float
    headline: dict[str, Any] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)
    """:func:`fluxscale.evaluate.science_checks` (on a twin)."""
    default: str = "EC-ATM"
    """The default product (the cube's ``fluxscale_default_ensemble``)."""

    def text(self) -> str:
        lines = [f"evaluate: {len(self.figures)} figures, tables and summary.json in {self.out} "
                 f"({self.seconds:.1f} s)"]
        for k, v in self.headline.items():
            lines.append(f"evaluate: {k}: {v}")
        for c in self.checks:
            lines.append(f"evaluate: check {'PASS' if c['passed'] else 'FAIL'}: {c['check']} = {c['value']:.3g} "
                         f"(bound {c['bound']}{truth_note(c)})")
        for k, why in self.skipped.items():
            lines.append(f"evaluate: {k} not drawn: {why}")
        lines.append(f"evaluate: report at {self.html}")
        return "\n".join(lines)


def truth_note(check: dict) -> str:
    v = check.get("truth_value")
    return f"; the truth itself: {v:.3g}" if v is not None and v == v else ""


def _flagged(root: Path) -> dict[str, str]:
    """The members training flagged (``members.json``'s ``flagged``)."""
    from fluxscale.learn.model import models_dir

    path = models_dir(root) / "members.json"
    try:
        return json.loads(path.read_text()).get("flagged", {}) if path.exists() else {}
    except json.JSONDecodeError:
        return {}


def _resolve(root: Path, p: str) -> Path:
    q = Path(p)
    return q if q.is_absolute() else root / q


def _provenance(root: Path, ev) -> dict[str, Any]:
    man = read_manifest(root) or {}
    cube = json.loads(ev.attrs.get("cube_provenance") or "{}")
    members = {}
    mj = root / "models" / "members.json"
    if mj.exists():
        members = json.loads(mj.read_text()).get("members", {})
    timings = {}
    st = root / "stages.json"
    if st.exists():
        timings = json.loads(st.read_text()).get("timings_s", {})
    infer_rep = root / "nee.blocks" / "report.json"
    if infer_rep.exists() and "infer" not in timings:
        timings["infer"] = json.loads(infer_rep.read_text()).get("total_seconds")
    dataset = {k: man.get(k) for k in ("kind", "preset", "created", "fluxscale_version")}
    if dataset["kind"] == "twin" and not dataset["preset"]:  # a twin written before the preset was recorded
        from fluxscale.config import preset_name

        dataset["preset"] = preset_name(man.get("config"))
    return {"data_dir": str(root.resolve()), "dataset": dataset,
            "dataset_config": man.get("config"), "seed": (man.get("config") or {}).get("seed"),
            "cube": ev.attrs.get("cube"), "cube_config": cube.get("config"), "versions": cube.get("versions"),
            "members": {k: {kk: v.get(kk) for kk in ("member", "seed", "best_epoch", "seconds", "untrained")
                            if kk in v} for k, v in members.items()},
            "timings_s": timings}


def _tower_bias(root: Path, df: pd.DataFrame) -> dict[str, str]:
    """The towers' mean systematic error as EC-ATM's tower-bias heads estimate it
    (``members.json``; ``TrainConfig.tower_bias``) and, on a twin, as the truth has it
    (towers − truth over the towers' valid days)."""
    from fluxscale.learn.model import models_dir

    path = models_dir(root) / "members.json"
    members = json.loads(path.read_text()).get("members", {}) if path.exists() else {}
    est = [m["tower_bias_mean"] for m in members.values() if m.get("tower_bias_mean") is not None]
    if not est:
        return {}
    text = f"EC-ATM's tower-bias head {np.mean(est):.3f} (members {min(est):.3f} … {max(est):.3f})"
    truth = table_value(df, "site", "truth", "ALL", "towers", "bias")
    if truth == truth:
        text += f", the truth's {-truth:.3f}"
    return {"towers' mean error (towers − NEE)": text + " gC m-2 d-1"}


def headline_numbers(df: pd.DataFrame) -> dict[str, str]:
    get = lambda *key: table_value(df, *key)  # noqa: E731

    out = {}
    for ref in ("truth", "inversions", "GCB"):
        a, b = get("annual", "EC-ATM", "GLOBAL", ref, "RMSE"), get("annual", "EC", "GLOBAL", ref, "RMSE")
        if a == a:
            out[f"global annual RMSE vs {ref}"] = f"EC-ATM {a:.3f}, EC {b:.3f} PgC/yr"
    a, b = get("site", "EC-ATM", "ALL", "towers", "RMSE"), get("site", "EC", "ALL", "towers", "RMSE")
    out["site RMSE vs towers"] = f"EC-ATM {a:.3f}, EC {b:.3f} gC m-2 d-1"
    means = {m: get("consistency", m, "GLOBAL", "-", "mean") for m in ("EC-ATM", "EC", "inversions", "truth")}
    out["global mean NEE"] = ", ".join(f"{m} {v:.2f}" for m, v in means.items() if v == v) + " PgC/yr"
    for ens in ("EC-ATM", "EC"):
        sd, rng = get("consistency", ens, "GLOBAL", "-", "members sd"), get("consistency", ens, "GLOBAL", "-", "members range")
        if sd == sd:
            out[f"{ens} members' global means"] = f"sd {sd:.2f}, range {rng:.2f} PgC/yr"
    return out


_CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:12px;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:2px 6px;
text-align:right}th{background:#f3f3f3}img{max-width:100%;border:1px solid #ddd;margin:0.5em 0}
pre{background:#f7f7f7;padding:0.8em;overflow-x:auto;font-size:12px}h2{border-bottom:1px solid #ddd}
.caption{font-size:13px;color:#444;max-width:1000px}figure{margin:0 0 2em}
details summary{cursor:pointer;color:#246}"""


def _scorecard_html(card: pd.DataFrame, default: str) -> list[str]:
    """The scorecard as an HTML table (metric × product, the best of each row in bold)."""
    from fluxscale.evaluate.scorecard import scorecard_wide

    e = html.escape
    wide = scorecard_wide(card)
    products = [c for c in wide.columns if c not in ("unit", "reference")]
    parts = [f"<h2>Scorecard</h2><p>RMSE of every product and simple baseline at every scale; the default product "
             f"is <b>{e(default)}</b>; bold: the best of the row (Fig. S1, scorecard.csv).</p>",
             "<table><tr><th>metric</th><th>unit</th><th>reference</th>"
             + "".join(f"<th>{e(p)}{' *' if p == default else ''}</th>" for p in products) + "</tr>"]
    for m, row in wide.iterrows():
        best = set(card[(card.metric == m) & card.best]["product"])
        cells = []
        for p in products:
            v = row[p]
            text = "–" if not np.isfinite(v) else f"{v:.4g}"
            cells.append(f"<td>{'<b>' + text + '</b>' if p in best else text}</td>")
        parts.append(f"<tr><td>{e(str(m))}</td><td>{e(str(row['unit']))}</td><td>{e(str(row['reference']))}</td>"
                     + "".join(cells) + "</tr>")
    parts.append("</table>")
    return parts


def render_html(df: pd.DataFrame, figures: dict[str, Path], skipped: dict[str, str], prov: dict[str, Any],
                headline: dict[str, str], checks: list[dict[str, Any]] = (), card: pd.DataFrame | None = None,
                default: str = "EC-ATM") -> str:
    """The report as one HTML string (figures embedded; no external resources)."""
    e = html.escape
    ds = prov.get("dataset") or {}
    made = ", ".join(f"{k} {ds[k]}" for k in ("preset", "created", "fluxscale_version") if ds.get(k))
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>fluxscale evaluation</title>",
             f"<style>{_CSS}</style></head><body>", "<h1>fluxscale evaluation report</h1>",
             f"<p>Data: <code>{e(str(prov.get('data_dir')))}</code>; cube: <code>{e(str(prov.get('cube')))}</code>; "
             f"dataset: {e(str(ds.get('kind') or '?'))}{e(' (' + made + ')' if made else '')}</p>",
             "<h2>Headline</h2><ul>"]
    parts += [f"<li>{e(k)}: {e(display_names(v))}</li>" for k, v in headline.items()]
    parts.append("</ul>")
    if checks:
        parts.append("<h3>Against the truth (twin)</h3><ul>")
        parts += [f"<li><b>{'PASS' if c['passed'] else 'FAIL'}</b> {e(c['check'])} = {c['value']:.3g} "
                  f"(bound {e(c['bound'])}{e(truth_note(c))})</li>" for c in checks]
        parts.append("</ul>")
    if card is not None and len(card):
        parts += _scorecard_html(card, default)
    parts.append("<h2>Tables</h2>")
    for t, title in TABLE_TITLES.items():
        if not (df.table == t).any():
            continue
        parts.append(f"<h3>{e(title)}</h3>")
        for ref, wide in pivot_tables(df, t).items():
            if ref != "-":
                parts.append(f"<p>against <b>{e(ref)}</b></p>")
            wide = wide.rename(index=lambda r: display_names(str(r)))
            for c in wide.columns:  # counts (Int64): integers, and "–" where missing (not <NA>)
                if str(wide[c].dtype) == "Int64":
                    wide[c] = wide[c].astype(object).where(wide[c].notna(), "–")
            parts.append(wide.to_html(float_format=lambda v: f"{v:.3f}", na_rep="–", border=0))
    parts.append("<h2>Figures</h2>")
    from fluxscale.evaluate.figures import CAPTIONS, TITLES

    for name, path in figures.items():
        data = base64.b64encode(Path(path).read_bytes()).decode()
        caption = CAPTIONS.get(name, "")
        title, _, rest = caption.partition(": ")
        title = title if title.startswith("Fig.") else figure_number(name)
        heading = title + (f": {TITLES[name]}" if name in TITLES else "")
        parts.append(f"<figure id='{e(name)}'><h3>{e(heading)}</h3><img alt='{e(heading)}' "
                     f"src='data:image/png;base64,{data}'>")
        if caption:
            parts.append(f"<figcaption class='caption'><b>{e(title)}.</b> {e(rest or caption)}</figcaption>")
        parts.append("</figure>")
    if skipped:
        parts.append("<p>Not drawn: " + "; ".join(f"{e(k)} ({e(v)})" for k, v in skipped.items()) + "</p>")
    parts.append("<h2>Provenance</h2><details><summary>config, versions, seeds, store paths, members and timings "
                 "per stage (JSON; also provenance.json)</summary><pre>" + e(json.dumps(prov, indent=1, default=str))
                 + "</pre></details></body></html>")
    return "\n".join(parts)


def figure_number(name: str) -> str:
    """``fig2`` → ``Fig. 2``, ``figB2`` → ``Fig. B2``."""
    return "Fig. " + name[3:] if name.startswith("fig") else name


def display_names(text: str) -> str:
    """Member names as the report writes them: ``ecatm-fold3`` → ``EC-ATM fold 3``,
    ``ec-fold0`` → ``EC fold 0`` (the cube and the checkpoints keep the identifiers)."""
    import re

    return re.sub(r"\b(ecatm|ec)-fold(\d+)\b", lambda m: f"{ENSEMBLE_LABELS.get(m.group(1), m.group(1))} fold "
                  f"{m.group(2)}", text)


def evaluate(root: str | Path, cfg: EvalConfig | None = None, *, client=None, say=lambda m: None) -> EvalReport:
    """Evaluate the NEE cube of ``root`` and write the report (see the module docstring).

    Parameters
    ----------
    root : path
        A dataset directory after ``integrals``, ``bridge``, ``train`` and ``infer``.
    cfg : EvalConfig
    client : distributed.Client, optional
        Runs the regional integrals of the cube.
    """
    from fluxscale.evaluate.figures import map_fields, static_fields, write_figures
    from fluxscale.evaluate.scorecard import default_product, scorecard

    cfg = cfg or EvalConfig()
    root = Path(root)
    t0 = time.perf_counter()
    out = _resolve(root, cfg.out)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    stores = open_evaluation_stores(root, _resolve(root, cfg.cube))  # every reader below shares these
    ev = collect_evaluation_data(stores, qc_min=cfg.qc_min, client=client, say=say)
    say(f"evaluate: {ev.sizes['time']} months × {ev.sizes['region']} regions, sources "
        f"{', '.join(map(str, ev.source.values))}; {ev.sizes['site']} towers")
    df = evaluation_tables(ev)
    compare = {}
    for c in cfg.compare:
        path = _resolve(root, c)
        if not path.exists():
            raise FluxscaleError(f"{path}: evaluate.compare names a cube that does not exist")
        compare[compare_label(path)] = open_store(path, "nee")
    card = scorecard(stores, qc_min=cfg.qc_min, compare=compare)
    default = default_product(stores)
    write_tables(df, tmp, ev, card, default)
    maps = map_fields(stores) if cfg.maps else None
    figs, skipped = write_figures(ev, df, tmp, maps, static_fields(stores), cfg.fig9_sites, card)
    prov = _provenance(root, ev)
    head = headline_numbers(df)
    head.update(_tower_bias(root, df))
    flagged = _flagged(root)
    if flagged:
        head["flagged members"] = "; ".join(f"{k}: {v}" for k, v in flagged.items())
    checks = science_checks(df, card, default)
    (tmp / "report.html").write_text(render_html(df, figs, skipped, prov, head, checks, card, default))
    (tmp / "provenance.json").write_text(json.dumps(prov, indent=1, default=str))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    rep = EvalReport(str(out), str(out / "report.html"), str(out / "summary.json"),
                     {k: str(out / Path(v).name) for k, v in figs.items()}, skipped, time.perf_counter() - t0, head,
                     checks, default)
    say(rep.text())
    return rep
