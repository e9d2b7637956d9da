"""Training on the tiny twin: EC-ATM learns the regional integrals, members are
deterministic, the batched group equals plain per-member autograd and Adam, the cluster path
equals the in-process one, checkpoints load safely."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from fluxscale.bridges.build import build_bridges
from fluxscale.run.cli import app
from fluxscale.config import BridgeConfig, TrainConfig
from fluxscale.errors import FluxscaleError
from fluxscale.bridges.integrals import compute_integrals
from fluxscale.dataset.stores import open_store, store_path
from fluxscale.learn.data import load_training_data
from fluxscale.learn.ensemble import PROGRESS_TOPIC, train_ensemble
from fluxscale.learn.fit import learning_rate, selection_score, train_group, train_member
from fluxscale.learn.group import Group
from fluxscale.learn.model import load_member

FAST = TrainConfig(epochs=2, steps_per_epoch=4, ec_batch=2000, threads=1, folds=(0,))


@pytest.fixture(scope="module")
def trained_root(tiny_twin, tmp_path_factory):
    root = tmp_path_factory.mktemp("train") / "data"
    shutil.copytree(tiny_twin, root)
    compute_integrals(root)
    build_bridges(root, BridgeConfig(repeats=10, repeats_per_task=10), show_progress=False)
    return root


@pytest.fixture(scope="module")
def data(trained_root):
    return load_training_data(trained_root, FAST)


@pytest.fixture(scope="module")
def paired(trained_root, data):
    """EC and EC-ATM of fold 0, long enough to learn."""
    cfg = TrainConfig(epochs=8, steps_per_epoch=15, ec_batch=5000, threads=1)
    return {v: train_member(trained_root, cfg, v, 0, data=data, write=False) for v in ("ec", "ecatm")}


def test_ecatm_regional_error_falls_and_ends_below_ec(paired):
    ec, ecatm = paired["ec"]["log"], paired["ecatm"]["log"]
    atm = [r["atm_all"] for r in ecatm]
    assert atm[-1] < 0.6 * atm[0]                          # it learns the inversions' integrals
    assert ecatm[-1]["atm_all"] < 0.8 * ec[-1]["atm_all"]  # … and ends well below EC
    assert ecatm[-1]["val_atm"] < ec[-1]["val_atm"]        # on the held-out years too
    # both learn the towers; EC's σ's are not trained, EC-ATM's are
    assert ec[-1]["val_ec"] < 0.5 * ec[0]["val_ec"] and ecatm[-1]["val_ec"] < 0.5 * ecatm[0]["val_ec"]
    assert ec[-1]["sigma_ec"] == 1.0 and ecatm[-1]["sigma_ec"] != 1.0 and ecatm[-1]["sigma_atm"] != 1.0


def test_ec_and_ecatm_of_a_fold_start_equal_and_runs_repeat(trained_root, data, paired):
    ec, ecatm = paired["ec"]["log"][0], paired["ecatm"]["log"][0]
    assert json.dumps(ec) == json.dumps(ecatm)  # the same initial weights: the same epoch-0 metrics, every one
    a = train_member(trained_root, FAST, "ecatm", 0, data=data, write=False)["state_dict"]
    b = train_member(trained_root, FAST, "ecatm", 0, data=data, write=False)["state_dict"]
    c = train_member(trained_root, FAST.replace(seed=1), "ecatm", 0, data=data, write=False)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["net.0.weight"], c["net.0.weight"])


def test_best_epoch_and_held_out_years(paired):
    for v, res in paired.items():
        m = res["metrics"]
        log = res["log"]
        if v == "ec":
            assert m["best_epoch"] == int(np.argmin([r["val_ec"] for r in log[1:]])) + 1
        elif TrainConfig().selection == "val_atm":  # the default: the held-out years' ATM loss
            assert m["best_epoch"] == int(np.argmin([r["val_atm"] for r in log[1:]])) + 1
        else:
            score = [r["val_ec"] / log[0]["val_ec"] + r["val_atm"] / log[0]["val_atm"] for r in log[1:]]
            assert m["best_epoch"] == int(np.argmin(score)) + 1
        assert len(m["val_years"]) == 2 and set(m["val_years"]) <= {2001, 2002, 2003}


def test_cluster_member_equals_in_process_and_checkpoint_loads(trained_root, data, tmp_path):
    from distributed import Client, LocalCluster

    root = tmp_path / "data"
    shutil.copytree(trained_root, root, ignore=shutil.ignore_patterns("models"))
    cfg = FAST.replace(folds=(1,), variants=("ecatm",))
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as lc, Client(lc) as c:
        summary = train_ensemble(root, cfg.replace(threads=None), client=c, show_progress=False)
        events = [(m["member"], m["epoch"]) for _, m in c.get_events(PROGRESS_TOPIC)]  # what the progress counted
    assert events == [("ecatm-fold1", 1), ("ecatm-fold1", 2)]
    assert set(summary["members"]) == {"ecatm-fold1"} and summary["members"]["ecatm-fold1"]["threads"] == 1
    model, meta = load_member(root / "models" / "ecatm-fold1.pt")  # torch.load(weights_only=True)
    local = train_member(root, cfg, "ecatm", 1, data=data, write=False)["state_dict"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, local[k]), k
    assert meta["metrics"]["member"] == "ecatm-fold1" and meta["config"]["epochs"] == 2
    log = pd.read_csv(root / "models" / "logs" / "ecatm-fold1.csv")
    assert list(log.epoch) == [0, 1, 2] and {"train_ec", "train_atm", "sigma_ec", "sigma_atm", "val_ec", "val_atm",
                                             "decoupling"} <= set(log.columns)
    x = torch.as_tensor(data.site_x[0, :5])
    np.testing.assert_allclose(model(x).detach().numpy(), model(x).detach().numpy())
    assert json.loads((root / "models" / "members.json").read_text())["members"]["ecatm-fold1"]["fold"] == 1


def test_one_against_many_uses_only_the_chosen_systems(trained_root):
    d = load_training_data(trained_root, FAST.replace(systems=("CAMS", "UoE")))
    integ = open_store(store_path(trained_root, "integrals"), "integrals")
    assert d.systems == ["CAMS", "UoE"] and d.inv.shape[0] == 2
    j = list(integ.region.values).index(d.regions[0])
    np.testing.assert_array_equal(d.inv[1, :, 0], integ.inversions.sel(system="UoE").values[j])
    with pytest.raises(FluxscaleError, match="GOSAT not in the inversions"):
        load_training_data(trained_root, FAST.replace(systems=("GOSAT",)))


def test_decoupling_threshold_stops_a_member(trained_root, data):
    res = train_member(trained_root, FAST.replace(epochs=5, decoupling_max=0.0), "ecatm", 0, data=data, write=False)
    assert len(res["log"]) == 2 and "decoupling" in res["metrics"]["stopped"] and "epoch 1" in res["metrics"]["stopped"]


def test_train_command_local(trained_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(trained_root, root, ignore=shutil.ignore_patterns("models"))
    r = CliRunner().invoke(app, ["train", str(root), "--local", "--no-progress", "--set", "epochs=1",
                                 "--set", "steps_per_epoch=2", "--set", "folds=2,3", "--set", "variants=ec"])
    assert r.exit_code == 0, r.output
    assert "train: ec-fold2" in r.output and "2 members written" in r.output
    assert sorted(p.name for p in (root / "models").glob("*.pt")) == ["ec-fold2.pt", "ec-fold3.pt"]
    members = json.loads((root / "models" / "members.json").read_text())["members"]
    assert members["ec-fold3"]["best_epoch"] == 1 and members["ec-fold2"]["group"] == ["ec-fold2", "ec-fold3"]
    r = CliRunner().invoke(app, ["train", str(root), "--local", "--set", "variants=ecat"])
    assert r.exit_code == 2 and "variants" in r.output


def test_a_group_lost_with_its_worker_is_retried_and_gives_the_same_weights(trained_root, data, tmp_path):
    import os
    import time

    from distributed import Client, LocalCluster

    from fluxscale.learn.ensemble import _group_task

    root = tmp_path / "data"
    shutil.copytree(trained_root, root, ignore=shutil.ignore_patterns("models"))
    cfg = FAST.replace(epochs=6, steps_per_epoch=10, threads=None)
    group = [("ec", 0), ("ecatm", 0)]
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as lc, Client(lc) as c:
        fut = c.submit(_group_task, str(root), cfg, group, pure=False, retries=2)
        deadline = time.time() + 60
        while time.time() < deadline and not any(c.processing().values()):
            time.sleep(0.05)
        busy = [w for w, keys in c.processing().items() if keys]
        assert busy, "the group never started"
        time.sleep(1.0)  # well inside its training
        c.run(lambda: os._exit(1), workers=busy, on_error="ignore")  # dies mid-task; its nanny restarts it
        res = fut.result(timeout=180)
    local = train_group(root, cfg.replace(threads=1), group, data=data, write=False)
    for (v, f), ref in zip(group, local):
        model, _ = load_member(root / "models" / f"{v}-fold{f}.pt")
        assert all(torch.equal(w, ref["state_dict"][k]) for k, w in model.state_dict().items()), v
    assert [r["metrics"]["threads"] for r in res] == [1, 1]


# --- the batched group against plain per-member autograd (issue 21) -----------------------------

def _reference_member(root, cfg, variant, fold, data, epochs_steps=None):
    """One member trained by plain autograd on an NEENet with torch.optim.Adam, through
    Member.step (the per-member reference): per-epoch train/validation losses, the best
    epoch by selection_score, and the final trained weights."""
    import copy

    from fluxscale.learn.model import init_model
    from fluxscale.learn.member import Member

    torch.set_num_threads(1)
    mb = Member(data, cfg, fold, torch.device("cpu"))
    model = init_model(cfg.seed * 1000 + fold)
    model.set_standardisation(mb.mean, mb.std)
    log_var = torch.zeros(2, requires_grad=True)
    head = None
    params = list(model.parameters())
    if variant == "ecatm":
        params.append(log_var)
        head = torch.nn.Linear(10, 1)
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
        params += list(head.parameters())
    opt = torch.optim.Adam(params, lr=cfg.learning_rate)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + fold)
    year_rng = np.random.default_rng([cfg.seed, fold, 13])
    kept = copy.deepcopy(model)
    val_m, all_m = mb.months_of(mb.val_years), np.arange(mb.n_months)
    headf = (lambda x: mb.tower_bias(kept, head, x)) if head is not None else None  # noqa: E731

    def row(tr_ec, tr_atm):
        with torch.no_grad():
            return {"train_ec": tr_ec, "train_atm": tr_atm, "val_atm": float(mb.atm(kept, val_m)),
                    "val_ec": mb.ec_val(kept, headf), "atm_all": float(mb.atm(kept, all_m))}

    log = [row(np.nan, np.nan)]
    if variant == "ecatm":
        with torch.no_grad():
            log_var.copy_(torch.tensor([np.log(mb.ec_train_loss(model)), np.log(log[0]["atm_all"])]))
    for epoch in range(1, cfg.epochs + 1):
        ec = atm = 0.0
        for k in range(cfg.steps_per_epoch):
            for g in opt.param_groups:
                g["lr"] = learning_rate(cfg, (epoch - 1) * cfg.steps_per_epoch + k)
            l_ec, l_atm = mb.step(model, opt, log_var, variant, cfg.ec_batch, gen, year_rng, head)
            with torch.no_grad():
                for pk, p in zip(kept.parameters(), model.parameters()):
                    pk.lerp_(p, 1.0 - cfg.ema_decay)
            ec, atm = ec + l_ec, atm + l_atm
        log.append(row(ec / cfg.steps_per_epoch, atm / cfg.steps_per_epoch if variant == "ecatm" else np.nan))
    best = 1 + int(np.argmin([selection_score(cfg, variant, r, log[0]) for r in log[1:]]))
    return log, best, model, log_var, head


def test_one_batched_step_equals_the_per_member_autograd_step(trained_root, data):
    """From the same weights and draws, one step of a group of four (EC and EC-ATM of two
    folds) moves every member's weights, log-variances and tower-bias head as plain autograd
    with torch.optim.Adam does (relative difference <= 1e-5)."""
    cfg = TrainConfig(epochs=1, steps_per_epoch=1, ec_batch=3000, threads=1, folds=(0, 1))
    members = [("ec", 0), ("ecatm", 0), ("ec", 1), ("ecatm", 1)]
    group = train_group(trained_root, cfg.replace(ema_decay=0.0), members, data=data, write=False)
    for (v, f), res in zip(members, group):
        _, _, model, log_var, head = _reference_member(trained_root, cfg.replace(ema_decay=0.0), v, f, data)
        ref = model.state_dict()
        for k, w in res["state_dict"].items():
            scale = float(ref[k].abs().max()) or 1.0
            assert float((w - ref[k]).abs().max()) / scale <= 1e-5, (v, f, k)
        moved = float((res["state_dict"]["net.2.weight"] - init_weights(cfg, f)["net.2.weight"]).abs().max())
        assert moved > 1e-4  # a step was taken (the comparison is not between two untouched copies)
        if v == "ecatm":
            np.testing.assert_allclose(np.log(res["log"][1]["sigma_ec"] ** 2), float(log_var[0].detach()), rtol=1e-5)
            np.testing.assert_allclose(np.log(res["log"][1]["sigma_atm"] ** 2), float(log_var[1].detach()), rtol=1e-5)


def init_weights(cfg, fold):
    from fluxscale.learn.model import init_model

    return init_model(cfg.seed * 1000 + fold).state_dict()


def test_a_short_batched_run_equals_per_member_training(trained_root, data):
    """Three epochs on the tiny twin: each member of a group of four has the per-member
    reference's best epoch and per-epoch losses within 1e-4 (relative)."""
    cfg = TrainConfig(epochs=3, steps_per_epoch=8, ec_batch=3000, threads=1, folds=(0, 1))
    members = [("ec", 0), ("ecatm", 0), ("ec", 1), ("ecatm", 1)]
    group = train_group(trained_root, cfg, members, data=data, write=False)
    for (v, f), res in zip(members, group):
        log, best, *_ = _reference_member(trained_root, cfg, v, f, data)
        assert res["metrics"]["best_epoch"] == best, (v, f)
        assert len(res["log"]) == len(log)
        for got, exp in zip(res["log"], log):
            for k, e in exp.items():
                if k == "atm_all" and got["epoch"] not in (0, cfg.epochs):
                    continue  # the group computes the whole record's ATM loss before and after training only
                assert got[k] == pytest.approx(e, rel=1e-4, nan_ok=True), (v, f, got["epoch"], k)


