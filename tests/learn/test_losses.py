"""Objective functions (paper Eq. 5, 8–14) and the flux network (Table B1), checked
against independent hand computations and plain-numpy re-implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from fluxscale.learn.losses import CUBE_ROOT_EPS, atm_loss, atm_loss_terms, ec_loss, uncertainty_weighted
from fluxscale.learn.model import NEENet, init_model


def t64(x):
    return torch.tensor(x, dtype=torch.float64)


# ----------------------------------------------------------------------------- Eq. 5

def test_ec_loss_hand_computed_with_nan():
    pred = t64([1.0, 2.0, 3.0, 4.0])
    obs = t64([1.5, float("nan"), 1.0, 7.0])
    # observed: (1 - 1.5)^2 = 0.25, (3 - 1)^2 = 4, (4 - 7)^2 = 9; the NaN entry is dropped
    expected = (0.25 + 4.0 + 9.0) / 3.0  # = 13.25 / 3 = 4.41666...
    got = ec_loss(pred, obs)
    assert got.dim() == 0
    assert got.item() == pytest.approx(4.416666666666667, rel=1e-12)
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_ec_loss_matches_numpy_nanmean():
    rng = np.random.default_rng(3)
    pred = rng.normal(size=(6, 7))
    obs = rng.normal(size=(6, 7))
    obs[rng.random(size=obs.shape) < 0.3] = np.nan
    assert np.isnan(obs).any() and (~np.isnan(obs)).any()
    expected = np.nanmean((pred - obs) ** 2)
    got = ec_loss(torch.from_numpy(pred), torch.from_numpy(obs)).item()
    assert got == pytest.approx(expected, rel=1e-12)


def test_ec_loss_all_nan_is_nan():
    got = ec_loss(t64([1.0, 2.0]), t64([float("nan"), float("nan")]))
    assert math.isnan(got.item())


def test_ec_loss_broadcasting():
    pred = t64([[1.0], [2.0], [4.0]])              # (3, 1)
    obs = t64([[0.0, float("nan"), 3.0]])          # (1, 3)
    # broadcast (3, 3), NaN column dropped: pairs (pred, obs) over obs in {0, 3}
    # pred=1: 1, 4 ; pred=2: 4, 1 ; pred=4: 16, 1  -> sum 27 over 6
    assert ec_loss(pred, obs).item() == pytest.approx(27.0 / 6.0, rel=1e-12)
    # a scalar prediction broadcasts against every observation
    obs2 = t64([1.0, float("nan"), 5.0])
    assert ec_loss(t64(2.0), obs2).item() == pytest.approx((1.0 + 9.0) / 2.0, rel=1e-12)
    # broadcasting is symmetric: same number with the arguments' shapes expanded by hand
    full = ec_loss(pred.expand(3, 3), obs.expand(3, 3))
    assert full.item() == pytest.approx(27.0 / 6.0, rel=1e-12)


def test_ec_loss_gradient():
    pred = t64([1.0, 2.0, 3.0, 4.0, -1.0]).requires_grad_(True)
    obs = t64([0.5, float("nan"), 1.0, 7.0, float("nan")])
    (g,) = torch.autograd.grad(ec_loss(pred, obs), pred)
    n = 3
    expected = np.array([2 * (1.0 - 0.5) / n, 0.0, 2 * (3.0 - 1.0) / n, 2 * (4.0 - 7.0) / n, 0.0])
    assert torch.isfinite(g).all()
    np.testing.assert_allclose(g.numpy(), expected, rtol=1e-12, atol=1e-15)


def test_ec_loss_gradient_through_broadcast():
    pred = t64([2.0]).requires_grad_(True)     # one prediction for three observations
    obs = t64([1.0, float("nan"), 5.0])
    (g,) = torch.autograd.grad(ec_loss(pred, obs), pred)
    # d/dp [((p-1)^2 + (p-5)^2) / 2] = (p-1) + (p-5) = 1 - 3 = -2
    assert g.shape == (1,)
    assert g.item() == pytest.approx(-2.0, rel=1e-12)


# ----------------------------------------------------------------------------- Eq. 8–11

def atm_loss_numpy(pred, inv, w, eps=0.0):
    """Plain loops over Eq. 8–11, float64."""
    A, M, R = inv.shape
    total = 0.0
    for r in range(R):
        acc = 0.0
        for m in range(M):
            l3 = sum(abs(inv[a, m, r] - pred[m, r]) ** 3 for a in range(A)) / A      # Eq. 8
            l_rm = (l3 + eps) ** (1.0 / 3.0)
            rng = max(inv[:, m, r]) - min(inv[:, m, r])                             # Eq. 9
            acc += l_rm / (1.0 + rng)
        total += acc / M * w[r]                                                     # Eq. 10–11
    return total


def test_atm_loss_annual_part_vs_numpy():
    """The annual part: the Eq. 8–10 terms on calendar-year means, averaged over years, added
    with its weight (numpy on the averaged arrays)."""
    rng = np.random.default_rng(3)
    pred, inv, w = rng.normal(size=(24, 4)), rng.normal(size=(3, 24, 4)), rng.dirichlet(np.ones(4))
    years = np.repeat([2001, 2002], 12)
    p_y = np.stack([pred[years == y].mean(axis=0) for y in (2001, 2002)])
    i_y = np.stack([inv[:, years == y].mean(axis=1) for y in (2001, 2002)], axis=1)
    want = atm_loss_numpy(pred, inv, w) + 0.7 * atm_loss_numpy(p_y, i_y, w)
    got = atm_loss(t64(pred), t64(inv), t64(w), annual_weight=0.7, years=torch.as_tensor(years))
    assert float(got) == pytest.approx(want, rel=1e-9)
    assert float(atm_loss(t64(pred), t64(inv), t64(w), annual_weight=0.0)) == pytest.approx(atm_loss_numpy(pred, inv, w), rel=1e-9)
    with pytest.raises(ValueError, match="year of each month"):
        atm_loss(t64(pred), t64(inv), t64(w), annual_weight=1.0)
    # the 'mean' target: |mean over systems - pred| / (1 + range) of the annual means
    ann = (np.abs(i_y.mean(axis=0) - p_y) / (1 + i_y.max(axis=0) - i_y.min(axis=0))).mean(axis=0) @ w
    got = atm_loss(t64(pred), t64(inv), t64(w), annual_weight=0.7, years=torch.as_tensor(years), annual_target="mean")
    assert float(got) == pytest.approx(atm_loss_numpy(pred, inv, w) + 0.7 * ann, rel=1e-9)


def test_atm_loss_hand_computed_2x2x2():
    # pred (months=2, regions=2)
    pred = t64([[0.0, 1.0],
                [2.0, -1.0]])
    # inversions (systems=2, months=2, regions=2)
    inv = t64([[[1.0, 1.0],      # system 0
                [2.0, 1.0]],
               [[-1.0, 3.0],     # system 1
                [4.0, 0.0]]])
    w = t64([0.25, 0.75])
    # month 0, region 0: |1-0|^3=1, |-1-0|^3=1 -> mean 1 -> L=1;       range 2 -> 1/3
    # month 1, region 0: |2-2|^3=0, |4-2|^3=8 -> mean 4 -> L=4^(1/3);  range 2 -> 4^(1/3)/3
    # month 0, region 1: |1-1|^3=0, |3-1|^3=8 -> mean 4 -> L=4^(1/3);  range 2 -> 4^(1/3)/3
    # month 1, region 1: |1+1|^3=8, |0+1|^3=1 -> mean 4.5 -> L=4.5^(1/3); range 1 -> 4.5^(1/3)/2
    c4 = 4.0 ** (1 / 3)     # 1.5874010519681994
    c45 = 4.5 ** (1 / 3)    # 1.6509636244473134
    region0 = (1.0 / 3.0 + c4 / 3.0) / 2.0
    region1 = (c4 / 3.0 + c45 / 2.0) / 2.0
    expected = 0.25 * region0 + 0.75 * region1
    assert expected == pytest.approx(0.25 * 0.43123350866 + 0.75 * 0.67730774811, rel=1e-9)

    terms = atm_loss_terms(pred, inv)
    assert terms.shape == (2, 2)
    np.testing.assert_allclose(terms.numpy(), [[1.0 / 3.0, c4 / 3.0], [c4 / 3.0, c45 / 2.0]], rtol=1e-9)
    got = atm_loss(pred, inv, w)
    assert got.dim() == 0
    assert got.item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_atm_loss_random_vs_numpy(seed):
    rng = np.random.default_rng(seed)
    A, M, R = 5, 12, 7
    pred = rng.normal(scale=0.3, size=(M, R))
    inv = rng.normal(scale=0.3, size=(A, M, R)) + rng.normal(scale=0.1, size=(1, M, R))
    w = rng.random(R)
    w /= w.sum()
    got = atm_loss(torch.from_numpy(pred), torch.from_numpy(inv), torch.from_numpy(w)).item()
    assert got == pytest.approx(atm_loss_numpy(pred, inv, w, eps=CUBE_ROOT_EPS), rel=1e-12)
    # the eps is negligible at these deviations: Eq. 8 exactly within 1e-9 relative
    assert got == pytest.approx(atm_loss_numpy(pred, inv, w), rel=1e-9)


def test_atm_loss_terms_random_vs_numpy():
    rng = np.random.default_rng(11)
    A, M, R = 4, 3, 5
    pred = rng.normal(size=(M, R))
    inv = rng.normal(size=(A, M, R))
    l3 = np.cbrt(np.mean(np.abs(inv - pred[None]) ** 3, axis=0))
    expected = l3 / (1.0 + inv.max(axis=0) - inv.min(axis=0))
    got = atm_loss_terms(torch.from_numpy(pred), torch.from_numpy(inv)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_atm_loss_single_system_reduces_to_weighted_mean_abs():
    rng = np.random.default_rng(5)
    M, R = 6, 4
    pred = rng.normal(size=(M, R))
    inv = rng.normal(size=(1, M, R))
    w = rng.random(R)
    w /= w.sum()
    # range over one system is 0, cube root of |d|^3 is |d|
    expected = float((np.abs(inv[0] - pred).mean(axis=0) * w).sum())
    dev = np.abs(inv[0] - pred)
    terms = atm_loss_terms(torch.from_numpy(pred), torch.from_numpy(inv)).numpy()
    # exactly (|d|^3 + eps)^(1/3) / (1 + 0) ...
    np.testing.assert_allclose(terms, np.cbrt(dev ** 3 + CUBE_ROOT_EPS), rtol=1e-12)
    # ... which is |d| up to the eps shift eps / (3 d^2) (< 1e-9 for |d| > 0.02)
    np.testing.assert_allclose(terms, dev, rtol=0, atol=CUBE_ROOT_EPS / (3 * dev.min() ** 2) * 1.01)
    np.testing.assert_allclose(terms, dev, rtol=1e-7)
    got = atm_loss(torch.from_numpy(pred), torch.from_numpy(inv), torch.from_numpy(w)).item()
    assert got == pytest.approx(expected, rel=1e-9)


def test_atm_l3_between_mean_and_max_abs_deviation():
    rng = np.random.default_rng(7)
    A, M, R = 6, 10, 5
    pred = rng.normal(size=(M, R))
    inv = rng.normal(size=(A, M, R)) * rng.uniform(0.1, 3.0, size=(A, 1, 1))
    dev = np.abs(inv - pred[None])
    spread = inv.max(axis=0) - inv.min(axis=0)
    l_rm = atm_loss_terms(torch.from_numpy(pred), torch.from_numpy(inv)).numpy() * (1.0 + spread)
    mean_abs, max_abs = dev.mean(axis=0), dev.max(axis=0)
    assert np.all(l_rm >= mean_abs * (1 - 1e-12))
    assert np.all(l_rm <= max_abs * (1 + 1e-12))
    # strictly between where the deviations differ (the ℓ3 norm is neither ℓ1 nor ℓ∞)
    assert np.all(l_rm > mean_abs + 1e-6)
    assert np.all(l_rm < max_abs - 1e-6)


def test_atm_loss_gradient_finite_at_exact_match():
    inv_one = t64([[0.5, -1.0], [2.0, 0.0]])
    inv = inv_one.unsqueeze(0).repeat(3, 1, 1)          # every system identical
    pred = inv_one.clone().requires_grad_(True)         # pred equals every inversion
    w = t64([0.5, 0.5])
    loss = atm_loss(pred, inv, w)
    # each term is the eps' cube root (range 0): (1e-12)^(1/3) = 1e-4
    assert loss.item() == pytest.approx(CUBE_ROOT_EPS ** (1 / 3), rel=1e-9)
    (g,) = torch.autograd.grad(loss, pred)
    assert torch.isfinite(g).all()
    np.testing.assert_allclose(g.numpy(), 0.0, atol=1e-12)
    # and partially matching: one region equal, the other not
    pred2 = inv_one.clone()
    pred2[:, 1] += 1.0
    pred2.requires_grad_(True)
    (g2,) = torch.autograd.grad(atm_loss(pred2, inv, w), pred2)
    assert torch.isfinite(g2).all()
    np.testing.assert_allclose(g2[:, 0].numpy(), 0.0, atol=1e-12)
    # region 1: loss = w/M * sum_m |p - a|  -> derivative w/M * sign = 0.5/2 = 0.25
    np.testing.assert_allclose(g2[:, 1].numpy(), 0.25, rtol=1e-6)


def test_atm_loss_gradcheck():
    rng = np.random.default_rng(2)
    pred = torch.from_numpy(rng.normal(size=(3, 2))).requires_grad_(True)
    inv = torch.from_numpy(rng.normal(size=(4, 3, 2)))
    w = t64([0.3, 0.7])
    assert torch.autograd.gradcheck(lambda p: atm_loss(p, inv, w), (pred,))


@pytest.mark.parametrize("pred_shape,inv_shape", [
    ((2, 3), (4, 3, 2)),     # months/regions swapped
    ((2, 3), (4, 2, 4)),     # region count differs
    ((2, 3), (2, 3)),        # no systems axis
    ((3,), (4, 3)),          # 1-D pred
    ((2, 3), (1, 4, 2, 3)),  # extra axis
])
def test_atm_loss_shape_mismatch_raises(pred_shape, inv_shape):
    pred = torch.zeros(pred_shape, dtype=torch.float64)
    inv = torch.zeros(inv_shape, dtype=torch.float64)
    w = torch.full((pred_shape[-1],), 1.0 / pred_shape[-1], dtype=torch.float64)
    with pytest.raises(ValueError):
        atm_loss(pred, inv, w)
    with pytest.raises(ValueError):
        atm_loss_terms(pred, inv)


# ----------------------------------------------------------------------------- Eq. 12–14

@pytest.mark.parametrize("l1,l2,s1,s2", [(0.8, 0.05, 0.0, 0.0), (2.5, 0.3, -0.7, 1.2), (1e-3, 4.0, 3.0, -2.0)])
def test_uncertainty_weighted_closed_form(l1, l2, s1, s2):
    got = uncertainty_weighted(t64(l1), t64(l2), t64(s1), t64(s2)).item()
    expected = 0.5 * math.exp(-s1) * l1 + 0.5 * s1 + 0.5 * math.exp(-s2) * l2 + 0.5 * s2
    assert got == pytest.approx(expected, rel=1e-12)
    # Eq. 12–14 with σ² = e^s: 1/(2σ²)·L + log sqrt(σ²)
    sig1, sig2 = math.exp(s1), math.exp(s2)
    paper = l1 / (2 * sig1) + math.log(math.sqrt(sig1)) + l2 / (2 * sig2) + math.log(math.sqrt(sig2))
    assert got == pytest.approx(paper, rel=1e-12)


def test_uncertainty_weighted_hand_number():
    # s1 = 0, s2 = log 2: 0.5*1*3 + 0 + 0.5*0.5*2 + 0.5*log 2 = 1.5 + 0.5 + 0.34657359...
    got = uncertainty_weighted(t64(3.0), t64(2.0), t64(0.0), t64(math.log(2.0))).item()
    assert got == pytest.approx(2.0 + 0.5 * 0.6931471805599453, rel=1e-12)


def test_uncertainty_weighted_gradients():
    l1, l2 = 0.9, 0.02
    s1 = t64(0.3).requires_grad_(True)
    s2 = t64(-1.1).requires_grad_(True)
    L1 = t64(l1).requires_grad_(True)
    L2 = t64(l2).requires_grad_(True)
    g_s1, g_s2, g_l1, g_l2 = torch.autograd.grad(uncertainty_weighted(L1, L2, s1, s2), (s1, s2, L1, L2))
    assert g_s1.item() == pytest.approx(0.5 - 0.5 * math.exp(-0.3) * l1, rel=1e-12)
    assert g_s2.item() == pytest.approx(0.5 - 0.5 * math.exp(1.1) * l2, rel=1e-12)
    assert g_l1.item() == pytest.approx(0.5 * math.exp(-0.3), rel=1e-12)
    assert g_l2.item() == pytest.approx(0.5 * math.exp(1.1), rel=1e-12)
    assert g_s1.item() != 0.0 and g_s2.item() != 0.0


def test_uncertainty_weighted_optimum_at_log_loss():
    l1, l2 = 0.37, 5.2
    s1 = t64(math.log(l1)).requires_grad_(True)
    s2 = t64(math.log(l2)).requires_grad_(True)
    g1, g2 = torch.autograd.grad(uncertainty_weighted(t64(l1), t64(l2), s1, s2), (s1, s2))
    assert abs(g1.item()) < 1e-12 and abs(g2.item()) < 1e-12
    # and it is a minimum: moving s either way increases the total
    base = uncertainty_weighted(t64(l1), t64(l2), s1, s2).item()
    for d in (-0.1, 0.1):
        assert uncertainty_weighted(t64(l1), t64(l2), s1 + d, s2).item() > base
        assert uncertainty_weighted(t64(l1), t64(l2), s1, s2 + d).item() > base


# ----------------------------------------------------------------------------- NEENet

def test_neenet_architecture():
    model = NEENet()
    layers = list(model.net)
    assert [type(m) for m in layers] == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]
    assert (layers[0].in_features, layers[0].out_features) == (10, 32)
    assert (layers[2].in_features, layers[2].out_features) == (32, 32)
    assert (layers[4].in_features, layers[4].out_features) == (32, 1)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == (10 * 32 + 32) + (32 * 32 + 32) + (32 + 1)  # 1441
    # no other learnable module hiding outside the Sequential
    assert sum(isinstance(m, nn.Linear) for m in model.modules()) == 3


def test_neenet_output_shapes():
    model = init_model(0)
    with torch.no_grad():
        assert model(torch.randn(10)).shape == ()
        assert model(torch.randn(7, 10)).shape == (7,)
        assert model(torch.randn(2, 3, 10)).shape == (2, 3)


def test_neenet_forward_matches_manual_mlp():
    model = init_model(4)
    x = torch.randn(5, 10, generator=torch.Generator().manual_seed(0))
    l0, l2, l4 = model.net[0], model.net[2], model.net[4]
    with torch.no_grad():
        h = torch.clamp(x @ l0.weight.T + l0.bias, min=0)
        h = torch.clamp(h @ l2.weight.T + l2.bias, min=0)
        expected = (h @ l4.weight.T + l4.bias)[:, 0]
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-6)


def test_neenet_standardisation_buffers_and_application():
    model = init_model(1)
    sd = model.state_dict()
    assert "x_mean" in sd and "x_std" in sd
    assert "x_mean" not in dict(model.named_parameters())
    mean = np.arange(10, dtype=np.float64) - 4.5
    std = np.array([1.0, 2.0, 0.0, 0.5, 3.0, 0.0, 1.5, 4.0, 0.25, 2.5])
    model.set_standardisation(mean, std)
    std_eff = np.where(std > 0, std, 1.0)           # zero std treated as 1
    np.testing.assert_allclose(model.x_mean.numpy(), mean, rtol=1e-6)
    np.testing.assert_allclose(model.x_std.numpy(), std_eff, rtol=1e-6)

    # the same weights with identity standardisation, fed the hand-standardised input
    plain = init_model(1)
    x = np.random.default_rng(0).normal(loc=2.0, scale=3.0, size=(8, 10))
    z = (x - mean) / std_eff
    with torch.no_grad():
        got = model(torch.tensor(x, dtype=torch.float32))
        expected = plain(torch.tensor(z, dtype=torch.float32))
        unstandardised = plain(torch.tensor(x, dtype=torch.float32))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got, unstandardised, atol=1e-3)

    # the statistics travel with the state_dict
    sd = model.state_dict()
    np.testing.assert_allclose(sd["x_std"].numpy(), std_eff, rtol=1e-6)
    restored = NEENet()
    restored.load_state_dict(sd)
    with torch.no_grad():
        torch.testing.assert_close(restored(torch.tensor(x, dtype=torch.float32)), got)


def _flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def test_init_model_reproducible_and_seed_dependent():
    a, b, c = init_model(42), init_model(42), init_model(43)
    assert torch.equal(_flat(a), _flat(b))
    assert not torch.allclose(_flat(a), _flat(c))
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    # the weights depend on the seed only, not on the global RNG state at the call
    torch.manual_seed(1)
    d = init_model(42)
    torch.manual_seed(999)
    torch.rand(17)
    e = init_model(42)
    assert torch.equal(_flat(d), _flat(a)) and torch.equal(_flat(e), _flat(a))
    # same as seeding torch and building the network directly
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(42)
        direct = NEENet()
    finally:
        torch.random.set_rng_state(state)
    assert torch.equal(_flat(direct), _flat(a))


def test_init_model_preserves_global_rng_state():
    torch.manual_seed(2024)
    torch.rand(3)
    before = torch.random.get_rng_state().clone()
    init_model(7)
    after = torch.random.get_rng_state()
    assert torch.equal(before, after)
    # the next draw is what it would have been without the call
    expected = torch.rand(5)
    torch.random.set_rng_state(before)
    init_model(8)
    torch.testing.assert_close(torch.rand(5), expected, rtol=0, atol=0)
