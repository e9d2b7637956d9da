"""The data-driven flux model: a feed-forward network of three fully connected layers
(paper §3.2, Fig. B1, Table B1): 10 drivers → 32 → 32 → 1 NEE (gC m-2 d-1), ReLU.

Inputs are standardised with the mean and standard deviation of the training folds'
tower drivers; both are buffers of the module, so they travel with its ``state_dict``
(and every checkpoint).

One module for the model and its members, imported by both stages (training writes
members, inference and evaluation read them; neither imports the other): the network
(:class:`NEENet`, :func:`init_model`), where members live (:func:`models_dir`,
:func:`model_sets`, :func:`member_name`), loading a checkpoint (:func:`load_member`), the
weight export with the standardisation folded in (:func:`model_weights`,
:func:`member_weights`) and the many-member forward (:func:`forward_members`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fluxscale.dataset.schema import DRIVER_NAMES

__all__ = ["NEENet", "init_model", "LATENT", "models_dir", "model_sets", "member_name", "load_member",
           "model_weights", "member_weights", "forward_members"]

LATENT = 32
"""Latent dimension (Table B1)."""


class NEENet(nn.Module):
    """``f(ω, x)``: drivers ``(…, 10)`` in Table A2 order → NEE ``(…)``."""

    def __init__(self, n_in: int = len(DRIVER_NAMES), latent: int = LATENT):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_in, latent), nn.ReLU(), nn.Linear(latent, latent), nn.ReLU(),
                                 nn.Linear(latent, 1))
        self.register_buffer("x_mean", torch.zeros(n_in))
        self.register_buffer("x_std", torch.ones(n_in))

    def set_standardisation(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Store the training folds' driver statistics (a zero std becomes 1)."""
        std = np.where(np.asarray(std) > 0, std, 1.0)
        self.x_mean.copy_(torch.as_tensor(np.asarray(mean), dtype=self.x_mean.dtype))
        self.x_std.copy_(torch.as_tensor(std, dtype=self.x_std.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.x_mean) / self.x_std).squeeze(-1)


def init_model(seed: int) -> NEENet:
    """A fresh network whose initial weights depend only on ``seed`` (EC and EC-ATM members
    of one fold use the same seed, so they start from identical weights)."""
    # manual_seed also reseeds every CUDA generator: fork them all, so the caller's RNG
    # state (CPU and GPU) is untouched
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count()))):
        torch.manual_seed(seed)
        return NEENet()


# --- members on disk ------------------------------------------------------------------

def models_dir(root: str | Path, model_set: str = "") -> Path:
    """``root/models`` (or ``root/models/sets/<model_set>``): the checkpoints, ``logs/`` and
    ``members.json``."""
    return Path(root) / "models" / "sets" / model_set if model_set else Path(root) / "models"


def model_sets(root: str | Path) -> list[str]:
    """Names of the finished model sets (``models/sets/*/members.json``), sorted."""
    base = models_dir(root) / "sets"
    return sorted(p.parent.name for p in base.glob("*/members.json")) if base.is_dir() else []


def member_name(variant: str, fold: int) -> str:
    return f"{variant}-fold{fold}"


def load_member(path: str | Path):
    """``(model, meta)`` from a checkpoint (``torch.load(weights_only=True)``: a file that
    would run code when unpickled is refused).

    Raises
    ------
    FluxscaleError
        Naming the file, when it is unreadable, truncated, not a fluxscale checkpoint, or
        holds objects the safe loader refuses.
    """
    from fluxscale.errors import FluxscaleError

    try:
        ck = torch.load(path, weights_only=True, map_location="cpu")
    except FileNotFoundError:
        raise FluxscaleError(f"{path}: checkpoint not found") from None
    except PermissionError:
        raise FluxscaleError(f"{path}: checkpoint not readable (permission denied)") from None
    except Exception as e:  # noqa: BLE001  (torch raises UnpicklingError, RuntimeError, EOFError, …)
        why = "holds objects other than tensors and plain data (refused: loading it could run code)" \
            if "weights_only" in str(e) or "Unsupported global" in str(e) else \
            f"not a readable checkpoint (truncated or corrupt: {type(e).__name__})"
        raise FluxscaleError(f"{path}: {why}; retrain this member (fluxscale train)") from None
    try:
        model = NEENet()
        model.load_state_dict(ck["state_dict"])
        meta = json.loads(ck["meta"])
    except (KeyError, TypeError, RuntimeError, json.JSONDecodeError) as e:
        raise FluxscaleError(f"{path}: not a fluxscale member checkpoint ({type(e).__name__}: "
                             f"{str(e).splitlines()[0][:120]}); retrain this member (fluxscale train)") from None
    model.eval()
    return model, meta


