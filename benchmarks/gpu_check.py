"""The GPU check of training and inference (issue 21): ``bash benchmarks/gpu_check.sh``.

On a machine where torch sees CUDA: the tiny twin end to end (integrals, bridges, a short
training of EC and EC-ATM members as one group, inference of the cube) on the GPU, the
same training on the CPU, the members compared (every weight, and their NEE on 20 000
tower-days, within ``--rtol``), and the throughputs printed: training member-steps/s and
samples/s of the group on each device, inference cell-days × members per second.
Exit 0 when the members agree, 1 when they do not, 2 when there is no CUDA device
(``--device cpu`` runs the same comparison CPU against CPU, to check the script itself).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check")
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu (a dry run of the script)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--rtol", type=float, default=1e-3)
    ap.add_argument("--keep", help="keep the work directory here")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from fluxscale.bridges.build import build_bridges
    from fluxscale.config import BridgeConfig, InferConfig, TrainConfig
    from fluxscale.infer.stage import infer
    from fluxscale.bridges.integrals import compute_integrals
    from fluxscale.learn.model import NEENet, load_member
    from fluxscale.learn.data import load_training_data
    from fluxscale.learn.ensemble import train_ensemble
    from fluxscale.learn.fit import train_group
    from fluxscale.twin import make_twin

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: torch sees no CUDA device (torch.cuda.is_available() is False); nothing checked")
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False  # the comparison is against float32 on the CPU
    work = Path(args.keep or tempfile.mkdtemp(prefix="fluxscale-gpu-check-"))
    root = work / "data"
    if not (root / "bridges.zarr").exists():
        make_twin(root, preset="tiny", show_progress=False)
        compute_integrals(root)
        build_bridges(root, BridgeConfig(repeats=10, repeats_per_task=10), show_progress=False)
    folds = tuple(range(args.folds))
    members = [(v, f) for f in folds for v in ("ec", "ecatm")]
    cfg = TrainConfig(epochs=args.epochs, threads=1, folds=folds)
    data = load_training_data(root, cfg)
    out = {}
    # on the device: the ensemble as `fluxscale train` trains it (one group, checkpoints written)
    t = time.perf_counter()
    summary = train_ensemble(root, cfg.replace(device=args.device), show_progress=False)
    sec = time.perf_counter() - t
    steps = len(summary["members"]) * cfg.epochs * cfg.steps_per_epoch
    out["train_device"] = {"seconds": sec, "member_steps_per_s": steps / sec}
    # on the CPU: the same group in memory
    t = time.perf_counter()
    ref = train_group(root, cfg.replace(device="cpu"), members, data=data, write=False)
    sec = time.perf_counter() - t
    out["train_cpu"] = {"seconds": sec, "member_steps_per_s": steps / sec}
    # the members: their NEE on tower-days, device against CPU
    x = torch.as_tensor(data.site_x.reshape(-1, data.site_x.shape[-1])[:20000])
    worst = 0.0
    for (v, f), b in zip(members, ref):
        na, meta = load_member(root / "models" / f"{v}-fold{f}.pt")
        nb = NEENet()
        nb.load_state_dict(b["state_dict"])
        with torch.no_grad():
            ya, yb = na(x), nb(x)
        rel = float((ya - yb).abs().max() / yb.abs().max().clamp_min(1e-12))
        worst = max(worst, rel)
        print(f"gpu_check: {v}-fold{f} on {meta['metrics']['device']}: best epoch {meta['metrics']['best_epoch']} "
              f"(cpu: {b['metrics']['best_epoch']}), max |NEE difference| / max |NEE| = {rel:.2e}")
    out["max_rel_diff"] = worst
    # inference of the whole tiny cube with the members trained on the device
    t = time.perf_counter()
    infer(root, InferConfig(device=args.device), show_progress=False)
    sec = time.perf_counter() - t
    import xarray as xr

    cube = xr.open_zarr(root / "nee.zarr")
    n_eval = int(cube.sizes.get("time", 0)) * int(np.asarray(data.cell_region).size) * len(members)
    out["infer"] = {"seconds": sec, "evaluations_per_s": n_eval / sec, "device": args.device}
    print(json.dumps(out, indent=2, default=float))
    ok = worst <= args.rtol
    print(f"gpu_check: {'PASS' if ok else 'FAIL'}: members on {args.device} vs cpu within {worst:.2e} "
          f"(tolerance {args.rtol:g}); training {out['train_device']['member_steps_per_s']:.1f} member-steps/s "
          f"on {args.device} vs {out['train_cpu']['member_steps_per_s']:.1f} on cpu; inference "
          f"{out['infer']['evaluations_per_s'] / 1e6:.1f}·10⁶ evaluations/s")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
