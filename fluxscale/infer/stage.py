"""Global inference (paper §3.4, Fig. 1 green path): every trained member over every land
cell and day of ``drivers.zarr``, written as gridded NEE cubes.

The cube (``<data_dir>/nee.zarr``, Zarr v3; ``xarray.open_zarr(path)`` opens it) holds, in
gC m-2 d-1 (negative = uptake by land, positive = release to the atmosphere):

* ``NEE``, ``NEE_std`` ``(ensemble, time, lat, lon)``: daily mean and standard deviation
  (``ddof=0``, numpy's default) over the ensemble's members;
* ``NEE_monthly``, ``NEE_monthly_std`` ``(ensemble, month, lat, lon)``: the same over the
  members' monthly means;
* ``NEE_member_monthly`` ``(member, month, lat, lon)``: each member's monthly means;
* ``NEE_member`` ``(member, time, lat, lon)``: each member's daily values, when
  :attr:`InferConfig.write_members` is set;
* ``cell_area`` (m²), ``land`` (the cells that were computed; the others are NaN).

**Blocks and chunks.** One block = one band of ``lat_rows`` grid rows × every day: one Dask
task (by default at least ``min_blocks`` bands, so that blocks balance over the workers). It reads the band's drivers one driver time chunk at a time, evaluates every member on
each (a driver block is read once for all members), and writes its band of every variable:
exactly one Zarr *shard* per variable and ensemble/member, so no two tasks write one chunk.
Inside a shard the data are stored in chunks of ``time_chunk`` days × ``lat_rows`` rows ×
``n_lon / lon_chunks`` columns (~``chunk_mib``), so one day's global map and one pixel's full
series both read a bounded number of chunks (numbers in ``benchmarks/RESULTS.md``).

**Memory per task** (:func:`block_memory_bytes`): the band's output buffers, compact over
its land cells, ``4 B × cells × (n_days × (2 × ensembles + written members) + n_months × (2 ×
ensembles + members))``, plus one driver time chunk of work arrays and one compressed shard.
``lat_rows`` is chosen within :attr:`InferConfig.block_memory_mib`, so it does not grow
with the number of cells, members or blocks; nothing is gathered on the client.

**Completion records.** The template is written first (``nee.zarr.partial``); each block
writes its region and then a record ``nee.blocks/<band>.json`` carrying the run's *key*: a
hash of the member checkpoints, the dataset's manifest and driver metadata, and the cube
layout. A rerun skips the blocks whose record has the current key (all-NaN chunks are not
written, so the presence of a chunk proves nothing); an interrupted run resumes with the
rest; a changed model or driver store changes the key, so the template and every record
are rewritten. The store is moved to ``nee.zarr`` when every block has its record.

**Speed.** The forward is torch's ``addmm`` on sub-batches of :attr:`InferConfig.batch`
samples (activations stay in cache), one torch thread per Dask thread, with each member's
input standardisation folded into its first layer; on a worker where torch sees CUDA it
runs there in batches of :attr:`InferConfig.gpu_batch`. The members run on
:data:`SUB_SAMPLES` samples at a time and the statistics follow while their outputs are in
cache; the shards are encoded by :class:`fluxscale.infer.shards.ShardWriter` (see
``docs/inference.md``, "Speed", for what each step saved).

**Modules.** This module is the stage: :func:`infer` opens the dataset, plans
(:mod:`fluxscale.infer.plan`), writes the template, maps :func:`fluxscale.infer.block.
infer_block` over the blocks and commits (:mod:`fluxscale.infer.cube`); the members come from
:mod:`fluxscale.infer.members`. It also re-exports the public names of the former
``fluxscale.inference`` (the old path answers with this module).
"""

from __future__ import annotations

import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from fluxscale.config import InferConfig
from fluxscale.dataset.stores import open_store, partial_path, store_path, write_template
from fluxscale.errors import StoreError
from fluxscale.infer import block
# the names below that infer does not use are re-exported: the public names of the former fluxscale.inference
from fluxscale.infer.block import release_buffers  # noqa: F401
from fluxscale.infer.cube import (FORMAT_VERSION, SIGN_CONVENTION, commit_cube, cube_attrs, cube_path, cube_template,
                                  inputs_fingerprint, provenance, read_record, read_records, records_path, run_key,
                                  stored_key, write_json)
