"""The ``fluxscale`` command line (orchestration: parse flags into the config tree, get a
client, call the stages)."""

from __future__ import annotations

import contextlib
import functools
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from fluxscale.config import PRESETS, ClusterConfig, RunConfig, twin_preset
from fluxscale.errors import ConfigError, FluxscaleError
from fluxscale.run import flags

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="fluxscale: dual-constraint (EC-ATM) NEE upscaling on Dask.")
console = Console(soft_wrap=True)
err_console = Console(stderr=True)


@app.callback()
def _boundary() -> None:
    # Runs before every command (also under deploy/launch.py): third-party libraries'
    # warnings stay off the user's terminal (fluxscale.warnfilter says which, and why);
    # FLUXSCALE_WARNINGS=all shows them all.
    import os

    if os.environ.get("FLUXSCALE_WARNINGS", "").lower() != "all":
        from fluxscale.warnfilter import install

        install()


def _this_command() -> str:
    """The command line being run, to repeat to the user (``the same command`` when this is
    not the ``fluxscale`` entry point, e.g. under a test runner)."""
    import shlex
    import sys

    argv0 = Path(sys.argv[0])
    if argv0.name == "fluxscale" or (argv0.name == "__main__.py" and argv0.parent.name == "fluxscale"):
        return "`" + shlex.join(["fluxscale", *sys.argv[1:]]) + "`"
    return "the same command"


def _handle_errors(func):
    """Report FluxscaleErrors and refused file permissions as one line on stderr (exit 2),
    and Ctrl-C as one line (exit 130)."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except FluxscaleError as e:
            # escaped: messages name config sections ("[train]") that rich would take for markup
            err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None
        except PermissionError as e:  # also when raised on a Dask worker and re-raised here
            where = e.filename or "a file or directory"
            err_console.print(f"[bold red]error:[/] {escape(str(where))}: permission denied ({e.strerror or e}); choose a "
                              f"directory you can write to, or fix its permissions", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None
        except KeyboardInterrupt:
            err_console.print(f"interrupted; rerun {escape(_this_command())} to resume (finished stages, members "
                              f"and blocks are kept)", highlight=False, soft_wrap=True)
            raise typer.Exit(code=130) from None
    return wrapper


ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="TOML config file (sections: cluster, twin, bridge, train, infer, evaluate).")]
SchedulerOpt = Annotated[Optional[str], typer.Option(help="Dask scheduler address (default: a LocalCluster).")]


@contextlib.contextmanager
def _stage_client(cc: ClusterConfig | None, describe: bool = False):
    """The client of a stage command: :func:`fluxscale.cluster.client.optional_client` of
    ``cc`` (None: Dask's threads in this process), described on the console when
    ``describe`` and there is one."""
    from fluxscale.cluster.client import describe_client, optional_client

    with optional_client(cc) as client:
        if describe and client is not None:
            console.print(describe_client(client), highlight=False)
        yield client


def _say(message: str) -> None:
    """A stage's message on the console."""
    console.print(message, highlight=False)


def _done(what: str, t0: float) -> None:
    """``WHAT in N.N s`` (seconds since ``t0``) on the console."""
    console.print(f"{what} in {time.perf_counter() - t0:.1f} s")


PresetOpt = Annotated[str, typer.Option(help=f"Twin size: {', '.join(PRESETS)}.")]
TimeoutOpt = Annotated[float, typer.Option(help="Seconds to try reaching --scheduler before failing.")]


@app.command()
@_handle_errors
def twin(
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset directory to write.")],
    preset: PresetOpt = "small",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a twin knob, NAME=VALUE (repeatable).")] = None,
    region_mask: Annotated[Optional[Path], typer.Option(help="Your own 18-region mask NetCDF.")] = None,
    scheduler: Annotated[Optional[str], typer.Option(help="Dask scheduler address (default: threads here).")] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    connect_timeout: TimeoutOpt = 10.0,
    format_: Annotated[str, typer.Option("--format", help="'stores': the Zarr stores; 'files': the real file "
                                         "formats (FLUXNET CSV, NetCDF) plus an ingest.toml for `fluxscale ingest`.")] = "stores",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a complete dataset in OUT made with other "
                                            "settings or by ingest (and what was made from it).")] = False,
    tower_layout: Annotated[str, typer.Option("--tower-layout", help="With --format files: the towers' file layout, "
                                              "fluxnet2015-dd (daily), fluxnet2015-hh, ameriflux-hr, fluxnet2025-hh "
                                              "(with BIF metadata) or icos-hh (with SITEINFO).")] = "fluxnet2015-dd",
):
    """Write a synthetic twin Earth (every store, from a known true NEE) into OUT."""
    from functools import partial

    from fluxscale.cluster.client import optional_client
    from fluxscale.twin import write_twin
    from fluxscale.twin.files import write_twin_files

    if format_ not in ("stores", "files"):
        raise ConfigError(f"--format {format_!r}: choose 'stores' or 'files'")
    from fluxscale.twin.files import TOWER_LAYOUTS

    if tower_layout not in TOWER_LAYOUTS:
        raise ConfigError(f"--tower-layout {tower_layout!r}: choose one of {', '.join(TOWER_LAYOUTS)}")
    if tower_layout != "fluxnet2015-dd" and format_ != "files":
        raise ConfigError("--tower-layout applies to --format files only")
    cfg = twin_preset(preset, seed=seed, **flags.parse_knobs(set_))
    if format_ == "stores":
        from fluxscale.run.data_stage import check_replaces_nothing

        replaced = check_replaces_nothing(out, RunConfig(data_dir=str(out), twin=cfg), overwrite, twin_over_ingest=True)
        if replaced:
            console.print(f"twin: --overwrite: removing what was made from the old dataset: "
                          f"{', '.join(p.name for p in replaced)}", highlight=False)
    t0 = time.perf_counter()
    writer = write_twin if format_ == "stores" else partial(write_twin_files, tower_layout=tower_layout)
    cc = ClusterConfig(scheduler_address=scheduler, connect_timeout_s=connect_timeout) if scheduler else None
    with optional_client(cc) as client:
        result = writer(out, cfg, client=client, show_progress=progress, region_mask=region_mask, preset=preset)
    _done(f"twin [bold]{preset}[/] written to {out}", t0)
    if format_ == "files":
        console.print(f"ingest them with: fluxscale ingest {result}")


