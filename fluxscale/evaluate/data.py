"""The stores the evaluation reads, opened once (the only module of the stage that opens them).

:func:`open_evaluation_stores` gives an :class:`EvalStores`: each store of the dataset
directory is opened on first use (so a store the run does not need is never opened, and a
missing one fails where it is first needed) and the same :class:`xarray.Dataset` is handed
to every later reader. The small stores (``grid``, ``integrals``, ``gcb``) are loaded into
memory; the others stay lazy (Dask arrays in the stored chunks) and their readers select and
compute what they need, leaving the opened dataset as it was.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import xarray as xr

from fluxscale.dataset.stores import open_store, store_path
from fluxscale.errors import FluxscaleError

__all__ = ["EvalStores", "SetCube", "open_evaluation_stores"]


@dataclass(frozen=True)
class SetCube:
    """The cube of one one-against-many model set (§3.6): its name, the inversion systems it
    was trained on, the cube's path and the cube, opened lazily."""

    name: str
    systems: list[str]
    path: Path
    nee: xr.Dataset


@dataclass(frozen=True)
class EvalStores:
    """A dataset directory's stores as the evaluation reads them (each opened at most once).

    ``root``: the dataset directory; ``cube_path``: the NEE cube (default ``root/nee.zarr``).
    """

    root: Path
    cube_path: Path

    def require(self) -> None:
        """Fail with the command to run when the integrals or the cube are missing."""
        for p, what in ((self.path("integrals"), "fluxscale integrals"), (self.cube_path, "fluxscale infer")):
            if not p.exists():
                raise FluxscaleError(f"{p}: not found; run `{what} {self.root}` first")

    def path(self, name: str) -> Path:
        """The path of the store ``name`` (``root/<name>.zarr``)."""
        return store_path(self.root, name)

    def has(self, name: str) -> bool:
        """Whether the optional store ``name`` (``truth``, ``bridges``) exists."""
        return self.path(name).exists()

    def _open(self, name: str) -> xr.Dataset:
        return open_store(self.path(name), name)

    @functools.cached_property
    def grid(self) -> xr.Dataset:
        """``grid.zarr``, in memory."""
        return self._open("grid").load()

    @functools.cached_property
    def integrals(self) -> xr.Dataset:
        """``integrals.zarr`` (PgC month-1), in memory."""
        return self._open("integrals").load()

    @functools.cached_property
    def gcb(self) -> xr.Dataset:
        """``gcb.zarr`` (PgC yr-1), in memory."""
        return self._open("gcb").load()

    @functools.cached_property
    def nee(self) -> xr.Dataset:
        """The NEE cube at :attr:`cube_path`, lazy."""
        return open_store(self.cube_path, "nee")

    @functools.cached_property
    def sites(self) -> xr.Dataset:
        """``sites.zarr``, lazy."""
        return self._open("sites")

    @functools.cached_property
    def prior(self) -> xr.Dataset:
        """``prior.zarr``, lazy."""
        return self._open("prior")

    @functools.cached_property
    def inversions(self) -> xr.Dataset:
        """``inversions.zarr``, lazy."""
        return self._open("inversions")

    @functools.cached_property
    def fire(self) -> xr.Dataset:
        """``fire.zarr``, lazy."""
        return self._open("fire")

    @functools.cached_property
    def truth(self) -> xr.Dataset | None:
        """``truth.zarr`` (a twin), lazy; None without one."""
        return self._open("truth") if self.has("truth") else None

    @functools.cached_property
    def bridges(self) -> xr.Dataset | None:
        """``bridges.zarr``, lazy; None without one."""
        return self._open("bridges") if self.has("bridges") else None

    def set_cubes(self, say=lambda m: None) -> list[SetCube]:
        """The one-against-many model sets (§3.6) that have a cube: those trained on a proper
        subset of the inversion systems of ``integrals.zarr``. A set without a cube is left
        out with a note to ``say``; a cube written for another set is an error."""
        import zarr

        from fluxscale.config import InferConfig
        from fluxscale.infer.cube import cube_path
        from fluxscale.learn.model import model_sets

        systems_all = [str(s) for s in self.integrals.system.values]
        out = []
        for name in model_sets(self.root):
            cube = cube_path(self.root, InferConfig(model_set=name))
            try:
                attrs = dict(zarr.open_group(str(cube), mode="r").attrs)
            except Exception:  # noqa: BLE001  (no cube yet)
                say(f"evaluate: model set {name} has no cube at {cube} (fluxscale infer --set model_set={name}); left out")
                continue
            if attrs.get("fluxscale_model_set") != name:
                raise FluxscaleError(f"{cube}: written for model set {attrs.get('fluxscale_model_set')!r}, not {name!r}")
            systems = json.loads(attrs.get("fluxscale_train_systems", "[]"))  # recorded by infer from members.json
            if not systems or set(systems) == set(systems_all) or not set(systems) <= set(systems_all):
                continue  # not a one-against-many set
            out.append(SetCube(name, systems, cube, open_store(cube, "nee")))
        return out


def open_evaluation_stores(root: str | Path, cube: str | Path | None = None) -> EvalStores:
    """The stores of ``root`` for the evaluation; ``cube``: the NEE cube (default
    ``root/nee.zarr``). Opens nothing yet (see :class:`EvalStores`)."""
    root = Path(root)
    return EvalStores(root, Path(cube) if cube is not None else store_path(root, "nee"))
