"""fluxscale: dual-constraint (EC-ATM) upscaling of net ecosystem exchange on Dask.

Importing fluxscale imports neither torch nor the twin; heavy modules load on use.
"""

__version__ = "0.1.0"

from .errors import ConfigError, FluxscaleError, FluxscaleWarning, InputError, StoreError  # noqa: E402

__all__ = ["__version__", "FluxscaleError", "StoreError", "ConfigError", "InputError", "FluxscaleWarning"]
