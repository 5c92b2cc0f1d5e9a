"""Inits on every kind of weighted layer: torch_default against freshly built torch layers under
the same seed, conv fans by torch's rule, init.apply_to=head, init.embedding, norm layers left at
their defaults, and the torch_default bias."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from conftest import compose_config
from initlab.config import to_experiment
from initlab.inits import head_name, initialize, weighted_layers
from initlab.models import Inputs, build
from initlab.models.cnn import CNN
from initlab.models.resmlp import ResMLP
from initlab.models.transformer import Transformer

TOKENS = Inputs("sequences", (5,), 3, vocab_size=11)


def experiment(*overrides: str):
    return to_experiment(compose_config(*overrides))


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


TORCH_DEFAULT = experiment("init=torch_default", "model.bias_init=torch_default")


@pytest.mark.parametrize("make", [lambda: nn.Linear(37, 11), lambda: nn.Linear(5, 200), lambda: nn.Conv2d(3, 8, 3),
                                  lambda: nn.Conv2d(4, 6, (3, 5), bias=True), lambda: nn.Conv1d(2, 7, 4)],
                         ids=["linear", "linear-wide", "conv2d", "conv2d-rect", "conv1d"])
def test_torch_default_draws_what_torch_draws_when_it_builds_the_layer(make):
    torch.manual_seed(7)
    fresh = make()
    torch.manual_seed(1)
    layer = make()
    torch.manual_seed(7)
    initialize(layer, TORCH_DEFAULT.init, TORCH_DEFAULT.model)
    torch.testing.assert_close(layer.weight, fresh.weight, rtol=0, atol=0)
    torch.testing.assert_close(layer.bias, fresh.bias, rtol=0, atol=0)


@pytest.mark.parametrize("make", [
    lambda act: ResMLP(9, 4, 16, 6, act, norm="batchnorm"),
    lambda act: CNN(3, 4, [4, 6], 3, act, batchnorm=True, residual=True),
], ids=["resmlp", "cnn-residual"])
def test_torch_default_reproduces_a_freshly_built_model(make):
    """Layer by layer in module order, weight then bias: the same draws as building the model."""
    torch.manual_seed(3)
    fresh = state(make(nn.ReLU))
    torch.manual_seed(4)
    model = make(nn.ReLU)
    torch.manual_seed(3)
    initialize(model, TORCH_DEFAULT.init, TORCH_DEFAULT.model)
    got = state(model)
    assert got.keys() == fresh.keys()
    for key in fresh:
        torch.testing.assert_close(got[key], fresh[key], rtol=0, atol=0, msg=key)


def test_torch_default_sigma_w2_is_one_third():
    """Var of U(+-1/sqrt(fan_in)) is 1/(3 fan_in): sigma_w^2 = fan_in Var(W) = 1/3."""
    layer = nn.Linear(500, 400)
    torch.manual_seed(0)
    initialize(layer, TORCH_DEFAULT.init, TORCH_DEFAULT.model)
    w = layer.weight.detach().double()
    assert w.abs().max().item() <= 1 / math.sqrt(500)
    assert (500 * w.var()).item() == pytest.approx(1 / 3, rel=0.01)  # 2e5 draws: rel. s.e. of var 0.3%


@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
def test_conv_fans_follow_torch(mode):
    """A conv kernel's fan_in is in_channels * kernel area (fan_out: out_channels * area)."""
    exp = experiment("init=he_normal", f"init.mode={mode}")
    conv = nn.Conv2d(4, 6, (3, 5))
    torch.manual_seed(2)
    initialize(conv, exp.init, exp.model)
    expected = torch.empty_like(conv.weight)
    torch.manual_seed(2)
    nn.init.kaiming_normal_(expected, mode=mode, nonlinearity="relu")
    torch.testing.assert_close(conv.weight, expected, rtol=4e-7, atol=0)
    fan = 4 * 15 if mode == "fan_in" else 6 * 15
    assert conv.weight.double().std().item() == pytest.approx(math.sqrt(2 / fan), rel=0.25)
    assert torch.count_nonzero(conv.bias) == 0


def test_every_weighted_layer_is_filled_and_norms_keep_their_defaults():
    exp = experiment("model=transformer", "init=normal", "init.std=0.37", "init.embedding=true",
                     "model.bias_init=normal", "model.bias_std=0.2", "model.norm_first=true")
    model = build(exp, TOKENS)
    torch.manual_seed(0)
    initialize(model, exp.init, exp.model)
    names = [name for name, *_ in weighted_layers(model, embedding=True)]
    assert names == ["embed", "position", "encoder.layers.0.self_attn", "encoder.layers.0.self_attn.out_proj",
                     "encoder.layers.0.linear1", "encoder.layers.0.linear2"] + [
        n for i in range(1, exp.depth) for n in (f"encoder.layers.{i}.self_attn", f"encoder.layers.{i}.self_attn.out_proj",
                                                 f"encoder.layers.{i}.linear1", f"encoder.layers.{i}.linear2")] + ["head"]
    # every draw in order: weight N(0, 0.37^2), then bias N(0, 0.2^2)
    torch.manual_seed(0)
    for _, _, weight, bias in weighted_layers(model, embedding=True):
        w = torch.empty_like(weight)
        nn.init.normal_(w, 0.0, 0.37)
        torch.testing.assert_close(weight, w, rtol=0, atol=0)
        if bias is not None:
            b = torch.empty_like(bias)
            nn.init.normal_(b, 0.0, 0.2)
            torch.testing.assert_close(bias, b, rtol=0, atol=0)
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            assert torch.equal(m.weight, torch.ones_like(m.weight)) and torch.equal(m.bias, torch.zeros_like(m.bias))


