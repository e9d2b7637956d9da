"""Training throughput: samples per second of a group of members trained together against the
same members trained one after another.

Setup (not timed): a twin of the size, its integrals and bridges (10 repeats), the
training data. Timed, median of ``repeats`` runs of ``steps`` optimiser steps each, one
torch thread, ``members`` members (folds 0…members−1):

* **group, EC** (``fluxscale.learn.group.Group.step``): the members' stacked networks, each
  member its own batch of 10 000 tower-days (Table B1), MSE, the hand-written chunked
  backward, one masked Adam step over the stack;
* **peer, EC**: a bare PyTorch loop over the same tower tensors (index, forward, MSE,
  autograd backward, ``torch.optim.Adam``) with the same network and batch, member after
  member: what any MLP training pays;
* **group, EC-ATM** and **per member, EC-ATM** (``fluxscale.learn.member.Member.step``, plain
  autograd and ``torch.optim.Adam`` on one :class:`~fluxscale.learn.model.NEENet`, the reference
  the tests compare the group with): the EC batch plus one training year of the sampled
  atmospheric term (the default), Eq. 14.

Samples: EC = batch; EC-ATM = batch + the sampled term's cells × 12 months × days.
"""

from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path


def bench_train(size: str, workdir: str, repeats: int, steps: int = 10, members: int = 4) -> dict:
    import numpy as np
    import torch

    from fluxscale.bridges.build import build_bridges
    from fluxscale.config import BridgeConfig, TrainConfig
    from fluxscale.bridges.integrals import compute_integrals
    from fluxscale.learn.model import init_model
    from fluxscale.learn.data import load_training_data
    from fluxscale.learn.group import Group
    from fluxscale.learn.member import Member
    from fluxscale.twin import make_twin

    root = Path(workdir) / f"train-{size}"
    make_twin(root, preset=size, show_progress=False)
    compute_integrals(root)
    build_bridges(root, BridgeConfig(repeats=10, repeats_per_task=10), show_progress=False)
    folds = tuple(range(members))
    cfg = TrainConfig(threads=1, folds=folds)
    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    data = load_training_data(root, cfg)
    mbs = [Member(data, cfg, f, cpu) for f in folds]
    n_sampled = sum(min(cfg.atm_sample_cells, int((mbs[0].pool.region == j).sum())) for j in range(data.bias.size)) \
        * 12 * cfg.atm_sample_days

    def group(variant: str) -> float:
        g = Group(data, cfg, [(variant, f) for f in folds], cpu)
        g.step(cfg.learning_rate)  # warm-up
        t = time.perf_counter()
        for _ in range(steps):
            g.step(cfg.learning_rate)
        return time.perf_counter() - t

    def per_member(variant: str) -> float:
        runs = []
        for f, mb in zip(folds, mbs):
            model = init_model(f)
            model.set_standardisation(mb.mean, mb.std)
            log_var = torch.zeros(2, requires_grad=True)
            opt = torch.optim.Adam(list(model.parameters()) + [log_var], lr=cfg.learning_rate)
            gen = torch.Generator().manual_seed(f)
            rng = np.random.default_rng(f)
            mb.step(model, opt, log_var, variant, cfg.ec_batch, gen, rng)  # warm-up
            runs.append((mb, model, opt, log_var, gen, rng))
        t = time.perf_counter()
        for mb, model, opt, log_var, gen, rng in runs:  # one member after the other
            for _ in range(steps):
                mb.step(model, opt, log_var, variant, cfg.ec_batch, gen, rng)
        return time.perf_counter() - t

    def peer() -> float:
        runs = []
        for f, mb in zip(folds, mbs):
            model = init_model(f)
            model.set_standardisation(mb.mean, mb.std)
            runs.append((mb, model, torch.optim.Adam(model.parameters(), lr=cfg.learning_rate),
                         torch.Generator().manual_seed(f)))
        t = time.perf_counter()
        for mb, model, opt, gen in runs:
            idx = mb.train_idx_t
            for _ in range(steps):
                pick = torch.randint(idx.shape[0], (cfg.ec_batch,), generator=gen)
                s, d = idx[pick, 0], idx[pick, 1]
                loss = torch.nn.functional.mse_loss(model(mb.site_x[s, d]), mb.site_y[s, d])
                opt.zero_grad()
                loss.backward()
                opt.step()
        return time.perf_counter() - t

    times = {"group_ec": [], "peer": [], "group_ecatm": [], "member_ecatm": []}
    for _ in range(repeats):
        times["group_ec"].append(group("ec"))
        times["peer"].append(peer())
        times["group_ecatm"].append(group("ecatm"))
        times["member_ecatm"].append(per_member("ecatm"))
    med = {k: statistics.median(v) for k, v in times.items()}
    n_ec, n_atm = cfg.ec_batch * steps * members, (cfg.ec_batch + n_sampled) * steps * members
    samples = {"group_ec": n_ec, "peer": n_ec, "group_ecatm": n_atm, "member_ecatm": n_atm}
    rate = {k: samples[k] / med[k] for k in med}
    shutil.rmtree(root, ignore_errors=True)
    ms = lambda k: med[k] / (steps * members) * 1e3  # noqa: E731  (per member-step)
    return {
        "name": f"training steps ({size})", "repeats": repeats, "steps": steps, "members": members,
        "batch": cfg.ec_batch, "sampled": n_sampled, "seconds": med, "samples_per_s": rate,
        "ratio_group_ec_over_peer": rate["group_ec"] / rate["peer"],
        "ratio_group_ecatm_over_member": rate["group_ecatm"] / rate["member_ecatm"],
        "rows": [
            {"what": f"EC, a group of {members} ({size}): batch {cfg.ec_batch} tower-days each, 1 thread",
             "fluxscale": f"{rate['group_ec'] / 1e6:.2f}·10⁶ samples/s ({ms('group_ec'):.2f} ms/member-step)",
             "peer": f"bare PyTorch MLP loop, member after member, {rate['peer'] / 1e6:.2f}·10⁶ samples/s "
                     f"({ms('peer'):.2f} ms)",
             "ratio": f"{rate['group_ec'] / rate['peer']:.2f}× the peer's rate"},
            {"what": f"EC-ATM, a group of {members} ({size}), sampled term: + {n_sampled} cell-days of one year",
             "fluxscale": f"{rate['group_ecatm'] / 1e6:.2f}·10⁶ samples/s ({ms('group_ecatm'):.2f} ms/member-step)",
             "peer": f"per-member autograd + torch.optim.Adam, member after member, "
                     f"{rate['member_ecatm'] / 1e6:.2f}·10⁶ samples/s ({ms('member_ecatm'):.2f} ms)",
             "ratio": f"{rate['group_ecatm'] / rate['member_ecatm']:.2f}× the per-member rate"},
        ],
    }
