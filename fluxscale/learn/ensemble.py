"""Training the EC and EC-ATM ensembles (paper §3.2–3.6, Eq. 4–14, Table B1), the stage
(:func:`train_ensemble`): every ``(variant, fold)`` member of the config, a group of members
per Dask task (:func:`plan_groups`), each group trained together with its weights stacked
(:func:`fluxscale.learn.fit.train_group`); members already trained under the same
``resume_key`` are kept; ``models/members.json`` gathers their metrics and the members
that stayed at EC's level (:func:`flag_members`).

A member is ``(variant, fold)``: it trains on the towers of the other nine folds and
validates on fold ``fold`` (:mod:`fluxscale.learn.member`). A task reads what it needs from
the stores itself (:func:`fluxscale.learn.data.load_training_data`) and writes, per member,
``models/<variant>-fold<k>.pt`` (atomic) and ``models/logs/<variant>-fold<k>.csv``
(:mod:`fluxscale.learn.fit`); it returns only small metrics.

The rest of the stage, by module: :mod:`fluxscale.learn.data` (the inputs, from the
stores), :mod:`fluxscale.learn.member` (one member's state and losses),
:mod:`fluxscale.learn.group` (a group's stacked state and its step),
:mod:`fluxscale.learn.fit` (the epoch loop, best epoch, checkpoints). This module also
gives their public names, those of the training module before the split
(``fluxscale.training``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from fluxscale.config import TrainConfig
from fluxscale.dataset.stores import open_store, store_path
from fluxscale.learn.data import TrainingData, load_training_data
from fluxscale.learn.fit import learning_rate, selection_score, train_group, train_member
from fluxscale.learn.member import G_PER_PG
from fluxscale.learn.model import load_member, member_name, model_sets, models_dir

__all__ = ["TrainingData", "load_training_data", "train_member", "train_group", "flag_members", "learning_rate",
           "selection_score", "train_ensemble", "member_name", "models_dir", "model_sets", "load_member",
           "PROGRESS_TOPIC", "plan_groups", "fold_bytes", "FLAG_ATM_RATIO", "FLAG_GLOBAL_RATIO", "G_PER_PG"]


def _group_task(root: str, cfg: TrainConfig, members: list[tuple[str, int]], data: TrainingData | None = None,
                resume_key: str | None = None, on_epoch=None) -> list[dict[str, Any]]:
    """One group of members (:func:`train_group`): on a Dask worker it reads the stores itself
    (``data`` None); writes the checkpoints; returns only the small metrics and logs. On a
    worker each finished member-epoch is logged as an event on the topic
    :data:`PROGRESS_TOPIC` (the client's progress counts epochs, not groups).

    The reads compute here, on Dask's synchronous scheduler: on a worker, ``.values`` of a
    Dask-backed store otherwise goes back through the cluster, and the task seceded to
    wait for its own reads behind the other tasks (on the small twin, members took 5-10x
    longer on a 2-worker cluster than in a process, and more as the run went on).
    """
    import dask

    if on_epoch is None:
        try:
            from distributed import get_worker

            worker = get_worker()
            on_epoch = lambda name, epoch: worker.log_event(PROGRESS_TOPIC, {"member": name, "epoch": epoch})  # noqa: E731
        except (ImportError, ValueError):
            pass
    with dask.config.set(scheduler="synchronous"):
        res = train_group(root, cfg, members, data=data, resume_key=resume_key, on_epoch=on_epoch)
    return [{"metrics": r["metrics"], "log": r["log"]} for r in res]


PROGRESS_TOPIC = "fluxscale-train-epoch"
"""Dask event topic of the training groups' per-member epochs (``{"member", "epoch"}``)."""


def plan_groups(members: list[tuple[str, int]], cfg: TrainConfig, slots: int,
                max_folds: int | None = None) -> list[list[tuple[str, int]]]:
    """Split ``(variant, fold)`` ``members`` into training groups.

    ``cfg.group_size`` > 0: consecutive runs of that many members (fold by fold).
    0: the folds split as evenly as possible into ``min(folds, slots)`` groups (``slots``:
    the cluster's worker threads), every variant of a fold in its fold's group, and no
    group with more than ``max_folds`` folds (memory)."""
    folds = list(dict.fromkeys(f for _, f in members))
    order = sorted(members, key=lambda m: (folds.index(m[1]), m[0]))
    if cfg.group_size:
        return [order[i:i + cfg.group_size] for i in range(0, len(order), cfg.group_size)]
    n = max(1, min(len(folds), slots))
    if max_folds:
        n = max(n, -(-len(folds) // max_folds))
    parts = [list(p) for p in np.array_split(np.asarray(folds), n) if len(p)]
    return [[m for m in order if m[1] in p] for p in parts]


def fold_bytes(root: str | Path, cfg: TrainConfig) -> float:
    """Rough memory of one fold in a training group, bytes: its sampling pool's drivers
    (:func:`fluxscale.learn.atm_sample.load_pool`: 8 B × days × cells daily, 16 B × 366 × cells
    seasonal), its held-out years' validation drivers and the step's buffers."""
    drivers = open_store(store_path(root, "drivers"), "drivers")
    days = drivers.sizes["time"]
    cells = cfg.atm_pool_cells * 18
    return 8.0 * days * cells + 16.0 * 366 * cells + 40.0 * 366 * cfg.holdout_years * cfg.atm_val_cells * 18 + 50e6


def _kept_member(path: Path, resume_key: str | None) -> dict | None:
    """The metrics of the checkpoint at ``path`` if it was written under ``resume_key``."""
    if resume_key is None or not path.exists():
        return None
    try:
        _, meta = load_member(path)
    except Exception:  # noqa: BLE001  (unreadable: train it again)
        return None
    return meta["metrics"] if meta.get("resume_key") == resume_key else None


FLAG_ATM_RATIO = 0.8
"""An EC-ATM member whose held-out ATM loss is at least this fraction of its fold's EC member's
did not take the atmospheric constraint up (flagged)."""
FLAG_GLOBAL_RATIO = 0.5
"""… or whose monitor total is at least this fraction as far from the inversions as EC's."""


def flag_members(members: dict[str, dict]) -> dict[str, str]:
    """EC-ATM members that stayed at EC's level, by their fold's EC member: ``{name: why}``.

    A member is flagged when its best epoch's held-out ATM loss is ≥ ``FLAG_ATM_RATIO`` × EC's,
    or when its global total over the monitor cells and year (``global_monitor``, PgC yr-1)
    is ≥ ``FLAG_GLOBAL_RATIO`` × as far from the inversions' as EC's. Members without an EC
    partner are not judged."""
    out = {}
    for name, m in members.items():
        if m.get("variant") != "ecatm":
            continue
        ec = members.get(member_name("ec", m["fold"]))
        if ec is None:
            continue
        b, e = m["best"], ec["best"]
        why = []
        if np.isfinite(b.get("val_atm", np.nan)) and np.isfinite(e.get("val_atm", np.nan)) \
                and b["val_atm"] >= FLAG_ATM_RATIO * e["val_atm"]:
            why.append(f"held-out ATM loss {b['val_atm']:.4f} is {b['val_atm'] / e['val_atm']:.2f} of EC's "
                       f"{e['val_atm']:.4f} (best epoch {m['best_epoch']})")
        if "global_monitor" in b and "global_monitor" in e:
            gap, gap_ec = abs(b["global_monitor"] - b["global_inversions"]), abs(e["global_monitor"] - e["global_inversions"])
            if gap_ec > 0 and gap >= FLAG_GLOBAL_RATIO * gap_ec:
                why.append(f"its total over the monitor year is {b['global_monitor']:.2f} PgC/yr against the "
                           f"inversions' {b['global_inversions']:.2f} (EC: {e['global_monitor']:.2f})")
        if why:
            out[name] = "; ".join(why) + ": the atmospheric constraint did not take hold"
    return out


def train_ensemble(root: str | Path, cfg: TrainConfig, *, client=None, show_progress: bool = True,
                   say=lambda m: None, resume_key: str | None = None) -> dict[str, Any]:
    """Train every ``(variant, fold)`` member of ``cfg``; returns ``members.json``'s content.

    ``resume_key`` (``fluxscale run`` passes its stage key: a hash of this config and of the
    inputs) is written into each checkpoint; a member whose checkpoint already carries the
    same key is kept, not trained again, so an interrupted run resumes with the rest.

    The members train in groups (:func:`plan_groups`, ``cfg.group_size``), each group one
    stacked model (:func:`train_group`). With a ``distributed.Client`` each group is one
    task (``client.submit``, retried ``cfg.retries`` times if its worker is lost; the
    retry writes the same weights), by default one group per worker thread; on workers
    that declare a ``GPU`` resource the tasks ask for one (one group per GPU) and train
    with CUDA when torch sees it. Without a client the groups run here, sharing one read
    of the data. The progress bar counts member-epochs (Dask events from the workers).
    """
    from fluxscale.parallel import progress_bar

    root = Path(root)
    members = [(v, f) for f in cfg.folds for v in cfg.variants]
    out = models_dir(root, cfg.model_set)
    out.mkdir(parents=True, exist_ok=True)
    (out / "members.json").unlink(missing_ok=True)  # incomplete until rewritten below
    results: dict[str, dict] = {}
    t0 = time.perf_counter()

    def report(res: dict) -> None:
        m = res["metrics"]
        b = m["best"]
        results[m["member"]] = res
        glob = (f"global {b['global_monitor']:.2f} (inversions {b['global_inversions']:.2f}) PgC/yr"
                if "global_monitor" in b else f"atm_all {b['atm_all']:.4f}")
        say(f"train: {m['member']:<12} best epoch {m['best_epoch']:>3}  val_ec {b['val_ec']:.3f}  "
            f"val_atm {b['val_atm']:.4f}  {glob}  decoupling {b['decoupling']:.3f}  "
            f"({m['seconds']:.1f} s, {m['device']}){'  stopped: ' + m['stopped'] if m['stopped'] else ''}")

    kept = {member_name(v, f): m for v, f in members
            if (m := _kept_member(out / f"{member_name(v, f)}.pt", resume_key)) is not None}
    if kept:
        say(f"train: keeping {len(kept)} members already trained with this config and inputs: {', '.join(kept)}")
        for name, m in kept.items():
            results[name] = {"metrics": m, "log": []}
    members = [(v, f) for v, f in members if member_name(v, f) not in kept]
    names = [member_name(v, f) for v, f in members]
    done_epochs = dict.fromkeys(names, 0)
    with progress_bar(show_progress) as progress:
        task = progress.add_task("train: member-epochs", total=len(members) * cfg.epochs)

        def on_epoch(name: str, epoch: int) -> None:
            # a retried group reports its epochs again: count each member's furthest epoch
            if epoch > done_epochs.get(name, cfg.epochs):
                done_epochs[name] = epoch
                progress.update(task, completed=sum(done_epochs.values()))

        def finished(group_results: list[dict]) -> None:
            for res in group_results:
                report(res)
                on_epoch(res["metrics"]["member"], cfg.epochs)  # a member stopped early is done too

        if client is not None:
            from distributed import as_completed

            workers = client.scheduler_info()["workers"].values()
            gpu = any("GPU" in (w.get("resources") or {}) for w in workers)
            slots = sum(int(w.get("nthreads", 1)) for w in workers) if not gpu else \
                sum(int((w.get("resources") or {}).get("GPU", 0)) for w in workers)
            mem = min((float(w.get("memory_limit") or 0) for w in workers), default=0.0)
            max_folds = max(1, int(0.5 * mem // fold_bytes(root, cfg))) if mem else None
            groups = plan_groups(members, cfg, max(slots, 1), max_folds)
            client.subscribe_topic(PROGRESS_TOPIC, lambda event: on_epoch(event[1]["member"], event[1]["epoch"]))
            try:
                futures = [client.submit(_group_task, str(root), cfg, g, None, resume_key,
                                         key=f"train-{member_name(*g[0])}-{len(g)}-{time.time_ns()}",
                                         pure=False, retries=cfg.retries, resources={"GPU": 1} if gpu else None)
                           for g in groups]
                if groups:
                    say(f"train: {len(members)} members in {len(groups)} group(s) of "
                        f"{', '.join(str(len(g)) for g in groups)} on {slots} worker thread(s)")
                for fut in as_completed(futures):
                    finished(fut.result())
            finally:
                client.unsubscribe_topic(PROGRESS_TOPIC)
        elif members:
            data = load_training_data(root, cfg)
            for g in plan_groups(members, cfg, 1):
                finished(_group_task(root, cfg, g, data, resume_key, on_epoch=on_epoch))
    summary = {"config": cfg.to_dict(), "members": {k: r["metrics"] for k, r in sorted(results.items())},
               "seconds": time.perf_counter() - t0}
    summary["flagged"] = flag_members(summary["members"])
    for name, why in summary["flagged"].items():
        say(f"train: [yellow]warning[/] {name}: {why}")
    (out / "members.json").write_text(json.dumps(summary, indent=2, default=float))
    return summary

