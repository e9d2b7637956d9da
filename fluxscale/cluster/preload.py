"""Dask worker preload: ``dask worker --preload fluxscale.cluster.preload``.

Sets the thread pools of torch, numba and the BLAS/OpenMP libraries to the worker's own
thread count (``--nthreads``), so that a worker of 4 threads on a 64-core node uses 4
cores, not 64 per task. fluxscale's tasks then choose their threads per task inside that
(one torch thread per Dask thread in inference; the member's threads in training).

Third-party libraries' warnings are filtered as in the ``fluxscale`` commands
(:mod:`fluxscale.warnfilter`; the worker's ``FLUXSCALE_WARNINGS=all`` shows them).

Environment variables are set before the libraries are imported where possible;
``torch.set_num_threads`` applies to the whole process.
"""

from __future__ import annotations

import logging
import os
import sys

logger = logging.getLogger("fluxscale.cluster.preload")

if os.environ.get("FLUXSCALE_WARNINGS", "").lower() != "all":
    # Before any task imports a library: third-party warnings stay out of the workers'
    # output, which a LocalCluster's workers print on the user's terminal (fluxscale.warnfilter).
    from fluxscale.warnfilter import install as _install_warning_filters

    _install_warning_filters()

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


def apply_threads(n: int) -> dict[str, int]:
    """Limit torch, numba and BLAS to ``n`` threads in this process; returns what was set."""
    n = max(1, int(n))
    for var in THREAD_VARIABLES:
        if var == "NUMBA_NUM_THREADS" and "numba" in sys.modules:
            continue  # numba read it at import; set_num_threads below
        os.environ[var] = str(n)
    out = {"env": n}
    import torch

    torch.set_num_threads(n)
    out["torch"] = torch.get_num_threads()
    if "numba" in sys.modules:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
        out["numba"] = numba.get_num_threads()
    return out


def dask_setup(worker) -> None:
    """Called by ``dask worker --preload fluxscale.cluster.preload`` in each worker process."""
    got = apply_threads(worker.state.nthreads)
    logger.info("fluxscale.cluster.preload: %s threads per library (worker %s)", got, worker.name)
