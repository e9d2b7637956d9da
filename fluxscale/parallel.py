"""Running a list of independent tasks on Dask, with progress.

With a ``distributed.Client`` the tasks are submitted to it (``client.map``) and
progress follows ``as_completed`` (``dask.diagnostics.ProgressBar`` shows nothing under
a Client). Without one they run on Dask's local threaded scheduler with a progress
callback. Task functions must be module-level (they are pickled to workers) and
should return small results: large data is written to stores by the task itself.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import dask
from dask.callbacks import Callback

__all__ = ["run_tasks", "progress_bar", "tune_malloc"]

_MALLOC_TUNED = False


def progress_bar(enabled: bool = True):
    """A rich progress display (disabled → a no-op object with the same interface)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), disable=not enabled, transient=False)


class _RichCallback(Callback):
    def __init__(self, progress, task_id, keys, on_result=None):
        super().__init__()
        self._progress, self._task, self._keys, self._on_result = progress, task_id, set(keys), on_result

    def _posttask(self, key, result, dsk, state, worker_id):
        if key in self._keys:
            _advance(self._progress, self._task, self._on_result, result)


def run_tasks(func: Callable[..., Any], items: Sequence[Any], *, client=None, label: str = "tasks",
              show_progress: bool = True, retries: int = 0, resources: dict | None = None,
              on_result: Callable[[Any], str | None] | None = None, **kwargs: Any) -> list[Any]:
    """Run ``func(item, **kwargs)`` for every item; return the results in item order.

    Parameters
    ----------
    func : callable
        Module-level function.
    items : sequence
        One per task (e.g. a block plan), started in this order as workers free up.
    client : distributed.Client, optional
        Run on this cluster; default: Dask's threaded scheduler in this process.
    label : str
        Shown next to the progress bar.
    retries, resources : optional
        With a client: times a failed task is retried, and the worker resources each task
        needs (``{"GPU": 1}``); a task whose worker is lost is rescheduled in any case.
    on_result : callable, optional
        Called with each result as it arrives; a returned string replaces the progress
        label (e.g. with a throughput).
    kwargs
        Passed to every call (scattered once to the cluster when a client is used).
    """
    items = list(items)
    with progress_bar(show_progress) as progress:
        task = progress.add_task(label, total=len(items))
        if client is not None:
            from distributed import as_completed

            # Non-scalar arguments are scattered once (in a list, so that a mapping is sent whole):
            # sent inline, a mapping argument of client.map becomes a graph node keyed by its
            # name and shared by every task, which the scheduler rejects. hash=False gives each
            # call its own keys: with content-hashed keys, the release of an earlier call's
            # futures for the same object cancels this call's tasks ("lost dependencies").
            shared = {k: v if isinstance(v, (str, int, float, bool, type(None)))
                      else client.scatter([v], broadcast=True, hash=False)[0] for k, v in kwargs.items()}
            # zero-padded positions: the scheduler starts equal-priority tasks in key order, so
            # the items run in the order given (e.g. largest first, for balance at the end)
            stamp = time.monotonic_ns()
            futures = client.map(func, items, pure=False, key=[f"{label}-{i:06d}-{stamp}" for i in range(len(items))],
                                 retries=retries, resources=resources, **shared)
            for fut in as_completed(futures):
                if fut.status == "error":
                    fut.result()  # raises the task's exception here
                _advance(progress, task, on_result, fut.result() if on_result else None)
            return client.gather(futures)
        # dask.order starts independent tasks in descending key order: count down
        stamp, n = time.monotonic_ns(), len(items)
        tasks = [dask.delayed(func, pure=False)(item, **kwargs, dask_key_name=f"{label}-{n - i:06d}-{stamp}")
                 for i, item in enumerate(items)]
        keys = [t.key for t in tasks]
        with _RichCallback(progress, task, keys, on_result):
            return list(dask.compute(*tasks, scheduler="threads"))


def _advance(progress, task, on_result, result) -> None:
    text = on_result(result) if on_result is not None else None
    progress.update(task, advance=1, **({"description": text} if text else {}))


def tune_malloc() -> None:
    """Let glibc serve blocks up to 32 MiB from the heap in this process.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_`` set, which turns glibc's
    dynamic mmap threshold off: every buffer above 128 KiB (each decompressed 3 MB driver
    chunk, MKL's packing buffers) was then a fresh ``mmap`` whose pages faulted in on first
    touch, and a block ran ~25 % slower on a worker than on a thread of this process. The
    trim threshold itself is kept, so freed memory still goes back to the OS.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED or not os.environ.get("MALLOC_TRIM_THRESHOLD_"):
        return
    _MALLOC_TUNED = True
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-3, 32 * 2**20)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


def cuda_device() -> str:
    """The CUDA device this process should use: on a Dask worker of a machine with several
    GPUs, one per worker (``cuda:<worker index mod GPUs>`` for LocalCluster's workers, named
    0, 1, …; a worker whose name is not a number, or whose environment pins one device with
    ``CUDA_VISIBLE_DEVICES``, uses ``cuda``); elsewhere ``cuda``."""
    import torch

    n = torch.cuda.device_count()
    if n <= 1:
        return "cuda"
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):
        return "cuda"
    try:
        return f"cuda:{int(name) % n}"
    except (TypeError, ValueError):
        return "cuda"

