"""Third-party warnings stay off a user's terminal (fluxscale.warnfilter), fluxscale's own
stay visible: in a fresh interpreter under strict ``-W error`` settings, through the real
command line, and in the worker processes of a LocalCluster that fluxscale starts."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings

import pytest

# A stand-in for a dependency that warns as it is imported, the way asyncssh does under
# cryptography 51 (a UserWarning subclass of its own), plus a deprecation and a runtime warning.
THIRDLIB = textwrap.dedent('''
    import warnings

    class LibDeprecationWarning(UserWarning):
        pass

    warnings.warn("thirdlib: DSA is deprecated", LibDeprecationWarning)
    warnings.warn("thirdlib: old API", DeprecationWarning)
    warnings.warn("thirdlib: coming change", FutureWarning)
    warnings.warn("thirdlib: mean of empty slice", RuntimeWarning)
''')

OURS = textwrap.dedent('''
    import warnings
    from fluxscale.errors import FluxscaleWarning
    # attributed to fluxscale modules, as fluxscale's own code would issue them
    warnings.warn_explicit("ours: a fluxscale warning", FluxscaleWarning, "x.py", 1, module="fluxscale.x")
    warnings.warn_explicit("ours: a user warning in fluxscale", UserWarning, "y.py", 2, module="fluxscale.y")
''')


def _python(tmp_path, code: str, *flags: str) -> subprocess.CompletedProcess:
    (tmp_path / "thirdlib.py").write_text(THIRDLIB)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS", "FLUXSCALE_WARNINGS")}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, *flags, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)


@pytest.mark.parametrize("flags", [(), ("-W", "error::DeprecationWarning", "-W", "error::UserWarning")])
def test_third_party_warnings_are_ignored_and_ours_shown(tmp_path, flags):
    res = _python(tmp_path, "from fluxscale.warnfilter import install; install(); install()\n"
                  "import thirdlib\n" + OURS, *flags)
    assert "thirdlib" not in res.stderr, res.stderr
    if flags:  # -W error: fluxscale's own UserWarning is an error, as the user asked
        assert res.returncode == 1 and "FluxscaleWarning: ours: a fluxscale warning" in res.stderr, res.stderr
        assert "UserWarning: ours: a user warning in fluxscale" in res.stderr.splitlines()[-1], res.stderr
    else:
        assert res.returncode == 0, res.stderr
        assert res.stderr.count("ours: a fluxscale warning") == 1, res.stderr
        assert res.stderr.count("ours: a user warning in fluxscale") == 1, res.stderr


def test_without_the_filters_the_same_imports_warn(tmp_path):
    """The check above can fail: the same interpreter without install() prints the
    dependency's warnings, and -W error makes its import crash."""
    res = _python(tmp_path, "import thirdlib\n" + OURS)
    assert res.returncode == 0 and "thirdlib: DSA is deprecated" in res.stderr, res.stderr
    assert "thirdlib: mean of empty slice" in res.stderr and "thirdlib: coming change" in res.stderr
    res = _python(tmp_path, "import thirdlib", "-W", "error::UserWarning")
    assert res.returncode == 1 and "LibDeprecationWarning" in res.stderr, res.stderr


def test_the_ssh_path_imports_quietly_under_strict_settings(tmp_path):
    """The command line's boundary installs the filters before the SSH path imports asyncssh
    and cryptography (which warn at import with cryptography >= 47 and asyncssh 2.24)."""
    pytest.importorskip("asyncssh")
    code = ("from fluxscale.run.cli import _boundary; _boundary()\n"
            "import asyncssh, distributed.deploy.ssh, cryptography.hazmat.primitives.asymmetric.dsa\n"
            "from fluxscale.cluster import ssh_connect_options\n"
            "from fluxscale.config import ClusterConfig\n"
            "ssh_connect_options(ClusterConfig(kind='ssh', ssh_hosts=('127.0.0.1', '127.0.0.1')))\n")
    res = _python(tmp_path, code, "-W", "error::DeprecationWarning", "-W", "error::UserWarning")
    assert res.returncode == 0 and res.stderr == "", res.stderr


def _warn_on_worker() -> list[str]:
    from fluxscale.errors import FluxscaleWarning

    with warnings.catch_warnings(record=True) as seen:
        warnings.warn_explicit("lib deprecated", DeprecationWarning, "lib.py", 1, module="somelib.sub")
        warnings.warn_explicit("lib advice", UserWarning, "lib.py", 2, module="distributed.client")
        warnings.warn_explicit("lib nan", RuntimeWarning, "lib.py", 3, module="numpy.lib")
        warnings.warn_explicit("ours", FluxscaleWarning, "ours.py", 4, module="fluxscale.learn.ensemble")
    return [str(w.message) for w in seen]


def test_worker_processes_filter_as_the_command_does():
    """A LocalCluster started by fluxscale (its workers run fluxscale.cluster.preload) ignores the
    dependencies' warnings in the worker processes and keeps fluxscale's; this process,
    under pytest, sees them all (the filters are the command's, not the library's)."""
    from fluxscale.cluster import cluster_client
    from fluxscale.config import ClusterConfig

    with cluster_client(ClusterConfig(n_workers=1, threads_per_worker=1, memory_limit="2GiB")) as client:
        on_worker = client.submit(_warn_on_worker, pure=False).result()
    assert on_worker == ["ours"]
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        here = _warn_on_worker()
    assert here == ["lib deprecated", "lib advice", "lib nan", "ours"]
