"""Training a group of members for its epochs (:func:`train_group`, :func:`train_member`):
the optimiser steps at the scheduled learning rate (:func:`learning_rate`), the log row of
each epoch, the best epoch (:func:`selection_score`) and each member's checkpoint.

The log-variances start at the log of each term's initial loss (``kendall_init``), the
learning rate follows a cosine (``lr_schedule``), and the validated and kept weights are an
exponential moving average of the trained ones (``ema_decay``); docs/evaluation.md has the
evidence for each default.

**Best epoch.** EC keeps the epoch with the lowest validation tower MSE. EC-ATM keeps the
lowest held-out ATM loss (``selection="val_atm"``) or ``val_ec / val_ec⁰ + val_atm /
val_atm⁰`` (``"relative_sum"``, each relative to its value before training). A member whose
every epoch scores no better than its starting weights is refused.

**Nothing silent.** A loss that turns non-finite stops the member
(:class:`~fluxscale.errors.FluxscaleError` naming it and the epoch); a member whose
``decoupling`` passes ``decoupling_max`` is stopped (frozen) and says so in its metrics.

**Checkpoints.** Per member, ``models/<variant>-fold<k>.pt`` (atomic: written beside, then
renamed) with the best epoch's weights, log-variances, the tower-bias head (``tower_bias``,
EC-ATM with ``tower_bias="linear"``; its mean over the tower-days is ``tower_bias_mean`` in
the metrics) and the metadata (config, metrics, ``resume_key``); and
``models/logs/<variant>-fold<k>.csv``, one row per epoch.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fluxscale.config import TrainConfig
from fluxscale.dataset.drivers import DRIVER_NAMES
from fluxscale.errors import FluxscaleError
from fluxscale.learn.data import TrainingData, load_training_data
from fluxscale.learn.group import Group
from fluxscale.learn.model import member_name, models_dir

__all__ = ["train_member", "train_group", "learning_rate", "selection_score"]


def _device(cfg: TrainConfig):
    import torch

    if cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise FluxscaleError("train config device='cuda', but torch sees no CUDA device")
    from fluxscale.parallel import cuda_device

    return torch.device(cuda_device())  # one GPU per worker on a machine with several


def _threads(cfg: TrainConfig) -> int:
    if cfg.threads:
        return cfg.threads
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):
        return 1



def train_member(root: str | Path, cfg: TrainConfig, variant: str, fold: int, *,
                 data: TrainingData | None = None, write: bool = True, resume_key: str | None = None) -> dict[str, Any]:
    """Train one member (a group of one, :func:`train_group`); its result."""
    return train_group(root, cfg, [(variant, fold)], data=data, write=write, resume_key=resume_key)[0]


def train_group(root: str | Path, cfg: TrainConfig, members: list[tuple[str, int]], *,
                data: TrainingData | None = None, write: bool = True, resume_key: str | None = None,
                on_epoch=None) -> list[dict[str, Any]]:
    """Train the ``(variant, fold)`` ``members`` together as one stacked model
    (:mod:`fluxscale.learn.stacked`); write each one's checkpoint and log; return each one's
    ``{"metrics", "log"}`` (``"state_dict"`` too with ``write=False``), in order.

    Every member keeps its own semantics: its fold's towers and EC batches (EC and EC-ATM of
    a fold: the same starting weights and batches), its held-out ATM years and samples, its
    log-variances, Adam moments, moving average, best epoch and decoupling stop (a stopped
    member is frozen: its rows are masked out of every update). Members of one fold share
    their sampling pool's drivers. ``on_epoch(name, epoch)`` is called after each member's
    epoch (progress). ``resume_key`` is stored in each checkpoint (see
    :func:`fluxscale.learn.ensemble.train_ensemble`).

    Deterministic for a given ``cfg``, member list and thread count: a task retried after
    its worker was lost writes the same weights; a member's weights do not depend on which
    other members share its group.
    """
    import torch

    from fluxscale.parallel import tune_malloc as _tune_malloc

    t_start = time.perf_counter()
    _tune_malloc()  # on a Dask worker: large tensors from the heap, not fresh mmaps (see there)
    torch.set_num_threads(_threads(cfg))
    device = _device(cfg)
    data = data if data is not None else load_training_data(root, cfg)
    grp = Group(data, cfg, members, device)
    mbs, net, log_var, head_w, head_b = grp.mbs, grp.net, grp.log_var, grp.head_w, grp.head_b
    names = [member_name(v, f) for v, f in members]
    variants, is_atm, has_head, active = grp.variants, grp.is_atm, grp.has_head, grp.active
    M = len(members)
    val_months = [mb.months_of(mb.val_years) for mb in mbs]
    all_months = np.arange(mbs[0].n_months)
    kept, fwd, head = grp.kept, grp.fwd, grp.head

    lr_now = float(learning_rate(cfg, 0))

    def evaluate(ms: list[int], epoch: int, tr_ec: np.ndarray, tr_atm: np.ndarray,
                 seconds: float) -> dict[int, dict[str, float]]:
        """The log rows of members ``ms`` after ``epoch``, their forwards batched: the monitor
        (shared cells and pixels) over all of them, the validation towers and cells over each
        fold's members (EC and EC-ATM of a fold validate on the same)."""
        rows = {}
        with torch.no_grad():
            mon = mbs[ms[0]].monitor(grp.fwd_many(ms))
            for fold in dict.fromkeys(members[m][1] for m in ms):
                fm = [m for m in ms if members[m][1] == fold]
                mb, f = mbs[fm[0]], grp.fwd_many(fm)
                val_atm = mb.atm(f, val_months[fm[0]]).tolist() if val_months[fm[0]].size else [float("nan")] * len(fm)
                # every month: cheap through the bridges' pixels; the sampled term's validation
                # cells over the whole record cost ~10x a step, so only before and after training
                atm_all = mb.atm(f, all_months).tolist() \
                    if cfg.atm_term == "bridges" or epoch in (0, cfg.epochs) else [float("nan")] * len(fm)
                ec = mb.ec_vals(f, [head(m) for m in fm])
                for k, m in enumerate(fm):
                    sig = torch.exp(0.5 * log_var[m]).cpu().numpy()
                    j = ms.index(m)
                    rows[m] = {"epoch": epoch, "train_ec": float(tr_ec[m]), "train_atm": float(tr_atm[m]),
                               "sigma_ec": float(sig[0]), "sigma_atm": float(sig[1]), "val_ec": ec[k][0],
                               "val_ec_nee": ec[k][1], "val_atm": val_atm[k], "atm_all": atm_all[k],
                               "decoupling": mon["decoupling"][j], "global_monitor": mon["global_monitor"][j],
                               "global_bridge": mon["global_bridge"][j],
                               "global_inversions": mon["global_inversions"], "lr": lr_now, "seconds": seconds}
        return rows

    expected = [["train_ec"] + (["train_atm"] if is_atm[m] else []) + (["val_ec"] if mbs[m].val_idx.shape[0] else [])
                + (["val_atm"] if val_months[m].size else []) for m in range(M)]
    row0 = evaluate(list(range(M)), 0, np.full(M, np.nan), np.full(M, np.nan), 0.0)
    logs = [[row0[m]] for m in range(M)]
    refs = [lg[0] for lg in logs]
    with torch.no_grad():
        for m in range(M):
            if cfg.kendall_init == "initial_losses" and is_atm[m]:
                # s = log σ² starts at the log of each term's loss before training: Eq. 14's
                # equilibrium (∂/∂s = 0 ⇔ σ² = L), so both terms weigh as much from the first
                # step instead of waiting for Adam to walk s there at ~lr per step
                l_ec0 = mbs[m].ec_train_loss(fwd(m))
                log_var[m] = torch.tensor([np.log(max(l_ec0, 1e-12)), np.log(max(refs[m]["atm_all"], 1e-12))],
                                          dtype=log_var.dtype)
            if is_atm[m]:
                mbs[m].init_table(fwd(m), np.random.default_rng([cfg.seed, members[m][1], 19]))

    def snapshot(m: int) -> dict[str, Any]:
        return {"state": net.state_dict(m, kept), "log_var": log_var[m].detach().clone().cpu(),
                "head": {"weight": head_w[m].detach()[None, :].clone().cpu(), "bias": head_b[m].detach()[None].clone().cpu()}}

    # the start competes too: a member whose every epoch scores no better than its starting
    # weights never learned anything, and is refused below rather than written
    best = [snapshot(m) for m in range(M)]
    best_score = [selection_score(cfg, variants[m], row0[m], refs[m]) for m in range(M)]
    best_score = [b if np.isfinite(b) else np.inf for b in best_score]  # no validation data: the start has no score
    best_epoch, stopped = [0] * M, [None] * M
    seconds = np.zeros(M)
    for epoch in range(1, cfg.epochs + 1):
        t = time.perf_counter()
        ec_sum, atm_sum = np.zeros(M), np.zeros(M)
        for k in range(cfg.steps_per_epoch):
            lr_now = float(learning_rate(cfg, (epoch - 1) * cfg.steps_per_epoch + k))
            l_ec, l_atm = grp.step(lr_now)
            ec_sum, atm_sum = ec_sum + np.nan_to_num(l_ec), atm_sum + np.nan_to_num(l_atm)
        dt = time.perf_counter() - t
        ms = [int(m) for m in np.flatnonzero(active)]
        rows = evaluate(ms, epoch, ec_sum / cfg.steps_per_epoch,
                        np.where(is_atm, atm_sum / cfg.steps_per_epoch, np.nan), dt)
        for m in ms:
            seconds[m] += dt / len(ms)
            row = rows[m]
            logs[m].append(row)
            bad = [k for k in expected[m] if not np.isfinite(row[k])]
            if bad:
                raise FluxscaleError(
                    f"{names[m]}: the loss went non-finite at epoch {epoch} ({', '.join(f'{k}={row[k]}' for k in bad)}); "
                    f"no checkpoint written. Check the inputs: `fluxscale validate {root}` (towers' NEE and drivers)")
            score = selection_score(cfg, variants[m], row, refs[m])
            if score < best_score[m]:
                best_score[m], best_epoch[m], best[m] = score, epoch, snapshot(m)
            if cfg.decoupling_max is not None and row["decoupling"] > cfg.decoupling_max:
                stopped[m] = f"decoupling {row['decoupling']:.3f} > {cfg.decoupling_max} at epoch {epoch}"
                active[m] = False  # grp.active: frozen, masked out of every later update
            if on_epoch is not None:
                on_epoch(names[m], epoch)
        if not active.any():
            break

    stuck = [m for m in range(M) if best_epoch[m] == 0]
    if stuck:
        m = stuck[0]
        after = min(selection_score(cfg, variants[m], r, refs[m]) for r in logs[m][1:])
        raise FluxscaleError(
            f"{names[m]}: no epoch of 1-{logs[m][-1]['epoch']} improved on the starting weights (selection score "
            f"{best_score[m]:.4g} at epoch 0, at best {after:.4g} after it); "
            f"no checkpoint written{'' if len(stuck) == 1 else f' (nor for {len(stuck) - 1} other member(s) of its group)'}. "
            f"Train longer or faster (epochs, steps_per_epoch, learning_rate) or check the inputs (`fluxscale validate {root}`)")

    results = []
    for m, ((variant, fold), mb, name) in enumerate(zip(members, mbs, names)):
        tower_bias_mean = None
        if has_head[m]:
            hw, hb = best[m]["head"]["weight"][0].to(device), best[m]["head"]["bias"][0].to(device)
            mean, std = best[m]["state"]["x_mean"].to(device), best[m]["state"]["x_std"].to(device)
            tower_bias_mean = mb.tower_bias_mean(lambda x: ((x - mean) / std) @ hw + hb)
        metrics = {"member": name, "variant": variant, "fold": fold, "best_epoch": best_epoch[m],
                   "best": logs[m][best_epoch[m]], "stopped": stopped[m], "val_years": mb.val_years,
                   "systems": data.systems, "regions": data.regions, "n_train_obs": int(mb.train_idx.shape[0]),
                   "n_val_obs": int(mb.val_idx.shape[0]), "tower_bias_mean": tower_bias_mean,
                   "seconds": float(seconds[m]), "group": names, "group_seconds": time.perf_counter() - t_start,
                   "device": str(device), "threads": torch.get_num_threads()}
        result = {"metrics": metrics, "log": logs[m]}
        if write:
            ckpt = {"state_dict": best[m]["state"], "log_var": best[m]["log_var"],
                    **({"tower_bias": best[m]["head"]} if has_head[m] else {}),
                    "meta": json.dumps({"config": cfg.to_dict(), "metrics": metrics, "resume_key": resume_key,
                                        "drivers": list(DRIVER_NAMES), "units": "gC m-2 d-1"}, default=float)}
            _write_member(models_dir(root, cfg.model_set), name, ckpt, logs[m])
        else:
            result["state_dict"] = best[m]["state"]
        results.append(result)
    return results


