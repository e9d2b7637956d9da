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

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = re.search(r"A config file is TOML.*?```toml\n(.*?)```", readme, re.S).group(1)
    p = tmp_path / "fluxscale.toml"
    p.write_text(block)
    cfg = load_config(p)
    assert cfg.bridge.n_clusters == 8 and cfg.train.epochs == 30 and cfg.evaluate.maps is True
    assert cfg.infer.write_members is False and cfg.ingest == str(tmp_path / "ingest.toml")
