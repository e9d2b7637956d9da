"""Where a block's CPU goes: run some inference blocks one at a time in this process and
print each block's wall time, process CPU time (every thread, zarr's included), forward and
write time.

    python tools/infer_block_cpu.py DATA_DIR [BAND ...]

DATA_DIR needs ``models/`` (``fluxscale train``, or ``benchmarks.infer.write_untrained_members``).
The cube goes to ``DATA_DIR/nee-profile.zarr``.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import fluxscale.infer.block as blk
import fluxscale.infer.stage as stage
import fluxscale.parallel as par
from fluxscale.config import InferConfig


def main(root: str, bands: list[int]) -> None:
    plan = stage.plan_blocks
    stage.plan_blocks = lambda *a: [b for b in plan(*a) if not bands or b.index in bands]
    par.run_tasks = lambda func, items, client=None, on_result=None, **kw: [func(i, spec=kw["spec"]) for i in items]
    real = blk.infer_block

    def timed(block, *, spec):
        c0, w0 = time.process_time(), time.perf_counter()
        r = real(block, spec=spec)
        cpu = time.process_time() - c0
        print(f"band {block.index}: {r['cells']} cells, wall {time.perf_counter() - w0:.2f} s, CPU {cpu:.2f} s, "
              f"forward {r['forward_s']:.2f} s ({r['forward_s'] / cpu:.0%} of the CPU), write {r['write_s']:.2f} s")
        return r

    blk.infer_block = timed
    out = Path(root) / "nee-profile.zarr"
    for p in (out, out.with_name("nee-profile.blocks")):
        shutil.rmtree(p, ignore_errors=True)
    stage.infer(root, InferConfig(out=str(out), layer=False), show_progress=False)


if __name__ == "__main__":
    main(sys.argv[1], [int(b) for b in sys.argv[2:]])
