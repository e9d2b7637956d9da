"""A table of bad inputs across the commands (issue 20): each one exits 2 with one line that
names the file, variable or setting and the problem, never a traceback, and leaves nothing a
later run would take for complete."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch
import zarr
from typer.testing import CliRunner

from fluxscale.run.cli import app


def _data(tiny_models, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_models, root, ignore=shutil.ignore_patterns("nee.*", "report"))
    return root


def _write(path, text):
    path.write_text(text)
    return path


def _chunk(root, store, var, last=False):
    files = sorted(p for p in (root / f"{store}.zarr" / var / "c").rglob("*") if p.is_file())
    return files[-1] if last else files[0]


def _flip(path, where="middle", n=64):
    raw = bytearray(path.read_bytes())
    at = len(raw) // 2 if where == "middle" else 0
    raw[at:at + n] = bytes(b ^ 0x01 for b in raw[at:at + n])
    path.write_bytes(bytes(raw))


class _Evil:
    def __reduce__(self):
        return (os.system, ("true",))


# each case: (id, setup(root, tmp) -> extra args, command args (DATA = the directory), must appear, must not exist)
CASES = [
    # --- settings: --set and TOML, by the field types --------------------------------------------
    ("set-int", lambda r, t: [], ["train", "DATA", "--local", "--set", "epochs=five"], ["epochs = 'five': expected an integer"], ["models/members.json.new"]),
    ("set-float-none", lambda r, t: [], ["train", "DATA", "--local", "--set", "decoupling_max=high"], ["decoupling_max = 'high': expected a number or none"], []),
    ("set-bool", lambda r, t: [], ["infer", "DATA", "--local", "--set", "write_members=ture"], ["write_members = 'ture': expected true or false"], ["nee.zarr"]),
    ("set-int-list", lambda r, t: [], ["train", "DATA", "--local", "--set", "folds=0,x"], ["folds = '0,x': expected a list of integers"], []),
    ("set-unknown", lambda r, t: [], ["train", "DATA", "--local", "--set", "epoch=3"], ["--set epoch: unknown train setting"], []),
    ("set-no-value", lambda r, t: [], ["train", "DATA", "--local", "--set", "epochs"], ["expected NAME=VALUE"], []),
    ("set-variant", lambda r, t: [], ["train", "DATA", "--local", "--set", "variants=ecat"], ["variants"], []),
    ("set-bridge", lambda r, t: [], ["bridge", "DATA", "--set", "n_clusters=many"], ["n_clusters = 'many': expected an integer"], []),
    ("set-infer-variant", lambda r, t: [], ["infer", "DATA", "--local", "--set", "variants=ecat"], ["variants"], ["nee.zarr"]),
    ("run-section", lambda r, t: [], ["run", "--out", "DATA", "--set", "nosuch.x=1"], ["unknown section 'nosuch'"], []),
    ("run-ambiguous", lambda r, t: [], ["run", "--out", "DATA", "--set", "seed=3"], ["'seed' is a setting of twin, bridge, train"], []),
    ("run-until", lambda r, t: [], ["run", "--out", "DATA", "--until", "deploy"], ["--until deploy: unknown stage"], []),
    ("toml-missing", lambda r, t: [], ["train", "DATA", "--local", "--config", "TMP/none.toml"], ["none.toml: config file not found"], []),
    ("toml-syntax", lambda r, t: [_write(t / "bad.toml", "[train\nepochs = 3\n")], ["train", "DATA", "--local", "--config", "TMP/bad.toml"], ["bad.toml: not valid TOML"], []),
    ("toml-string-int", lambda r, t: [_write(t / "bad.toml", '[train]\nepochs = "five"\n')], ["train", "DATA", "--local", "--config", "TMP/bad.toml"], ["bad.toml: [train]: epochs = 'five': expected an integer"], []),
    ("toml-list-int", lambda r, t: [_write(t / "bad.toml", "[infer]\nlat_rows = [1, 2]\n")], ["infer", "DATA", "--local", "--config", "TMP/bad.toml"], ["bad.toml: [infer]: lat_rows = [1, 2]: expected an integer or none"], ["nee.zarr"]),
    ("toml-float-int", lambda r, t: [_write(t / "bad.toml", "[train]\nepochs = 2.5\n")], ["train", "DATA", "--local", "--config", "TMP/bad.toml"], ["epochs = 2.5: expected an integer"], []),
    ("toml-unknown-key", lambda r, t: [_write(t / "bad.toml", "[train]\nepoch = 3\n")], ["train", "DATA", "--local", "--config", "TMP/bad.toml"], ["bad.toml: [train]: unknown setting(s) epoch"], []),
    ("toml-unknown-section", lambda r, t: [_write(t / "bad.toml", "[trian]\nepochs = 3\n")], ["train", "DATA", "--local", "--config", "TMP/bad.toml"], ["bad.toml: unknown key(s) trian"], []),
    ("toml-bool", lambda r, t: [_write(t / "bad.toml", '[infer]\nwrite_members = "yes please"\n')], ["infer", "DATA", "--local", "--config", "TMP/bad.toml"], ["write_members = 'yes please': expected true or false"], ["nee.zarr"]),
    ("twin-preset", lambda r, t: [], ["twin", "--preset", "gigantic", "--out", "TMP/new"], ["unknown preset 'gigantic'"], ["new/fluxscale.json"]),
    ("twin-knob", lambda r, t: [], ["twin", "--preset", "tiny", "--out", "TMP/new", "--set", "bogus=1"], ["unknown twin knob"], ["new/fluxscale.json"]),
    ("twin-format", lambda r, t: [], ["twin", "--preset", "tiny", "--out", "TMP/new", "--format", "parquet"], ["--format 'parquet'"], ["new/fluxscale.json"]),
    ("train-epochs-0", lambda r, t: [], ["train", "DATA", "--local", "--set", "epochs=0"], ["epochs"], []),
    # --- cluster settings --------------------------------------------------------------------------
    ("workers-0", lambda r, t: [], ["integrals", "DATA", "--workers", "0"], ["n_workers=0 (--workers 0)"], []),
    ("tls-without-certs", lambda r, t: [], ["integrals", "DATA", "--scheduler", "tls://127.0.0.1:1"], ["a TLS scheduler needs this client's certificates"], []),
    ("no-scheduler", lambda r, t: [], ["integrals", "DATA", "--scheduler", "tcp://127.0.0.1:1", "--connect-timeout", "1"], ["cannot reach the Dask scheduler at tcp://127.0.0.1:1"], []),
    # --- missing inputs: what to run first ---------------------------------------------------------
    ("infer-empty-dir", lambda r, t: [(t / "empty").mkdir()], ["infer", "TMP/empty", "--local"], ["grid.zarr: store not found", "`fluxscale twin --out"], ["empty/nee.zarr"]),
    ("train-no-bridges", lambda r, t: [shutil.rmtree(r / "bridges.zarr")], ["train", "DATA", "--local"], ["bridges.zarr: not found; run `fluxscale bridge"], ["models/ec-fold0.pt.new"]),
    ("infer-no-models", lambda r, t: [shutil.rmtree(r / "models")], ["infer", "DATA", "--local"], ["members.json: not found; train the ensembles first with `fluxscale train"], ["nee.zarr"]),
    ("evaluate-no-cube", lambda r, t: [], ["evaluate", "DATA"], ["nee.zarr"], ["report/report.html"]),
    ("validate-missing-store", lambda r, t: [shutil.rmtree(r / "sites.zarr")], ["validate", "DATA"], ["sites.zarr", "store not found"], []),
    # --- values that must not pass -------------------------------------------------------------------
    ("validate-nan-driver", lambda r, t: [zarr.open_group(str(r / "drivers.zarr"), mode="r+")["Tair"].__setitem__((5, 7), np.nan)], ["validate", "DATA"], ["drivers.zarr", "'Tair'", "NaN values where none is allowed"], []),
    ("validate-range", lambda r, t: [zarr.open_group(str(r / "drivers.zarr"), mode="r+")["Tair"].__setitem__((5, 7), 500.0)], ["validate", "DATA"], ["'Tair'", "values out of range"], []),
    ("infer-nan-driver", lambda r, t: [zarr.open_group(str(r / "drivers.zarr"), mode="r+")["Tair"].__setitem__((40, 7), np.nan)], ["infer", "DATA", "--local", "--set", "lat_rows=30"], ["drivers.zarr: Tair is nan on", "land cell 7"], ["nee.zarr"]),
    ("train-inf-nee", lambda r, t: [_set_site_nee(r, np.inf)], ["train", "DATA", "--local", "--set", "epochs=1", "--set", "steps_per_epoch=2", "--set", "folds=0"], ["sites.zarr: NEE", "not finite"], ["models/members.json"]),
    ("integrals-nan-inversion", lambda r, t: [_poke_land(r, "inversions", "land_flux", np.nan, lead=(1, 4))], ["integrals", "DATA", "--no-progress"], ["inversions.zarr: variable 'land_flux': 1 non-finite value(s) on land cells", "system CTE"], []),
    ("integrals-inf-fire", lambda r, t: [_poke_land(r, "fire", "co2fire", np.inf, lead=(3,))], ["integrals", "DATA", "--no-progress"], ["fire.zarr: variable 'co2fire'", "non-finite value(s) on land cells", "value inf"], []),
    ("integrals-nan-prior", lambda r, t: [_poke_land(r, "prior", "NEE", np.nan, lead=(2,))], ["integrals", "DATA", "--no-progress"], ["prior.zarr: variable 'NEE'", "non-finite value(s) on land cells"], []),
    ("bridge-nan-integrals", lambda r, t: [zarr.open_group(str(r / "integrals.zarr"), mode="r+")["inversions"].__setitem__((0, 2, 5), np.nan)], ["bridge", "DATA", "--workers", "1"], ["integrals.zarr: variable 'inversions': 1 NaN values where none is allowed (first at system CAMS, region ", ", time 2001-06-01)"], []),
    ("train-nan-integrals", lambda r, t: [zarr.open_group(str(r / "integrals.zarr"), mode="r+")["inversions"].__setitem__((0, 2, 5), np.nan)], ["train", "DATA", "--local"], ["integrals.zarr: variable 'inversions': 1 NaN values where none is allowed (first at system CAMS"], ["models/members.json"]),
    ("train-nan-bridge", lambda r, t: [zarr.open_group(str(r / "bridges.zarr"), mode="r+")["bias"].__setitem__(0, np.inf)], ["train", "DATA", "--local"], ["bridges.zarr: variable 'bias': 1 infinite values (first at region USA)"], ["models/members.json"]),
    ("train-never-improves", lambda r, t: [], ["train", "DATA", "--local", "--set", "learning_rate=1e-30", "--set", "epochs=2", "--set", "steps_per_epoch=2", "--set", "folds=0", "--set", "variants=ec"], ["ec-fold0: no epoch of 1-2 improved on the starting weights", "no checkpoint written"], ["models/members.json"]),
    # --- corrupt files --------------------------------------------------------------------------------
    ("validate-empty-chunk", lambda r, t: [_chunk(r, "drivers", "WAI2").write_bytes(b"")], ["validate", "DATA"], ["drivers.zarr", "'WAI2'", "cannot decode chunk c/"], []),
    ("validate-flipped-header", lambda r, t: [_flip(_chunk(r, "drivers", "Tair"), "start", 16)], ["validate", "DATA"], ["drivers.zarr", "'Tair'", "cannot decode chunk c/"], []),
    ("validate-flipped-bytes", lambda r, t: [_flip(_chunk(r, "drivers", "Tair", last=True))], ["validate", "DATA"], ["'Tair'", "CRC-32C checksum does not match"], []),
    ("infer-flipped-bytes", lambda r, t: [_flip(_chunk(r, "drivers", "WAI2"))], ["infer", "DATA", "--local", "--set", "lat_rows=30"], ["drivers.zarr", "WAI2", "CRC-32C checksum does not match"], ["nee.zarr"]),
    ("infer-empty-chunk", lambda r, t: [_chunk(r, "drivers", "Tair").write_bytes(b"")], ["infer", "DATA", "--local", "--set", "lat_rows=30"], ["drivers.zarr", "Tair", "cannot decode", "c/"], ["nee.zarr"]),
    ("infer-truncated-checkpoint", lambda r, t: [(r / "models" / "ec-fold0.pt").write_bytes((r / "models" / "ec-fold0.pt").read_bytes()[:200])], ["infer", "DATA", "--local"], ["ec-fold0.pt: not a readable checkpoint"], ["nee.zarr"]),
    ("infer-code-checkpoint", lambda r, t: [torch.save({"state_dict": _Evil(), "meta": "{}"}, r / "models" / "ecatm-fold1.pt")], ["infer", "DATA", "--local"], ["ecatm-fold1.pt: holds objects other than tensors", "could run code"], ["nee.zarr"]),
    ("infer-bad-members-json", lambda r, t: [(r / "models" / "members.json").write_text("{not json")], ["infer", "DATA", "--local"], ["members.json: not a members list"], ["nee.zarr"]),
    ("validate-truncated-array-metadata", lambda r, t: [(r / "drivers.zarr" / "Tair" / "zarr.json").write_text('{"shape": [')], ["validate", "DATA"], ["drivers.zarr", "'Tair'", "zarr.json is not valid JSON"], []),
    ("validate-truncated-manifest", lambda r, t: [(r / "fluxscale.json").write_text('{"kind": "tw')], ["validate", "DATA"], ["fluxscale.json", "not valid JSON"], []),
    # --- a run never replaces what it did not make ------------------------------------------------------
    ("run-other-twin", lambda r, t: [], ["run", "--preset", "tiny", "--seed", "5", "--out", "DATA"], ["holds a twin made with other settings (seed: 0 → 5)", "--overwrite"], []),
    ("twin-over-other-twin", lambda r, t: [], ["twin", "--preset", "tiny", "--seed", "5", "--out", "DATA"], ["holds a twin made with other settings", "--overwrite"], []),
]


def _poke_land(root, store, var, value, lead):
    """Set one value of ``store``/``var`` at a land cell of the store's own grid (the
    inversions' and fire's are coarser): ``lead`` indexes the dims before lat, lon."""
    from fluxscale.bridges.integrals import grid_for
    from fluxscale.dataset.stores import open_store

    ds = open_store(root / f"{store}.zarr", store)
    g = grid_for(ds, open_store(root / "grid.zarr", "grid").load(), store)
    i, j = np.argwhere(g.land.values)[len(lead) * 7]
    zarr.open_group(str(root / f"{store}.zarr"), mode="r+")[var][(*lead, i, j)] = value


def _set_site_nee(root, value):
    g = zarr.open_group(str(root / "sites.zarr"), mode="r+")
    nee = g["NEE"]
    arr = nee[...]
    s, d = np.argwhere(np.isfinite(arr))[0]
    nee[s, d] = value


@pytest.fixture
def data_copy(tiny_models, tmp_path):
    """A copy of the trained tiny dataset (~110 MB), removed after the case: 48 of them kept
    in pytest's temporary directories filled a disk."""
    root = _data(tiny_models, tmp_path)
    yield root
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing_complete(case, data_copy, tmp_path):
    name, setup, args, expected, absent = case
    root = data_copy
    setup(root, tmp_path)
    manifest = (root / "fluxscale.json").read_text() if (root / "fluxscale.json").exists() else None
    argv = [a.replace("DATA", str(root)).replace("TMP", str(tmp_path)) for a in args]
    r = CliRunner().invoke(app, argv)
    out = r.output
    assert r.exit_code == 2, (name, r.exit_code, out, r.exception)
    assert "Traceback" not in out and not isinstance(r.exception, (TypeError, KeyError, AttributeError)), out
    lines = [ln for ln in out.splitlines() if ln.strip()]
    error = [ln for ln in lines if ln.startswith("error:")]
    assert len(error) == 1, out
    for text in expected:
        assert text in out, (name, text, out)
    for rel in absent:
        assert not (tmp_path / rel).exists() and not (root / rel).exists(), (name, rel)
    if name.startswith(("run-other", "twin-over")):
        assert (root / "fluxscale.json").read_text() == manifest  # the dataset is untouched


def test_the_table_covers_every_command_and_45_cases():
    commands = {c[2][0] for c in CASES}
    assert {"twin", "validate", "run", "integrals", "bridge", "train", "infer", "evaluate"} <= commands
    assert len(CASES) >= 45
    assert len({c[0] for c in CASES}) == len(CASES)
