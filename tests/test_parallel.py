"""run_tasks: results in item order, and tasks *started* in item order (inference relies on
it to run the largest blocks first), on Dask's threads and on a cluster."""

from __future__ import annotations

import time
from pathlib import Path

import dask
import pytest

from fluxscale.parallel import run_tasks

ITEMS = [5, 3, 12, 0, 7, 1, 9, 11, 2, 4, 8, 6, 10]


def _record(i: int, *, log: str) -> int:
    with open(log, "a") as fh:
        fh.write(f"{i}\n")
    time.sleep(0.005)
    return i * i


def _started(log: Path) -> list[int]:
    return [int(s) for s in log.read_text().split()]


def test_threads_start_in_item_order(tmp_path):
    log = tmp_path / "log"
    with dask.config.set(num_workers=1):
        out = run_tasks(_record, ITEMS, show_progress=False, log=str(log))
    assert out == [i * i for i in ITEMS]
    assert _started(log) == ITEMS


@pytest.mark.parametrize("processes", [False, True])
def test_cluster_starts_in_item_order(tmp_path, processes):
    from distributed import Client, LocalCluster

    log = tmp_path / "log"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=processes, dashboard_address=":0") as lc, \
            Client(lc) as client:
        out = run_tasks(_record, ITEMS, client=client, show_progress=False, log=str(log))
    assert out == [i * i for i in ITEMS]
    assert _started(log) == ITEMS


def test_cuda_device_is_one_gpu_per_worker(monkeypatch):
    """On a machine with several GPUs, LocalCluster workers 0, 1, 2, … take cuda:0, cuda:1,
    cuda:0, …; outside a worker, or with one GPU, plain 'cuda'."""
    import types

    import distributed
    import torch

    from fluxscale.parallel import cuda_device

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert cuda_device() == "cuda"  # not on a worker
    for name, want in ((0, "cuda:0"), (1, "cuda:1"), (2, "cuda:0"), ("tcp-worker", "cuda")):
        monkeypatch.setattr(distributed, "get_worker", lambda name=name: types.SimpleNamespace(name=name))
        assert cuda_device() == want
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert cuda_device() == "cuda"
