"""The members inference runs: those a config selects among the ones training listed in
``models/members.json``, each with its checkpoint's sha256 (part of the cube's key), and the
inversion systems the model set's ATM term was trained on."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from fluxscale.config import InferConfig
from fluxscale.errors import FluxscaleError
from fluxscale.learn.model import models_dir

__all__ = ["Member", "list_members", "trained_systems"]


@dataclass(frozen=True)
class Member:
    """One trained member: ``name`` = ``<variant>-fold<k>``, its checkpoint and its sha256."""

    name: str
    variant: str
    fold: int
    path: str
    sha256: str


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def trained_systems(root: str | Path, model_set: str = "") -> list[str]:
    """The inversion systems whose ATM term trained a model set (``members.json``; every
    system of the integrals store when training used all of them)."""
    listing = models_dir(root, model_set) / "members.json"
    try:
        members = json.loads(listing.read_text())["members"].values()
        return sorted({s for m in members for s in (m.get("systems") or [])})
    except (OSError, json.JSONDecodeError, KeyError, AttributeError):
        return []


def list_members(root: str | Path, cfg: InferConfig) -> list[Member]:
    """The members that ``cfg`` selects among those training wrote (``models/members.json``),
    ordered by ensemble (``cfg.variants``) then fold.

    Raises
    ------
    FluxscaleError
        When training has not finished, a requested member does not exist or its checkpoint
        is missing, or an ensemble would have no member.
    """
    mdir = models_dir(root, cfg.model_set)
    listing = mdir / "members.json"
    if not listing.exists():
        raise FluxscaleError(f"{listing}: not found; train the ensembles first (fluxscale train {root})")
    try:
        trained = json.loads(listing.read_text())["members"]
    except (json.JSONDecodeError, KeyError) as e:
        raise FluxscaleError(f"{listing}: not a members list written by fluxscale train ({e})") from None
    unknown = sorted(set(cfg.members) - set(trained))
    if unknown:
        raise FluxscaleError(f"{listing}: no trained member {', '.join(unknown)}; trained: {', '.join(sorted(trained))}")
    out = []
    for variant in cfg.variants:
        names = [n for n in trained if n.startswith(f"{variant}-fold") and (not cfg.members or n in cfg.members)]
        if not names:
            raise FluxscaleError(f"{listing}: the {variant!r} ensemble has no selected member "
                                 f"(trained: {', '.join(sorted(trained))})")
        for n in sorted(names, key=lambda n: int(n.rsplit("fold", 1)[1])):
            path = mdir / f"{n}.pt"
            if not path.exists():
                raise FluxscaleError(f"{path}: checkpoint of member {n} not found (listed in {listing})")
            out.append(Member(n, variant, int(n.rsplit("fold", 1)[1]), str(path), _sha256(path)))
    return out
