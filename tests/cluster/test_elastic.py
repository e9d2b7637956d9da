"""Losing a worker must not fail a stage: run_tasks' shared inputs are tasks the scheduler
recomputes (not scattered data, which dies with its only holder), and a LocalCluster's
nanny restarts a killed worker process. The same on a real SLURM is in test_slurm.py."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np

from fluxscale.parallel import run_tasks


def _task(i: int, *, data: dict, marker: str) -> float:
    """Item 5 kills its own worker process the first time it runs (SIGKILL: nothing is
    cleaned up, as when a node dies)."""
    if i == 5 and not Path(marker).exists():
        Path(marker).write_text("killed once")
        os.kill(os.getpid(), signal.SIGKILL)
    return float(data["x"][i] * data["w"].sum())


def test_killed_worker_loses_nothing(tmp_path):
    from distributed import Client, LocalCluster

    rng = np.random.default_rng(0)
    data = {"x": rng.normal(size=20), "w": rng.normal(size=(200, 200))}
    done = tmp_path / "done"
    done.write_text("")  # the reference, in this process: nobody is killed
    want = run_tasks(_task, range(20), show_progress=False, data=data, marker=str(done))
    marker = tmp_path / "marker"
    # one worker: before, the scattered `data` had no other copy and the stage failed with
    # "lose scattered data, which can't be recovered"
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None, memory_limit="2GiB") as lc, \
            Client(lc) as client:
        got = run_tasks(_task, range(20), client=client, show_progress=False, data=data, marker=str(marker))
        assert len(client.scheduler_info()["workers"]) == 1  # the nanny started a new process
    assert marker.exists(), "the worker was never killed"
    assert got == want
