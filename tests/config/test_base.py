"""What every config section shares (fluxscale.config.base): replace, to_dict, key_dict and
the check of its values, written once; and one parse of an ingest TOML per text."""

import dataclasses

import pytest

import fluxscale.config as C
from fluxscale.dataset.schema import DRIVER_NAMES
from fluxscale.errors import ConfigError

SECTIONS = {"twin": C.TwinConfig, "bridge": C.BridgeConfig, "train": C.TrainConfig, "infer": C.InferConfig,
            "evaluate": C.EvalConfig, "cluster": C.ClusterConfig}


@pytest.mark.parametrize("name", SECTIONS)
def test_replace_refuses_unknown_names_with_the_section(name):
    noun = "knob" if name == "twin" else "setting"
    with pytest.raises(ConfigError, match=rf"^unknown {name} {noun}\(s\): bar, foo$"):
        SECTIONS[name]().replace(foo=1, bar=2)


@pytest.mark.parametrize("name", SECTIONS)
def test_to_dict_is_every_field_in_order(name):
    cfg = SECTIONS[name]()
    assert list(cfg.to_dict()) == [f.name for f in dataclasses.fields(cfg)]


def test_the_train_key_leaves_out_what_does_not_change_the_weights():
    """group_size and retries split and retry the work: declared on the fields, not in the key."""
    t = C.TrainConfig(group_size=3, retries=0, epochs=2)
    assert {k: v for k, v in t.to_dict().items() if k not in ("group_size", "retries")} == t.key_dict()
    assert list(t.key_dict()) == [k for k in t.to_dict() if k not in ("group_size", "retries")]
    assert t.key_dict() == t.replace(group_size=7, retries=5).key_dict() != t.replace(epochs=3).key_dict()


@pytest.mark.parametrize("name", [n for n in SECTIONS if n != "train"])
def test_every_other_section_keys_all_its_settings(name):
    cfg = SECTIONS[name]()
    assert cfg.key_dict() == cfg.to_dict()


@pytest.mark.parametrize("cls, knobs, msg", [
    (C.BridgeConfig, dict(n_alphas=1, cv_folds=0), "bridge config: invalid value for n_alphas, cv_folds: n_alphas=1, cv_folds=0"),
    (C.TrainConfig, dict(epochs=0, device="tpu"), "train config: invalid value for epochs, device: epochs=0, device='tpu'"),
    (C.InferConfig, dict(clevel=12), "infer config: invalid value for clevel: clevel=12"),
])
def test_invalid_values_are_named_with_their_section(cls, knobs, msg):
    with pytest.raises(ConfigError) as e:
        cls(**knobs)
    assert str(e.value) == msg


def _ingest_toml(path, end_year=2005):
    drivers = "\n".join(f'{n} = "d/{n}.nc"' for n in DRIVER_NAMES)
    path.write_text(f'start_year = 2003\nend_year = {end_year}\n[sites]\nfluxnet = "a/*.csv"\ntable = "s.csv"\n'
                    f'[drivers]\n{drivers}\n[prior]\nfiles = "p.nc"\n[inversions]\nfiles = {{ CAMS = "c.nc" }}\n'
                    f'[fire]\nfiles = "f.nc"\n[gcb]\nfile = "g.csv"\n')
    return path


def test_one_parse_of_an_ingest_toml_serves_every_caller_until_it_changes(tmp_path):
    toml = _ingest_toml(tmp_path / "ingest.toml")
    first = C.load_ingest_config(toml, out=str(tmp_path / "data"))
    assert C.load_ingest_config(str(toml), out=str(tmp_path / "data")) is first
    assert C.load_ingest_config(toml).out == "data"  # other overrides: their own config
    _ingest_toml(toml, end_year=2006)
    assert C.load_ingest_config(toml, out=str(tmp_path / "data")).end_year == 2006
    _ingest_toml(toml, end_year=2001)
    for _ in range(2):  # errors are raised every time, never remembered
        with pytest.raises(ConfigError, match="end_year 2001 is before start_year 2003"):
            C.load_ingest_config(toml)
