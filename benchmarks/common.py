"""Shared by the benchmarks: medians and the inline Dask performance reports."""

from __future__ import annotations

import contextlib
import statistics
import time
from pathlib import Path

REPORT_DIR: Path | None = None
"""Where :func:`perf_report` writes (set by ``python -m benchmarks`` to ``--out``)."""


def median_time(f, repeats: int):
    """(median seconds of ``repeats`` calls of ``f``, the last result)."""
    times, out = [], None
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


@contextlib.contextmanager
def perf_report(name: str):
    """A Dask performance report of the block (inline HTML: it opens without network) at
    ``REPORT_DIR/performance-<name>.html``; nothing when no directory is set. Needs a
    distributed client as the current default."""
    if REPORT_DIR is None:
        yield None
        return
    from distributed import performance_report

    from fluxscale.cluster import strip_network_references

    path = Path(REPORT_DIR) / f"performance-{name}.html"
    with performance_report(filename=str(path), mode="inline"):
        yield path
    strip_network_references(path)
