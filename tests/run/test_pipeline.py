"""``fluxscale run`` end to end on the tiny twin: every stage, the report, then a rerun that
skips every stage; a changed setting reruns only what depends on it; an interrupted
training resumes with the members it lacks."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fluxscale.run.cli import app
from fluxscale.run.pipeline import STAGES

FAST = ["--set", "bridge.repeats=10", "--set", "train.epochs=2", "--set", "train.steps_per_epoch=3",
        "--set", "train.folds=0,1", "--set", "evaluate.maps=false"]


def _run(root, *extra, progress=False):
    """``fluxscale run`` on the tiny twin; ``progress``: with progress, which (CliRunner's
    stdout is not a terminal) prints plain lines, here every 0.2 s."""
    res = CliRunner().invoke(app, ["run", "--preset", "tiny", "--out", str(root), "--workers", "1",
                                   "--progress" if progress else "--no-progress", *FAST, *extra],
                             env={"FLUXSCALE_PROGRESS_INTERVAL": "0.2", "FLUXSCALE_PROGRESS": None})
    assert res.exit_code == 0, res.output
    return res.output


def _mtimes(path):
    return {p: p.stat().st_mtime_ns for p in path.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def ran(tiny_twin, tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline") / "data"
    shutil.copytree(tiny_twin, root)  # the same preset and seed: the data stage reuses it
    return root, _run(root)


def test_run_end_to_end_writes_every_stage_and_the_report(ran):
    root, out = ran
    assert "reusing the complete twin" in out
    stages = json.loads((root / "stages.json").read_text())["stages"]
    assert list(stages) == list(STAGES[1:])  # the data stage has the manifest as its record
    assert stages["train"]["config"]["epochs"] == 2 and stages["bridges"]["config"]["repeats"] == 10
    assert stages["infer"]["upstream"] == stages["train"]["key"]
    assert f"report: {root / 'report' / 'report.html'}" in out
    summ = json.loads((root / "report" / "summary.json").read_text())
    assert {"EC-ATM", "EC", "prior"} <= set(summ["models"])
    members = json.loads((root / "models" / "members.json").read_text())["members"]
    assert sorted(members) == ["ec-fold0", "ec-fold1", "ecatm-fold0", "ecatm-fold1"]
    import xarray as xr

    cube = xr.open_zarr(root / "nee.zarr")
    # the trained members, then the layer's (one per EC member): the default product dual
    assert list(cube.member.values) == sorted(members) + ["dual-fold0", "dual-fold1"]
    assert list(cube.ensemble.values) == ["ec", "ecatm", "dual"] and cube.attrs["fluxscale_default_ensemble"] == "dual"


def test_the_final_summary_is_short_and_its_numbers_are_the_reports(ran):
    """The end of a run: the science checks with their values (summary.json), the headline
    numbers (equal to the report's CSV tables), where the report and cube are and the stage
    times as a table (stages.json); no store inventory (that is --verbose or fluxscale info)."""
    import pandas as pd

    root, out = ran
    rep = root / "report"
    tail = out[out.index("done in"):].splitlines()
    assert len(tail) <= 25, tail
    assert "dims:" not in out and "regions (Table A1)" not in out and f"fluxscale info {root}" in out
    checks = json.loads((rep / "summary.json").read_text())["science_checks"]
    assert checks
    for c in checks:
        assert f"{'PASS' if c['passed'] else 'FAIL'}  {c['check']} = {c['value']:.3g} (bound {c['bound']}" in out

    def numbers(label):
        m = re.search(rf"^  {re.escape(label)}: EC-ATM (-?[\d.]+), EC (-?[\d.]+)", out, re.M)
        assert m, (label, tail)
        return float(m.group(1)), float(m.group(2))

    ann = pd.read_csv(rep / "annual_vs_truth.csv", index_col="region")
    assert numbers("global annual RMSE vs truth") == pytest.approx(
        (ann.loc["GLOBAL", "EC-ATM RMSE"], ann.loc["GLOBAL", "EC RMSE"]), abs=5e-4)
    site = pd.read_csv(rep / "site_vs_towers.csv", index_col="region")
    assert numbers("site RMSE vs towers") == pytest.approx(
        (site.loc["ALL", "EC-ATM RMSE"], site.loc["ALL", "EC RMSE"]), abs=5e-4)
    cons = pd.read_csv(rep / "consistency.csv", index_col="region")
    assert numbers("global mean NEE") == pytest.approx(
        (cons.loc["GLOBAL", "EC-ATM mean"], cons.loc["GLOBAL", "EC mean"]), abs=5e-3)
    assert f"report: {rep / 'report.html'}" in out and f"cube:   {root / 'nee.zarr'}" in out
    rows = [ln.split() for ln in tail if ln.startswith("  stage ") or ln.startswith("  m:ss ")]
    assert rows[0][1:] == [*STAGES, "total"]
    seconds = json.loads((root / "stages.json").read_text())["stages"]
    for name, cell in zip(rows[0][1:], rows[1][1:]):
        if name in seconds:  # m:ss of the seconds recorded for the stage
            m, s_ = cell.split(":")
            assert abs(int(m) * 60 + int(s_) - seconds[name]["seconds"]) <= 0.51, (name, cell)


def test_readme_numbers_are_regenerated_from_the_run(ran, tmp_path):
    """tools/readme_numbers.py: the README block of a finished run, its numbers those of the
    report's CSV tables, the command, seed and preset beside them; --write replaces only the
    marked block and refuses a file without one."""
    import importlib.util

    import pandas as pd

    spec = importlib.util.spec_from_file_location("readme_numbers", Path(__file__).parents[2] / "tools" /
                                                  "readme_numbers.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    root, _ = ran
    block = tool.render_block(root)
    assert block.startswith(tool.BEGIN) and block.endswith(tool.END)
    assert "`fluxscale run --out DIR` (preset tiny, seed 0)" in block and "change with the seed" in block
    ann = pd.read_csv(root / "report" / "annual_vs_truth.csv", index_col="region")
    m = re.search(r"global annual RMSE vs truth: EC-ATM ([\d.]+), EC ([\d.]+)", block)
    assert (float(m.group(1)), float(m.group(2))) == pytest.approx(
        (ann.loc["GLOBAL", "EC-ATM RMSE"], ann.loc["GLOBAL", "EC RMSE"]), abs=5e-4)
    checks = json.loads((root / "report" / "summary.json").read_text())["science_checks"]
    assert f"{sum(c['passed'] for c in checks)} of {len(checks)} pass" in block
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{tool.BEGIN}\nold numbers\n{tool.END}\nafter\n")
    tool.write_block(readme, block)
    assert readme.read_text() == f"before\n{block}\nafter\n"
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="no <!-- readme-numbers:begin -->"):
        tool.write_block(readme, block)


def test_rerun_skips_every_stage_and_writes_nothing(ran, monkeypatch):
    import fluxscale.run.pipeline

    def no_cluster(*a, **k):
        raise RuntimeError("a rerun that skips every stage started a cluster")

    monkeypatch.setattr(fluxscale.run.pipeline, "cluster_client", no_cluster)
    root, _ = ran
    before = _mtimes(root / "nee.zarr") | _mtimes(root / "report") | _mtimes(root / "models")
    out = _run(root)
    assert "skipped (unchanged): data, validate, integrals, bridges, train, infer, evaluate" in out
    assert "Dask:" not in out and "report: " in out
    after = _mtimes(root / "nee.zarr") | _mtimes(root / "report") | _mtimes(root / "models")
    assert after == before


def test_changed_settings_rerun_only_what_depends_on_them(ran):
    root, _ = ran
    cube = _mtimes(root / "nee.zarr")
    out = _run(root, "--set", "evaluate.qc_min=0.8")
    assert "skipped (unchanged): data, validate, integrals, bridges, train, infer" in out
    assert "evaluate: report at" in out and _mtimes(root / "nee.zarr") == cube
    assert json.loads((root / "report" / "summary.json").read_text())["models"]
    # an interrupted training: its record gone and one checkpoint missing → only that member is trained
    log = json.loads((root / "stages.json").read_text())
    log["stages"].pop("train")
    (root / "stages.json").write_text(json.dumps(log))
    (root / "models" / "ecatm-fold1.pt").unlink()
    out = _run(root, "--set", "evaluate.qc_min=0.8", progress=True)
    assert "keeping 3 members already trained with this config and inputs" in out
    # progress as plain lines (stdout is not a terminal): one member of 2 epochs left to train
    assert re.search(r"^train: member-epochs 2/2, 100%, done in \d+:\d\d$", out, re.M), out
    assert "train: ecatm-fold1" in out and "train: ec-fold0 " not in out
    assert (root / "models" / "ecatm-fold1.pt").exists()


def test_run_refuses_bad_settings(tmp_path):
    runner = CliRunner()
    for args, msg in ((["--set", "seed=3"], "'seed' is a setting of twin, bridge, train"),
                      (["--set", "nosuch.x=1"], "unknown section 'nosuch'"),
                      (["--set", "train.nosuch=1"], "unknown train setting"),
                      (["--set", "train.epochs"], "expected SECTION.NAME=VALUE"),
                      (["--until", "deploy"], "unknown stage")):
        res = runner.invoke(app, ["run", "--preset", "tiny", "--out", str(tmp_path / "x"), "--workers", "1", *args])
        assert res.exit_code == 2 and msg in res.output, (args, res.output)


def test_a_run_never_replaces_a_dataset_made_with_other_settings_unless_told(ran, tmp_path):
    """`run` on a directory whose twin was made with other settings (a forgotten flag) is
    refused with the difference named and nothing touched; with --overwrite the twin is
    replaced and everything made from the old one (models, cube, report, stage log) goes."""
    root, _ = ran
    copy = tmp_path / "data"
    shutil.copytree(root, copy)
    before = _mtimes(copy)
    res = CliRunner().invoke(app, ["run", "--preset", "tiny", "--out", str(copy), "--workers", "1", "--no-progress",
                                   "--set", "twin.n_sites=37", *FAST])
    assert res.exit_code == 2, res.output
    assert "holds a twin made with other settings (n_sites:" in res.output and "→ 37" in res.output
    assert "--overwrite" in res.output and "Traceback" not in res.output
    assert _mtimes(copy) == before  # nothing written, nothing removed
    out = _run(copy, "--set", "twin.n_sites=37", "--until", "data", "--overwrite")
    assert "removing what was made from it" in out and "models" in out and "report" in out
    assert not (copy / "models").exists() and not (copy / "report").exists() and not (copy / "nee.zarr").exists()
    assert json.loads((copy / "fluxscale.json").read_text())["config"]["n_sites"] == 37


def test_a_setting_added_later_at_its_off_default_keeps_a_dataset_current():
    """A manifest written before a setting existed matches a config that leaves the setting
    empty (the ingest config gained sites.metadata, pft …); any other difference does not."""
    from fluxscale.run.pipeline import same_config

    old = {"out": "d", "sites": {"table": "s.csv", "fluxnet": ["*.csv"]}, "start_year": 2001}
    new = {"out": "d", "sites": {"table": "s.csv", "fluxnet": ["*.csv"], "metadata": None}, "start_year": 2001,
           "pft": None, "pft_variable": ""}
    assert same_config(old, new)
    assert not same_config(old, {**new, "pft": "pft.nc"})
    assert not same_config(old, {**new, "sites": {**new["sites"], "metadata": ["BIF*.csv"]}})
    assert not same_config(old, {**new, "start_year": 2002})
    assert not same_config({**old, "gone": 1}, new)  # a setting the new config no longer has