def test_a_stopped_member_is_frozen_and_the_others_are_unaffected(trained_root, data):
    """A decoupling threshold between EC's and EC-ATM's epoch-1 decoupling stops one member of
    the group at epoch 1; the other trains on, and each equals its run alone."""
    cfg = FAST.replace(epochs=3)
    free = train_group(trained_root, cfg, [("ec", 0), ("ecatm", 0)], data=data, write=False)
    d = [r["log"][1]["decoupling"] for r in free]
    assert d[0] != d[1]
    cfg = cfg.replace(decoupling_max=float(np.mean(d)))
    both = train_group(trained_root, cfg, [("ec", 0), ("ecatm", 0)], data=data, write=False)
    stops = int(np.argmax(d))
    assert "epoch 1" in both[stops]["metrics"]["stopped"] and len(both[stops]["log"]) == 2
    assert both[1 - stops]["metrics"]["stopped"] is None and len(both[1 - stops]["log"]) == 4
    for m, (v, f) in enumerate([("ec", 0), ("ecatm", 0)]):
        alone = train_member(trained_root, cfg, v, f, data=data, write=False)
        assert all(torch.equal(alone["state_dict"][k], w) for k, w in both[m]["state_dict"].items()), v


def test_a_frozen_member_is_left_exactly_as_it_was(trained_root, data):
    """Group.step with a member marked inactive: its weights, Adam moments, moving average,
    log-variances and head do not move; the other member moves exactly as it does beside an
    active partner."""
    cfg = FAST.replace(folds=(0,))
    members = [("ec", 0), ("ecatm", 0)]
    cpu = torch.device("cpu")
    g, ref = Group(data, cfg, members, cpu), Group(data, cfg, members, cpu)
    for grp in (g, ref):
        grp.step(cfg.learning_rate)
    g.active[1] = False
    frozen = {k: v[1].clone() for k, v in {**g.net.params, **{"kept_" + n: w for n, w in g.kept.items()},
                                          "m_w2": g.opt.exp_avg["w2"], "v_w2": g.opt.exp_avg_sq["w2"],
                                          "log_var": g.log_var.detach(), "head_w": g.head_w.detach()}.items()}
    for _ in range(3):
        g.step(cfg.learning_rate)
        ref.step(cfg.learning_rate)
    now = {**g.net.params, **{"kept_" + n: w for n, w in g.kept.items()}, "m_w2": g.opt.exp_avg["w2"],
           "v_w2": g.opt.exp_avg_sq["w2"], "log_var": g.log_var.detach(), "head_w": g.head_w.detach()}
    assert all(torch.equal(now[k][1], v) for k, v in frozen.items())
    assert all(torch.equal(g.net.params[k][0], ref.net.params[k][0]) for k in g.net.params)
    assert not torch.equal(ref.net.params["w2"][1], frozen["w2"])  # the active twin did move


