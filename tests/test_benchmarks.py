import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from fluxscale.grid import make_grid


def test_benchmarks_smoke_tiny(tmp_path):
    root = Path(__file__).resolve().parents[1]
    p = subprocess.run([sys.executable, "-m", "benchmarks", "--size", "tiny", "--repeats", "1", "--out", str(tmp_path)],
                       capture_output=True, text=True, cwd=root, timeout=300)
    assert p.returncode == 0, p.stderr
    res = json.loads((tmp_path / "results.json").read_text())
    b, integ, dtw, ing, tr, inf = res["benchmarks"]
    n, nd = make_grid(2.0).sizes["cell"], pd.date_range("2001-01-01", "2003-12-31").size
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
    # ingest: the twin's files (64 at tiny) → stores; the ratio is the medians' ratio
    assert ing["n_files"] == 64 and ing["input_bytes"] > 0
    assert abs(ing["ratio_over_raw"] - ing["fluxscale_s"] / ing["raw_read_s"]) < 1e-9
    assert "| ingest (tiny): 64 files" in md
    # training: samples/s are samples over the median seconds; EC-ATM steps see more samples
    assert abs(tr["samples_per_s"]["ec"] - tr["batch"] * tr["steps"] / tr["seconds"]["ec"]) < 1e-6
    assert tr["samples_per_s"]["ecatm"] * tr["seconds"]["ecatm"] > tr["samples_per_s"]["ec"] * tr["seconds"]["ec"]
    assert "| EC-ATM step (tiny)" in md
    # inference: every land cell × day × 20 members; the ceiling is the best batch's rate
    assert inf["evaluations"] == n * nd * 20 == inf["members"] * n * nd
    assert inf["ceiling"] == max(inf["ceiling_by_batch"].values())
    assert inf["end_to_end_runs"][0]["rate"] * inf["end_to_end_runs"][0]["seconds"] == pytest.approx(inf["evaluations"])
    assert set(inf["scaling"]) == {"1", "2"} and "| inference (tiny)" in md
