"""fluxscale: dual-constraint (EC-ATM) upscaling of net ecosystem exchange on Dask.

Importing fluxscale imports neither torch nor the twin; heavy modules load on use.
"""

__version__ = "0.1.0"

from fluxscale.errors import ConfigError, FluxscaleError, FluxscaleWarning, InputError, StoreError  # noqa: E402

from ._moved import install as _install_moved  # noqa: E402

_install_moved()  # the module paths before the stage packages keep working (fluxscale._moved)
del _install_moved

__all__ = ["__version__", "FluxscaleError", "StoreError", "ConfigError", "InputError", "FluxscaleWarning"]