def test_stacked_adam_equals_torch_adam_on_its_rows():
    """StackedAdam against torch.optim.Adam member by member over five steps, with one row
    masked from the third step on (frozen: exactly unchanged)."""
    from fluxscale.learn.stacked import StackedAdam

    g = torch.Generator().manual_seed(0)
    p0 = torch.randn(3, 4, 5, generator=g)
    grads = [torch.randn(3, 4, 5, generator=g) for _ in range(5)]
    stacked = {"w": p0.clone()}
    opt = StackedAdam(stacked)
    refs = [p0[m].clone().requires_grad_() for m in range(3)]
    topts = [torch.optim.Adam([r], lr=0.01) for r in refs]
    for k, gr in enumerate(grads):
        rows = np.array([True, True, k < 2])
        frozen = stacked["w"][2].clone()
        opt.step({"w": gr}, {"w": rows}, lr=0.01)
        for m in range(3):
            if rows[m]:
                refs[m].grad = gr[m].clone()
                topts[m].step()
        if not rows[2]:
            assert torch.equal(stacked["w"][2], frozen)
    for m in range(3):
        torch.testing.assert_close(stacked["w"][m], refs[m].detach(), rtol=1e-6, atol=1e-7)


def test_groups_keep_folds_together_and_split_by_slots_and_memory():
    from fluxscale.learn.ensemble import plan_groups

    members = [(v, f) for f in range(10) for v in ("ec", "ecatm")]
    two = plan_groups(members, TrainConfig(), slots=2)
    assert [len(g) for g in two] == [10, 10] and sorted(sum(two, [])) == sorted(members)
    assert all({v for v, f in g if f == fold} == {"ec", "ecatm"} for g in two for _, fold in g)
    assert len(plan_groups(members, TrainConfig(), slots=2, max_folds=2)) == 5
    assert len(plan_groups(members, TrainConfig(), slots=64)) == 10
    assert [len(g) for g in plan_groups(members, TrainConfig(group_size=6), slots=2)] == [6, 6, 6, 2]