def _write_member(out: Path, name: str, ckpt: dict[str, Any], log: list[dict[str, Any]]) -> None:
    """Write member ``name``'s checkpoint ``out/<name>.pt`` (atomic: written beside, then
    renamed) and its log ``out/logs/<name>.csv`` (one row per epoch)."""
    import torch

    (out / "logs").mkdir(parents=True, exist_ok=True)
    tmp = out / f".{name}.pt.{os.getpid()}"
    torch.save(ckpt, tmp)
    os.replace(tmp, out / f"{name}.pt")
    pd.DataFrame(log).to_csv(out / "logs" / f"{name}.csv", index=False)


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Adam's learning rate at optimiser step ``step`` (0-based): ``learning_rate`` throughout
    (``lr_schedule="constant"``, Table B1) or a cosine decay from it to ``learning_rate ×
    lr_final`` at the last step (``"cosine"``)."""
    if cfg.lr_schedule == "constant":
        return cfg.learning_rate
    total = max(cfg.epochs * cfg.steps_per_epoch - 1, 1)
    frac = min(step / total, 1.0)
    return cfg.learning_rate * (cfg.lr_final + (1.0 - cfg.lr_final) * 0.5 * (1.0 + np.cos(np.pi * frac)))


def selection_score(cfg: TrainConfig, variant: str, row: dict[str, float], ref: dict[str, float]) -> float:
    """The best-epoch score of an epoch's log ``row`` (``ref``: epoch 0's), lower is better.

    EC: the validation towers' MSE. EC-ATM (``cfg.selection``): ``"relative_sum"``,
    ``val_ec/val_ec⁰ + val_atm/val_atm⁰``; ``"val_atm"``, the held-out years' ATM loss
    alone (the validation towers carry the towers' bias that the ATM term exists to
    correct, so their error may rightly rise). Falls back to the training EC loss where a
    validation loss is missing."""
    if variant == "ec" or not np.isfinite(row["val_atm"]):
        score = row["val_ec"]
    elif cfg.selection == "val_atm":
        score = row["val_atm"]
    else:
        score = row["val_ec"] / ref["val_ec"] + row["val_atm"] / ref["val_atm"]
    return score if np.isfinite(score) else row["train_ec"]
