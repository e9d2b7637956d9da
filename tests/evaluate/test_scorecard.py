"""The baselines and the scorecard on the tiny twin, against plain numpy written here from
the stores (no fluxscale kernel reused), and the checks failing on fields that should fail."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from fluxscale.config import InferConfig
from fluxscale.evaluate.baselines import (cell_space, ensemble_field, inversions_gridded_field, offset_to,
                                          prior_field, spread_flat, truth_product)
from fluxscale.evaluate.data import open_evaluation_stores
from fluxscale.evaluate.scorecard import scorecard, scorecard_checks, scorecard_wide
from fluxscale.infer.stage import infer


@pytest.fixture(scope="module")
def root(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("scorecard") / "data"
    shutil.copytree(tiny_models, root)
    infer(root, InferConfig(), show_progress=False)
    return root


@pytest.fixture(scope="module")
def plain(root):
    """Everything the scorecard needs, by hand from the stores with numpy."""
    op = lambda n: xr.open_zarr(root / f"{n}.zarr")  # noqa: E731
    grid, integ, cube = op("grid").load(), op("integrals").load(), op("nee")
    il_all, jl_all = grid.cell_ilat.values, grid.cell_ilon.values
    reg_all = grid.region.values[il_all, jl_all]
    keep = np.flatnonzero(reg_all >= 0)
    il, jl, reg = il_all[keep], jl_all[keep], reg_all[keep]
    w = (grid.cell_area.values * grid.land_fraction.values)[il, jl]
    months = pd.DatetimeIndex(cube.month.values).intersection(pd.DatetimeIndex(integ.time.values))
    assert len(months) % 12 == 0 and months[0].month == 1  # the tiny twin: whole years
    days = months.days_in_month.values.astype(float)
    on = lambda a: a[:, il, jl].astype(float)  # noqa: E731  (month, lat, lon) → (month, cell)
    mi = pd.DatetimeIndex(cube.month.values).get_indexer(months)
    fields = {e: on(cube.NEE_monthly.sel(ensemble=e).values[mi]) for e in ("ec", "ecatm")}
    prior = op("prior").NEE
    fields["prior"] = on(prior.values[pd.DatetimeIndex(prior.time.values).get_indexer(months)])
    truth = op("truth")
    fields["truth"] = truth.NEE_monthly.values[truth.month.to_index().get_indexer(months)][:, keep].astype(float)
    regions = list(integ.region.values[:18])
    target = integ.inversions.mean("system").sel(region=regions, time=months).values  # (18, month)

    def integral(x):
        return np.stack([(x[:, reg == r] * w[reg == r]).sum(1) * days / 1e15 for r in range(18)])

    area = np.array([w[reg == r].sum() for r in range(18)])
    per_m2 = lambda t: t[reg].T * 1e15 / (days[:, None] * area[reg][None, :])  # noqa: E731
    fields["EC + offset"] = fields["ec"] + per_m2(target - integral(fields["ec"]))
    fields["prior + offset"] = fields["prior"] + per_m2(target - integral(fields["prior"]))
    fields["flat inversions"] = per_m2(target)
    inv, fire = op("inversions"), op("fire")
    f = grid.sizes["lat"] // inv.sizes["lat"]
    it = pd.DatetimeIndex(inv.time.values).get_indexer(months)
    imean = inv.land_flux.values.astype(float).mean(0)[it] - fire.co2fire.values.astype(float)[it]
    fields["inversions (gridded)"] = imean[:, il // f, jl // f]
    return dict(grid=grid, integ=integ, cube=cube, truth=truth, keep=keep, il=il, jl=jl, reg=reg, w=w,
                months=months, days=days, fields=fields, target=target, integral=integral, regions=regions,
                sites=op("sites"))


@pytest.fixture(scope="module")
def card(root):
    stores = open_evaluation_stores(root)
    space = cell_space(stores.grid, pd.DatetimeIndex(stores.nee.month.values).intersection(
        pd.DatetimeIndex(stores.integrals.time.values)))
    return scorecard(stores, extra=[truth_product(stores, space)])


def test_baselines_equal_plain_numpy(root, plain):
    stores = open_evaluation_stores(root)
    space = cell_space(stores.grid, plain["months"])
    f = plain["fields"]
    np.testing.assert_allclose(ensemble_field(stores, "ec", space), f["ec"], rtol=1e-12)
    np.testing.assert_allclose(prior_field(stores, space), f["prior"], rtol=1e-12)
    np.testing.assert_allclose(offset_to(f["ec"], plain["target"], space), f["EC + offset"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(offset_to(f["prior"], plain["target"], space), f["prior + offset"], rtol=1e-9,
                               atol=1e-12)
    np.testing.assert_allclose(spread_flat(plain["target"], space), f["flat inversions"], rtol=1e-12)
    np.testing.assert_allclose(inversions_gridded_field(stores, space), f["inversions (gridded)"], rtol=1e-12)
    # the integral of the plain fields is integrals.zarr's (truth, prior)
    integ = plain["integ"].sel(time=plain["months"], region=plain["regions"])
    np.testing.assert_allclose(plain["integral"](f["truth"]), integ.truth.values, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(plain["integral"](f["prior"]), integ.prior.values, rtol=1e-6, atol=1e-9)


def test_offset_baselines_match_the_inversion_mean_region_by_region(plain, card):
    for name in ("EC + offset", "prior + offset", "flat inversions"):
        np.testing.assert_allclose(plain["integral"](plain["fields"][name]), plain["target"], rtol=1e-9, atol=1e-12)
    wide = scorecard_wide(card)
    for metric in ("regional monthly RMSE", "regional annual RMSE", "global annual RMSE"):
        v = wide.loc[metric, ["EC + offset", "prior + offset", "flat inversions"]].to_numpy(dtype=float)
        assert v == pytest.approx([wide.loc[metric, "inversion mean"]] * 3, rel=1e-9)


def _plain_scores(p, x, daily=None):
    """Every metric of the field x (month, cell) against the truth, plain numpy."""
    w, days, t = p["w"], p["days"], p["fields"]["truth"]
    ny = len(days) // 12
    rmse = lambda a, b, wt=None: np.sqrt(np.average((a - b) ** 2, weights=wt))  # noqa: E731
    ix, it = p["integral"](x), p["integral"](t)
    ann = lambda r: r.reshape(r.shape[0], ny, 12).sum(-1)  # noqa: E731
    out = {"global annual RMSE": rmse(ann(ix).sum(0), ann(it).sum(0)),
           "regional annual RMSE": rmse(ann(ix), ann(it)), "regional monthly RMSE": rmse(ix, it)}
    ya = lambda v: (v * days[:, None]).reshape(ny, 12, -1).sum(1)  # noqa: E731  (year, cell) gC m-2 yr-1
    out["cell mean RMSE"] = rmse(ya(x).mean(0), ya(t).mean(0), w)
    msc = lambda v: v.reshape(ny, 12, -1).mean(0) - v.reshape(ny, 12, -1).mean(0).mean(0)  # noqa: E731
    out["cell seasonal-cycle RMSE"] = rmse(msc(x), msc(t), np.broadcast_to(w, (12, w.size)))
    out["cell IAV RMSE"] = rmse(ya(x) - ya(x).mean(0), ya(t) - ya(t).mean(0), np.broadcast_to(w, (ny, w.size)))
    # daily at the towers' cells, over the days each tower has an observation
    s = p["sites"]
    pos = np.searchsorted(p["keep"], s.cell.values)
    sday = pd.DatetimeIndex(s.time.values)
    obs = np.isfinite(s.NEE.values) & np.asarray(sday.to_period("M").to_timestamp().isin(p["months"]))[None, :]
    truth_d = s.time.size and p["truth"].NEE.values[pd.DatetimeIndex(p["truth"].time.values).get_indexer(sday)]
    ref = truth_d[:, p["keep"][pos]].T  # (site, day)
    if daily is None:
        mon = p["months"].get_indexer(sday.to_period("M").to_timestamp())
        sim = x[np.clip(mon, 0, None)][:, pos].T
    else:
        cube = p["cube"].NEE.sel(ensemble=daily).values[pd.DatetimeIndex(p["cube"].time.values).get_indexer(sday)]
        sim = cube[:, p["il"][pos], p["jl"][pos]].T
    out["daily RMSE at the towers' cells"] = rmse(sim[obs], ref[obs])
    return out


@pytest.mark.parametrize("product,field,daily", [("EC-ATM", "ecatm", "ecatm"), ("EC", "ec", "ec"),
                                                 ("prior", "prior", None), ("EC + offset", "EC + offset", None),
                                                 ("flat inversions", "flat inversions", None),
                                                 ("inversions (gridded)", "inversions (gridded)", None)])
def test_every_metric_equals_plain_numpy(plain, card, product, field, daily):
    want = _plain_scores(plain, plain["fields"][field], daily)
    got = card[card["product"] == product].set_index("metric").value
    for metric, v in want.items():
        assert got[metric] == pytest.approx(v, rel=1e-6), metric
    assert set(card[card["product"] == product].reference) == {"truth"}


def test_the_inversion_mean_is_scored_only_regionally(plain, card):
    it = plain["integral"](plain["fields"]["truth"])
    got = card[card["product"] == "inversion mean"].set_index("metric").value
    assert got["regional monthly RMSE"] == pytest.approx(np.sqrt(np.mean((plain["target"] - it) ** 2)), rel=1e-9)
    assert np.isnan(got[["cell mean RMSE", "cell seasonal-cycle RMSE", "cell IAV RMSE",
                         "daily RMSE at the towers' cells"]]).all()
    # the best of each row is the lowest among the products, never the truth itself
    for metric, sub in card.groupby("metric"):
        cand = sub[(sub.kind != "reference") & np.isfinite(sub.value)]
        assert set(sub[sub.best]["product"]) == set(cand[np.isclose(cand.value, cand.value.min())]["product"])


def _by_metric(checks):
    return {c["check"].removeprefix("scorecard: ").split(" vs ")[0]: c for c in checks}


def test_each_check_fails_on_a_field_that_should_fail_it(card):
    ec = _by_metric(scorecard_checks(card, "EC"))  # EC alone: tens of PgC/yr off
    for metric in ("global annual RMSE", "regional annual RMSE", "regional monthly RMSE", "cell mean RMSE"):
        assert not ec[metric]["passed"], metric
    assert "daily RMSE at the towers' cells" not in ec  # EC is not its own bar: no comparator left
    flat = _by_metric(scorecard_checks(card, "flat inversions"))  # no seasonal cycle inside a region
    assert not flat["cell seasonal-cycle RMSE"]["passed"]
    assert flat["cell seasonal-cycle RMSE"]["best"] != "flat inversions"
    truth = scorecard_checks(card, "truth")  # the truth beats every baseline at every scale
    assert len(truth) == 7 and all(c["passed"] for c in truth), [c for c in truth if not c["passed"]]
    for c in truth:
        assert c["value"] == pytest.approx(0, abs=1e-9) and c["best_value"] > 0


def test_without_a_truth_the_reference_is_what_is_held_out(root, tmp_path):
    real = tmp_path / "data"
    shutil.copytree(root, real, ignore=shutil.ignore_patterns("truth.zarr", "models", "dtw", "drivers.zarr"))
    stores = open_evaluation_stores(real)
    card = scorecard(stores)
    ref = card.drop_duplicates("metric").set_index("metric").reference
    assert ref["global annual RMSE"] == "GCB" and ref["regional monthly RMSE"] == "inversion mean"
    assert ref["daily RMSE at the towers' cells"] == "towers"
    assert card[card.metric.str.startswith("cell ")].value.isna().all()
    assert scorecard_checks(card, "EC-ATM") == []
    inv = card[(card["product"] == "inversion mean") & (card.metric == "regional monthly RMSE")]
    assert float(inv.value.iloc[0]) == 0 and not bool(inv.best.iloc[0])  # the reference is not a contender
    s = stores.sites
    obs = s.NEE.where(s.NEE_QC >= 0.5).values
    pos = np.searchsorted(np.flatnonzero(stores.grid.region.values[stores.grid.cell_ilat.values,
                                                                    stores.grid.cell_ilon.values] >= 0), s.cell.values)
    x = prior_field(stores, cell_space(stores.grid, pd.DatetimeIndex(stores.nee.month.values)))
    mon = pd.DatetimeIndex(stores.nee.month.values).get_indexer(
        pd.DatetimeIndex(s.time.values).to_period("M").to_timestamp())
    sim = x[mon][:, pos].T
    ok = np.isfinite(obs)
    got = card[(card["product"] == "prior") & (card.metric == "daily RMSE at the towers' cells")].value.iloc[0]
    assert got == pytest.approx(np.sqrt(np.mean((sim[ok] - obs[ok]) ** 2)), rel=1e-9)