# --- the sampled atmospheric term (fluxscale.learn.atm_sample) --------------------------------------

class _TairModel(torch.nn.Module):
    """NEE = Tair (°C), a field that varies by cell and day, so sampling error is visible."""

    def forward(self, x):
        from fluxscale.dataset.drivers import DRIVER_NAMES

        return x[..., DRIVER_NAMES.index("Tair")]


def _full_regional_tair(root, data, months):
    """numpy: Σ over each region's land cells of land area × monthly mean Tair × days, PgC
    month-1 if Tair were gC m-2 d-1 — the full integral the sampled term estimates."""
    from fluxscale.dataset.drivers import assemble_driver_block, DRIVER_NAMES

    drivers = open_store(store_path(root, "drivers"), "drivers")
    x = assemble_driver_block(drivers, time=data.day_idx)[..., DRIVER_NAMES.index("Tair")].astype(np.float64)
    out = np.zeros((months.size, data.region_ids.size))
    for i, m in enumerate(months):
        mean = x[data.day_month == m].mean(axis=0)
        for j, rid in enumerate(data.region_ids):
            k = data.cell_region == rid
            out[i, j] = (mean[k] * data.cell_area[k]).sum() * data.month_days[m] / 1e15
    return out


def test_pool_is_unbiased_for_the_regional_sum_against_numpy():
    """Hansen–Hurwitz pool: over many pools the mean of Σ w·x equals Σ A·x (closed form)."""
    from fluxscale.learn.atm_sample import draw_pool

    rng = np.random.default_rng(0)
    n = 500
    region = rng.integers(0, 3, n)
    area = rng.uniform(1, 5, n)
    x = rng.normal(2, 3, n) * area  # correlated with the area
    exact = np.array([(area * x)[region == r].sum() for r in range(3)])
    est = []
    for _ in range(3000):
        cells, col, w = draw_pool(region, area, [0, 1, 2], 40, rng)
        est.append(np.bincount(col, weights=w * x[cells], minlength=3))
    est = np.array(est)
    se = est.std(axis=0) / np.sqrt(len(est))
    assert np.all(np.abs(est.mean(axis=0) - exact) < 4 * se)
    cells, col, w = draw_pool(region, area, [0, 1, 2], 1000, rng)  # a pool as large as the regions: exact
    np.testing.assert_allclose(np.bincount(col, weights=w * x[cells], minlength=3), exact, rtol=1e-12)


