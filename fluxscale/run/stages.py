"""The stage graph as data: one table of the pipeline's stages (orchestration only).

Each :class:`Stage` names what it reads (``inputs``), what it writes (``outputs``), the
config section whose settings are in its key, the command that makes it and the function
that does its work. ``fluxscale run`` (:func:`fluxscale.run.pipeline.run_pipeline`) runs the
table in order; the stage commands check their prerequisites from it (:func:`first_missing`,
before any cluster starts); ``fluxscale info`` and the end-of-run summary
(:mod:`fluxscale.run.summary`) read it.

The stages, in order (:data:`STAGES`)::

    data → validate
    data → integrals → bridges → train → infer → evaluate
    (train also reads data and integrals; infer data and integrals (the layer); evaluate data
    and integrals)

A stage's key (``stages.json``) hashes its key settings (:meth:`Stage.key_settings`) and the
key of its last input, which lies downstream of every other input, so a changed setting or
rewritten input changes every key after it.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from fluxscale.config import RunConfig
from fluxscale.dataset.stores import MANIFEST, open_stores, store_path
from fluxscale.run.data_stage import make_data

__all__ = ["Stage", "StageRun", "STAGE_TABLE", "STAGES", "stage_named", "stage_of_command", "first_missing"]


@dataclass
class StageRun:
    """What a stage's work gets from the run: the data directory, the run config, the run's
    client (``client()``: started at the first stage that has work to do, so a rerun that
    skips every stage starts no cluster), where to say things, and
    ``record_timings()`` (the stage times so far into ``stages.json``, for the report)."""

    root: Path
    cfg: RunConfig
    client: Callable[[], Any]
    say: Callable[[str], None]
    console: Any = None
    show_progress: bool = True
    preset: Optional[str] = None
    record_timings: Callable[[], None] = lambda: None

    @property
    def spinner(self) -> bool:
        """Show :func:`fluxscale.parallel.working` spinners (a console and progress wanted)."""
        return self.console is not None and self.show_progress


@dataclass(frozen=True)
class Stage:
    """One stage of the pipeline.

    name
        As in ``stages.json``, ``--until`` and the stage-time table.
    inputs
        The stages whose outputs it reads, in pipeline order; the last one's key is in
        this stage's key.
    outputs
        ``(data_dir, run config) → paths``: what ``fluxscale run`` checks before skipping the
        stage and records (relative paths resolved under the data directory).
    section
        The config section whose settings are in the key (None: no settings; the data
        stage's key is its manifest).
    command
        The command that makes it, ``{d}`` the data directory.
    work
        ``(StageRun, settings, key) → ...``: runs the stage (calls the stage function).
    hint
        What to tell a command that lacks this stage's output (``{command}``, ``{d}``).
    found
        ``(data_dir, run config) → path``: where the commands that read this stage look
        for it (the readers' settings may name it: ``infer``'s ``model_set``, ``evaluate``'s
        ``cube``).
    missing
        The word for a missing output.
    made_if_missing
        Inputs that the stage's command makes itself when they are missing.
    settings_of
        ``(run config, section) → settings`` when the stage gets its section adjusted.
    """

    name: str
    inputs: tuple[str, ...]
    outputs: Callable[[Path, RunConfig], list[Path]]
    section: Optional[str]
    command: str
    work: Callable[..., Any]
    hint: str = "run `{command}` first"
    found: Optional[Callable[[Path, RunConfig], Path]] = None
    missing: str = "not found"
    made_if_missing: tuple[str, ...] = ()
    settings_of: Optional[Callable[[RunConfig, Any], Any]] = None

    @property
    def upstream(self) -> Optional[str]:
        """The input whose key is in this stage's key (None for the data stage)."""
        return self.inputs[-1] if self.inputs else None

    @property
    def verb(self) -> str:
        """The ``fluxscale`` subcommand that makes it (``bridge`` for ``bridges``)."""
        return self.command.split()[1]

    def settings(self, cfg: RunConfig) -> Any:
        """The config section the stage runs with (None without a section)."""
        if self.section is None:
            return None
        section = getattr(cfg, self.section)
        return self.settings_of(cfg, section) if self.settings_of else section

    def key_settings(self, cfg: RunConfig) -> dict:
        """The settings hashed into the stage's key (:func:`_key_settings`)."""
        return _key_settings(self.settings(cfg))

    def paths(self, root: str | Path, cfg: RunConfig) -> list[Path]:
        """:attr:`outputs` under ``root``."""
        return self.outputs(Path(root), cfg)

    def found_at(self, root: str | Path, cfg: Optional[RunConfig] = None) -> Path:
        """Where readers of this stage look for it (its first output when :attr:`found`
        is not given); ``cfg`` defaults to the default run config."""
        cfg = cfg if cfg is not None else RunConfig()
        return self.found(Path(root), cfg) if self.found else self.paths(root, cfg)[0]

    def advice(self, d) -> str:
        """The hint for a directory ``d`` that lacks this stage's output."""
        return self.hint.format(command=self.command.format(d=d), d=d)


def _key_settings(settings) -> dict:
    """A stage's settings as hashed into its key: the section's ``key_dict()`` (its
    ``to_dict()`` less the settings declared not to change the stage's output, e.g. train's
    ``group_size`` and ``retries``: ``fluxscale.config.base.NOT_IN_KEY``); ``{}`` for a stage
    without settings."""
    return {} if settings is None else settings.key_dict()


# --- where each stage's output is --------------------------------------------------------------

def _grid(root: Path, cfg: RunConfig) -> Path:
    return store_path(root, "grid")


def _store(name: str) -> Callable[[Path, RunConfig], list[Path]]:
    return lambda root, cfg: [store_path(root, name)]


def _members(root: Path, cfg: RunConfig) -> list[Path]:
    from fluxscale.learn.model import models_dir

    return [models_dir(root) / "members.json"]


def _members_read_by_infer(root: Path, cfg: RunConfig) -> Path:
    from fluxscale.learn.model import models_dir

    return models_dir(root, cfg.infer.model_set) / "members.json"


def _cube(root: Path, cfg: RunConfig) -> list[Path]:
    from fluxscale.infer.cube import cube_path

    return [cube_path(root, cfg.infer)]


def _cube_read_by_evaluate(root: Path, cfg: RunConfig) -> Path:
    cube = Path(cfg.evaluate.cube)
    return cube if cube.is_absolute() else root / cfg.evaluate.cube


def _report(root: Path, cfg: RunConfig) -> list[Path]:
    out = Path(cfg.evaluate.out)
    return [(out if out.is_absolute() else root / cfg.evaluate.out) / "report.html"]


def _evaluate_the_run_cube(cfg: RunConfig, section):
    return section.replace(cube=cfg.infer.out)  # both relative to the data directory


# --- each stage's work (the stage functions are imported when the stage runs) ----------------

def _validate(run: StageRun, _settings=None, _key=None) -> None:
    from fluxscale.parallel import working

    run.client()
    with working("validate: checking every value of every store (one Dask pass)", run.spinner, run.console):
        open_stores(run.root, deep=True)
    run.say(f"validate: every store of {run.root} matches the schema")


def _integrals(run: StageRun, _settings=None, _key=None) -> None:
    from fluxscale.bridges.integrals import compute_integrals
    from fluxscale.parallel import working

    with working("integrals: regional sums of the prior, inversions and fire (one Dask pass)", run.spinner,
                 run.console):
        path = compute_integrals(run.root, client=run.client())
    run.say(f"integrals: {path}")


def _bridges(run: StageRun, settings, _key=None) -> None:
    from fluxscale.bridges.build import build_bridges

    run.say(f"bridges: {build_bridges(run.root, settings, client=run.client(), show_progress=run.show_progress, say=run.say)}")


def _train(run: StageRun, settings, key: str) -> None:
    from fluxscale.learn.ensemble import train_ensemble

    train_ensemble(run.root, settings, client=run.client(), show_progress=run.show_progress, say=run.say,
                   resume_key=key)


def _infer(run: StageRun, settings, _key=None) -> None:
    from fluxscale.infer.stage import infer

    infer(run.root, settings, client=run.client(), show_progress=run.show_progress, say=run.say)


def _evaluate(run: StageRun, settings, _key=None) -> None:
    from fluxscale.evaluate.report import evaluate
    from fluxscale.parallel import working

    run.record_timings()  # for the report's provenance
    with working("evaluate: tables, figures and the report", run.spinner, run.console):
        evaluate(run.root, settings, client=run.client(), say=run.say)


STAGE_TABLE: tuple[Stage, ...] = (
    Stage("data", (), lambda root, cfg: [root / MANIFEST], None, "fluxscale twin --out {d}", make_data,
          hint="make the dataset first with `{command}` (a synthetic twin) or `fluxscale ingest INGEST.toml "
               "--out {d}` (real files)", found=_grid, missing="store not found"),
    Stage("validate", ("data",), lambda root, cfg: [root / MANIFEST], None, "fluxscale validate {d}", _validate),
    Stage("integrals", ("data",), _store("integrals"), None, "fluxscale integrals {d}", _integrals),
    Stage("bridges", ("data", "integrals"), _store("bridges"), "bridge", "fluxscale bridge {d}", _bridges,
          made_if_missing=("integrals",)),
    Stage("train", ("data", "integrals", "bridges"), _members, "train", "fluxscale train {d}", _train,
          hint="train the ensembles first with `{command}`", found=_members_read_by_infer),
    Stage("infer", ("data", "integrals", "train"), _cube, "infer", "fluxscale infer {d}", _infer,
          hint="run `{command}` first (the NEE cube)", found=_cube_read_by_evaluate),
    Stage("evaluate", ("data", "integrals", "infer"), _report, "evaluate", "fluxscale evaluate {d}", _evaluate,
          settings_of=_evaluate_the_run_cube),
)
"""The pipeline's stages, in the order they run."""

STAGES: tuple[str, ...] = tuple(map(operator.attrgetter("name"), STAGE_TABLE))
"""The stage names in order: data, validate, integrals, bridges, train, infer, evaluate."""

_BY_NAME = {s.name: s for s in STAGE_TABLE}


def stage_named(name: str) -> Stage:
    """The stage called ``name`` (KeyError for another name)."""
    return _BY_NAME[name]


def stage_of_command(verb: str) -> Stage:
    """The stage that ``fluxscale VERB`` makes (``bridge`` → ``bridges``)."""
    return next(s for s in STAGE_TABLE if s.verb == verb)


def first_missing(stage: Stage, root: str | Path, cfg: RunConfig) -> Optional[tuple[Path, str, str]]:
    """The first input of ``stage`` (in pipeline order) that ``root`` lacks, as ``(path,
    what is missing, the hint naming the command that makes it)``; None when every input
    its command needs is there (those it makes itself when missing are not checked)."""
    root = Path(root)
    for name in stage.inputs:
        if name in stage.made_if_missing:
            continue
        need = _BY_NAME[name]
        if name == "data" and not root.is_dir():
            return root, "dataset directory not found", need.advice(root)
        path = need.found_at(root, cfg)
        if not path.exists():
            return path, need.missing, need.advice(root)
    return None