@app.command()
@_handle_errors
def info(path: Annotated[Path, typer.Argument(help="A dataset directory or one .zarr store.")]):
    """Summarise a dataset directory or one store: variables, dims, sizes, time span, regions
    (and the bridges' table when there are bridges)."""
    from fluxscale.run.summary import inventory, summarize_store

    # markup=False: "[grid]" and the like are store names, not rich style tags
    if path.suffix == ".zarr":
        console.print(summarize_store(path), highlight=False, markup=False)
    else:
        console.print(inventory(path), highlight=False, markup=False)


@app.command()
@_handle_errors
def validate(
    path: Annotated[Path, typer.Argument(help="A dataset directory or one .zarr store.")],
    scheduler: Annotated[Optional[str], typer.Option(help="Dask scheduler address (default: threads here).")] = None,
    connect_timeout: TimeoutOpt = 10.0,
):
    """Check every store against the schema, values included (NaN, ranges), in one Dask pass."""
    from fluxscale.dataset.stores import open_store, open_stores, read_manifest

    def go():
        if path.suffix == ".zarr":
            open_store(path, deep=True)
        else:
            read_manifest(path)  # a dataset's manifest must read too (it marks the dataset complete)
            open_stores(path, deep=True)

    if scheduler:
        from fluxscale.cluster.client import cluster_client

        with cluster_client(ClusterConfig(scheduler_address=scheduler, connect_timeout_s=connect_timeout)):
            go()
    else:
        go()
    console.print(f"[green]valid:[/] {path}")


