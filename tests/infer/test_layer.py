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
    fit = np.ones(N_MONTHS, bool)
    fit[-5:] = False  # months the inversions do not cover
    truth = members.mean(0) + 0.8 + 0.3 * season[:, None]
    systems = truth[None] + rng.normal(0, 0.3, (4, 1, N_CELLS)) + rng.normal(0, 0.2, (4, N_MONTHS, N_CELLS))
    systems[:, ~fit] = np.nan
    group = np.arange(N_CELLS) // 2  # inversion cells of two model cells, never across regions (5 per region)
    inv = rng.normal(-0.02, 0.05, (layer.N_REGIONS, N_MONTHS))  # the inversions' regional integrals
    inv[:, ~fit] = np.nan
    return dict(region=region, weight=weight, days=days, month_idx=month_idx, tair=tair, members=members,
                systems=systems, group=group, inv=inv, fit=fit, moy=(np.arange(N_MONTHS) % 12) + 1)


def _fit(w, alpha=0.5, systems=None):
    systems = w["systems"] if systems is None else systems
    gq = layer.q10_monthly(w["tair"], w["month_idx"], N_MONTHS, Q10S)
    half = N_CELLS // 2  # two bands (of whole inversion cells): the stats add up
    bands = (slice(0, half), slice(half, None))
    s1 = None
    for sl in bands:
        s1 = layer.add_stats(s1, layer.band_stats(w["members"][:, :, sl], gq[:, :, sl], systems[:, :, sl],
                                                  w["weight"][sl], w["region"][sl], w["days"], w["fit"]))
    fit_ = layer.fit_layer(s1, w["inv"], w["days"], w["fit"], Q10S, alpha=alpha)
    g = gq[Q10S.index(fit_.q10)]
    s2 = None
    for sl in bands:
        s2 = layer.add_stats(s2, layer.fusion_stats(fit_, w["members"][:, :, sl], g[:, sl], systems[:, :, sl],
                                                    w["weight"][sl], w["region"][sl], w["days"], w["fit"], w["moy"],
                                                    w["group"][sl]))
    return layer.fit_fusion(fit_, {**s1, **s2}, w["days"], w["fit"], w["moy"]), gq


def _sysmean(systems):
    """The systems' mean (NaN in the months the inversions do not cover)."""
    return systems.mean(axis=0)


def _target(w):
    return w["inv"]


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
    res = (_target(world) - _integral(mean, world))[:, world["fit"]]
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


def _members(fit_, gq, w):
    return layer.member_monthly(fit_, w["members"], gq[Q10S.index(fit_.q10)], w["systems"], w["region"], w["days"],
                                w["fit"], w["moy"])


def test_every_member_meets_the_inversions_and_keeps_the_level(world):
    fit_, gq = _fit(world)
    out = _members(fit_, gq, world)
    got, target = _integral(out, world)[:, :, world["fit"]], _target(world)[:, world["fit"]]
    np.testing.assert_allclose(got, np.broadcast_to(target, got.shape), atol=1e-12)
    # the long-term level of every cell: −k·(α a + (1−α) ā), the same for every member
    wd = world["days"][world["fit"]] / world["days"][world["fit"]].sum()
    level = (out[:, world["fit"]] * wd[None, :, None]).sum(1)
    a = world["members"].mean(0).std(0)
    for r in range(layer.N_REGIONS):
        m = world["region"] == r
        abar = (a[m] * world["weight"][m]).sum() / world["weight"][m].sum()
        pattern = 0.5 * a[m] + 0.5 * abar
        total = target[r].sum() * 1e15 / world["days"][world["fit"]].sum()
        expect = pattern * total / (pattern * world["weight"][m]).sum()
        np.testing.assert_allclose(level[:, m], np.broadcast_to(expect, level[:, m].shape), rtol=1e-9, atol=1e-12)


def _anomalies(x, w):
    """Each cell's days-weighted mean over the fitted months removed, and split into the mean
    seasonal cycle and the rest (fitted months only)."""
    fit = w["fit"]
    wd = w["days"][fit] / w["days"][fit].sum()
    a = (x - (x[fit] * wd[:, None]).sum(0))[fit]
    moy = w["moy"][fit]
    s = np.zeros_like(a)
    for m in range(1, 13):
        s[moy == m] = a[moy == m].mean(0)
    return s, a - s