from fluxscale.infer.layer_stage import apply_layer, layer_fingerprint
from fluxscale.infer.members import Member, list_members, trained_systems  # noqa: F401
from fluxscale.infer.plan import (SUB_SAMPLES, Block, CubeLayout, block_memory_bytes, block_sizes, choose_lat_rows,
                                  month_index, plan_blocks, plan_layout)
from fluxscale.learn.model import forward_members, member_weights, model_weights, models_dir  # noqa: F401

__all__ = ["Member", "Block", "CubeLayout", "list_members", "trained_systems", "plan_blocks", "choose_lat_rows",
           "block_memory_bytes", "forward_members", "member_weights", "infer", "InferReport", "cube_path",
           "records_path", "read_record", "release_buffers",
           # also public in the former fluxscale.inference
           "FORMAT_VERSION", "SUB_SAMPLES", "SIGN_CONVENTION", "inputs_fingerprint", "model_weights", "models_dir"]


# --- the job -------------------------------------------------------------------------------

@dataclass
class InferReport:
    """What :func:`infer` did."""

    path: str
    blocks: int
    written: int
    skipped: int
    retried: int
    evaluations: int
    """pixel-day-member evaluations of the blocks written by this run."""
    seconds: float
    layout: dict
    members: list[str]
    block_seconds: list[float] = field(default_factory=list)
    total_seconds: float = 0.0
    """The whole call: opening, template, blocks, commit."""

    @property
    def rate(self) -> float:
        """pixel-day-members per second of this run (wall clock)."""
        return self.evaluations / self.seconds if self.seconds > 0 else float("nan")

    def text(self) -> str:
        lines = [f"infer: {self.written} blocks written, {self.skipped} skipped (already done), "
                 f"{self.retried} retried, of {self.blocks}; members: {', '.join(self.members)}"]
        if self.written:
            lines.append(f"infer: {self.evaluations:.3g} pixel-day-member evaluations in {self.seconds:.1f} s = "
                         f"{self.rate:.3g} /s ({self.total_seconds:.1f} s with setup and commit)")
        lines.append(f"infer: NEE cube at {self.path}")
        return "\n".join(lines)