@app.command()
@_handle_errors
def run(
    config: ConfigOpt = None,
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", "--out", help=f"Dataset directory, made by the "
                                                     f"twin if not complete (default {RunConfig.data_dir}).")] = None,
    preset: Annotated[Optional[str], typer.Option(help=f"Twin size: {', '.join(PRESETS)} (default small).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed of the twin, the bridges and training (default 0).")] = None,
    scheduler: Annotated[Optional[str], typer.Option(help="Dask scheduler address (default: a LocalCluster).")] = None,
    workers: Annotated[Optional[int], typer.Option(help="LocalCluster worker processes (default 2).")] = None,
    threads_per_worker: Annotated[Optional[int], typer.Option(help="Threads per LocalCluster worker (default 1).")] = None,
    memory_limit: Annotated[Optional[str], typer.Option(help="Memory limit per LocalCluster worker (default 6GiB).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override any setting, SECTION.NAME=VALUE with "
                                                      "SECTION one of twin, bridge, train, infer, evaluate (e.g. "
                                                      "twin.night_bias_tropics=0.4 train.epochs=5); a bare NAME works when "
                                                      "one section has it. Repeatable.")] = None,
    until: Annotated[str, typer.Option(help="Stop after this stage: data, validate, integrals, bridges, train, "
                                             "infer, evaluate.")] = "evaluate",
    reuse: Annotated[bool, typer.Option(help="Reuse a complete twin (or ingest) of the same config in DATA_DIR.")] = True,
    ingest_config: Annotated[Optional[Path], typer.Option("--ingest", help="An ingest TOML: run on these real files "
                                                          "(ingested into DATA_DIR) instead of a twin.")] = None,
    progress: Annotated[bool, typer.Option(help="Show progress: counts and ETA per stage, a live bar on a terminal, "
                                           "a plain line every 15 s (FLUXSCALE_PROGRESS_INTERVAL) in a log "
                                           "file.")] = True,
    connect_timeout: TimeoutOpt = 10.0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a complete dataset in DATA_DIR that was made "
                                            "with other settings (and remove its models, cube and report); "
                                            "without it such a directory is refused.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also print the store inventory at the end "
                                          "(as `fluxscale info DATA_DIR`).")] = False,
):
    """The whole pipeline on a Dask cluster: twin (or ingest) → validation → integrals → DTW,
    clusters, bridges → training (EC, EC-ATM) → inference (the NEE cube) → evaluation (the
    report). A rerun skips the stages whose inputs and config did not change
    (DATA_DIR/stages.json). Settings: the --config file (or defaults), then the flags."""
    from fluxscale.run.pipeline import run_pipeline

    cfg = flags.run_config(data_dir, config, preset=preset, seed=seed, set_=set_, reuse=reuse,
                           ingest_config=ingest_config, scheduler_address=scheduler, n_workers=workers,
                           threads_per_worker=threads_per_worker, memory_limit=memory_limit,
                           connect_timeout_s=connect_timeout)
    report = run_pipeline(cfg, console=console, show_progress=progress, preset=preset, until=until,
                          overwrite=overwrite, verbose=verbose)
    if verbose:
        console.print(report["inventory"], highlight=False, markup=False)
    console.print(f"[bold green]done[/] in {report['timings_s']['total']:.1f} s"
                  + (f"; skipped (unchanged): {', '.join(report['skipped'])}" if report.get("skipped") else ""),
                  highlight=False)
    console.print(report["summary"], highlight=False, markup=False)
    if not verbose:
        console.print(f"store inventory: fluxscale info {cfg.data_dir}", highlight=False, markup=False)


DataDirArg = Annotated[Optional[Path], typer.Argument(help="Dataset directory (default: the config's data_dir).")]


