"""``fluxscale run`` end to end on the tiny twin: every stage, the report, then a rerun that
skips every stage; a changed setting reruns only what depends on it; an interrupted
training resumes with the members it lacks."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from fluxscale.cli import app
from fluxscale.pipeline import STAGES

FAST = ["--set", "bridge.repeats=10", "--set", "train.epochs=2", "--set", "train.steps_per_epoch=3",
        "--set", "train.folds=0,1", "--set", "evaluate.maps=false"]


def _run(root, *extra):
    res = CliRunner().invoke(app, ["run", "--preset", "tiny", "--out", str(root), "--workers", "1", "--no-progress",
                                   *FAST, *extra])
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
    assert list(cube.member.values) == sorted(members) and list(cube.ensemble.values) == ["ec", "ecatm"]


def test_rerun_skips_every_stage_and_writes_nothing(ran):
    root, _ = ran
    before = _mtimes(root / "nee.zarr") | _mtimes(root / "report") | _mtimes(root / "models")
    out = _run(root)
    assert "skipped (unchanged): data, validate, integrals, bridges, train, infer, evaluate" in out
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
    out = _run(root, "--set", "evaluate.qc_min=0.8")
    assert "keeping 3 members already trained with this config and inputs" in out
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
    from fluxscale.pipeline import same_config

    old = {"out": "d", "sites": {"table": "s.csv", "fluxnet": ["*.csv"]}, "start_year": 2001}
    new = {"out": "d", "sites": {"table": "s.csv", "fluxnet": ["*.csv"], "metadata": None}, "start_year": 2001,
           "pft": None, "pft_variable": ""}
    assert same_config(old, new)
    assert not same_config(old, {**new, "pft": "pft.nc"})
    assert not same_config(old, {**new, "sites": {**new["sites"], "metadata": ["BIF*.csv"]}})
    assert not same_config(old, {**new, "start_year": 2002})
    assert not same_config({**old, "gone": 1}, new)  # a setting the new config no longer has
