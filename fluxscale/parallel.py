"""Running a list of independent tasks on Dask, with progress.

With a ``distributed.Client`` the tasks are submitted to it (``client.map``) and
progress follows ``as_completed`` (``dask.diagnostics.ProgressBar`` shows nothing under
a Client). Without one they run on Dask's local threaded scheduler with a progress
callback. Task functions must be module-level (they are pickled to workers) and
should return small results: large data is written to stores by the task itself.

Progress (:func:`progress_bar`, :func:`working`) is a live rich bar on a terminal and, when
stdout is not a terminal (a log file, a pipe), :class:`PlainProgress`: a plain line with the
count, percentage, elapsed time and ETA every ``FLUXSCALE_PROGRESS_INTERVAL`` seconds (15).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import dask
from dask.callbacks import Callback

__all__ = ["run_tasks", "progress_bar", "PlainProgress", "format_duration", "working", "plain_progress_wanted",
           "tune_malloc"]

_MALLOC_TUNED = False


def progress_bar(enabled: bool = True, plain: bool | None = None, interval: float | None = None):
    """A progress display for a stage: a live rich bar on a terminal, :class:`PlainProgress`
    (a plain line every ``interval`` seconds, for a log file) when stdout is not a terminal,
    and a no-op object with the same interface when not ``enabled``.

    ``plain``: force one or the other (default: the environment variable
    ``FLUXSCALE_PROGRESS`` = ``plain`` or ``bar`` if set, else whether stdout is a terminal).
    ``interval``: seconds between plain lines (default ``FLUXSCALE_PROGRESS_INTERVAL`` or 15).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    if enabled and (plain if plain is not None else _plain_wanted()):
        return PlainProgress(interval)
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), disable=not enabled, transient=False)


@contextlib.contextmanager
def working(label: str, enabled: bool = True, console=None):
    """A stage without countable steps (one Dask pass): a spinner with ``label`` on a
    terminal, or ``label, M:SS elapsed`` every interval when stdout is not a terminal
    (:class:`PlainProgress`); nothing when not ``enabled``."""
    if not enabled:
        yield
    elif _plain_wanted():
        with PlainProgress() as progress:
            progress.add_task(label)
            yield
    else:
        from rich.console import Console

        with (console or Console()).status(label):
            yield


def plain_progress_wanted() -> bool:
    """Whether progress goes as plain lines (:class:`PlainProgress`): ``FLUXSCALE_PROGRESS``
    = ``plain``/``bar`` if set, else whether stdout is not a terminal."""
    return _plain_wanted()


def _plain_wanted() -> bool:
    import sys

    mode = os.environ.get("FLUXSCALE_PROGRESS", "").strip().lower()
    if mode in ("plain", "bar"):
        return mode == "plain"
    try:
        return not sys.stdout.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        return True