@app.command()
@_handle_errors
def integrals(
    data_dir: DataDirArg = None,
    config: ConfigOpt = None,
    scheduler: SchedulerOpt = None,
    workers: Annotated[Optional[int], typer.Option(help="LocalCluster worker processes.")] = None,
    connect_timeout: TimeoutOpt = 10.0,
    progress: Annotated[bool, typer.Option(help="Show the progress spinner.")] = True,
):
    """Regional monthly integrals (PgC/month) of the prior, the fire-adjusted inversions,
    fire and truth → DATA_DIR/integrals.zarr."""
    from fluxscale.bridges.integrals import compute_integrals
    from fluxscale.dataset.stores import open_store
    from fluxscale.parallel import working
    from fluxscale.run.summary import integrals_table

    cfg = flags.stage_setup("integrals", data_dir, config, None, scheduler, workers, connect_timeout)
    t0 = time.perf_counter()
    with _stage_client(cfg.cluster) as client:
        with working("integrals: streaming the prior, inversions and fire through the regional-sum kernel",
                     progress, console):
            path = compute_integrals(cfg.data_dir, client=client)
    console.print(integrals_table(open_store(path, "integrals")), highlight=False)
    _done(f"integrals written to {path}", t0)


@app.command()
@_handle_errors
def bridge(
    data_dir: DataDirArg = None,
    config: ConfigOpt = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a bridge setting, NAME=VALUE (repeatable).")] = None,
    scheduler: SchedulerOpt = None,
    workers: Annotated[Optional[int], typer.Option(help="LocalCluster worker processes.")] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    connect_timeout: TimeoutOpt = 10.0,
):
    """DTW matrices, spectral clusters, robustness repeats and the Lasso bridge models
    → DATA_DIR/dtw/ and DATA_DIR/bridges.zarr (integrals are made first if missing)."""
    from fluxscale.bridges.build import build_bridges
    from fluxscale.bridges.integrals import compute_integrals
    from fluxscale.dataset.stores import open_store
    from fluxscale.parallel import working
    from fluxscale.run.stages import stage_named
    from fluxscale.run.summary import bridge_table

    cfg = flags.stage_setup("bridge", data_dir, config, set_, scheduler, workers, connect_timeout)
    t0 = time.perf_counter()
    with _stage_client(cfg.cluster) as client:
        if not stage_named("integrals").found_at(cfg.data_dir).exists():
            with working("integrals: not found, computing them first", progress, console):
                compute_integrals(cfg.data_dir, client=client)
        path = build_bridges(cfg.data_dir, cfg.bridge, client=client, show_progress=progress, say=_say)
    console.print(bridge_table(open_store(path, "bridges")), highlight=False)
    _done(f"bridges written to {path}", t0)


@app.command()
@_handle_errors
def ingest(
    config: Annotated[Path, typer.Argument(help="Ingest TOML file (see docs/ingest.md).")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Dataset directory (default: the config's out).")] = None,
    scheduler: SchedulerOpt = None,
    workers: Annotated[Optional[int], typer.Option(help="LocalCluster worker processes (default: threads here).")] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    connect_timeout: TimeoutOpt = 10.0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a complete dataset in the output directory "
                                            "made otherwise (a twin, or another ingest config).")] = False,
):
    """Read real files (FLUXNET2015 daily CSVs, FLUXCOM, GCB inversions, GFAS fire, drivers,
    region mask) into validated stores, with a summary of what was read and skipped."""
    from fluxscale.cluster.client import optional_client
    from fluxscale.config import load_ingest_config
    from fluxscale.ingest import ingest as run_ingest
    from fluxscale.run.data_stage import check_replaces_nothing

    cfg = load_ingest_config(config, **({"out": str(out.resolve())} if out else {}))
    replaced = check_replaces_nothing(Path(cfg.out), RunConfig(data_dir=str(cfg.out), ingest=str(config)), overwrite)
    if replaced:
        console.print(f"ingest: --overwrite: removing what was made from the old dataset: "
                      f"{', '.join(p.name for p in replaced)}", highlight=False)
    t0 = time.perf_counter()
    cc = ClusterConfig(scheduler_address=scheduler, connect_timeout_s=connect_timeout,
                       **({"n_workers": workers} if workers else {})) if scheduler or workers else None
    with optional_client(cc) as client:
        report = run_ingest(cfg, client=client, show_progress=progress, say=_say)
    console.print(report.text(), highlight=False)
    _done(f"ingested into {report['out']}", t0)