def test_the_fusion_weights_are_inverse_variance_weights(world):
    fit_, gq = _fit(world)
    g = gq[Q10S.index(fit_.q10)]
    mean = world["members"].mean(0)
    wd = world["days"][world["fit"]] / world["days"][world["fit"]].sum()
    scale = fit_.lam[world["region"]] * np.abs((mean[world["fit"]] * wd[:, None]).sum(0))
    ys, yi = _anomalies(mean + scale * g, world)
    parts = [_anomalies(s, world) for s in world["systems"]]
    gs, gi = _anomalies(_sysmean(world["systems"]), world)
    for k, (y, gg, beta) in enumerate(((ys, gs, fit_.beta_s), (yi, gi, fit_.beta_i))):
        sys_var = np.stack([p[k] for p in parts]).var(0, ddof=1).sum(0) / len(parts)
        pair = y.reshape(y.shape[0], -1, 2)  # the inversion cells: pairs of model cells
        wp = world["weight"].reshape(-1, 2)
        sub = ((pair - (pair * wp).sum(-1, keepdims=True) / wp.sum(-1, keepdims=True)) ** 2).sum(0).reshape(-1)
        for r in (0, 7, 17):
            m = world["region"] == r
            expect = ((sys_var + sub)[m] * world["weight"][m]).sum() / (((y - gg)[:, m] ** 2).sum(0)
                                                                         * world["weight"][m]).sum()
            np.testing.assert_allclose(beta[r], min(max(expect, 0), 1), rtol=1e-9)


def test_the_fusion_follows_the_source_with_the_smaller_error(world):
    """Systems that agree exactly, on inversion cells of one model cell each: the inversions'
    anomalies are taken whole; systems that disagree wildly: EC's are."""
    w = dict(world, group=np.arange(N_CELLS))
    same = np.broadcast_to(_sysmean(world["systems"]), world["systems"].shape).copy()
    w["inv"] = _integral(same[0], w)  # the inversions' integrals are their gridded fluxes': no residual left
    fit_, gq = _fit(w, systems=same)
    assert np.allclose(fit_.beta_s, 0) and np.allclose(fit_.beta_i, 0) and np.abs(fit_.u.mean(0)).max() < 1e-9
    out = layer.member_monthly(fit_, w["members"], gq[Q10S.index(fit_.q10)], same, w["region"], w["days"],
                               w["fit"], w["moy"]).mean(0)
    for got, want in zip(_anomalies(out, w), _anomalies(same[0], w)):
        np.testing.assert_allclose(got, want, atol=1e-9)
    rng = np.random.default_rng(9)
    wild = world["systems"] + rng.normal(0, 50, world["systems"].shape)
    fit_, _ = _fit(w, systems=wild)  # σ²_G / (σ²_G + σ²_Y) → 1, up to the sampling noise of the estimate
    for beta in (fit_.beta_s, fit_.beta_i):
        assert beta.min() > 0.5 and beta.mean() > 0.9


def test_months_without_inversions_take_the_calendar_months_mean_offset(world):
    fit_, _ = _fit(world)
    for m in np.flatnonzero(~world["fit"]):
        same = world["fit"] & (world["moy"] == world["moy"][m])
        np.testing.assert_allclose(fit_.u[:, :, m], fit_.u[:, :, same].mean(2), rtol=1e-12)


def test_the_daily_layer_averages_to_the_members_mean(world):
    fit_, gq = _fit(world)
    g = gq[Q10S.index(fit_.q10)]
    scale, part, _ = layer.monthly_part(fit_, world["members"], g, world["systems"], world["region"], world["days"],
                                        world["fit"], world["moy"])
    rng = np.random.default_rng(1)
    mean = world["members"].mean(0)
    daily_ec = mean[world["month_idx"]] + rng.normal(0, 0.3, (world["month_idx"].size, N_CELLS))
    daily_ec -= (np.stack([daily_ec[world["month_idx"] == m].mean(0) for m in range(N_MONTHS)]) - mean)[world["month_idx"]]
    day = layer.daily(scale, part.mean(0), fit_.q10, daily_ec, world["tair"], world["month_idx"])
    monthly = np.stack([day[world["month_idx"] == m].astype(np.float64).mean(0) for m in range(N_MONTHS)])
    members = _members(fit_, gq, world)
    np.testing.assert_allclose(monthly, members.mean(0), atol=2e-5)  # float32 daily values


def test_the_flat_level_and_a_region_without_amplitude(world):
    w = dict(world)
    w["members"] = world["members"].copy()
    w["members"][:, :, w["region"] == 0] = -1.0  # no seasonal amplitude in region 0
    fit_, gq = _fit(w, alpha=0.0)
    assert fit_.level_flat[0] and not fit_.level_flat[1:].any()
    out = _members(fit_, gq, w)
    wd = w["days"][w["fit"]] / w["days"][w["fit"]].sum()
    level = (out.mean(0)[w["fit"]] * wd[:, None]).sum(0)
    for r in (0, 5):  # alpha 0 and no amplitude: the level is even per m² of each region
        m = w["region"] == r
        np.testing.assert_allclose(level[m], level[m][0], rtol=1e-9)
