"""``python -m benchmarks --size {tiny,small,full} [--repeats N] [--out DIR]``.

Writes ``results.json`` and ``results.md`` into ``--out`` (default ``bench-out/``), with
the machine (cores, memory, versions) in the header, and an inline Dask performance report
(``performance-<benchmark>-<size>.html``, opens without network) of each distributed run:
the tiled DTW, the bridge repeats, inference and inference against the naive peers. Each figure is a median of
``--repeats`` runs, reported with its peer measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

from . import common
from .bridge import bench_bridge
from .infer import bench_infer
from .infer_naive import bench_infer_naive
from .ingest import bench_ingest
from .integrals import bench_integrals
from .train import bench_train
from .twin import bench_twin

BENCHMARKS = ("twin", "integrals", "dtw", "ingest", "bridge", "train", "infer", "infer_naive")


def machine() -> dict:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    pkgs = {p: version(p) for p in ("fluxscale", "numpy", "dask", "distributed", "xarray", "zarr", "numba")}
    return {"cores": os.cpu_count(), "memory_gib": round(mem, 1), "python": platform.python_version(),
            "platform": platform.platform(), "packages": pkgs,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def to_markdown(res: dict) -> str:
    m = res["machine"]
    lines = [f"# fluxscale benchmarks ({res['size']})", "",
             f"{m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}, "
             + ", ".join(f"{k} {v}" for k, v in m["packages"].items()) + f"; {m['date']}", "",
             f"Command: `python -m benchmarks --size {res['size']} --repeats {res['repeats']}"
             + (f" --only {' '.join(res['only'])}" if res.get("only") and len(res["only"]) < len(BENCHMARKS) else "")
             + "`", "",
             "| benchmark | fluxscale | peer | ratio |", "|---|---|---|---|"]
    for b in res["benchmarks"]:
        if "md_rows" in b:  # benchmarks that write their own table rows
            lines.extend(b["md_rows"])
            continue
        if "rows" in b:  # benchmarks that format their own cells
            lines.extend(f"| {r['what']} | {r['fluxscale']} | {r['peer']} | {r['ratio']} |" for r in b["rows"])
            continue
        lines.append(f"| {b['name']}: {b['cells']} cells × {b['days']} days | {b['twin_wall_s']:.2f} s, "
                     f"peak {b['twin_peak_rss_mib']:.0f} MiB | raw Zarr write of the same daily bytes "
                     f"{b['raw_wall_s']:.2f} s ({b['raw_MBps']:.0f} MB/s) | {b['ratio_twin_over_raw_time']:.2f}× the time |")
    return "\n".join(lines) + "\n"


def _bench_dtw(size: str, repeats: int) -> dict:
    from .dtw import bench_dtw, markdown_rows

    res = bench_dtw(size, repeats)
    res["md_rows"] = markdown_rows(res)
    return res


def _save(out: Path, res: dict) -> None:
    (out / "results.json").write_text(json.dumps(res, indent=2))
    (out / "results.md").write_text(to_markdown(res))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m benchmarks")
    ap.add_argument("--size", choices=("tiny", "small", "full"), default="small")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="bench-out")
    ap.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS),
                    help="run only these benchmarks")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = tempfile.mkdtemp(prefix="fluxscale-bench-", dir=out)
    common.REPORT_DIR = out  # inline Dask performance reports of the distributed runs
    try:
        runs = {"twin": lambda: bench_twin(args.size, work, args.repeats),
                "integrals": lambda: bench_integrals(args.size, work, args.repeats),
                "dtw": lambda: _bench_dtw(args.size, args.repeats),
                "ingest": lambda: bench_ingest(args.size, work, args.repeats),
                "train": lambda: bench_train(args.size, work, args.repeats),
                "bridge": lambda: bench_bridge(args.size, work, args.repeats),
                "infer": lambda: bench_infer(args.size, work, args.repeats),
                "infer_naive": lambda: bench_infer_naive(args.size, work, args.repeats)}
        res = {"size": args.size, "repeats": args.repeats, "only": list(args.only), "machine": machine(),
               "benchmarks": []}
        for name in BENCHMARKS:
            if name in args.only:
                res["benchmarks"].append(runs[name]())
                _save(out, res)  # after each: a full-size run takes over an hour
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(to_markdown(res))
    return res


if __name__ == "__main__":
    main()
