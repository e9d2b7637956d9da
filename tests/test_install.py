"""The install that CI and the README use (issue 35): the README's test command is the one
.ci/run runs, both install with the lock, and the lock pins a version of every requirement
(the runtime and the test extra, recursively) that pyproject.toml's specifiers allow."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _setup_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    setup = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", setup)


def _lock() -> dict[str, Version]:
    out = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, version = line.partition("==")
        assert version and ";" not in line, f"constraints.txt: {line!r} is not NAME==VERSION"
        out[canonicalize_name(name)] = Version(version)
    return out


def _requirements(extra: str = "test") -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs, todo, seen = [Requirement(r) for r in project["dependencies"]], [extra], set()
    while todo:
        e = todo.pop()
        seen.add(e)
        for r in map(Requirement, project["optional-dependencies"][e]):
            if canonicalize_name(r.name) == "fluxscale":
                todo += [x for x in r.extras if x not in seen]
            else:
                reqs.append(r)
    return reqs


def test_ci_runs_the_readme_test_command_with_the_lock():
    commands = _setup_commands()
    assert len(commands) == 2, commands
    assert all("pip install -c constraints.txt -e " in c for c in commands), commands
    assert commands[1].endswith("python -m pytest -n 2 -q"), commands[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci.splitlines(), "the README's test command is not what .ci/run runs"


def test_the_lock_pins_every_requirement_within_its_specifier():
    lock = _lock()
    reqs = _requirements()
    assert len(reqs) > 20
    for r in reqs:
        name = canonicalize_name(r.name)
        assert name in lock, f"constraints.txt lacks {r.name} (pyproject.toml: {r})"
        assert r.specifier.contains(lock[name], prereleases=True), \
            f"constraints.txt pins {r.name}=={lock[name]}, outside pyproject.toml's {r}"
    # the check can fail: a pin outside a specifier is caught
    torch = next(r for r in reqs if canonicalize_name(r.name) == "torch")
    assert not torch.specifier.contains(Version("2.14.0"))