@app.command()
@_handle_errors
def train(
    data_dir: DataDirArg = None,
    config: ConfigOpt = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a train setting, NAME=VALUE "
                                                      "(repeatable; lists comma-separated, e.g. folds=0,1 systems=CAMS).")] = None,
    scheduler: SchedulerOpt = None,
    workers: Annotated[Optional[int], typer.Option(help="LocalCluster worker processes.")] = None,
    threads_per_worker: Annotated[Optional[int], typer.Option(help="Threads per LocalCluster worker (= torch threads).")] = None,
    local: Annotated[bool, typer.Option("--local", help="Train in this process, every member in one group (no Dask).")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    connect_timeout: TimeoutOpt = 10.0,
):
    """Train the EC and EC-ATM ensembles (members trained together in groups, one Dask task
    per group) → DATA_DIR/models/ (checkpoints, logs/<member>.csv, members.json). Needs the
    bridges (`fluxscale bridge`)."""
    from fluxscale.learn.ensemble import train_ensemble

    cfg = flags.stage_setup("train", data_dir, config, set_, scheduler, workers, connect_timeout, threads_per_worker)
    t0 = time.perf_counter()
    with _stage_client(None if local else cfg.cluster) as client:
        summary = train_ensemble(cfg.data_dir, cfg.train, client=client, show_progress=progress, say=_say)
    _done(f"{len(summary['members'])} members written to {Path(cfg.data_dir) / 'models'}", t0)


@app.command()
@_handle_errors
def infer(
    data_dir: DataDirArg = None,
    config: ConfigOpt = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override an infer setting, NAME=VALUE "
                                                      "(repeatable; e.g. members=ecatm-fold0,ec-fold0 write_members=true).")] = None,
    scheduler: SchedulerOpt = None,
    workers: Annotated[Optional[int], typer.Option(help="LocalCluster worker processes.")] = None,
    threads_per_worker: Annotated[Optional[int], typer.Option(help="Threads per LocalCluster worker (blocks run at once).")] = None,
    local: Annotated[bool, typer.Option("--local", help="Run the blocks on threads in this process (no cluster).")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    connect_timeout: TimeoutOpt = 10.0,
):
    """Run every trained member over every land cell and day → DATA_DIR/nee.zarr (daily and
    monthly ensemble mean and spread, gridded; open with xarray.open_zarr). Resumes an
    interrupted run; a rerun with the same models and drivers writes nothing."""
    from fluxscale.infer.stage import infer as run_infer

    cfg = flags.stage_setup("infer", data_dir, config, set_, scheduler, workers, connect_timeout, threads_per_worker)
    with _stage_client(None if local else cfg.cluster, describe=True) as client:
        run_infer(cfg.data_dir, cfg.infer, client=client, show_progress=progress, say=_say)