def infer(root: str | Path, cfg: InferConfig | None = None, *, client=None, show_progress: bool = True,
          say=lambda m: None, torch_threads: int = 1) -> InferReport:
    """Run the selected members over every land cell and day of ``root``'s drivers and
    write the NEE cube (see the module docstring).

    Parameters
    ----------
    root : path
        A dataset directory with ``grid``, ``drivers`` and ``models/`` (from ``fluxscale train``).
    cfg : InferConfig
    client : distributed.Client, optional
        Run the blocks on this cluster (one task per block, retried ``cfg.retries`` times);
        default: Dask's threads in this process.
    torch_threads : int
        torch threads per block task on a CPU.
    """
    from fluxscale.parallel import run_tasks

    cfg = cfg or InferConfig()
    root = Path(root)
    t_start = time.perf_counter()
    grid = open_store(store_path(root, "grid"), "grid")
    drivers = open_store(store_path(root, "drivers"), "drivers")
    if drivers.sizes["cell"] != grid.sizes["cell"]:
        raise StoreError(str(store_path(root, "drivers")), "cell", "not the grid's land cells")
    members = list_members(root, cfg)
    time_index = pd.DatetimeIndex(drivers.time.values)
    months, month_idx = month_index(time_index)
    time_chunks = tuple(int(c) for c in drivers.Tair.chunks[0])
    sizes = block_sizes(cfg, grid.sizes["lon"], time_index.size, months.size, len(members), time_chunks)
    layout = plan_layout(cfg, grid.sizes["lat"], sizes, [m.name for m in members], [m.variant for m in members])
    rows = layout.lat_rows
    blocks = plan_blocks(grid.cell_ilat.values, grid.sizes["lat"], rows)
    prov = provenance(root, cfg, layout, members)
    if layout.derived:  # the layer's values depend on the inversions and its settings too
        prov["layer"] = layer_fingerprint(root, cfg)
    key = run_key(prov)
    cube = cube_path(root, cfg)
    partial = partial_path(cube)
    records = records_path(cube)
    mem_mib = block_memory_bytes(rows, **sizes) / 2**20

    done: dict[int, dict] = {}
    if cube.exists() and stored_key(cube) == key:
        done = read_records(records, blocks, key)
        if len(done) == len(blocks):
            report = InferReport(str(cube), len(blocks), 0, len(blocks), 0, 0, 0.0, layout.to_dict(),
                                 list(layout.members), total_seconds=time.perf_counter() - t_start)
            say(report.text())
            return report
        cube.rename(partial)  # records lost: finish it as a partial store
    if partial.exists() and stored_key(partial) == key:
        done = read_records(records, blocks, key)
        say(f"infer: resuming {partial}: {len(done)} of {len(blocks)} blocks already written")
    else:
        if records.exists():
            shutil.rmtree(records)
        ds, encoding = cube_template(grid, time_index, months, layout, cube_attrs(root, cfg, key, prov, members), cfg)
        write_template(ds, cube, "nee", encoding)
    records.mkdir(parents=True, exist_ok=True)
    # largest first (LPT): the last tasks to start are the shortest, so workers finish together
    todo = sorted((b for b in blocks if b.index not in done), key=lambda b: -b.n_cells)
    say(f"infer: {len(members)} members x {grid.sizes['cell']} land cells x {time_index.size} days; "
        f"{len(blocks)} blocks of {rows} grid rows (≤ {mem_mib:.0f} MiB per task), {len(todo)} to run")
    spec = _block_spec(root, cfg, partial, records, key, layout, members, grid, month_idx, time_chunks, torch_threads)
    t_run = time.perf_counter()
    evals = {"n": 0}

    def on_result(rec: dict) -> str:
        evals["n"] += rec["evaluations"]
        rate = evals["n"] / len(members) / max(time.perf_counter() - t_run, 1e-9)
        return f"infer: blocks ({rate:.3g} pixel-days/s)"

    # block.infer_block is looked up here, at call time (tests and tools/infer_block_cpu.py wrap it)
    results = run_tasks(block.infer_block, todo, client=client, label="infer: blocks", show_progress=show_progress,
                        retries=cfg.retries, resources={"GPU": 1} if cfg.gpu_workers else None,
                        on_result=on_result, spec=spec)
    seconds = time.perf_counter() - t_run
    if layout.derived:
        apply_layer(root, cfg, partial, layout, blocks, grid, months, month_idx, client=client,
                    show_progress=show_progress, say=say)
    commit_cube(cube, records, blocks, key)
    report = InferReport(str(cube), len(blocks), len(results), len(done), sum(r["attempt"] > 1 for r in results),
                         sum(r["evaluations"] for r in results), seconds, layout.to_dict(), list(layout.members),
                         [r["seconds"] for r in results], time.perf_counter() - t_start)
    write_json(records / "report.json", {**report.__dict__, "rate": report.rate})
    say(report.text())
    return report


def _block_spec(root: Path, cfg: InferConfig, partial: Path, records: Path, key: str, layout: CubeLayout,
                members: list[Member], grid, month_idx, time_chunks: tuple[int, ...], torch_threads: int) -> dict:
    """What every block task takes (:func:`fluxscale.infer.block.infer_block`): paths, the key
    and a fresh run id, the layout, the members' weights, the land cells' rows and columns,
    each day's month, the driver time chunks and the device settings."""
    return {"root": str(root), "cube": str(partial), "records": str(records), "key": key, "run": uuid.uuid4().hex,
            "layout": layout.to_dict(), "weights": [member_weights(m.path) for m in members],
            "cell_ilat": grid.cell_ilat.values, "cell_ilon": grid.cell_ilon.values, "month_idx": month_idx,
            "time_chunks": time_chunks, "device": cfg.device, "batch": cfg.batch, "gpu_batch": cfg.gpu_batch,
            "sub_samples": max(cfg.batch, SUB_SAMPLES),
            "torch_threads": torch_threads}
