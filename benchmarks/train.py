"""Training throughput: samples per second of the EC and EC-ATM steps.

Setup (not timed): a twin of the size, its integrals and bridges (10 repeats), the
training data of fold 0. Timed, median of ``repeats`` runs of ``steps`` steps each, one
torch thread:

* **EC step** (``fluxscale.training._Member.step``): a batch of 10 000 tower-days
  (Table B1), MSE over the observed ones, Adam;
* **EC-ATM step** (the sampled term, the default; and the paper's bridges): the same plus
  one training year of the sampled cells and days, or of the bridge pixels (days ×
  pixels forward passes, monthly means, bridges, ℓ3 loss, Eq. 14);
* **peer**: a bare PyTorch loop over the same tower tensors (index, forward, MSE,
  backward, Adam) with the same network and batch: what any MLP training pays.

Samples: EC = batch; EC-ATM = batch + days × pixels of the year.
"""

from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path


def bench_train(size: str, workdir: str, repeats: int, steps: int = 20) -> dict:
    import numpy as np
    import torch

    from fluxscale.bridge import build_bridges
    from fluxscale.config import BridgeConfig, TrainConfig
    from fluxscale.integrals import compute_integrals
    from fluxscale.model import init_model
    from fluxscale.training import _Member, load_training_data
    from fluxscale.twin import make_twin

    root = Path(workdir) / f"train-{size}"
    make_twin(root, preset=size, show_progress=False)
    compute_integrals(root)
    build_bridges(root, BridgeConfig(repeats=10, repeats_per_task=10), show_progress=False)
    cfg = TrainConfig(threads=1)
    torch.set_num_threads(1)
    data = load_training_data(root, cfg)
    mb = _Member(data, cfg, 0, torch.device("cpu"))  # the sampled term (the default)
    mb_bridges = _Member(data, cfg.replace(atm_term="bridges"), 0, torch.device("cpu"))
    days_per_year = float(np.mean([np.isin(data.day_month, mb.months_of([y])).sum() for y in mb.train_years]))
    n_pix = data.pix_x.shape[1]
    n_sampled = sum(min(cfg.atm_sample_cells, int((mb.pool.region == j).sum())) for j in range(data.bias.size)) \
        * 12 * cfg.atm_sample_days

    def ours(variant: str, mb=mb) -> float:
        model = init_model(0)
        model.set_standardisation(mb.mean, mb.std)
        log_var = torch.zeros(2, requires_grad=True)
        opt = torch.optim.Adam(list(model.parameters()) + [log_var], lr=cfg.learning_rate)
        gen = torch.Generator().manual_seed(0)
        rng = np.random.default_rng(0)
        mb.step(model, opt, log_var, variant, cfg.ec_batch, gen, rng)  # warm-up
        t = time.perf_counter()
        for _ in range(steps):
            mb.step(model, opt, log_var, variant, cfg.ec_batch, gen, rng)
        return time.perf_counter() - t

    def peer() -> float:
        model = init_model(0)
        model.set_standardisation(mb.mean, mb.std)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
        idx = mb.train_idx_t
        gen = torch.Generator().manual_seed(0)
        t = time.perf_counter()
        for _ in range(steps):
            pick = torch.randint(idx.shape[0], (cfg.ec_batch,), generator=gen)
            s, d = idx[pick, 0], idx[pick, 1]
            loss = torch.nn.functional.mse_loss(model(mb.site_x[s, d]), mb.site_y[s, d])
            opt.zero_grad()
            loss.backward()
            opt.step()
        return time.perf_counter() - t

    times = {"ec": [], "ecatm": [], "ecatm_bridges": [], "peer": []}
    for _ in range(repeats):
        times["ec"].append(ours("ec"))
        times["ecatm"].append(ours("ecatm"))
        times["ecatm_bridges"].append(ours("ecatm", mb_bridges))
        times["peer"].append(peer())
    med = {k: statistics.median(v) for k, v in times.items()}
    samples = {"ec": cfg.ec_batch * steps, "ecatm": (cfg.ec_batch + n_sampled) * steps,
               "ecatm_bridges": (cfg.ec_batch + days_per_year * n_pix) * steps, "peer": cfg.ec_batch * steps}
    rate = {k: samples[k] / med[k] for k in med}
    shutil.rmtree(root, ignore_errors=True)
    return {
        "name": f"training steps ({size})", "repeats": repeats, "steps": steps, "batch": cfg.ec_batch,
        "bridge_pixels": n_pix, "days_per_year": days_per_year, "seconds": med, "samples_per_s": rate,
        "rows": [
            {"what": f"EC step ({size}): batch {cfg.ec_batch} tower-days, 1 thread",
             "fluxscale": f"{rate['ec'] / 1e6:.2f}·10⁶ samples/s ({med['ec'] / steps * 1e3:.1f} ms/step)",
             "peer": f"bare PyTorch MLP loop {rate['peer'] / 1e6:.2f}·10⁶ samples/s",
             "ratio": f"{rate['ec'] / rate['peer']:.2f}× the peer's rate"},
            {"what": f"EC-ATM step ({size}), sampled term: + {n_sampled} cell-days of one year",
             "fluxscale": f"{rate['ecatm'] / 1e6:.2f}·10⁶ samples/s ({med['ecatm'] / steps * 1e3:.1f} ms/step)",
             "peer": f"EC step {med['ec'] / steps * 1e3:.1f} ms/step",
             "ratio": f"{med['ecatm'] / med['ec']:.2f}× the EC step's time"},
            {"what": f"EC-ATM step ({size}), the paper's bridges: + one year × {n_pix} bridge pixels",
             "fluxscale": f"{rate['ecatm_bridges'] / 1e6:.2f}·10⁶ samples/s "
                          f"({med['ecatm_bridges'] / steps * 1e3:.1f} ms/step)",
             "peer": f"EC step {med['ec'] / steps * 1e3:.1f} ms/step",
             "ratio": f"{med['ecatm_bridges'] / med['ec']:.2f}× the EC step's time"},
        ],
    }
