"""The layout's rules (issue 30), read from the imports of every module, so that the layout
cannot drift back: one package per stage, no import circles, no other module's private
names, stages that import only what lies below them, ``__init__`` files that only re-export,
numba kernels apart from I/O, modules of one idea; and the old module paths still work.

Every rule is also shown failing on a made-up import graph (``test_each_rule_can_fail``)."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "fluxscale"

BASE = "base"  # errors, parallel, warnfilter, _moved, fluxscale/__init__.py
ALLOWED: dict[str, set[str]] = {
    BASE: set(),
    "dataset": {BASE},
    "config": {BASE, "dataset"},
    "ingest": {BASE, "dataset", "config"},
    "twin": {BASE, "dataset", "config", "ingest"},  # the twin writes files in the layouts ingest reads
    "bridges": {BASE, "dataset", "config"},
    "learn": {BASE, "dataset", "config"},
    "infer": {BASE, "dataset", "config", "learn"},
    "evaluate": {BASE, "dataset", "config", "bridges", "learn", "infer"},
    "cluster": {BASE, "config"},
    "run": {BASE, "dataset", "config", "ingest", "twin", "bridges", "learn", "infer", "evaluate", "cluster"},
}
"""Which packages each package may import (its own always). Orchestration (``run``) is the
only one that imports ``cluster``: no stage builds a cluster, stages take a client."""

SHARED_WITH_INFER = {"fluxscale.learn.model"}
"""What ``infer`` may take from ``learn``: the model module both share (forward, members)."""

ONE_IDEA = {
    # module: why it may exceed MAX_LINES
}
MAX_LINES = 600


def _modules(root: Path = ROOT) -> dict[str, Path]:
    out = {}
    for f in root.rglob("*.py"):
        parts = list(f.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def package_of(module: str, modules) -> str:
    """``fluxscale.learn.model`` → ``learn``; top-level modules → :data:`BASE`;
    ``fluxscale.__main__`` (the entry point) → ``run``."""
    parts = module.split(".")
    if module == "fluxscale.__main__":
        return "run"
    if len(parts) >= 2 and any(m.startswith(f"fluxscale.{parts[1]}.") for m in modules):
        return parts[1]
    return BASE


def imports(modules: dict[str, Path]) -> dict[str, set[tuple[str, str]]]:
    """module → {(imported module, imported name or '')}: every ``import`` and ``from …
    import`` of a fluxscale module, at module level or inside functions. A name that is a
    submodule counts as an import of that module."""
    out: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for mod, path in modules.items():
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([node.module] if node.module else []))
                if not base.startswith("fluxscale"):
                    continue
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    out[mod].add((sub, "") if sub in modules else (base, a.name))
            elif isinstance(node, ast.Import):
                out[mod] |= {(a.name, "") for a in node.names if a.name.startswith("fluxscale")}
    return out


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def violations(modules: dict[str, Path], imp: dict[str, set[tuple[str, str]]]) -> list[str]:
    """Every broken rule, as a line naming the module and what it imports."""
    bad = []
    edges = {m: {t for t, _ in ts if t in modules and t != m} for m, ts in imp.items()}
    bad += [f"import circle: {' -> '.join(c)}" for c in cycles(edges)]
    for mod, targets in sorted(imp.items()):
        mine = package_of(mod, modules)
        for target, name in sorted(targets):
            if name.startswith("_") and name != "__version__":
                bad.append(f"{mod} imports the private name {name} of {target}")
            if target not in modules:
                continue
            theirs = package_of(target, modules)
            if theirs != mine and theirs not in ALLOWED[mine]:
                bad.append(f"{mod} ({mine}) imports {target} ({theirs})")
            if mine == "infer" and theirs == "learn" and target not in SHARED_WITH_INFER:
                bad.append(f"{mod} imports {target}: infer takes only the shared model module from learn")
    return bad


def test_the_layout_keeps_its_rules():
    modules = _modules()
    bad = violations(modules, imports(modules))
    assert not bad, "\n".join(bad)


def test_each_rule_can_fail(tmp_path):
    """The same checks on a made-up package: a circle, a private name, a stage importing
    what lies above it, infer taking training from learn, a stage building a cluster."""
    files = {
        "fluxscale/__init__.py": "",
        "fluxscale/errors.py": "",
        "fluxscale/dataset/__init__.py": "",
        "fluxscale/dataset/stores.py": "from fluxscale.dataset.schema import X\n",
        "fluxscale/dataset/schema.py": "def f():\n    from fluxscale.dataset.stores import Y\n",
        "fluxscale/learn/__init__.py": "",
        "fluxscale/learn/model.py": "from fluxscale.dataset.stores import _secret\n",
        "fluxscale/learn/training.py": "from fluxscale.infer.plan import plan\n",
        "fluxscale/infer/__init__.py": "",
        "fluxscale/infer/plan.py": "from fluxscale.learn import training\nfrom fluxscale.learn.model import M\n",
        "fluxscale/bridges/__init__.py": "",
        "fluxscale/bridges/build.py": "import fluxscale.cluster.client\n",
        "fluxscale/cluster/__init__.py": "",
        "fluxscale/cluster/client.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    modules = _modules(tmp_path / "fluxscale")
    bad = violations(modules, imports(modules))
    want = [
        "import circle: fluxscale.dataset.schema -> fluxscale.dataset.stores",
        "import circle: fluxscale.infer.plan -> fluxscale.learn.training",
        "fluxscale.learn.model imports the private name _secret of fluxscale.dataset.stores",
        "fluxscale.learn.training (learn) imports fluxscale.infer.plan (infer)",
        "fluxscale.infer.plan imports fluxscale.learn.training: infer takes only the shared model module from learn",
        "fluxscale.bridges.build (bridges) imports fluxscale.cluster.client (cluster)",
    ]
    assert sorted(bad) == sorted(want), bad


def test_init_files_only_re_export():
    """A package's ``__init__`` holds a docstring, imports of its own modules' names and
    ``__all__``; no code of its own."""
    for mod, path in _modules().items():
        if path.name != "__init__.py" or mod == "fluxscale":
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
                continue
            if isinstance(node, ast.ImportFrom):
                assert (node.module or "").startswith(mod + ".") or node.level == 1, (path, node.module)
                continue
            if isinstance(node, ast.Assign) and [t.id for t in node.targets] == ["__all__"]:
                continue
            pytest.fail(f"{path}: line {node.lineno}: an __init__ only re-exports its package's names")


def test_numba_kernels_live_apart_from_io():
    """A module with numba kernels reads and writes no stores (no zarr, xarray or file
    opening): the I/O that feeds it sits in the module beside it."""
    bad = []
    for mod, path in _modules().items():
        text = path.read_text()
        if "from numba import" in text or "import numba" in text:
            tree = ast.parse(text)
            names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                     for a in (n.names if isinstance(n, ast.Import) else [ast.alias(n.module or "")])}
            io = names & {"zarr", "xarray", "netCDF4"}
            if io or "open(" in text:
                bad.append(f"{mod}: numba kernels next to {', '.join(sorted(io)) or 'open()'}")
    assert not bad, "\n".join(bad)


def test_modules_hold_one_idea():
    long = {mod: n for mod, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert set(long) <= set(ONE_IDEA), {m: n for m, n in long.items() if m not in ONE_IDEA}


def test_old_module_paths_are_the_new_modules():
    """``fluxscale.training`` and the other paths of before the packages are the same module
    objects (fluxscale._moved), and importing fluxscale imports none of them."""
    code = ("import sys, importlib, fluxscale\n"
            "from fluxscale._moved import MOVED\n"
            "assert not [m for m in MOVED if m in sys.modules], 'imported eagerly'\n"
            "for old, new in MOVED.items():\n"
            "    assert importlib.import_module(old) is importlib.import_module(new), old\n"
            "from fluxscale.training import train_ensemble\n"
            "from fluxscale.config import TrainConfig\n"
            "import fluxscale.inference as inf, fluxscale.learn.model as m\n"
            "assert inf.forward_members is m.forward_members\n"
            "assert train_ensemble.__module__.startswith('fluxscale.learn')\n"
            "assert sys.modules['fluxscale.learn.model'].__spec__.name == 'fluxscale.learn.model'\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_training_and_inference_load_apart():
    """At run time too: importing every inference module loads no learn module but the
    shared model, and importing every learn module loads no inference module."""
    modules = _modules()
    infer = [m for m in modules if m.startswith("fluxscale.infer.")]
    learn = [m for m in modules if m.startswith("fluxscale.learn.")]
    for mine, other, shared in ((infer, "fluxscale.learn.", SHARED_WITH_INFER), (learn, "fluxscale.infer.", set())):
        code = (f"import sys, importlib\nfor m in {mine!r}: importlib.import_module(m)\n"
                f"print(sorted(m for m in sys.modules if m.startswith({other!r})))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert set(eval(out)) <= shared, out  # noqa: S307  (our own repr of a list of names)
        assert shared <= set(eval(out)) or not shared  # noqa: S307