def test_sampled_estimate_matches_the_full_integral(trained_root, data):
    """With a pool holding every cell, the validation estimate is the full regional integral
    (numpy), and the mean of many per-step samples (cells and days) converges to it."""
    from fluxscale.learn.member import Member

    cfg = FAST.replace(atm_pool_cells=100_000, atm_val_cells=100_000, atm_sample_cells=8, atm_sample_days=3)
    mb = Member(data, cfg, 0, torch.device("cpu"))
    months = mb.months_of([int(data.month_year[0])])
    exact = _full_regional_tair(trained_root, data, months)
    with torch.no_grad():
        full = mb.sampled_estimate(_TairModel(), months).numpy()
        np.testing.assert_allclose(full, exact, rtol=1e-5)
        rng = np.random.default_rng(1)
        draws = np.stack([mb.sampled_estimate(_TairModel(), months, rng).numpy() for _ in range(300)])
    se = draws.std(axis=0) / np.sqrt(len(draws))
    z = (draws.mean(axis=0) - exact) / np.maximum(se, 1e-12)
    assert np.mean(np.abs(z) < 3) > 0.97 and np.all(np.abs(z) < 5)
    # each step's sample costs ~regions × cells × 12 × days forward samples, not the whole region
    assert draws.std(axis=0).max() > 0