@app.command("one-against-many")
@_handle_errors
def one_against_many(
    data_dir: DataDirArg = None,
    config: ConfigOpt = None,
    systems: Annotated[Optional[list[str]], typer.Option("--systems", help="A group of inversion systems to train "
                                                         "on, comma-separated (repeatable; default: each system "
                                                         "alone, --pairs pairs and --triples triples).")] = None,
    pairs: Annotated[int, typer.Option(help="Random pairs of systems (Fig. C4) when --systems is not given.")] = 2,
    triples: Annotated[int, typer.Option(help="Random triples (Fig. C5) when --systems is not given.")] = 1,
    folds: Annotated[str, typer.Option(help="EC-ATM members per set, by fold (comma-separated).")] = "0",
    seed: Annotated[int, typer.Option(help="Seed of the random pairs and triples.")] = 0,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a train or infer setting, "
                                                      "SECTION.NAME=VALUE (e.g. train.epochs=10).")] = None,
    scheduler: SchedulerOpt = None,
    workers: Annotated[Optional[int], typer.Option(help="LocalCluster worker processes.")] = None,
    threads_per_worker: Annotated[Optional[int], typer.Option(help="Threads per LocalCluster worker.")] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    connect_timeout: TimeoutOpt = 10.0,
):
    """The one-against-many sensitivity runs (paper §3.6): EC-ATM trained on one inversion
    system, a pair or a triple → DATA_DIR/models/sets/<A+B>/ and DATA_DIR/nee-<A+B>.zarr.
    `fluxscale evaluate` then draws Figs. C3–C5 and the 'oam' table."""
    from fluxscale.dataset.stores import open_store
    from fluxscale.learn.model import models_dir
    from fluxscale.run.one_against_many import choose_sets, run_one_against_many
    from fluxscale.run.stages import stage_named

    cfg = flags.stage_config(data_dir, config, scheduler_address=scheduler, n_workers=workers,
                        threads_per_worker=threads_per_worker, connect_timeout_s=connect_timeout if scheduler else None)
    sets_ = flags.parse_run_sets(set_, cfg)
    bad = set(sets_) - {"train", "infer"}
    if bad:
        raise ConfigError(f"--set: one-against-many takes train and infer settings, not {', '.join(sorted(bad))}")
    try:
        fold_list = tuple(int(f) for f in folds.split(",") if f.strip())
    except ValueError:
        raise ConfigError(f"--folds {folds!r}: expected comma-separated integers") from None
    train_cfg = cfg.train.replace(**{"folds": fold_list, **sets_.get("train", {})})
    infer_cfg = cfg.infer.replace(**sets_.get("infer", {}))
    integrals = stage_named("integrals")
    path = integrals.found_at(cfg.data_dir)
    if not path.exists():
        raise ConfigError(f"{path}: {integrals.missing}; {integrals.advice(cfg.data_dir)}")
    known = [str(s) for s in open_store(path, "integrals").system.values]
    if systems:
        groups = [tuple(x.strip() for x in g.split(",") if x.strip()) for g in systems]
        for g in groups:
            unknown = [x for x in g if x not in known]
            if unknown or not g:
                raise ConfigError(f"--systems {','.join(g)}: " + (f"{', '.join(unknown)} not among the inversion "
                                  f"systems of {path} ({', '.join(known)})" if unknown else "empty"))
    else:
        groups = choose_sets(known, pairs=pairs, triples=triples, seed=seed)
    with _stage_client(cfg.cluster, describe=True) as client:
        done = run_one_against_many(cfg.data_dir, groups, train_cfg, infer_cfg, client=client,
                                    show_progress=progress, say=_say)
    for name, d in done.items():
        console.print(f"{name}: {len(d['members'])} member(s) in {models_dir(cfg.data_dir, name)}, "
                      f"cube {d['cube']}", highlight=False)
    console.print(f"draw Figs. C3–C5 with: fluxscale evaluate {cfg.data_dir}", highlight=False)


@app.command()
@_handle_errors
def evaluate(
    data_dir: DataDirArg = None,
    config: ConfigOpt = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override an evaluate setting, NAME=VALUE "
                                                      "(repeatable; e.g. out=report-2 maps=false).")] = None,
    scheduler: SchedulerOpt = None,
    workers: Annotated[Optional[int], typer.Option(help="Start a LocalCluster of this many worker processes "
                                                   "(default: compute in this process).")] = None,
    connect_timeout: TimeoutOpt = 10.0,
):
    """Evaluate the NEE cube against the inversions, GCB, the towers (and a twin's truth):
    the paper's tables (CSV, markdown, summary.json), figures (PNG) and a self-contained
    HTML report → DATA_DIR/report/. Runs in this process unless --scheduler or --workers."""
    from fluxscale.evaluate.report import evaluate as run_evaluate

    cfg = flags.stage_setup("evaluate", data_dir, config, set_, scheduler, workers, connect_timeout)
    with _stage_client(cfg.cluster if (scheduler or workers) else None, describe=True) as client:
        run_evaluate(cfg.data_dir, cfg.evaluate, client=client, say=_say)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                               "allow_interspersed_args": False})
