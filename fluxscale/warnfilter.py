"""Which Python warnings reach the user of a ``fluxscale`` command.

Third-party libraries warn their own callers' developers: deprecations and coming changes
(``cryptography`` 51 warns that DSA is deprecated as ``asyncssh`` imports it: 10 lines before
a one-line ``error:``), advice on graph sizes, all-NaN slices that fluxscale checks and names
itself. A user of ``fluxscale run`` can act on none of them. The commands therefore ignore,
by category and by the module a warning is attributed to:

- deprecations and coming changes (``DeprecationWarning``, ``PendingDeprecationWarning``,
  ``FutureWarning``) from anywhere: fluxscale deprecates nothing, so one of these is always a
  library speaking to a developer, also when its ``stacklevel`` points into fluxscale's code;
- ``UserWarning`` (library-specific deprecation classes such as cryptography's
  ``CryptographyDeprecationWarning`` derive from it), ``RuntimeWarning``, ``ResourceWarning``
  and ``ImportWarning`` attributed to a module outside fluxscale.

fluxscale's own warnings (:class:`fluxscale.errors.FluxscaleWarning`, and any other warning
issued from a fluxscale module) stay visible, in front of every filter here. The filters are
installed at the command line's boundary (:func:`fluxscale.run.cli` callback) and in every worker
process fluxscale starts (:mod:`fluxscale.cluster.preload`); a library user who imports fluxscale
keeps the filters they set. ``FLUXSCALE_WARNINGS=all`` (read by the command line only) shows
everything, for a developer chasing a dependency's drift; the test suite sees every warning.
"""

from __future__ import annotations

import warnings

__all__ = ["THIRD_PARTY", "FILTERS", "install", "installed"]

THIRD_PARTY = r"(?!fluxscale(\.|$))"
"""Module regex (``re.match`` on the dotted module name a warning is attributed to) of every
module outside the fluxscale package."""

FILTERS: tuple[tuple[type[Warning], str], ...] = (
    (DeprecationWarning, ""),
    (PendingDeprecationWarning, ""),
    (FutureWarning, ""),
    (UserWarning, THIRD_PARTY),
    (RuntimeWarning, THIRD_PARTY),
    (ResourceWarning, THIRD_PARTY),
    (ImportWarning, THIRD_PARTY),
)
"""(category, module regex) pairs ignored in the commands; ``""`` = any module."""


def install() -> None:
    """Put :data:`FILTERS` (``ignore``) in front of this process's warning filters, and
    :class:`~fluxscale.errors.FluxscaleWarning` (``default``: once per place) in front of
    them. Idempotent: installing twice adds nothing. Also in front of ``-W`` options and
    ``PYTHONWARNINGS``, so ``-W error::DeprecationWarning`` cannot turn a library's
    deprecation into a crash of a fluxscale command."""
    from fluxscale.errors import FluxscaleWarning

    if installed():
        return
    for category, module in reversed(FILTERS):
        warnings.filterwarnings("ignore", category=category, module=module)
    warnings.filterwarnings("default", category=FluxscaleWarning)


def installed() -> bool:
    """Whether :func:`install` has run in this process (its filters are in force)."""
    from fluxscale.errors import FluxscaleWarning

    ours = {(c, m) for c, m in FILTERS}
    have = {(f[2], f[3].pattern if f[3] is not None else "") for f in warnings.filters if f[0] == "ignore"}
    return ours <= have and any(f[0] == "default" and f[2] is FluxscaleWarning for f in warnings.filters)
