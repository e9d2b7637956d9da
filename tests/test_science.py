"""Science acceptance on the twin, against its truth (issues 7 §6 and 24), on reduced twins
for another seed and for twin settings other than the default.

Each variant runs the whole pipeline (``run_pipeline``: twin, integrals, bridges, EC and
EC-ATM training, inference, evaluation) at a reduced size and checks, from the report's
``summary.json`` and ``metrics.csv``, what held in every world of the science sweep
(docs/evaluation.md, "Global consistency"):

* EC-ATM's global annual RMSE against the truth ≤ ⅓ of EC's (the paper's claim);
* the atmospheric term EC-ATM trained with is no more decoupled from its full integral
  than EC's bridges (§3.5);
* EC-ATM's per-cell RMSE of mean annual NEE against the truth ≤ EC's (no artefacts);
* EC-ATM's monthly RMSE against the inversion mean ≤ EC's in ≥ 12 of 18 regions;
* every absolute consistency check is computed, and those that held in every world of the
  sweep with the tower-bias head are required: every member within 2 PgC/yr of the truth,
  the tropical and extratropical means within 1 PgC/yr (global RMSE ≤ 1 PgC/yr held in 6 of
  10: where the inversion mean itself is 0.6–1.0 off, docs/evaluation.md; ≤ 2× the
  inversion mean's held in 10 of 10 but is no bound where the inversions are nearly exact:
  9.1× in the "less inversion spread" variant, both inversion-error knobs at the lower edge
  of their ranges);
* the tower-bias heads' mean equals the towers' actual mean error (observed − true NEE at
  their cells, numpy) within 35 %.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from fluxscale.config import BridgeConfig, ClusterConfig, EvalConfig, RunConfig, TrainConfig, twin_preset
from fluxscale.evaluate import consistency_checks, table_value
from fluxscale.run.pipeline import run_pipeline

# Reduced size: the tiny grid (2°) with 120 towers and 6 years; 5 folds per ensemble at the
# default 30 epochs.
SIZE = dict(n_sites=120, end_year=2006)
TRAIN = TrainConfig(folds=(0, 1, 2, 3, 4))

VARIANTS = {
    "seed 7": dict(seed=7),
    "stronger tower bias": dict(seed=3, night_bias_tropics=0.45, night_bias_extratropics=0.14),
    "less inversion spread": dict(seed=13, inversion_regional_error=0.05, inversion_misplacement=0.3),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_dual_constraint_claims_hold_on_twin_variants(name, tmp_path):
    cfg = RunConfig(data_dir=str(tmp_path / "data"), twin=twin_preset("tiny", **SIZE, **VARIANTS[name]),
                    cluster=ClusterConfig(n_workers=2), bridge=BridgeConfig(repeats=50), train=TRAIN,
                    evaluate=EvalConfig(maps=False))
    out = run_pipeline(cfg, show_progress=False)
    rep = Path(out["report"]).parent
    summary = json.loads((rep / "summary.json").read_text())
    df = pd.read_csv(rep / "metrics.csv")
    assert "scorecard" in summary and summary["science_checks"]
    consistency = {c["check"]: c for c in consistency_checks(df)}
    assert len(consistency) == 4, consistency  # every absolute check has its inputs
    for key in ("largest error of an EC-ATM member's global mean vs truth (PgC/yr)",
                "error of EC-ATM's tropics mean vs truth (PgC/yr)",
                "error of EC-ATM's extratropics mean vs truth (PgC/yr)"):
        assert consistency[key]["passed"], (key, consistency[key])
    # the paper's claims relative to EC (no longer checks since issue 31: EC is far off), from the tables
    get = lambda *key: table_value(df, *key)  # noqa: E731
    assert get("consistency", "EC-ATM", "GLOBAL", "truth", "annual RMSE") <= \
        get("consistency", "EC", "GLOBAL", "truth", "annual RMSE") / 3
    assert get("consistency", "EC-ATM", "PIXELS", "truth", "RMSE mean annual") <= \
        get("consistency", "EC", "PIXELS", "truth", "RMSE mean annual")
    term = df[(df.table == "bridge") & (df.metric == "term rel diff")].groupby("model").value.mean()
    assert term["EC-ATM"] <= term["EC"], term
    m = df[(df.table == "monthly") & (df.reference == "inversions") & (df.metric == "RMSE") & (df.region != "GLOBAL")]
    w = m.pivot_table(index="region", columns="model", values="value")
    assert int((w["EC-ATM"] <= w["EC"]).sum()) >= 12, w
    # EC-ATM is far closer to the truth's global mean than EC (independently of the checks)
    truth = table_value(df, "consistency", "truth", "GLOBAL", "-", "mean")
    ecatm, ec = (table_value(df, "consistency", k, "GLOBAL", "-", "mean") for k in ("EC-ATM", "EC"))
    assert abs(ecatm - truth) < 0.25 * abs(ec - truth), (ecatm, ec, truth)
    # the tower-bias head (TrainConfig.tower_bias) estimates the towers' mean systematic
    # error; the twin knows it: observed − true NEE at the towers' cells (numpy)
    members = json.loads((Path(cfg.data_dir) / "models" / "members.json").read_text())["members"]
    learned = np.mean([m["tower_bias_mean"] for k, m in members.items() if k.startswith("ecatm")])
    actual = _towers_mean_error(Path(cfg.data_dir))
    print(cfg.twin.seed, {k: round(c["value"], 3) for k, c in consistency.items()}, "tower bias", learned, actual)
    assert actual < 0 and abs(learned - actual) < 0.35 * abs(actual), (learned, actual)


def _towers_mean_error(root: Path) -> float:
    """Mean over every observed tower-day of observed NEE − the truth at the tower's cell."""
    sites, truth = xr.open_zarr(root / "sites.zarr"), xr.open_zarr(root / "truth.zarr")
    obs = sites.NEE.values  # (site, time)
    t = pd.DatetimeIndex(truth.time.values).get_indexer(pd.DatetimeIndex(sites.time.values))
    true = np.asarray(truth.NEE.values)[t][:, sites.cell.values].T  # (site, time)
    ok = ~np.isnan(obs)
    return float((obs[ok] - true[ok]).mean())
