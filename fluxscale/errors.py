"""fluxscale's exceptions: every user-facing failure is a :class:`FluxscaleError`."""

from __future__ import annotations

__all__ = ["FluxscaleError", "StoreError", "ConfigError", "InputError", "FluxscaleWarning"]


class FluxscaleError(Exception):
    """Base class of errors that the CLI reports as one line and exit code 2."""


class ConfigError(FluxscaleError, ValueError):
    """A configuration value is invalid (names the field and the problem)."""


class StoreError(FluxscaleError):
    """A store does not match its schema.

    Parameters
    ----------
    store : str
        Path or name of the store (e.g. ``.../grid.zarr``).
    variable : str or None
        The offending variable, coordinate or attribute; None for the store itself.
    problem : str
        What is wrong, in words.
    """

    def __init__(self, store: str, variable: str | None, problem: str):
        self.store = str(store)
        self.variable = variable
        self.problem = problem
        where = f"{self.store}: variable {variable!r}: " if variable else f"{self.store}: "
        super().__init__(where + problem)


class NonFiniteSeriesError(FluxscaleError, ValueError):
    """A series holds NaN or ±inf; ``series`` names it (row index or name), ``position`` the time step."""

    def __init__(self, series, position: int, value: float):
        self.series, self.position = series, int(position)
        super().__init__(f"series {series} has a non-finite value ({value}) at position {position}")


class InputError(FluxscaleError):
    """A user's input file (CSV, NetCDF) cannot be ingested.

    Parameters
    ----------
    path : str
        The file (or glob) that was read.
    where : str or None
        The variable (``"variable 'co2fire'"``), line (``"line 12"``) or column at fault.
    problem : str
        What is wrong, in words.
    """

    def __init__(self, path, where: str | None, problem: str):
        self.path = str(path)
        self.where = where
        self.problem = problem
        super().__init__(f"{self.path}: {where}: {problem}" if where else f"{self.path}: {problem}")


class FluxscaleWarning(UserWarning):
    """A warning fluxscale itself gives; it always reaches the user of a command, whatever
    :mod:`fluxscale.warnfilter` hides of third-party libraries' warnings."""
