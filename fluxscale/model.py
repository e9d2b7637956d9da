"""The data-driven flux model: a feed-forward network of three fully connected layers
(paper §3.2, Fig. B1, Table B1): 10 drivers → 32 → 32 → 1 NEE (gC m-2 d-1), ReLU.

Inputs are standardised with the mean and standard deviation of the training folds'
tower drivers; both are buffers of the module, so they travel with its ``state_dict``
(and every checkpoint).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .drivers import DRIVER_NAMES

__all__ = ["NEENet", "init_model", "LATENT"]

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