@_handle_errors
def cluster(
    ctx: typer.Context,
    stage: Annotated[str, typer.Argument(help=f"The command to run on the cluster: {', '.join(flags.CLUSTER_STAGES)}; "
                                         "everything after it is its own arguments.")],
    config: ConfigOpt = None,
    kind: Annotated[Optional[str], typer.Option(help="local, existing, slurm, pbs, kubernetes or ssh "
                                                "(default: the config's, else local).")] = None,
    scheduler: Annotated[Optional[str], typer.Option(help="Connect to this scheduler (kind existing).")] = None,
    scheduler_file: Annotated[Optional[Path], typer.Option(help="Connect through this scheduler file.")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Worker processes (local, ssh per host), jobs (slurm, "
                                                   "pbs) or pods (kubernetes).")] = None,
    threads_per_worker: Annotated[Optional[int], typer.Option(help="Threads per worker.")] = None,
    memory_limit: Annotated[Optional[str], typer.Option(help="Memory per worker, e.g. 6GiB.")] = None,
    wait_workers: Annotated[Optional[int], typer.Option(help="Workers to wait for before running.")] = None,
    wait_timeout: Annotated[Optional[float], typer.Option(help="Seconds to wait for them before failing.")] = None,
    connect_timeout: Annotated[Optional[float], typer.Option(help="Seconds to try reaching the scheduler.")] = None,
    jobqueue_config: Annotated[Optional[Path], typer.Option(help="slurm/pbs: dask-jobqueue YAML merged into "
                                                            "dask.config.")] = None,
    job: Annotated[Optional[list[str]], typer.Option(help="slurm/pbs: a jobqueue keyword, KEY=VALUE (repeatable; "
                                                     "wins over the YAML), e.g. cores=8 account=proj.")] = None,
    ssh_host: Annotated[Optional[list[str]], typer.Option(help="ssh: a host (repeatable; the first runs the "
                                                          "scheduler).")] = None,
    ssh_port: Annotated[Optional[int], typer.Option(help="ssh: the sshd port.")] = None,
    ssh_user: Annotated[Optional[str], typer.Option(help="ssh: the login name.")] = None,
    ssh_key: Annotated[Optional[Path], typer.Option(help="ssh: the client's private key file.")] = None,
    ssh_known_hosts: Annotated[Optional[Path], typer.Option(help="ssh: a known_hosts file with the hosts' "
                                                            "keys.")] = None,
    host: Annotated[Optional[str], typer.Option(help="Address the scheduler, workers and dashboard bind to "
                                                "(default 127.0.0.1; slurm/pbs: or set interface).")] = None,
    image: Annotated[Optional[str], typer.Option(help="kubernetes: the fluxscale image.")] = None,
    namespace: Annotated[Optional[str], typer.Option(help="kubernetes: the namespace.")] = None,
    gpu: Annotated[Optional[bool], typer.Option("--gpu/--no-gpu", help="Workers declare GPU=1 (one worker per "
                                                "GPU).")] = None,
    tls_ca_file: Annotated[Optional[Path], typer.Option(help="TLS: CA certificate (PEM).")] = None,
    tls_cert: Annotated[Optional[Path], typer.Option(help="TLS: certificate (PEM).")] = None,
    tls_key: Annotated[Optional[Path], typer.Option(help="TLS: private key (PEM).")] = None,
    performance_report: Annotated[Optional[Path], typer.Option(help="Dask performance report (inline HTML) "
                                                               "of the run; default performance-STAGE.html; "
                                                               "'' for none.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would be started (job script, "
                                          "Kubernetes manifests, settings) and exit.")] = False,
):
    """The scheduler script: build (local, SLURM, PBS, Kubernetes, SSH) or connect to (an
    address or scheduler file) a Dask cluster, wait for its workers, show the dashboard and
    run STAGE on it with a Dask performance report. Also `python deploy/launch.py`."""
    import dask
    from distributed import performance_report as perf_report

    from fluxscale.cluster.client import cluster_client, describe_client, strip_network_references
    from fluxscale.cluster.security import tls_dask_config

    args = flags.stage_arguments(stage, ctx.args, config)
    cc = flags.cluster_config(
        config, job, kind=kind, scheduler_address=scheduler, scheduler_file=scheduler_file, n_workers=workers,
        threads_per_worker=threads_per_worker, memory_limit=memory_limit, wait_workers=wait_workers,
        wait_timeout_s=wait_timeout, connect_timeout_s=connect_timeout, jobqueue_config=jobqueue_config,
        ssh_hosts=ssh_host, ssh_port=ssh_port, ssh_user=ssh_user, ssh_key_file=ssh_key, ssh_known_hosts=ssh_known_hosts,
        host=host, k8s_image=image, k8s_namespace=namespace, gpu=gpu, tls_ca_file=tls_ca_file, tls_cert_file=tls_cert,
        tls_key_file=tls_key)
    if dry_run:
        console.print(flags.dry_run(cc, stage, args), highlight=False, markup=False, soft_wrap=True)
        return
    report = Path(performance_report if performance_report is not None
                  else cc.performance_report or f"performance-{stage}.html")
    t0 = time.perf_counter()
    with dask.config.set(tls_dask_config(cc)), cluster_client(cc) as client:
        console.print(describe_client(client), highlight=False)
        addr = client.scheduler.address
        stage_args = [stage, *args] + ([] if "--scheduler" in args else ["--scheduler", addr])
        console.print(f"cluster: fluxscale {' '.join(stage_args)}", highlight=False)
        with (perf_report(filename=str(report), mode="inline") if str(report) not in ("", ".")
              else contextlib.nullcontext()):
            code = _invoke(stage_args)
    if str(report) not in ("", ".") and report.exists():
        strip_network_references(report)
        console.print(f"cluster: Dask performance report at {report.resolve()}", highlight=False)
    console.print(f"cluster: {stage} finished with exit code {code} in {time.perf_counter() - t0:.1f} s",
                  highlight=False)
    if code:
        raise typer.Exit(code=code)