def format_duration(seconds: float) -> str:
    """``h:mm:ss`` or ``m:ss`` (rounded to whole seconds)."""
    s = int(round(max(seconds, 0.0)))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class PlainProgress:
    """Progress as plain lines, readable in a log file: every ``interval`` seconds (from a
    background thread, so a stage that advances slowly still shows it is alive) one line per
    unfinished task, ``LABEL N/TOTAL, P%, ELAPSED elapsed, ETA M:SS``, and one line when a
    task completes. The same interface as the parts of :class:`rich.progress.Progress` that
    fluxscale uses (``add_task``, ``update``, ``advance``, a context manager).

    ``write``: where lines go (default: ``print`` to the ``sys.stdout`` of the moment of
    creation, flushed); ``clock``: seconds (default :func:`time.monotonic`).
    """

    def __init__(self, interval: float | None = None, write: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        import sys
        import threading

        if interval is None:
            try:
                interval = float(os.environ.get("FLUXSCALE_PROGRESS_INTERVAL", 15))
            except ValueError:
                interval = 15.0
        self.interval = max(float(interval), 0.05)
        stream = sys.stdout
        self._write = write or (lambda line: print(line, file=stream, flush=True))
        self._clock = clock
        self._tasks: dict[int, dict[str, Any]] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # the context manager starts and stops the periodic lines
    def __enter__(self) -> "PlainProgress":
        import threading

        self._thread = threading.Thread(target=self._loop, name="fluxscale-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.tick()

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **_: Any) -> int:
        with self._lock:
            tid = len(self._tasks)
            # nothing to do (total 0): finished at once, without a line
            self._tasks[tid] = {"description": description, "total": total, "completed": completed,
                                "start": self._clock(), "finished": total == 0}
            return tid

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def update(self, task_id: int, *, advance: float | None = None, completed: float | None = None,
               total: float | None = None, description: str | None = None, **_: Any) -> None:
        with self._lock:
            t = self._tasks[task_id]
            if total is not None:
                t["total"] = total
            if completed is not None:
                t["completed"] = completed
            if advance:
                t["completed"] += advance
            if description:
                t["description"] = description
            if not t["finished"] and t["total"] and t["completed"] >= t["total"]:
                t["finished"] = True
                self._write(self.line(task_id))

    def tick(self) -> None:
        """Write the line of every unfinished task (what the background thread does every
        ``interval`` seconds)."""
        with self._lock:
            for tid, t in self._tasks.items():
                if not t["finished"]:
                    self._write(self.line(tid))

    def line(self, task_id: int) -> str:
        """``LABEL N/TOTAL, P%, ELAPSED elapsed, ETA M:SS`` (``done in`` once complete; no ETA
        before the first unit is done or without a total)."""
        with self._lock:
            t = self._tasks[task_id]
            n, total = t["completed"], t["total"]
            el = self._clock() - t["start"]
            count = f" {n:g}/{total:g}" if total else (f" {n:g}" if n else "")
            if t["finished"]:
                return f"{t['description']}{count}, 100%, done in {format_duration(el)}"
            text = f"{t['description']}{count}"
            if total:
                text += f", {100 * n / total:.0f}%"
            text += f", {format_duration(el)} elapsed"
            if total and n > 0:
                text += f", ETA {format_duration(el / n * (total - n))}"
            return text


class _RichCallback(Callback):
    def __init__(self, progress, task_id, keys, on_result=None):
        super().__init__()
        self._progress, self._task, self._keys, self._on_result = progress, task_id, set(keys), on_result

    def _posttask(self, key, result, dsk, state, worker_id):
        if key in self._keys:
            _advance(self._progress, self._task, self._on_result, result)


def shared_argument(value: Any) -> Any:
    """The task that holds a shared argument of :func:`run_tasks` on the cluster."""
    return value


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
        Passed to every call (sent once to the cluster when a client is used, as a task whose
        result the scheduler recomputes if the worker holding it is lost).
    """
    items = list(items)
    with progress_bar(show_progress) as progress:
        task = progress.add_task(label, total=len(items))
        if client is not None:
            from distributed import as_completed

            # Non-scalar arguments go to the cluster once, as a task that returns them (sent
            # inline, a mapping argument of client.map becomes a graph node keyed by its name and
            # shared by every task, which the scheduler rejects). Not client.scatter: scattered
            # data that dies with its worker cannot be recovered and fails the stage; a task's
            # result is recomputed from its arguments, which the scheduler keeps. Each call has
            # its own keys: the release of an earlier call's futures must not cancel this one's.
            stamp = time.monotonic_ns()
            shared = {k: v if isinstance(v, (str, int, float, bool, type(None)))
                      else client.submit(shared_argument, v, key=f"{label}-argument-{k}-{stamp}", pure=False)
                      for k, v in kwargs.items()}
            # zero-padded positions: the scheduler starts equal-priority tasks in key order, so
            # the items run in the order given (e.g. largest first, for balance at the end)
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

