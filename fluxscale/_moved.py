"""The module paths of fluxscale before its stage packages (issue 30), kept working.

``import fluxscale.training`` (or ``fluxscale.stores``, …) gives the module that now holds
that code: the same module object, so its classes and functions are the same objects under
either name. One table, :data:`MOVED`; nothing is copied. The finder is installed by
``import fluxscale`` and only answers for the names in the table; it imports nothing until
one of them is imported.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

MOVED: dict[str, str] = {
    "fluxscale.stores": "fluxscale.dataset.stores",
    "fluxscale.schema": "fluxscale.dataset.schema",
    "fluxscale.grid": "fluxscale.dataset.grid",
    "fluxscale.regions": "fluxscale.dataset.regions",
    "fluxscale.units": "fluxscale.dataset.units",
    "fluxscale.drivers": "fluxscale.dataset.drivers",
    "fluxscale.integrals": "fluxscale.bridges.integrals",
    "fluxscale.dtw": "fluxscale.bridges.dtw",
    "fluxscale.clustering": "fluxscale.bridges.clustering",
    "fluxscale.lasso": "fluxscale.bridges.lasso",
    "fluxscale.bridge": "fluxscale.bridges.build",
    "fluxscale.model": "fluxscale.learn.model",
    "fluxscale.losses": "fluxscale.learn.losses",
    "fluxscale.stacked": "fluxscale.learn.stacked",
    "fluxscale.atm_sample": "fluxscale.learn.atm_sample",
    "fluxscale.training": "fluxscale.learn.ensemble",
    "fluxscale.inference": "fluxscale.infer.stage",
    "fluxscale.shards": "fluxscale.infer.shards",
    "fluxscale.metrics": "fluxscale.evaluate.metrics",
    "fluxscale.figures": "fluxscale.evaluate.figures",
    "fluxscale.report": "fluxscale.evaluate.report",
    "fluxscale.security": "fluxscale.cluster.security",
    "fluxscale.preload": "fluxscale.cluster.preload",
    "fluxscale.cli": "fluxscale.run.cli",
    "fluxscale.pipeline": "fluxscale.run.pipeline",
    "fluxscale.summary": "fluxscale.run.summary",
    "fluxscale.one_against_many": "fluxscale.run.one_against_many",
}
"""Old dotted module path → the module that holds its code now. ``fluxscale.config``,
``fluxscale.evaluate`` and ``fluxscale.cluster`` are packages of the same names whose
``__init__`` re-exports the old modules' public names."""


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers an old path with the module at its new path (see :data:`MOVED`)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        module = importlib.import_module(MOVED[spec.name])
        spec.loader_state = module.__spec__  # the import machinery sets __spec__ to the old name's
        return module

    def exec_module(self, module):
        alias_spec = module.__spec__
        module.__spec__ = alias_spec.loader_state  # the module keeps its own spec (pickling, reloads)


def install() -> None:
    """Put the finder on ``sys.meta_path`` once."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())  # before the path finders: an old file left over must not win
