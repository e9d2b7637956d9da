"""Help that works (issue 23): every example in the commands' ``--help`` and in README.md's
command blocks is accepted by the command it is shown for; a stage command on a directory
that lacks an earlier stage's output names the command that makes it before any cluster
starts; the twin's preset is recorded."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from fluxscale.run.cli import app
from fluxscale.run.flags import parse_knobs, parse_run_sets
from fluxscale.config import (BridgeConfig, EvalConfig, InferConfig, RunConfig, TrainConfig, TwinConfig, preset_name,
                              twin_preset)

ROOT = Path(__file__).resolve().parents[2]
GROUP = typer.main.get_command(app)

# how each command reads its --set NAME=VALUE (the functions the commands call)
SET_PARSERS = {
    "run": lambda item: parse_run_sets([item], RunConfig()),
    "one-against-many": lambda item: parse_run_sets([item], RunConfig()),
    "twin": lambda item: parse_knobs([item], TwinConfig()),
    "bridge": lambda item: parse_knobs([item], BridgeConfig(), "bridge setting"),
    "train": lambda item: parse_knobs([item], TrainConfig(), "train setting"),
    "infer": lambda item: parse_knobs([item], InferConfig(), "infer setting"),
    "evaluate": lambda item: parse_knobs([item], EvalConfig(), "evaluate setting"),
}
SETTING = re.compile(r"(?<![\w.-])([a-z_]+(?:\.[a-z_]+)?=[\w.,:+-]+)")


def _options(command: str) -> set[str]:
    return {o for p in GROUP.commands[command].params for o in (*p.opts, *p.secondary_opts)}


def _help_examples() -> list[tuple[str, str]]:
    """``(command, NAME=VALUE)`` for every example in the help of a --set option."""
    out = []
    for name, cmd in GROUP.commands.items():
        for p in cmd.params:
            if "--set" in getattr(p, "opts", ()) and p.help and "e.g." in p.help:
                out += [(name, m) for m in SETTING.findall(p.help.split("e.g.", 1)[1])]
    return out


def test_the_help_shows_examples_and_every_one_is_accepted():
    examples = _help_examples()
    assert {c for c, _ in examples} >= {"run", "train", "infer", "evaluate", "one-against-many"}, examples
    for command, item in examples:
        SET_PARSERS[command](item)  # raises ConfigError (exit 2 on the command line) when refused


def test_every_command_help_runs():
    for name in GROUP.commands:
        res = CliRunner().invoke(app, [name, "--help"])
        assert res.exit_code == 0 and "Usage" in res.output, (name, res.output)


def _readme_commands() -> list[tuple[str, str]]:
    """``(command, text)`` for every ``fluxscale COMMAND`` line of README.md's code blocks,
    with the comment and continuation lines that follow it."""
    text = (ROOT / "README.md").read_text()
    out: list[list[str]] = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        current = None  # the command that an indented line continues
        for line in block.splitlines():
            m = re.search(r"(?:^|&& )fluxscale ([a-z-]+)(.*)$", line)
            if m:
                current = [m.group(1), m.group(2)]
                out.append(current)
            elif current is not None and line.startswith(" "):
                current[1] += " " + line
            else:
                current = None
    return [(c, t) for c, t in out]


def test_every_readme_command_line_uses_real_options_and_accepted_settings():
    lines = _readme_commands()
    assert len(lines) >= 15 and {"run", "twin", "train", "infer", "evaluate", "info"} <= {c for c, _ in lines}
    n_sets = 0
    for command, text in lines:
        assert command in GROUP.commands, command
        res = CliRunner().invoke(app, [command, "--help"])
        assert res.exit_code == 0, (command, res.output)
        code = text.split("#", 1)[0]
        for opt in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", code):
            assert opt in _options(command), (command, opt, text)
        # --set examples, also in the comments (a `--set NAME=VALUE` there is an example too)
        for item in re.findall(r"--set (\S+=\S+)", text):
            item = item.strip("[]")
            if item in ("KNOB=VALUE", "SECTION.NAME=VALUE"):
                continue
            SET_PARSERS[command](item)
            n_sets += 1
        for choice in re.findall(r"--preset \{([a-z,]+)\}", code):
            for p in choice.split(","):
                twin_preset(p)
    assert n_sets >= 8


@pytest.mark.parametrize("command", ["integrals", "bridge", "train", "infer", "evaluate"])
def test_a_stage_command_on_an_empty_directory_names_what_to_run_before_starting_a_cluster(command, tmp_path,
                                                                                            monkeypatch):
    import fluxscale.cluster

    def no_cluster(*a, **k):
        raise RuntimeError("a cluster was started")

    monkeypatch.setattr(fluxscale.cluster.client, "cluster_client", no_cluster)
    monkeypatch.setattr(fluxscale.cluster.client, "optional_client", no_cluster)
    res = CliRunner().invoke(app, [command, str(tmp_path), "--no-progress"] if command in ("integrals", "bridge")
                             else [command, str(tmp_path)])
    assert res.exit_code == 2, res.output
    assert f"{tmp_path / 'grid.zarr'}: store not found" in res.output
    assert f"`fluxscale twin --out {tmp_path}`" in res.output and "Traceback" not in res.output


def test_a_missing_earlier_output_is_named_with_the_command_that_makes_it(tiny_twin, tmp_path, monkeypatch):
    import fluxscale.cluster

    monkeypatch.setattr(fluxscale.cluster.client, "optional_client", lambda *a, **k: pytest.fail("cluster"))
    d = tmp_path / "d"
    d.mkdir()
    (d / "grid.zarr").symlink_to(tiny_twin / "grid.zarr")
    for command, missing, maker in (("train", "integrals.zarr", "fluxscale integrals"),
                                    ("infer", "integrals.zarr", "fluxscale integrals"),  # the layer reads it
                                    ("evaluate", "integrals.zarr", "fluxscale integrals")):
        res = CliRunner().invoke(app, [command, str(d)])
        assert res.exit_code == 2 and f"{d / missing}: not found" in res.output and f"`{maker} {d}`" in res.output, \
            (command, res.output)


def test_the_twin_records_its_preset_also_without_a_preset_flag(tiny_twin):
    """`fluxscale run` without --preset passed preset=None: the manifest said so. The name
    is now derived from the config."""
    assert preset_name(twin_preset("small", seed=7)) == "small"
    assert preset_name(twin_preset("tiny", n_sites=37)) == "tiny with n_sites=37"
    assert preset_name(twin_preset("small", resolution_deg=3.0, inversion_resolution_deg=6.0)) == "custom"
    man = json.loads((tiny_twin / "fluxscale.json").read_text())
    assert man["preset"] == "tiny" and preset_name(man["config"]) == "tiny"


def test_write_twin_without_a_preset_records_the_one_its_config_is(tmp_path):
    from fluxscale.twin import write_twin

    out = write_twin(tmp_path / "t", twin_preset("tiny", n_sites=12), show_progress=False)
    man = json.loads((Path(out) / "fluxscale.json").read_text())
    assert man["preset"] == "tiny with n_sites=12"
