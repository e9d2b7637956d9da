"""The one-against-many inversion sensitivity runs (paper §3.6, Figs. C3–C5).

EC-ATM members are trained with the atmospheric term of Eq. 14 taken from one inversion
system, a pair or a triple instead of all of them, each set into its own model set
(``models/sets/<A+B>/``) and run over the globe into its own cube (``nee-<A+B>.zarr``).
``fluxscale evaluate`` then finds every finished set and draws Figs. C3 (one system), C4
(two) and C5 (three or more): each set's mean seasonal cycle against that of the systems it
was trained on.

This module only orchestrates: training is :func:`fluxscale.learn.ensemble.train_ensemble` with
``TrainConfig(systems=…, model_set=…, variants=("ecatm",))``, inference is
:func:`fluxscale.infer.stage.infer` with ``InferConfig(model_set=…)``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from fluxscale.config import InferConfig, TrainConfig
from fluxscale.errors import FluxscaleError
from fluxscale.dataset.stores import store_path

__all__ = ["set_name", "choose_sets", "run_one_against_many"]


def set_name(systems: tuple[str, ...] | list[str]) -> str:
    """The model-set name of a group of inversion systems: ``CAMS+CTE`` (sorted)."""
    return "+".join(sorted(systems))


def choose_sets(systems: list[str], *, singles: bool = True, pairs: int = 2, triples: int = 1,
                seed: int = 0) -> list[tuple[str, ...]]:
    """The groups of systems to train on, as in §3.6: every single system (Fig. C3) and
    ``pairs`` random pairs (C4) and ``triples`` random triples (C5), drawn without
    replacement with ``seed``."""
    rng = np.random.default_rng(seed)
    out: list[tuple[str, ...]] = [(s,) for s in systems] if singles else []
    for k, n in ((2, pairs), (3, triples)):
        combos = list(itertools.combinations(sorted(systems), k))
        if n > len(combos):
            raise FluxscaleError(f"one-against-many: {n} groups of {k} asked for, but {len(systems)} systems "
                                 f"give only {len(combos)}")
        out += [combos[i] for i in sorted(rng.choice(len(combos), size=n, replace=False))] if n else []
    return out


def run_one_against_many(root: str | Path, sets: list[tuple[str, ...]], train: TrainConfig | None = None,
                         infer: InferConfig | None = None, *, client=None, say=lambda m: None,
                         show_progress: bool = True) -> dict[str, Any]:
    """Train an EC-ATM model set on each group of ``sets`` and run it over the globe.

    ``train`` and ``infer`` give every other setting (epochs, folds, blocks…); their
    ``systems``, ``model_set``, ``variants`` and ``members`` are set here. The sets train
    concurrently (one Dask task per member, on ``client``), then each set's inference uses
    the whole cluster in turn. A rerun keeps the members trained with the same settings and
    inputs, and the finished cubes.

    Returns ``{set name: {"systems", "members", "cube"}}``.
    """
    from fluxscale.infer.cube import inputs_fingerprint
    from fluxscale.infer.stage import infer as run_infer
    from fluxscale.learn.ensemble import train_ensemble

    root = Path(root)
    train = train or TrainConfig()
    infer = infer or InferConfig()
    if not sets:
        raise FluxscaleError("one-against-many: no sets of inversion systems given")
    names = [set_name(s) for s in sets]
    if len(set(names)) != len(names):
        raise FluxscaleError(f"one-against-many: a set is given twice ({', '.join(names)})")
    inputs = inputs_fingerprint(root)  # the twin or ingest, and what training reads besides the drivers:
    for store in ("integrals", "bridges"):
        meta = store_path(root, store) / "zarr.json"
        inputs[store] = hashlib.sha256(meta.read_bytes()).hexdigest() if meta.exists() else None
    cfgs = {}
    for systems, name in zip(sets, names):
        cfg = train.replace(systems=tuple(sorted(systems)), model_set=name, variants=("ecatm",))
        key = hashlib.sha256(json.dumps({"train": cfg.to_dict(), "inputs": inputs}, sort_keys=True,
                                        default=str).encode()).hexdigest()[:32]
        cfgs[name] = (cfg, key)
    t0 = time.perf_counter()
    say(f"one-against-many: training {len(sets)} EC-ATM sets ({', '.join(names)}), "
        f"{len(train.folds)} member(s) each")

    def fit(name: str) -> dict[str, Any]:
        cfg, key = cfgs[name]
        return train_ensemble(root, cfg, client=client, show_progress=False, resume_key=key,
                              say=lambda m: say(f"[{name}] {m}"))

    if client is not None:  # the sets' member tasks share the cluster
        with ThreadPoolExecutor(max_workers=len(names)) as pool:
            trained = dict(zip(names, pool.map(fit, names)))
    else:
        trained = {n: fit(n) for n in names}
    say(f"one-against-many: trained in {time.perf_counter() - t0:.1f} s")
    out = {}
    for systems, name in zip(sets, names):
        cfg = infer.replace(model_set=name, variants=("ecatm",), members=())
        rep = run_infer(root, cfg, client=client, show_progress=show_progress, say=say)
        out[name] = {"systems": sorted(systems), "members": sorted(trained[name]["members"]), "cube": rep.path}
    return out
