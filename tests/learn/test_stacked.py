"""The stacked networks of a training group against torch's own NEENet and autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fluxscale.learn.model import init_model
from fluxscale.learn.stacked import CHUNK, StackedNets


def _members(n=3):
    rng = np.random.default_rng(0)
    models = []
    for k in range(n):
        m = init_model(k)
        m.set_standardisation(rng.normal(size=10), rng.uniform(0.5, 2.0, size=10))
        models.append(m)
    return models


@pytest.mark.parametrize("keep", [True, False])
def test_forward_and_hand_written_backward_equal_autograd(keep):
    """Outputs and every weight gradient of each member, for an arbitrary dL/dy over more
    samples than one chunk, equal torch autograd through the NEENet (float32 tolerance)."""
    models = _members()
    net = StackedNets(models)
    g = torch.Generator().manual_seed(1)
    n = 2 * CHUNK + 123
    for m, model in enumerate(models):
        x = torch.randn(n, 10, generator=g) * 3
        dy = torch.randn(n, generator=g)
        xs = net.standardise(m, x)
        y = net.forward(m, xs, keep=keep)
        net.backward(m, xs, dy)
        model.zero_grad()
        ref = model(x)
        ref.backward(dy)
        torch.testing.assert_close(y, ref.detach(), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(net.predict(m, x), ref.detach(), rtol=1e-5, atol=1e-5)
        grads = {"w1": model.net[0].weight.grad.t(), "b1": model.net[0].bias.grad, "w2": model.net[2].weight.grad.t(),
                 "b2": model.net[2].bias.grad, "w3": model.net[4].weight.grad[0], "b3": model.net[4].bias.grad[0]}
        for k, v in grads.items():
            torch.testing.assert_close(net.grads[k][m], v, rtol=1e-4, atol=1e-4 * float(v.abs().max()))
    # the round trip to an NEENet is exact
    for m, model in enumerate(models):
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in net.state_dict(m).items())
