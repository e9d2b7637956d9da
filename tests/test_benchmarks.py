import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from fluxscale.dataset.grid import make_grid


def _run(out, *only) -> tuple[dict, str]:
    """``python -m benchmarks --size tiny --repeats 1`` (only some, so that xdist spreads them)."""
    root = Path(__file__).resolve().parents[1]
    p = subprocess.run([sys.executable, "-m", "benchmarks", "--size", "tiny", "--repeats", "1", "--out", str(out),
                        "--only", *only], capture_output=True, text=True, cwd=root, timeout=600)
    assert p.returncode == 0, p.stderr
    return json.loads((out / "results.json").read_text()), (out / "results.md").read_text()


def _offline_report(path: Path) -> None:
    html = path.read_text()
    assert "Dask Performance Report" in html, path
    assert not re.search(r"""<(script|link)[^>]+(src|href)=["']?https?:""", html), path


N_CELLS, N_DAYS = make_grid(2.0).sizes["cell"], pd.date_range("2001-01-01", "2003-12-31").size


def test_benchmarks_smoke_tiny_inference(tmp_path):
    res, md = _run(tmp_path, "infer")
    (inf,) = res["benchmarks"]
    n, nd = N_CELLS, N_DAYS
    # inference: every land cell × day × 20 members; the ceiling is the best batch's rate
    assert inf["evaluations"] == n * nd * 20 == inf["members"] * n * nd
    assert inf["ceiling"] == max(inf["ceiling_by_batch"].values())
    assert inf["end_to_end_runs"][0]["rate"] * inf["end_to_end_runs"][0]["seconds"] == pytest.approx(inf["evaluations"])
    assert set(inf["scaling"]) == {"1", "2"} and "| inference (tiny)" in md
    _offline_report(tmp_path / "performance-infer-tiny.html")


def test_benchmarks_smoke_tiny_inference_vs_naive(tmp_path):
    res, md = _run(tmp_path, "infer_naive")
    (naive,) = res["benchmarks"]
    # the same numbers from fluxscale, xarray.map_blocks and ParallelPostFit
    assert naive["evaluations"] == N_CELLS * N_DAYS * naive["members"]
    assert naive["max_abs_diff"]["map_blocks_vs_ppf"] < 1e-5 and naive["max_abs_diff"]["map_blocks_vs_fluxscale"] < 1e-4
    assert naive["rates"]["map_blocks"] == pytest.approx(naive["evaluations"] / naive["seconds"]["map_blocks"])
    assert "ParallelPostFit" in md and "xarray.map_blocks per member" in md
    _offline_report(tmp_path / "performance-infer-naive-tiny.html")


def test_benchmarks_smoke_tiny(tmp_path):
    res, md = _run(tmp_path, "twin", "integrals", "dtw", "ingest", "bridge", "train")
    b, integ, dtw, ing, br, tr = res["benchmarks"]
    n, nd = N_CELLS, N_DAYS
    assert (b["cells"], b["days"], b["daily_bytes"]) == (n, nd, 3 * n * nd * 4)
    assert abs(b["ratio_twin_over_raw_time"] - b["twin_wall_s"] / b["raw_wall_s"]) < 1e-9
    assert "| twin write (tiny)" in (tmp_path / "results.md").read_text()
    assert res["machine"]["cores"] >= 1
    # integrals: fluxscale and the plain xarray groupby agree; the ratio is the medians' ratio
    assert integ["max_rel_diff_vs_xarray"] < 1e-9
    assert abs(integ["speedup_vs_xarray"] - integ["xarray_groupby_s"] / integ["fluxscale_s"]) < 1e-9
    # DTW: equal to both peers within 1e-5 relative, with and without a band
    for case in dtw["cases"]:
        assert case["max_rel_diff_dtaidistance"] < 1e-5 and case["max_rel_diff_tslearn"] < 1e-5
    md = (tmp_path / "results.md").read_text()
    assert "regional integrals, daily cube" in md and "dtaidistance distance_matrix_fast" in md
    # ingest: the twin's files (65 at tiny: pft.nc since issue 22) → stores; the ratio is the medians' ratio
    assert ing["n_files"] == 65 and ing["input_bytes"] > 0
    assert abs(ing["ratio_over_raw"] - ing["fluxscale_s"] / ing["raw_read_s"]) < 1e-9
    assert "| ingest (tiny): 65 files" in md
    # training: samples/s are samples over the median seconds; EC-ATM steps see more samples;
    # the ratios are the rates' ratios
    n = tr["batch"] * tr["steps"] * tr["members"]
    assert abs(tr["samples_per_s"]["group_ec"] - n / tr["seconds"]["group_ec"]) < 1e-6
    assert tr["samples_per_s"]["group_ecatm"] * tr["seconds"]["group_ecatm"] == pytest.approx(
        (tr["batch"] + tr["sampled"]) * tr["steps"] * tr["members"])
    assert tr["ratio_group_ec_over_peer"] == pytest.approx(tr["seconds"]["peer"] / tr["seconds"]["group_ec"])
    assert "| EC-ATM, a group of 4 (tiny)" in md
    # DTW tiled on 1 and 2 workers equals the in-memory matrix
    assert dtw["tiled"]["max_abs_diff"] < 1e-4 and dtw["tiled"]["scaling_2_over_1"] > 0
    # bridges: the warm-started path stops where cold scikit-learn fits stop, with the same R²
    assert br["same_alpha_share"] >= 0.9 and br["max_r2_diff"] < 1e-3
    assert br["repeats_per_s"]["2 workers"] == pytest.approx(br["repeats"] / br["dask_s"]["2"])
    assert "| Lasso bridge fits (tiny)" in md
    for name in ("dtw-tiny", "bridge-repeats-tiny"):  # inline performance reports, nothing from the network
        _offline_report(tmp_path / f"performance-{name}.html")
