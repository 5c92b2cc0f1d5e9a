"""The plain MLP's batched-matmul forward and the stacked SGD update (initlab.ensemble) against
each member's own nn.Module forward and its own torch.optim.SGD step."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from initlab.ensemble.epoch import stacked_sgd
from initlab.ensemble.stack import Stacked
from initlab.kernel_shaping import PerLocationNormalization
from initlab.models.mlp import MLP
from initlab.models.resmlp import ResMLP


def members(k: int = 3, norm: str = "none", activation: nn.Module = nn.Tanh()) -> list[MLP]:
    torch.manual_seed(0)
    models = []
    for _ in range(k):
        model = MLP(20, 5, 16, 4, activation, norm=norm)
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, 0.4)  # LayerNorm's affine too, so members differ everywhere
        models.append(model)
    return models


@pytest.mark.parametrize("norm", ["none", "layernorm"])
@pytest.mark.parametrize("pln", [False, True])
def test_direct_forward_equals_each_members_forward(norm, pln):
    models = members(norm=norm, activation=nn.GELU())
    if pln:
        for model in models:
            model.input_norm = PerLocationNormalization()
    stacked = Stacked(models)
    assert stacked.direct
    x = torch.randn(7, 4, 5)  # flattened to 20 features by the forward
    expected = torch.stack([m(x) for m in models])
    # float32 outputs up to ~10 summed in another order by bmm than by addmm: an output near 0 is off
    # by a few float32 steps of its terms (1.5e-6 on an AMD EPYC), so the floor is absolute
    torch.testing.assert_close(stacked.forward(x, shared=True), expected, rtol=1e-5, atol=1e-5)
    xs = torch.randn(3, 7, 4, 5)  # one batch per member
    expected = torch.stack([m(xk) for m, xk in zip(models, xs)])
    torch.testing.assert_close(stacked.forward(xs, shared=False), expected, rtol=1e-5, atol=1e-5)


def test_other_models_keep_the_vmapped_forward():
    models = [ResMLP(20, 5, 16, 4, nn.ReLU) for _ in range(2)]
    stacked = Stacked(models)
    assert not stacked.direct
    x = torch.randn(7, 20)
    torch.testing.assert_close(stacked.forward(x, shared=True), torch.stack([m(x) for m in models]))


def test_stacked_sgd_equals_each_members_torch_optim_step():
    models = members()
    reference = [copy.deepcopy(m) for m in models]
    settings = [dict(lr=0.1, weight_decay=0.0), dict(lr=0.03, weight_decay=0.01), dict(lr=1e-3, weight_decay=0.5)]
    stacked = Stacked(models)
    optimizers = [torch.optim.SGD(m.parameters(), **s) for m, s in zip(models, settings)]
    update = stacked_sgd(stacked, optimizers)
    assert update is not None
    own = [torch.optim.SGD(m.parameters(), **s) for m, s in zip(reference, settings)]
    for _ in range(3):
        x, y = torch.randn(9, 20), torch.randint(0, 5, (9,))
        stacked.zero_grad()
        logits = stacked.forward(x, shared=True)
        sum(nn.functional.cross_entropy(z, y) for z in logits).backward()
        grads_before = [stacked.params[n].grad.clone() for n in stacked.names]
        update()
        for model, optimizer in zip(reference, own):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
        for name, grad in zip(stacked.names, grads_before):
            torch.testing.assert_close(stacked.params[name].grad, grad)  # the gradients are left as they were
    for model, ref in zip(models, reference):
        for (name, p), q in zip(model.named_parameters(), ref.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("make", [lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
                                  lambda ps: torch.optim.Adam(ps, lr=0.1)])
def test_optimizers_with_state_step_per_member(make):
    models = members(k=2)
    stacked = Stacked(models)
    assert stacked_sgd(stacked, [make(m.parameters()) for m in models]) is None
