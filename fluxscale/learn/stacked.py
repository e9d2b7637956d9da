"""A group of members' networks with their weights stacked on a leading member axis, trained
together (issue 21): the forward, the gradient and Adam for every member of a group at once.

Every member is an :class:`fluxscale.learn.model.NEENet` (10 → 32 → 32 → 1, ReLU); here its weights
live in tensors ``(members, …)``: ``w1`` (M, 10, 32), ``b1`` (M, 32), ``w2`` (M, 32, 32),
``b2`` (M, 32), ``w3`` (M, 32), ``b3`` (M,), with each member's input standardisation
``x_mean``, ``x_std`` (M, 10). A member's view ``w1[m]`` is its own weights: the optimiser,
the moving average and the best-epoch copies act on the whole stack in one call each, with a
row mask for members that are frozen (stopped) or that do not train a tensor.

**Why per-member GEMMs on cache-sized chunks, not ``bmm``/``vmap``** (measured on this
2-core machine, one thread, ``python -m benchmarks train`` has the figures): the network is
tiny (1 376 multiply-adds per sample) and a step's samples many (10 000 tower-days + 55 296
sampled cell-days), so the cost is memory traffic, not arithmetic. Autograd over a whole
55 296-sample step keeps (samples × 32) activations that fall out of cache: 237 ns/sample
forward + backward; ``baddbmm`` over 5 members' stacked inputs is slower still (587 ns at
16 384 samples each). Here the forward runs in chunks of :data:`CHUNK` samples (activations
in L2), keeps the two hidden layers for the backward, and the backward is written out by
hand on the same chunks: 143 ns/sample, 1.65x autograd's, for identical gradients up to
float32 summation order. The members of a group share one set of buffers.

The gradient is two-pass because the losses are not sums over samples (the atmospheric
term is a cube-root norm of monthly means): :meth:`StackedNets.forward` gives the outputs,
the caller builds the (small) loss graph on them as a leaf and gets ``dL/dy``, and
:meth:`StackedNets.backward` accumulates the weight gradients from it.
"""

from __future__ import annotations

import numpy as np
import torch

from fluxscale.learn.model import NEENet

__all__ = ["StackedNets", "StackedAdam", "CHUNK", "PARAMS"]

CHUNK = 4096
"""Samples per chunk of the training forward and backward: (4096, 32) float32 activations
are 512 kB, in L2 (2 048-8 192 measured within 5%; 16 384 8% slower, a whole step 65%)."""

PARAMS = ("w1", "b1", "w2", "b2", "w3", "b3")

KEEP_ACTIVATIONS = True
"""Keep a step's hidden activations from the forward for the backward (True), or recompute
them chunk by chunk in the backward (False: one more forward, everything in L2)."""


