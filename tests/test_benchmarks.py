import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from fluxscale.grid import make_grid


def test_benchmarks_smoke_tiny(tmp_path):
    root = Path(__file__).resolve().parents[1]
    p = subprocess.run([sys.executable, "-m", "benchmarks", "--size", "tiny", "--repeats", "1", "--out", str(tmp_path)],
                       capture_output=True, text=True, cwd=root, timeout=300)
    assert p.returncode == 0, p.stderr
    res = json.loads((tmp_path / "results.json").read_text())
    (b,) = res["benchmarks"]
    n, nd = make_grid(2.0).sizes["cell"], pd.date_range("2001-01-01", "2003-12-31").size
    assert (b["cells"], b["days"], b["daily_bytes"]) == (n, nd, 3 * n * nd * 4)
    assert abs(b["ratio_twin_over_raw_time"] - b["twin_wall_s"] / b["raw_wall_s"]) < 1e-9
    assert "| twin write (tiny)" in (tmp_path / "results.md").read_text()
    assert res["machine"]["cores"] >= 1
