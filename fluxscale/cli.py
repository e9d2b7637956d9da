"""The ``fluxscale`` command line (orchestration: parse flags into the config tree, get a
client, call the stages)."""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from .config import PRESETS, ClusterConfig, RunConfig, TwinConfig, twin_preset
from .errors import ConfigError, FluxscaleError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="fluxscale: dual-constraint (EC-ATM) NEE upscaling on Dask.")
console = Console(soft_wrap=True)
err_console = Console(stderr=True)


def _handle_errors(func):
    """Report FluxscaleErrors as one line on stderr and exit with code 2."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except FluxscaleError as e:
            err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None
    return wrapper


def _parse_knobs(items: list[str] | None) -> dict:
    """``name=value`` pairs → typed TwinConfig overrides (types from the dataclass defaults)."""
    out = {}
    defaults = TwinConfig().to_dict()
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected NAME=VALUE")
        k, v = item.split("=", 1)
        if k not in defaults:
            raise ConfigError(f"--set {k}: unknown twin knob")
        typ = type(defaults[k])
        if typ in (tuple, list):
            raise ConfigError(f"--set {k}: cannot be set from the command line")
        try:
            out[k] = typ(v) if typ is not bool else v.lower() in ("1", "true", "yes")
        except ValueError:
            raise ConfigError(f"--set {k}={v}: not a valid {typ.__name__}") from None
    return out


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
):
    """Write a synthetic twin Earth (every store, from a known true NEE) into OUT."""
    from .twin import write_twin

    cfg = twin_preset(preset, seed=seed, **_parse_knobs(set_))
    t0 = time.perf_counter()
    if scheduler:
        from .cluster import cluster_client

        with cluster_client(ClusterConfig(scheduler_address=scheduler, connect_timeout_s=connect_timeout)) as client:
            write_twin(out, cfg, client=client, show_progress=progress, region_mask=region_mask, preset=preset)
    else:
        write_twin(out, cfg, show_progress=progress, region_mask=region_mask, preset=preset)
    console.print(f"twin [bold]{preset}[/] written to {out} in {time.perf_counter() - t0:.1f} s")


@app.command()
@_handle_errors
def info(path: Annotated[Path, typer.Argument(help="A dataset directory or one .zarr store.")]):
    """Summarise a dataset directory or one store: variables, dims, sizes, time span, regions."""
    from .summary import summarize_dataset, summarize_store

    if path.suffix == ".zarr":
        console.print(summarize_store(path), highlight=False)
    else:
        console.print(summarize_dataset(path), highlight=False)


@app.command()
@_handle_errors
def validate(
    path: Annotated[Path, typer.Argument(help="A dataset directory or one .zarr store.")],
    scheduler: Annotated[Optional[str], typer.Option(help="Dask scheduler address (default: threads here).")] = None,
    connect_timeout: TimeoutOpt = 10.0,
):
    """Check every store against the schema, values included (NaN, ranges), in one Dask pass."""
    from .stores import open_store, open_stores

    def go():
        if path.suffix == ".zarr":
            open_store(path, deep=True)
        else:
            open_stores(path, deep=True)

    if scheduler:
        from .cluster import cluster_client

        with cluster_client(ClusterConfig(scheduler_address=scheduler, connect_timeout_s=connect_timeout)):
            go()
    else:
        go()
    console.print(f"[green]valid:[/] {path}")


@app.command()
@_handle_errors
def run(
    data_dir: Annotated[Path, typer.Option(help="Dataset directory (made by the twin if not complete).")] = Path(RunConfig.data_dir),
    preset: PresetOpt = "small",
    seed: Annotated[int, typer.Option(help="Random seed of the twin.")] = 0,
    scheduler: Annotated[Optional[str], typer.Option(help="Dask scheduler address (default: a LocalCluster).")] = None,
    workers: Annotated[int, typer.Option(help="LocalCluster worker processes.")] = 2,
    threads_per_worker: Annotated[int, typer.Option(help="Threads per LocalCluster worker.")] = 1,
    memory_limit: Annotated[str, typer.Option(help="Memory limit per LocalCluster worker.")] = "6GiB",
    reuse: Annotated[bool, typer.Option(help="Reuse a complete twin of the same config in DATA_DIR.")] = True,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    connect_timeout: TimeoutOpt = 10.0,
):
    """The whole pipeline on a Dask cluster. Stages so far: twin → validation → summary."""
    from .pipeline import run_pipeline

    cfg = RunConfig(data_dir=str(data_dir), twin=twin_preset(preset, seed=seed),
                    cluster=ClusterConfig(scheduler_address=scheduler, n_workers=workers,
                                          threads_per_worker=threads_per_worker, memory_limit=memory_limit,
                                          connect_timeout_s=connect_timeout),
                    reuse=reuse)
    report = run_pipeline(cfg, console=console, show_progress=progress, preset=preset)
    console.print(report["summary"], highlight=False)
    console.print(f"[bold green]done[/] in {report['timings_s']['total']:.1f} s; stage timings: "
                  + json.dumps(report["timings_s"]))


def main() -> None:
    """Console-script entry point."""
    app()