class StackedNets:
    """``M`` networks' weights ``params[name]`` (M, …) float32 on ``device`` and their
    standardisation ``x_mean``, ``x_std`` (M, 10); gradients in ``grads`` (same shapes).

    :meth:`forward` / :meth:`backward` act on one member ``m`` at a time (see the module
    docstring for why); ``stored`` activations from the last training forward are reused
    by the backward."""

    def __init__(self, models: list[NEENet], device=None):
        device = torch.device(device or "cpu")
        sds = [{k: v.detach().to(device=device, dtype=torch.float32) for k, v in m.state_dict().items()}
               for m in models]
        st = lambda f: torch.stack([f(sd) for sd in sds]).contiguous()  # noqa: E731
        self.params = {"w1": st(lambda s: s["net.0.weight"].t()), "b1": st(lambda s: s["net.0.bias"]),
                       "w2": st(lambda s: s["net.2.weight"].t()), "b2": st(lambda s: s["net.2.bias"]),
                       "w3": st(lambda s: s["net.4.weight"][0]), "b3": st(lambda s: s["net.4.bias"][0])}
        self.x_mean, self.x_std = st(lambda s: s["x_mean"]), st(lambda s: s["x_std"])
        self.grads = {k: torch.zeros_like(v) for k, v in self.params.items()}
        self.device, self.n = device, len(models)
        self._a1 = self._a2 = None
        self._kept = True

    # --- conversion ------------------------------------------------------------------
    def state_dict(self, m: int, params: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Member ``m``'s :class:`NEENet` state dict (CPU copies) from ``params`` (default:
        the trained weights; e.g. the moving average's)."""
        p = self.params if params is None else params
        return {"net.0.weight": p["w1"][m].t().contiguous().cpu(), "net.0.bias": p["b1"][m].clone().cpu(),
                "net.2.weight": p["w2"][m].t().contiguous().cpu(), "net.2.bias": p["b2"][m].clone().cpu(),
                "net.4.weight": p["w3"][m][None, :].clone().cpu(), "net.4.bias": p["b3"][m].reshape(1).clone().cpu(),
                "x_mean": self.x_mean[m].clone().cpu(), "x_std": self.x_std[m].clone().cpu()}

    def model(self, m: int, params: dict[str, torch.Tensor] | None = None) -> NEENet:
        """Member ``m`` as an :class:`NEENet` (CPU)."""
        net = NEENet()
        net.load_state_dict(self.state_dict(m, params))
        return net.eval()

    def standardise(self, m: int, x: torch.Tensor) -> torch.Tensor:
        """``(x − mean) / std`` of member ``m``: what the first layer and the tower-bias head see."""
        return (x - self.x_mean[m]) / self.x_std[m]

    # --- the forward without gradient (validation, monitors) ---------------------------
    def predict(self, m: int, x: torch.Tensor, params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Member ``m``'s NEE (n,) on drivers ``x`` (n, 10), no gradient (:meth:`predict_many`)."""
        return self.predict_many([m], x, params)[0]

    def predict_many(self, members: list[int], x: torch.Tensor,
                     params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Members ``members``' NEE (len(members), n) on the same drivers ``x`` (n, 10), no
        gradient: chunk by chunk, every member on a chunk while it is in cache (the
        validation towers, cells and monitor of a group are shared by its members), the
        standardisation folded into the first layer as :func:`fluxscale.learn.model.model_weights`."""
        p = self.params if params is None else params
        out = torch.empty((len(members), x.shape[0]), dtype=torch.float32, device=x.device)
        a = torch.empty((min(CHUNK, x.shape[0]), p["w1"].shape[2]), device=x.device)
        b = torch.empty_like(a)
        with torch.no_grad():
            w1 = [p["w1"][m] / self.x_std[m][:, None] for m in members]
            b1 = [p["b1"][m] - self.x_mean[m] @ w for m, w in zip(members, w1)]
            for i in range(0, x.shape[0], CHUNK):
                xc = x[i:i + CHUNK]
                n = xc.shape[0]
                for k, m in enumerate(members):
                    torch.addmm(b1[k], xc, w1[k], out=a[:n]).relu_()
                    torch.addmm(p["b2"][m], a[:n], p["w2"][m], out=b[:n]).relu_()
                    torch.addmv(p["b3"][m], b[:n], p["w3"][m], out=out[k, i:i + n])
        return out

    # --- training: forward keeping the activations, then the hand-written backward -----
    def forward(self, m: int, xs: torch.Tensor, keep: bool | None = None) -> torch.Tensor:
        """Member ``m``'s NEE (n,) on *standardised* drivers ``xs`` (n, 10), for a following
        :meth:`backward`: ``keep`` (default :data:`KEEP_ACTIVATIONS`) keeps both hidden layers'
        activations for it (buffers shared by the group); otherwise the backward recomputes
        them chunk by chunk."""
        keep = KEEP_ACTIVATIONS if keep is None else keep
        p, n = self.params, xs.shape[0]
        size = n if keep else min(n, CHUNK)
        if self._a1 is None or self._a1.shape[0] < size:
            self._a1 = torch.empty((size, p["w1"].shape[2]), device=xs.device)
            self._a2 = torch.empty_like(self._a1)
        self._kept = keep
        y = torch.empty(n, dtype=torch.float32, device=xs.device)
        with torch.no_grad():
            for i in range(0, n, CHUNK):
                a, b = self._layers(m, xs, i)
                torch.addmv(p["b3"][m], b, p["w3"][m], out=y[i:i + a.shape[0]])
        return y

    def _layers(self, m: int, xs: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The two hidden layers of chunk ``i`` (its start) into the activation buffers."""
        p = self.params
        xc = xs[i:i + CHUNK]
        o = i if self._kept else 0
        a, b = self._a1[o:o + xc.shape[0]], self._a2[o:o + xc.shape[0]]
        torch.addmm(p["b1"][m], xc, p["w1"][m], out=a).relu_()
        torch.addmm(p["b2"][m], a, p["w2"][m], out=b).relu_()
        return a, b

    def backward(self, m: int, xs: torch.Tensor, dy: torch.Tensor) -> None:
        """Add ``∂L/∂weights`` of member ``m`` to ``grads[·][m]`` given ``dy = ∂L/∂y`` (n,)
        for the outputs of the last :meth:`forward` on the same ``xs``."""
        p, g = self.params, self.grads
        w2t = p["w2"][m].t().contiguous()
        gw1, gb1, gw2, gb2, gw3 = g["w1"][m], g["b1"][m], g["w2"][m], g["b2"][m], g["w3"][m]
        with torch.no_grad():
            g["b3"][m] += dy.sum()
            for i in range(0, xs.shape[0], CHUNK):
                dc = dy[i:i + CHUNK]
                if self._kept:
                    a, b = self._a1[i:i + dc.shape[0]], self._a2[i:i + dc.shape[0]]
                else:
                    a, b = self._layers(m, xs, i)
                gw3.addmv_(b.t(), dc)
                d2 = torch.ops.aten.threshold_backward(torch.outer(dc, p["w3"][m]), b, 0.0)  # ReLU′
                gw2.addmm_(a.t(), d2)
                gb2 += d2.sum(0)
                d1 = torch.ops.aten.threshold_backward(d2 @ w2t, a, 0.0)
                gw1.addmm_(xs[i:i + CHUNK].t(), d1)
                gb1 += d1.sum(0)

    def zero_grad(self) -> None:
        for v in self.grads.values():
            v.zero_()

    def copy(self) -> dict[str, torch.Tensor]:
        """A detached copy of the weights (e.g. the moving average's starting point)."""
        return {k: v.clone() for k, v in self.params.items()}


class StackedAdam:
    """``torch.optim.Adam`` (defaults: β = (0.9, 0.999), ε = 1e-8, no weight decay) over
    stacked tensors ``(M, …)``, each row its own member with its own moments and step count;
    ``step(rows)`` updates only the rows where the boolean ``rows`` (M,) is true (a frozen
    member, or one that does not train this tensor, is left exactly as it is)."""

    def __init__(self, params: dict[str, torch.Tensor], betas=(0.9, 0.999), eps: float = 1e-8):
        self.params, self.betas, self.eps = params, betas, eps
        self.exp_avg = {k: torch.zeros_like(v) for k, v in params.items()}
        self.exp_avg_sq = {k: torch.zeros_like(v) for k, v in params.items()}
        self.steps = {k: torch.zeros(v.shape[0], dtype=torch.float64) for k, v in params.items()}

    def step(self, grads: dict[str, torch.Tensor], rows: dict[str, np.ndarray], lr: float) -> None:
        """One Adam step of every tensor ``k`` on its rows ``rows[k]`` with gradient ``grads[k]``."""
        b1, b2 = self.betas
        with torch.no_grad():
            for k, p in self.params.items():
                sel = np.flatnonzero(rows[k])
                if sel.size == 0:
                    continue
                idx = torch.as_tensor(sel, device=p.device)
                self.steps[k][sel] += 1
                t = self.steps[k][sel].numpy()
                g = grads[k].index_select(0, idx)
                m = self.exp_avg[k].index_select(0, idx).lerp_(g, 1 - b1)
                v = self.exp_avg_sq[k].index_select(0, idx).mul_(b2).addcmul_(g, g, value=1 - b2)
                shape = (-1,) + (1,) * (p.dim() - 1)
                # torch.optim.Adam's arithmetic: lr / (1 − β1ᵗ) and sqrt(v) / sqrt(1 − β2ᵗ) + ε
                step_size = torch.as_tensor(lr / (1 - b1 ** t), dtype=p.dtype, device=p.device).reshape(shape)
                bc2 = torch.as_tensor(np.sqrt(1 - b2 ** t), dtype=p.dtype, device=p.device).reshape(shape)
                denom = (v.sqrt() / bc2).add_(self.eps)
                self.exp_avg[k].index_copy_(0, idx, m)
                self.exp_avg_sq[k].index_copy_(0, idx, v)
                p.index_copy_(0, idx, p.index_select(0, idx) - step_size * m / denom)