class _ShiftedTair(torch.nn.Module):
    """NEE = 0.5·Tair + 3: another field, to fill the control variate's table with."""

    def forward(self, x):
        from fluxscale.dataset.drivers import DRIVER_NAMES

        return 0.5 * x[..., DRIVER_NAMES.index("Tair")] + 3.0


def test_stale_table_estimate_against_numpy():
    """The control variate's estimate is Σ_pool w·table + Σ_sample scale·(now − table)
    (numpy), and it records the sample's values in the table."""
    from fluxscale.learn.atm_sample import StaleTable

    rng = np.random.default_rng(3)
    months, pool, regions = 5, 40, 3
    table = rng.normal(size=(months, pool))
    region = rng.integers(0, regions, pool)
    weight = rng.uniform(1, 2, pool)
    pool_w = np.zeros((pool, regions))
    pool_w[np.arange(pool), region] = weight
    idx = np.sort(rng.choice(pool, 12, replace=False))
    m = np.array([1, 3])
    w = pool_w[idx] * 3.0
    now = rng.normal(size=(2, 12))
    expect = (now - table[m][:, idx]) @ w + table[m] @ pool_w
    t = StaleTable(torch.tensor(table), torch.tensor(pool_w))
    got = t.estimate(torch.tensor(now), torch.tensor(m), torch.tensor(idx), torch.tensor(w))
    np.testing.assert_allclose(got.numpy(), expect, rtol=1e-12)
    after = table.copy()
    after[np.ix_(m, idx)] = now
    np.testing.assert_allclose(t.values.numpy(), after, rtol=0)