# --- weight export and the many-member forward ----------------------------------------

def member_weights(path: str | Path) -> dict[str, np.ndarray]:
    """A checkpoint's weights for :func:`forward_members` (see :func:`model_weights`)."""
    return model_weights(load_member(path)[0])


def model_weights(model) -> dict[str, np.ndarray]:
    """An ``NEENet``'s weights for :func:`forward_members`: the input standardisation
    ``(x - mean) / std`` folded into the first layer (in float64, stored as float32).

    Returns ``w1`` (10, 32), ``b1`` (32,), ``w2`` (32, 32), ``b2`` (32,), ``w3`` (32,),
    ``b3`` (1,): ``y = relu(relu(x @ w1 + b1) @ w2 + b2) @ w3 + b3``.
    """
    sd = {k: v.detach().double().cpu().numpy() for k, v in model.state_dict().items()}
    w1 = sd["net.0.weight"] / sd["x_std"][None, :]  # (32, 10)
    b1 = sd["net.0.bias"] - w1 @ sd["x_mean"]
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    return {"w1": f32(w1.T), "b1": f32(b1), "w2": f32(sd["net.2.weight"].T), "b2": f32(sd["net.2.bias"]),
            "w3": f32(sd["net.4.weight"][0]), "b3": f32(sd["net.4.bias"])}


def forward_members(weights: list[dict[str, Any]], x: np.ndarray, *, batch: int = 8192, device: str = "cpu",
                    out: np.ndarray | None = None) -> np.ndarray:
    """Every member's NEE for the samples ``x``.

    Parameters
    ----------
    weights : list of dict
        :func:`member_weights` of each member (numpy, or torch tensors already on ``device``).
    x : numpy.ndarray
        float32 ``(n, 10)`` drivers in :data:`fluxscale.dataset.drivers.DRIVER_NAMES` order.
    batch : int
        Samples per call: ~10⁴ on a CPU keeps the (batch, 32) activations in cache (at 10⁶
        torch runs ~3x slower here); ~10⁶ on a GPU.
    device : str
        ``"cpu"`` or a CUDA device.

    Returns
    -------
    numpy.ndarray
        float32 ``(members, n)``, gC m-2 d-1.
    """
    import torch

    n = x.shape[0]
    out = np.empty((len(weights), n), dtype=np.float32) if out is None else out
    dev = torch.device(device)
    ws = [{k: torch.as_tensor(v, device=dev) for k, v in w.items()} for w in weights]
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    ot = torch.from_numpy(out)
    width = ws[0]["w1"].shape[1] if ws else 0
    # Activations go into two preallocated buffers: a fresh (batch, 32) tensor per layer and
    # member is a malloc/free of ~1 MB each time, and under Dask's nanny (which sets
    # MALLOC_TRIM_THRESHOLD_, so glibc serves such blocks with mmap) every one of them
    # faulted in fresh pages: the forward ran 2.6x slower on a worker than in-process.
    h1 = torch.empty((min(batch, n), width), device=dev)
    h2 = torch.empty_like(h1)
    with torch.inference_mode():
        for i in range(0, n, batch):
            xb = xt[i:i + batch].to(dev, non_blocking=True)
            a, b = h1[:xb.shape[0]], h2[:xb.shape[0]]
            for m, w in enumerate(ws):
                torch.addmm(w["b1"], xb, w["w1"], out=a).relu_()
                torch.addmm(w["b2"], a, w["w2"], out=b).relu_()
                if dev.type == "cpu":
                    torch.addmv(w["b3"], b, w["w3"], out=ot[m, i:i + batch])  # straight into the output
                else:
                    ot[m, i:i + batch] = torch.addmv(w["b3"], b, w["w3"]).cpu()
    return out
