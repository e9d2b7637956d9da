import pytest

from fluxscale.config import PRESETS, TwinConfig, twin_preset
from fluxscale.errors import ConfigError


def test_presets_only_choose_field_values():
    names = set(TwinConfig.__dataclass_fields__)
    for preset, values in PRESETS.items():
        assert set(values) <= names, preset
        cfg = twin_preset(preset)
        for k, v in values.items():
            assert getattr(cfg, k) == v
    assert twin_preset("full").resolution_deg == 0.5 and twin_preset("full").inversion_resolution_deg == 1.0
    assert twin_preset("full").start_year == 2001 and twin_preset("full").end_year == 2017


@pytest.mark.parametrize("knobs, msg", [
    (dict(resolution_deg=0.7), "resolution_deg=0.7"),
    (dict(inversion_resolution_deg=3.0), "integer multiple"),
    (dict(resolution_deg=4.0, inversion_resolution_deg=8.0), "inversion_resolution_deg=8.0: must be a whole number of 0.5° cells"),
    (dict(n_sites=3), "n_sites=3"),
    (dict(end_year=2001), "end_year"),
    (dict(no_such_knob=1), "unknown twin knob"),
])
def test_bad_config_is_refused_with_the_field(knobs, msg):
    with pytest.raises(ConfigError, match=msg):
        twin_preset("tiny", **knobs)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        twin_preset("huge")


def test_the_readme_config_example_loads(tmp_path):
    """The TOML example of the README is a valid run config (every table and key)."""
    import re
    from pathlib import Path

    from fluxscale.config import load_config

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = re.search(r"A config file is TOML.*?```toml\n(.*?)```", readme, re.S).group(1)
    p = tmp_path / "fluxscale.toml"
    p.write_text(block)
    cfg = load_config(p)
    assert cfg.bridge.n_clusters == 8 and cfg.train.epochs == 30 and cfg.evaluate.maps is True
    assert cfg.infer.write_members is False and cfg.ingest == str(tmp_path / "ingest.toml")


# --- strict settings: one parser for TOML and --set, by the dataclass field types (issue 20) ---

@pytest.mark.parametrize("section, line, setting, expected", [
    ("train", 'epochs = "five"', "epochs = 'five'", "expected an integer"),
    ("train", "epochs = 2.5", "epochs = 2.5", "expected an integer"),
    ("train", "epochs = true", "epochs = True", "expected an integer"),
    ("infer", "lat_rows = [1, 2]", "lat_rows = [1, 2]", "expected an integer or none"),
    ("infer", 'write_members = "ture"', "write_members = 'ture'", "expected true or false"),
    ("train", 'decoupling_max = "high"', "decoupling_max = 'high'", "expected a number or none"),
    ("train", 'folds = [0, "one"]', "folds = [0, 'one']", "expected a list of integers (item 'one' is not an integer)"),
    ("train", "systems = 3", "systems = 3", "expected a list of strings"),
    ("bridge", "repeats = [10]", "repeats = [10]", "expected an integer"),
    ("twin", 'site_region_weights = [["USA"]]', "site_region_weights = [['USA']]", "expected a list of lists [string, number]"),
])
def test_toml_settings_follow_the_field_types(tmp_path, section, line, setting, expected):
    from fluxscale.config import load_config

    path = tmp_path / "bad.toml"
    path.write_text(f"[{section}]\n{line}\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: [{section}]: {setting}: {expected}"), msg
    assert msg.count(str(path)) == 1  # the path once, then the section


@pytest.mark.parametrize("cls, item, message", [
    ("InferConfig", "write_members=ture", "write_members = 'ture': expected true or false"),
    ("TrainConfig", "epochs=2.5", "epochs = '2.5': expected an integer"),
    ("TrainConfig", "folds=0,x", "folds = '0,x': expected a list of integers"),
    ("BridgeConfig", "r2_threshold=high", "r2_threshold = 'high': expected a number"),
    ("TrainConfig", "decoupling_max=abc", "decoupling_max = 'abc': expected a number or none"),
])
def test_set_values_follow_the_field_types(cls, item, message):
    import fluxscale.config as C
    from fluxscale.run.flags import parse_knobs

    with pytest.raises(ConfigError, match="^--set: " + message.replace("(", r"\(")):
        parse_knobs([item], getattr(C, cls)(), "setting")


def test_set_and_toml_parse_the_same_values(tmp_path):
    """Each field type from --set text and from TOML gives the same value: float | None (a
    None default is not an int), bool from 1/0/true/false, tuples of ints and strings."""
    from fluxscale.run.flags import parse_knobs
    from fluxscale.config import InferConfig, TrainConfig, load_config

    sets = parse_knobs(["decoupling_max=0.5", "folds=1,2", "systems=CAMS,UoE", "threads=none", "epochs=3"],
                        TrainConfig(), "train setting")
    assert sets == {"decoupling_max": 0.5, "folds": (1, 2), "systems": ("CAMS", "UoE"), "threads": None, "epochs": 3}
    assert parse_knobs(["write_members=1"], InferConfig())["write_members"] is True
    assert parse_knobs(["write_members=FALSE"], InferConfig())["write_members"] is False
    path = tmp_path / "ok.toml"
    path.write_text('[train]\ndecoupling_max = 0.5\nfolds = [1, 2]\nsystems = ["CAMS", "UoE"]\nepochs = 3\n'
                    '[infer]\nwrite_members = 1\n')
    cfg = load_config(path)
    assert {k: getattr(cfg.train, k) for k in ("decoupling_max", "folds", "systems", "epochs")} == \
        {k: sets[k] for k in ("decoupling_max", "folds", "systems", "epochs")}
    assert cfg.infer.write_members is True and isinstance(cfg.train.decoupling_max, float)
