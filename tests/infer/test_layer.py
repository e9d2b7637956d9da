"""The atmospheric layer's numerics (fluxscale.infer.layer) against direct numpy formulas."""

from __future__ import annotations

import numpy as np
import pytest

from fluxscale.infer import layer

N_CELLS, N_MONTHS, N_MEMBERS = 90, 36, 3
Q10S = (1.0, 1.5, 2.0, 3.0)


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(4)
    region = np.repeat(np.arange(layer.N_REGIONS), N_CELLS // layer.N_REGIONS)
    weight = rng.uniform(1e9, 5e9, N_CELLS)
    months = np.arange("2001-01", "2004-01", dtype="datetime64[M]")
    days = ((months + 1).astype("datetime64[D]") - months.astype("datetime64[D]")).astype(np.float64)
    month_idx = np.repeat(np.arange(N_MONTHS), days.astype(int))
    doy = np.concatenate([np.arange(int(d)) + 30.4 * (k % 12) for k, d in enumerate(days)])
    tair = (10 + 12 * np.sin(2 * np.pi * (doy[:, None] - 100) / 365) + rng.normal(0, 3, (month_idx.size, N_CELLS))
            + rng.normal(0, 5, N_CELLS)[None, :]).astype(np.float32)
    season = np.sin(2 * np.pi * (np.arange(N_MONTHS) % 12 - 3) / 12)
    members = (-1.5 + rng.normal(0, 0.5, N_CELLS)[None, None, :] - season[None, :, None] * rng.uniform(0.5, 2, N_CELLS)
               + rng.normal(0, 0.2, (N_MEMBERS, N_MONTHS, N_CELLS)))
    inv = rng.normal(-0.02, 0.05, (layer.N_REGIONS, N_MONTHS))
    fit = np.ones(N_MONTHS, bool)
    fit[-5:] = False  # months the inversions do not cover
    inv[:, ~fit] = np.nan
    return dict(region=region, weight=weight, days=days, month_idx=month_idx, tair=tair, members=members, inv=inv,
                fit=fit, moy=(np.arange(N_MONTHS) % 12) + 1)


def _fit(w, alpha=0.5):
    gq = layer.q10_monthly(w["tair"], w["month_idx"], N_MONTHS, Q10S)
    half = N_CELLS // 2  # two bands: the stats add up
    stats = None
    for sl in (slice(0, half), slice(half, None)):
        stats = layer.add_stats(stats, layer.band_stats(w["members"][:, :, sl], gq[:, :, sl], w["weight"][sl],
                                                        w["region"][sl], w["days"], w["fit"]))
    return layer.fit_layer(stats, w["inv"], w["days"], w["fit"], Q10S, w["moy"], alpha=alpha), gq


def _integral(x, w):
    """(…, month, cell) gC m-2 d-1 → (…, 18, month) PgC month-1, by loops over regions."""
    out = np.zeros(x.shape[:-2] + (layer.N_REGIONS, x.shape[-2]))
    for r in range(layer.N_REGIONS):
        m = w["region"] == r
        out[..., r, :] = (x[..., m] * w["weight"][m]).sum(-1) * w["days"] / 1e15
    return out


def test_q10_monthly_is_the_monthly_mean_of_the_daily_factor(world):
    gq = layer.q10_monthly(world["tair"], world["month_idx"], N_MONTHS, (2.0,))[0]
    for m in (0, 13, N_MONTHS - 1):
        days = world["month_idx"] == m
        np.testing.assert_allclose(gq[m], (2.0 ** ((world["tair"][days].astype(float) - 15) / 10)).mean(0), rtol=1e-12)


def test_fit_is_the_least_squares_q10_and_lambda(world):
    fit_, gq = _fit(world)
    mean = world["members"].mean(0)
    wd = world["days"][world["fit"]] / world["days"][world["fit"]].sum()
    r = np.abs((mean[world["fit"]] * wd[:, None]).sum(0))
    res = (world["inv"] - _integral(mean, world))[:, world["fit"]]
    best = None
    for k, q in enumerate(Q10S):
        s = _integral(r * gq[k], world)[:, world["fit"]]
        lam = np.array([np.linalg.lstsq(s[i][:, None], res[i], rcond=None)[0][0] for i in range(layer.N_REGIONS)])
        sse = ((res - lam[:, None] * s) ** 2).sum()
        np.testing.assert_allclose(fit_.residual[str(q)], sse, rtol=1e-9)
        if best is None or sse < best[0]:
            best = (sse, q, lam)
    assert fit_.q10 == best[1]
    np.testing.assert_allclose(fit_.lam, best[2], rtol=1e-9)


def test_every_member_meets_the_inversions_and_keeps_the_level(world):
    fit_, gq = _fit(world)
    k = Q10S.index(fit_.q10)
    out = layer.member_monthly(fit_, world["members"], gq[k], world["region"], world["days"], world["fit"])
    got = _integral(out, world)
    np.testing.assert_allclose(got[:, :, world["fit"]], np.broadcast_to(world["inv"][:, world["fit"]],
                                                                       got[:, :, world["fit"]].shape), atol=1e-12)
    # the long-term level of every cell: −k·(α a + (1−α) ā), the same for every member
    wd = world["days"][world["fit"]] / world["days"][world["fit"]].sum()
    level = (out[:, world["fit"]] * wd[None, :, None]).sum(1)
    a = world["members"].mean(0).std(0)
    for r in range(layer.N_REGIONS):
        m = world["region"] == r
        abar = (a[m] * world["weight"][m]).sum() / world["weight"][m].sum()
        pattern = 0.5 * a[m] + 0.5 * abar
        total = np.nansum(world["inv"][r, world["fit"]]) * 1e15 / world["days"][world["fit"]].sum()
        expect = pattern * total / (pattern * world["weight"][m]).sum()
        np.testing.assert_allclose(level[:, m], np.broadcast_to(expect, level[:, m].shape), rtol=1e-9, atol=1e-12)


def test_months_without_inversions_take_the_calendar_months_mean_offset(world):
    fit_, _ = _fit(world)
    for m in np.flatnonzero(~world["fit"]):
        same = world["fit"] & (world["moy"] == world["moy"][m])
        np.testing.assert_allclose(fit_.u[:, :, m], fit_.u[:, :, same].mean(2), rtol=1e-12)


def test_the_daily_layer_averages_to_the_members_mean(world):
    fit_, gq = _fit(world)
    g = gq[Q10S.index(fit_.q10)]
    rng = np.random.default_rng(1)
    mean = world["members"].mean(0)
    daily_ec = mean[world["month_idx"]] + rng.normal(0, 0.3, (world["month_idx"].size, N_CELLS))
    daily_ec -= (np.stack([daily_ec[world["month_idx"] == m].mean(0) for m in range(N_MONTHS)]) - mean)[world["month_idx"]]
    day = layer.daily(fit_, daily_ec, world["tair"], world["month_idx"], world["members"], g, world["region"],
                      world["days"], world["fit"])
    monthly = np.stack([day[world["month_idx"] == m].astype(np.float64).mean(0) for m in range(N_MONTHS)])
    members = layer.member_monthly(fit_, world["members"], g, world["region"], world["days"], world["fit"])
    np.testing.assert_allclose(monthly, members.mean(0), atol=2e-5)  # float32 daily values


def test_the_flat_level_and_a_region_without_amplitude(world):
    w = dict(world)
    w["members"] = world["members"].copy()
    w["members"][:, :, w["region"] == 0] = -1.0  # no seasonal amplitude in region 0
    fit_, gq = _fit(w, alpha=0.0)
    assert fit_.level_flat[0] and not fit_.level_flat[1:].any()
    out = layer.member_monthly(fit_, w["members"], gq[Q10S.index(fit_.q10)], w["region"], w["days"], w["fit"])
    wd = w["days"][w["fit"]] / w["days"][w["fit"]].sum()
    level = (out.mean(0)[w["fit"]] * wd[:, None]).sum(0)
    for r in (0, 5):  # alpha 0 and no amplitude: the level is even per m² of each region
        m = w["region"] == r
        np.testing.assert_allclose(level[m], level[m][0], rtol=1e-9)
