"""A group of members trained together (:class:`Group`): their stacked networks
(:mod:`fluxscale.learn.stacked`), log-variances, tower-bias heads, one Adam over the whole
stack and the moving average of the weights that are validated and kept (``ema_decay``).

The members of a group step together, each with exactly its own draws, losses, Adam
moments and stopping; a member's weights do not depend on its group.
:meth:`fluxscale.learn.member.Member.step` is the same step by plain autograd on one
network, the reference the tests compare the group with.
"""

from __future__ import annotations

import numpy as np

from fluxscale.config import TrainConfig
from fluxscale.learn.data import TrainingData
from fluxscale.learn.member import Member

__all__ = ["Group"]


class Group:
    """The trainable state of a group of members (:func:`fluxscale.learn.fit.train_group`):
    their :class:`Member` data ``mbs``, the stacked networks ``net``, log-variances ``log_var``
    (M, 2), tower-bias heads ``head_w`` (M, 10) and ``head_b`` (M,), the optimiser, the moving
    average ``kept``, each member's random streams and its ``active`` flag (False: stopped,
    frozen)."""

    def __init__(self, data: TrainingData, cfg: TrainConfig, members: list[tuple[str, int]], device):
        import torch

        from fluxscale.learn.model import init_model
        from fluxscale.learn.stacked import StackedAdam, StackedNets

        self.cfg, self.device, self.members = cfg, device, members
        self.mbs, by_fold, pools = [], {}, {}
        folds = list(dict.fromkeys(f for _, f in members))
        if cfg.atm_term == "sampled" and data.cell_region is not None:
            from fluxscale.learn.atm_sample import load_pools, member_pool

            draws = [member_pool(cfg, f, data.cell_region, data.cell_area, list(data.region_ids)) for f in folds]
            pools = dict(zip(folds, load_pools(data.drivers_path, draws, data.day_idx, data.day_doy)))
        for variant, fold in members:
            self.mbs.append(Member(data, cfg, fold, device, share=by_fold.get(fold), pool=pools.get(fold)))
            by_fold.setdefault(fold, self.mbs[-1])
        self.variants = [v for v, _ in members]
        M = len(members)
        models = []
        for (v, f), mb in zip(members, self.mbs):
            net = init_model(seed=cfg.seed * 1000 + f)  # identical for EC and EC-ATM of a fold
            net.set_standardisation(mb.mean, mb.std)
            models.append(net)
        self.net = net = StackedNets(models, device)
        n_in = net.x_mean.shape[1]
        # the log-variances s = log σ² (Eq. 13) and the tower-bias head, one row per member
        self.log_var = torch.zeros((M, 2), device=device, requires_grad=True)
        self.head_w = torch.zeros((M, n_in), device=device, requires_grad=True)
        self.head_b = torch.zeros(M, device=device, requires_grad=True)
        self.is_atm = np.array([v == "ecatm" for v in self.variants])
        self.has_head = self.is_atm & (cfg.tower_bias == "linear")
        self.trains_atm = self.is_atm & np.array([bool(mb.train_years) for mb in self.mbs])
        self.opt = StackedAdam({**net.params, "log_var": self.log_var, "head_w": self.head_w, "head_b": self.head_b})
        self.gens = [torch.Generator().manual_seed(cfg.seed * 1000 + f) for _, f in members]   # EC batches
        self.year_rngs = [np.random.default_rng([cfg.seed, f, 13]) for _, f in members]          # ATM years, samples
        # the weights that are validated and kept: an exponential moving average of the trained
        # ones (ema_decay), or those themselves. The global total is a direction the noisy
        # sampled term and the EC batches barely pin down: on the small twin a member's global
        # total wandered by ±2 PgC/yr from epoch to epoch even at the schedule's smallest rate
        self.kept = net.copy() if cfg.ema_decay else net.params
        self.active = np.ones(M, dtype=bool)

    def fwd(self, m: int):
        """Member ``m``'s kept network as a function of drivers (…, 10) → NEE (…)."""
        many = self.fwd_many([m])
        return lambda x: many(x)[0]

    def fwd_many(self, ms: list[int]):
        """Members ``ms``' kept networks on the same drivers (…, 10) → NEE (len(ms), …)."""
        n_in = self.net.x_mean.shape[1]
        return lambda x: self.net.predict_many(ms, x.reshape(-1, n_in), self.kept).reshape(len(ms), *x.shape[:-1])

    def head(self, m: int):
        """Member ``m``'s tower-bias head as a function of drivers (n, 10) → (n,), or None."""
        if not self.has_head[m]:
            return None
        return lambda x: self.net.standardise(m, x) @ self.head_w[m] + self.head_b[m]

    def step(self, lr: float) -> tuple[np.ndarray, np.ndarray]:
        """One optimiser step of every active member at learning rate ``lr``: its own draws
        (:meth:`Member.draw`), forward and loss, the hand-written backward
        (:meth:`StackedNets.backward`), then one Adam step and moving-average update over the
        whole stack (frozen rows masked). Returns each member's (L_EC, L_ATM) (M,) arrays
        (NaN for members that did not step)."""
        import torch

        net, cfg, M = self.net, self.cfg, len(self.members)
        l_ecs, l_atms = np.full(M, np.nan), np.full(M, np.nan)
        net.zero_grad()
        for g in (self.log_var, self.head_w, self.head_b):
            g.grad = None
        for m in np.flatnonzero(self.active):
            dr = self.mbs[m].draw(self.variants[m], cfg.ec_batch, self.gens[m], self.year_rngs[m])
            n_ec = dr.x_ec.shape[0]
            x = torch.cat([dr.x_ec, dr.x_atm]) if dr.x_atm is not None else dr.x_ec
            xs = net.standardise(m, x)
            y = net.forward(m, xs).requires_grad_()  # the outputs as a leaf: the loss graph stays small
            head_ec = xs[:n_ec] @ self.head_w[m] + self.head_b[m] if self.has_head[m] else None
            loss, l_ec, l_atm = self.mbs[m].loss(dr, y[:n_ec], y[n_ec:], self.log_var[m], head_ec)
            loss.backward()
            net.backward(m, xs, y.grad)
            l_ecs[m] = float(l_ec.detach())
            l_atms[m] = float(l_atm.detach()) if l_atm is not None else 0.0
        grad = lambda p: p.grad if p.grad is not None else torch.zeros_like(p)  # noqa: E731
        act = self.active
        self.opt.step({**net.grads, "log_var": grad(self.log_var), "head_w": grad(self.head_w),
                       "head_b": grad(self.head_b)},
                      {**{k: act for k in net.params}, "log_var": act & self.trains_atm,
                       "head_w": act & self.has_head, "head_b": act & self.has_head}, lr)
        if self.kept is not net.params:
            with torch.no_grad():
                idx = torch.as_tensor(np.flatnonzero(act), device=self.device)
                for key, p in net.params.items():
                    self.kept[key].index_copy_(0, idx, self.kept[key].index_select(0, idx).lerp_(
                        p.index_select(0, idx), 1.0 - cfg.ema_decay))
        return l_ecs, l_atms