def test_embeddings_keep_torchs_draw_unless_asked():
    exp = experiment("model=transformer", "init=zero", "depth=1")
    model = build(exp, TOKENS)
    before = state(model)
    initialize(model, exp.init, exp.model)
    assert torch.equal(model.embed.weight, before["embed.weight"]) and torch.count_nonzero(model.embed.weight) > 0
    assert torch.count_nonzero(model.head.weight) == 0
    exp = experiment("model=transformer", "init=zero", "depth=1", "init.embedding=true")
    initialize(model, exp.init, exp.model)
    assert torch.count_nonzero(model.embed.weight) == 0 and torch.count_nonzero(model.position.weight) == 0


@pytest.mark.parametrize("model,inputs,head", [
    ("mlp", Inputs("vectors", (6,), 3), "out"), ("resmlp", Inputs("vectors", (6,), 3), "out"),
    ("cnn", Inputs("images", (1, 8, 8), 3), "head"), ("resnet18", Inputs("images", (3, 8, 8), 3), "fc"),
    ("transformer", TOKENS, "head")])
def test_apply_to_head_fills_only_the_output_layer(model, inputs, head):
    exp = experiment(f"model={model}", "init=normal", "init.std=0.5", "init.apply_to=head", "depth=3",
                     "model.bias_init=normal", "model.bias_std=0.1")
    net = build(exp, inputs)
    assert head_name(net) == head
    before = state(net)
    torch.manual_seed(9)
    initialize(net, exp.init, exp.model)
    after = state(net)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {f"{head}.weight", f"{head}.bias"}
    torch.manual_seed(9)
    layer = net.get_submodule(head)
    w, b = torch.empty_like(layer.weight), torch.empty_like(layer.bias)
    nn.init.normal_(w, 0.0, 0.5)
    nn.init.normal_(b, 0.0, 0.1)
    torch.testing.assert_close(layer.weight, w, rtol=0, atol=0)
    torch.testing.assert_close(layer.bias, b, rtol=0, atol=0)


def test_a_built_transformers_layers_are_drawn_one_by_one():
    """nn.TransformerEncoder deep-copies one layer: every layer started as the same tensors, and
    init.apply_to=head kept them so (a symmetric start no init of the layers would give). Each is
    now built on its own, in order: the draws of depth layers built one after another."""
    torch.manual_seed(2)
    model = Transformer(11, 5, 3, 3, nn.ReLU, d_model=8, nhead=2, dim_feedforward=12)
    torch.manual_seed(2)
    nn.Embedding(11, 8), nn.Embedding(5, 8)
    for enc in model.encoder.layers:
        fresh = nn.TransformerEncoderLayer(8, 2, 12, dropout=0.0, batch_first=True)
        for key, value in fresh.state_dict().items():
            torch.testing.assert_close(enc.state_dict()[key], value, rtol=0, atol=0, msg=key)
    exp = experiment("model=transformer", "init=zero", "init.apply_to=head", "depth=3")
    net = build(exp, TOKENS)
    initialize(net, exp.init, exp.model)
    first, *others = (layer.state_dict() for layer in net.encoder.layers)
    for other in others:
        assert not any(torch.equal(first[k], other[k]) for k in first if k.endswith("weight") and "norm" not in k)


def test_torch_default_embedding_and_attention():
    """nn.Embedding draws N(0, 1); MultiheadAttention's stacked q/k/v projection xavier_uniform_."""
    model = Transformer(11, 5, 3, 1, nn.ReLU, d_model=8, nhead=2, dim_feedforward=12)
    exp = experiment("model=transformer", "init=torch_default", "init.embedding=true")
    torch.manual_seed(5)
    initialize(model, exp.init, exp.model)
    torch.manual_seed(5)
    expected = [nn.init.normal_(torch.empty(11, 8)), nn.init.normal_(torch.empty(5, 8)),
                nn.init.xavier_uniform_(torch.empty(24, 8))]
    attn = model.encoder.layers[0].self_attn
    for got, want in zip([model.embed.weight, model.position.weight, attn.in_proj_weight], expected):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert torch.count_nonzero(attn.in_proj_bias) == 0  # bias_init=zeros