def test_control_variate_is_unbiased_and_cuts_the_noise(trained_root, data):
    """With the table filled from another field, the control-variate estimate still averages
    to the full integral (numpy); once the table holds the model's own values its spread is a
    fraction of the plain sample's."""
    from fluxscale.learn.member import Member

    cfg = FAST.replace(atm_pool_cells=100_000, atm_sample_cells=8, atm_sample_days=3, atm_control_variate=True)
    mb = Member(data, cfg, 0, torch.device("cpu"))
    months = mb.months_of([int(data.month_year[0])])
    exact = _full_regional_tair(trained_root, data, months)
    rng = np.random.default_rng(2)
    with torch.no_grad():
        plain = np.stack([mb.sampled_estimate(_TairModel(), months, rng).numpy() for _ in range(200)])
        mb.init_table(_ShiftedTair(), np.random.default_rng(4))
        values0 = mb.table.values.clone()
        first = mb.sampled_estimate(_TairModel(), months, rng).numpy()  # table from the other field
        mb.table.values.copy_(values0)
        draws = []
        for _ in range(200):  # each draw against the other field's table: unbiased whatever it holds
            draws.append(mb.sampled_estimate(_TairModel(), months, rng).numpy())
            mb.table.values.copy_(values0)
        draws = np.stack(draws)
        for _ in range(100):  # let the table learn the model's own values
            mb.sampled_estimate(_TairModel(), months, rng)
        warm = np.stack([mb.sampled_estimate(_TairModel(), months, rng).numpy() for _ in range(200)])
    assert np.isfinite(first).all()
    se = draws.std(axis=0) / np.sqrt(len(draws))
    z = (draws.mean(axis=0) - exact) / np.maximum(se, 1e-12)
    assert np.mean(np.abs(z) < 3) > 0.95 and np.all(np.abs(z) < 5)
    # cell-sampling noise gone; what is left is the day sampling of the cells (successive
    # warm draws share the table, so their errors are not independent: no z-test there)
    assert np.median(warm.std(axis=0) / plain.std(axis=0)) < 0.7
    assert np.all(np.abs(warm.mean(axis=0) - exact) < plain.std(axis=0))


