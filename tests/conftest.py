import contextlib

import dask
import pytest

from fluxscale.twin import make_twin


def pytest_configure(config):
    """Markers of the tests that start daemons (deselect with -m 'not slurm and not sshd')."""
    config.addinivalue_line("markers", "slurm: starts a real single-node SLURM (root; installs it when missing)")
    config.addinivalue_line("markers", "sshd: starts a real sshd on 127.0.0.1 (root; installs it when missing)")


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


@pytest.fixture(scope="session")
def tiny_models(tiny_twin, tmp_path_factory):
    """The tiny twin with its integrals, bridges and four briefly trained members (EC and
    EC-ATM of folds 0 and 1); tests must copy it before writing into it."""
    import shutil

    from fluxscale.bridges.build import build_bridges
    from fluxscale.config import BridgeConfig, TrainConfig
    from fluxscale.bridges.integrals import compute_integrals
    from fluxscale.learn.ensemble import train_ensemble

    root = tmp_path_factory.mktemp("models") / "data"
    shutil.copytree(tiny_twin, root)
    compute_integrals(root)
    build_bridges(root, BridgeConfig(repeats=10, repeats_per_task=10), show_progress=False)
    train_ensemble(root, TrainConfig(epochs=2, steps_per_epoch=3, ec_batch=2000, threads=1, folds=(0, 1)),
                   show_progress=False)
    return root
