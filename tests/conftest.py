import contextlib

import dask
import pytest

from fluxscale.twin import make_twin


@pytest.fixture(scope="session")
def tiny_twin(tmp_path_factory):
    """The tiny twin (2°, 2001–2003), written once per session; tests must not modify it."""
    out = tmp_path_factory.mktemp("tiny") / "data"
    make_twin(out, preset="tiny", seed=0, show_progress=False)
    return out


@pytest.fixture(scope="session")
def small_twin(tmp_path_factory):
    """The small twin (1°, 2001–2017, 150 towers): the bounds that need 17 years."""
    out = tmp_path_factory.mktemp("small") / "data"
    make_twin(out, preset="small", seed=0, show_progress=False)
    return out


@contextlib.contextmanager
def raise_if_dask_computes():
    """Fail if any Dask graph is computed inside the block (after flox's helper)."""
    def scheduler(dsk, keys, **kwargs):
        raise AssertionError("a Dask graph was computed")

    with dask.config.set(scheduler=scheduler):
        yield