def test_non_finite_loss_is_refused(trained_root, data):
    """Inf tower NEE: the member stops with an error naming it, no checkpoint."""
    import dataclasses

    y = data.site_y.copy()
    obs = np.argwhere(np.isfinite(y))
    y[tuple(obs[:: max(1, len(obs) // 3)][:3].T)] = np.inf
    bad = dataclasses.replace(data, site_y=y)
    with pytest.raises(FluxscaleError, match=r"sites.zarr: NEE: 3 tower-day\(s\) not finite"):
        train_member(trained_root, FAST.replace(epochs=1), "ec", 0, data=bad, write=False)
    # a loss that diverges during training stops the member, naming it and the epoch
    with pytest.raises(FluxscaleError, match=r"ecatm-fold0: the loss went non-finite at epoch \d"):
        train_member(trained_root, FAST.replace(epochs=3, learning_rate=1e30), "ecatm", 0, data=data, write=False)


def test_flagged_members_stay_at_ec_level():
    from fluxscale.learn.ensemble import flag_members

    row = lambda atm, g: {"val_atm": atm, "global_monitor": g, "global_inversions": -3.0}  # noqa: E731
    members = {"ec-fold0": {"variant": "ec", "fold": 0, "best": row(0.12, -20.0), "best_epoch": 30},
               "ecatm-fold0": {"variant": "ecatm", "fold": 0, "best": row(0.11, -19.0), "best_epoch": 4},
               "ec-fold1": {"variant": "ec", "fold": 1, "best": row(0.12, -20.0), "best_epoch": 30},
               "ecatm-fold1": {"variant": "ecatm", "fold": 1, "best": row(0.04, -3.5), "best_epoch": 30}}
    flagged = flag_members(members)
    assert list(flagged) == ["ecatm-fold0"] and "0.92 of EC's" in flagged["ecatm-fold0"]


def test_cosine_learning_rate():
    from fluxscale.learn.fit import learning_rate

    cfg = TrainConfig(epochs=2, steps_per_epoch=5, lr_schedule="cosine", lr_final=0.1)
    lr = [learning_rate(cfg, k) for k in range(10)]
    assert lr[0] == pytest.approx(0.003) and lr[-1] == pytest.approx(0.0003) and np.all(np.diff(lr) < 0)
    assert learning_rate(TrainConfig(lr_schedule="constant"), 500) == 0.003


def test_bad_checkpoints_are_refused_in_one_line_naming_the_file(tmp_path):
    """Truncated, code-carrying (a pickle whose __reduce__ would run a command), foreign and
    missing checkpoints: a FluxscaleError naming the file, without torch's advice to turn the
    safe loader off; the good one loads to the same weights."""
    import os

    from fluxscale.errors import FluxscaleError
    from fluxscale.learn.model import init_model

    good = tmp_path / "good.pt"
    torch.save({"state_dict": init_model(3).state_dict(), "meta": json.dumps({"metrics": {}})}, good)
    model, _ = load_member(good)
    assert all(torch.equal(v, init_model(3).state_dict()[k]) for k, v in model.state_dict().items())
    (tmp_path / "trunc.pt").write_bytes(good.read_bytes()[:300])

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    torch.save({"state_dict": Evil(), "meta": "{}"}, tmp_path / "evil.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    for name, why in (("trunc", "truncated or corrupt"), ("evil", "could run code"),
                      ("other", "not a fluxscale member checkpoint"), ("missing", "checkpoint not found")):
        with pytest.raises(FluxscaleError) as e:
            load_member(tmp_path / f"{name}.pt")
        msg = str(e.value)
        assert msg.startswith(f"{tmp_path / name}.pt: ") and why in msg and "weights_only" not in msg, msg
        assert "\n" not in msg
    assert not (tmp_path / "pwned").exists()
