"""The NEE cube on disk: its path, its template (coordinates, attributes, encoding: shards
and chunks of :class:`fluxscale.infer.plan.CubeLayout`, Blosc), its key and provenance, the
blocks' completion records (``nee.blocks/<band>.json``) and the commit.

The template is written first (``nee.zarr.partial``); each block writes its region and then
its record carrying the run's *key*: a hash of the member checkpoints, the dataset's manifest
and driver metadata, and the cube layout (:func:`provenance`, :func:`run_key`). A rerun skips
the blocks whose record has the current key; a changed model or driver store changes the key.
:func:`commit_cube` moves the store to ``nee.zarr`` once every block has its record.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from fluxscale.config import InferConfig
from fluxscale.dataset.schema import NEE_UNITS
from fluxscale.dataset.stores import commit_store, read_manifest, store_path
from fluxscale.errors import FluxscaleError, StoreError
from fluxscale.infer.members import Member, trained_systems
from fluxscale.infer.plan import Block, CubeLayout

__all__ = ["FORMAT_VERSION", "SIGN_CONVENTION", "cube_path", "records_path", "cube_template", "cube_attrs",
           "inputs_fingerprint", "provenance", "run_key", "stored_key", "write_json", "read_record", "read_records",
           "commit_cube"]

FORMAT_VERSION = 1


_ATTRS = {
    "NEE": ("daily net ecosystem exchange, mean over the ensemble's members", "time: mean member: mean"),
    "NEE_std": ("daily net ecosystem exchange, standard deviation over the ensemble's members (ddof=0)",
                "time: mean member: standard_deviation"),
    "NEE_monthly": ("monthly mean net ecosystem exchange, mean over the ensemble's members",
                    "time: mean within month member: mean"),
    "NEE_monthly_std": ("monthly mean net ecosystem exchange, standard deviation over the members' monthly means "
                        "(ddof=0)", "time: mean within month member: standard_deviation"),
    "NEE_member_monthly": ("monthly mean net ecosystem exchange of each member", "time: mean within month"),
    "NEE_member": ("daily net ecosystem exchange of each member", "time: mean"),
}
SIGN_CONVENTION = "NEE > 0: CO2 released by land to the atmosphere; NEE < 0: uptake by land"


def cube_path(root: str | Path, cfg: InferConfig) -> Path:
    """Where ``cfg``'s cube is written (``cfg.out`` relative to ``root``; with a model set and
    the default ``out``, ``nee-<model_set>.zarr``)."""
    out = f"nee-{cfg.model_set}.zarr" if cfg.model_set and cfg.out == "nee.zarr" else cfg.out
    p = Path(out)
    return p if p.is_absolute() else Path(root) / p


def records_path(cube: str | Path) -> Path:
    """The directory of the block completion records of a cube: ``nee.zarr`` → ``nee.blocks``."""
    cube = Path(cube)
    stem = cube.name[:-5] if cube.name.endswith(".zarr") else cube.name
    return cube.with_name(stem + ".blocks")


def cube_template(grid: xr.Dataset, time: pd.DatetimeIndex, months: pd.DatetimeIndex, layout: CubeLayout,
              attrs: dict[str, Any], cfg: InferConfig) -> tuple[xr.Dataset, dict]:
    """The lazy cube (every variable NaN, Dask chunks = shards) with its coordinates,
    ``cell_area``, ``land`` and ``attrs``, and its Zarr encoding (shards, inner chunks, Blosc
    with ``cfg``'s settings, NaN fill)."""
    import dask.array as da
    from zarr.codecs import BloscCodec

    data_vars, encoding = {}, {}
    lead = {"ensemble": len(layout.ensembles), "member": len(layout.members)}
    codec = BloscCodec(cname=cfg.compressor, clevel=cfg.clevel, shuffle=cfg.shuffle)
    for name, (dims, chunks, shard, inner) in layout.variables().items():
        shape = (lead[dims[0]], layout.n_days if dims[1] == "time" else layout.n_months, layout.n_lat, layout.n_lon)
        arr = da.full(shape, np.nan, dtype=np.float32, chunks=chunks)
        long_name, methods = _ATTRS[name]
        data_vars[name] = (dims, arr, {"units": NEE_UNITS, "long_name": long_name, "cell_methods": methods,
                                       "sign_convention": SIGN_CONVENTION})
        encoding[name] = {"chunks": inner, "shards": shard, "compressors": [codec], "fill_value": np.nan}
    coords = {
        "ensemble": ("ensemble", np.array(layout.ensembles, dtype=object),
                     {"long_name": "ensemble (ec: EC, ecatm: EC-ATM, dual: EC with the atmospheric layer)"}),
        "member": ("member", np.array(layout.members, dtype=object), {"long_name": "member (ensemble-fold)"}),
        "member_ensemble": ("member", np.array(layout.member_ensemble, dtype=object),
                            {"long_name": "ensemble of each member"}),
        "time": ("time", time.values, {"standard_name": "time", "long_name": "day", "axis": "T"}),
        "month": ("month", months.values, {"standard_name": "time", "long_name": "first day of the month"}),
        "lat": grid.lat.variable, "lon": grid.lon.variable,
    }
    ds = xr.Dataset(data_vars, coords=coords, attrs=attrs)
    ds["cell_area"] = grid.cell_area.astype(np.float64)
    ds["land"] = grid.land
    return ds, encoding


def inputs_fingerprint(root: Path) -> dict[str, Any]:
    """What identifies the inputs: the manifest (kind, creation time, config) and the driver
    store's metadata (a rewritten twin or ingest gets a new creation time)."""
    man = read_manifest(root)
    if man is None:
        raise StoreError(str(root / "fluxscale.json"), None, "manifest not found: the dataset is incomplete")
    meta = (store_path(root, "drivers") / "zarr.json").read_bytes()
    return {"kind": man.get("kind"), "created": man.get("created"),
            "config": hashlib.sha256(json.dumps(man.get("config"), sort_keys=True, default=str).encode()).hexdigest(),
            "drivers_metadata": hashlib.sha256(meta).hexdigest()}


def _versions() -> dict[str, str]:
    import dask
    import torch
    import zarr

    from fluxscale import __version__
    return {"fluxscale": __version__, "torch": torch.__version__, "numpy": np.__version__, "xarray": xr.__version__,
            "zarr": zarr.__version__, "dask": dask.__version__}


def provenance(root: Path, cfg: InferConfig, layout: CubeLayout, members: Sequence[Member]) -> dict[str, Any]:
    """What the cube's values depend on: format, inputs (:func:`inputs_fingerprint`), layout,
    the members' checkpoints (sha256) and the compressor."""
    return {"format": FORMAT_VERSION, "inputs": inputs_fingerprint(root), "layout": layout.to_dict(),
            "members": [{"name": m.name, "sha256": m.sha256} for m in members],
            "compressor": [cfg.compressor, cfg.clevel, cfg.shuffle]}


def run_key(prov: dict[str, Any]) -> str:
    """The cube's key: the first 32 hex digits of the sha256 of ``prov`` (JSON, sorted keys)."""
    return hashlib.sha256(json.dumps(prov, sort_keys=True).encode()).hexdigest()[:32]


def stored_key(p: Path) -> str | None:
    """The key in the attributes of the cube at ``p``; None when absent or unreadable."""
    try:
        import zarr
        return dict(zarr.open_group(str(p), mode="r").attrs).get("fluxscale_infer_key")
    except Exception:  # noqa: BLE001  (absent or unreadable: not ours)
        return None


def cube_attrs(root: Path, cfg: InferConfig, key: str, prov: dict[str, Any], members: Sequence[Member]) -> dict[str, Any]:
    """The cube's global attributes: CF metadata, the key, the model set and its training
    systems, the provenance with the config, versions, data directory and checkpoints."""
    return {"title": "fluxscale global NEE", "Conventions": "CF-1.10", "institution": "fluxscale",
            "source": "fluxscale infer: EC and EC-ATM neural-network ensembles (Upton et al. dual constraint)",
            "sign_convention": SIGN_CONVENTION, "fluxscale_infer_key": key,
            "fluxscale_model_set": cfg.model_set,
            "fluxscale_default_ensemble": cfg.default_ensemble,
            "fluxscale_train_systems": json.dumps(trained_systems(root, cfg.model_set)),
            "fluxscale_provenance": json.dumps({**prov, "config": cfg.to_dict(), "versions": _versions(),
                                                "data_dir": str(root.resolve()),
                                                "checkpoints": {m.name: m.path for m in members}}),
            "history": f"{pd.Timestamp.now(tz='UTC').isoformat(timespec='seconds')} fluxscale infer {root}"}


def write_json(path: Path, obj: dict) -> None:
    """Write ``obj`` to ``path`` as JSON, atomically (a temporary file renamed into place)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}")
    tmp.write_text(json.dumps(obj, indent=1, default=float))
    os.replace(tmp, path)


def read_record(records: Path, index: int, key: str) -> dict | None:
    """Block ``index``'s completion record if it has ``key``, else None."""
    p = records / f"{index:05d}.json"
    try:
        rec = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return rec if rec.get("key") == key else None


def read_records(records: Path, blocks: Sequence[Block], key: str) -> dict[int, dict]:
    """Band index → completion record, of the ``blocks`` whose record has ``key``."""
    return {b.index: r for b in blocks if (r := read_record(records, b.index, key)) is not None}


def commit_cube(cube: Path, records: Path, blocks: Sequence[Block], key: str) -> None:
    """Move the partial store to ``cube`` once every block has its record with ``key``.

    Raises
    ------
    FluxscaleError
        When a block has no record (only if records were removed under the run): a cube with
        holes is never committed.
    """
    missing = [b.index for b in blocks if read_record(records, b.index, key) is None]
    if missing:  # cannot happen unless records were removed under us: never commit a cube with holes
        raise FluxscaleError(f"{records}: blocks {missing[:10]} have no completion record; rerun fluxscale infer")
    commit_store(cube)