@app.command()
@_handle_errors
def certs(
    out: Annotated[Path, typer.Argument(help="Directory for ca.pem, cert.pem and key.pem.")],
    host: Annotated[Optional[list[str]], typer.Option(help="Host name or IP the certificate is valid for "
                                                      "(repeatable; default 127.0.0.1 and localhost).")] = None,
    days: Annotated[int, typer.Option(help="Days of validity.")] = 7,
):
    """A throwaway CA and one certificate signed by it, for trying TLS (the CA's key is not
    kept). Use with --tls-ca-file/--tls-cert/--tls-key of `fluxscale cluster` and of `dask
    scheduler` / `dask worker`. For production, use your site's CA."""
    from fluxscale.cluster.security import make_test_certificates

    paths = make_test_certificates(out, tuple(host) if host else ("127.0.0.1", "localhost"), days=days)
    console.print(f"CA {paths['ca']}, certificate {paths['cert']}, key {paths['key']} (mode 0600), valid "
                  f"{days} days", highlight=False)


def _invoke(args: list[str]) -> int:
    """Run a fluxscale command in this process; its exit code."""
    import click

    try:
        rv = app(args, standalone_mode=False)
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    return rv if isinstance(rv, int) else 0


def main() -> None:
    """Console-script entry point."""
    app()
