"""The model registry: every model on sites (one tap per site, pre-activations, forward order),
parameter counts against closed forms and torchvision, the fit check's one-line errors, the
activation choice reaching every site, and a few training steps of each model on random tensors.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
import torchvision
from torch import nn

from conftest import compose_config
from initlab.config import ConfigError, to_experiment
from initlab.models import MODELS, Inputs, build, check_config_fits, check_fits, theory_reason
from initlab.models.cnn import stage_depths
from initlab.models.resmlp import layout
from initlab.models.sites import ActivationSite, probing, sites

VECTORS, IMAGES = Inputs("vectors", (10,), 3), Inputs("images", (1, 8, 8), 3)
CIFAR, TOKENS = Inputs("images", (3, 32, 32), 10), Inputs("sequences", (12,), 4, vocab_size=20)


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: tiny models on a shared machine run fastest so."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def experiment(*overrides: str):
    return to_experiment(compose_config(*overrides))


def batch(inputs: Inputs, n: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if inputs.kind == "sequences":
        return torch.randint(0, inputs.vocab_size, (n, *inputs.shape), generator=g)
    return torch.randn(n, *inputs.shape, generator=g)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def probe(model: nn.Module, x: torch.Tensor) -> dict:
    with probing(model, shifts=False) as p:
        model(x)
    return p.taps


# --- sites ------------------------------------------------------------------------------------------
CASES = {
    "resmlp": (["model=resmlp", "depth=5"], VECTORS),
    "resmlp-even-preact": (["model=resmlp", "depth=6", "model.preact=true", "model.norm=layernorm"], IMAGES),
    "cnn": (["model=cnn", "depth=4", "model.norm=batchnorm"], IMAGES),
    "cnn-residual": (["model=cnn", "depth=5", "model.residual=true"], IMAGES),
    "resnet18": (["model=resnet18"], CIFAR),
    "transformer": (["model=transformer", "depth=2"], TOKENS),
    "transformer-prenorm": (["model=transformer", "depth=3", "model.norm_first=true"], TOKENS),
}


@pytest.mark.parametrize("case", CASES)
def test_every_site_runs_once_per_pass_and_names_real_weights(case):
    overrides, inputs = CASES[case]
    model = build(experiment(*overrides), inputs)
    taps = probe(model, batch(inputs, n=2))  # a site that ran twice would have raised
    assert set(taps) == set(sites(model)), "every site runs in a forward pass"
    params = dict(model.named_parameters())
    for tap in taps.values():
        assert tap.weight is None or tap.weight in params, tap
    named = [t.weight for t in taps.values() if t.weight]
    assert len(named) == len(set(named)), "a weight's statistics go on one row"
    out = [name for name, t in taps.items() if t.kind == "output"]
    assert out == [list(taps)[-1]], "the logits are the last site, and the only output site"
    for tap in taps.values():
        if isinstance(sites(model)[tap.site], ActivationSite):  # post = phi(pre)
            torch.testing.assert_close(tap.post, sites(model)[tap.site].activation(tap.pre))


@pytest.mark.parametrize("case", ["resmlp-even-preact", "cnn-residual", "transformer"])
def test_every_site_gets_its_backward_signal(case):
    """delta = dL/dh at every site, through the zero shifts of one probe pass: every site lies on
    the path to the loss, and delta has h's shape."""
    overrides, inputs = CASES[case]
    model = build(experiment(*overrides), inputs)
    x = batch(inputs, n=4)
    with probing(model, shifts=True) as p:
        loss = nn.functional.cross_entropy(model(x), torch.arange(4) % inputs.n_classes)
    deltas = torch.autograd.grad(loss, [t.shift for t in p.taps.values()])
    for tap, delta in zip(p.taps.values(), deltas):
        assert delta.shape == tap.pre.shape and delta.abs().sum() > 0, tap.site


def test_a_prenorm_transformers_final_layernorm_is_a_norm_site():
    """norm_first's final LayerNorm (before pooling) was measured by no site, and no model had a
    ``norm`` site although layers.csv's kinds list one. Its output is per token of mean 0 and
    variance 1 (biased, LayerNorm's eps aside) at init: pooled, std 1."""
    model = build(experiment("model=transformer", "depth=2", "model.norm_first=true"), TOKENS)
    taps = probe(model, batch(TOKENS, n=8))
    norm = [t for t in taps.values() if t.kind == "norm"]
    assert [(t.site, t.weight) for t in norm] == [("encoder.norm.site", "encoder.norm.weight")]
    h = norm[0].pre.double()
    torch.testing.assert_close(h.mean(dim=-1), torch.zeros_like(h.mean(dim=-1)), atol=1e-6, rtol=0)
    assert h.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-3)
    assert list(taps).index("encoder.norm.site") == len(taps) - 2  # after the last layer, before the logits


def test_resmlp_sites_in_forward_order_and_layer_numbering_as_mlp():
    exp = experiment("model=resmlp", "depth=6")
    taps = probe(build(exp, VECTORS), batch(VECTORS))
    assert list(taps) == ["stem_acts.0", "stem_acts.1", "blocks.0.act1", "blocks.0.act2", "blocks.0.residual",
                          "blocks.1.act1", "blocks.1.act2", "blocks.1.residual", "output"]
    # hidden + output sites number 1..depth+1, as the plain MLP's layers
    assert sum(t.kind in ("hidden", "output") for t in taps.values()) == exp.depth + 1
    assert [t.weight for t in taps.values() if t.kind == "hidden"] == [
        "stem.0.weight", "stem.1.weight", "blocks.0.fc1.weight", "blocks.0.fc2.weight", "blocks.1.fc1.weight",
        "blocks.1.fc2.weight"]


def test_resmlp_preact_sites():
    exp = experiment("model=resmlp", "depth=5", "model.preact=true")
    taps = probe(build(exp, VECTORS), batch(VECTORS))
    assert list(taps) == ["blocks.0.act1", "blocks.0.act2", "blocks.0.residual", "blocks.1.act1", "blocks.1.act2",
                          "blocks.1.residual", "final_act", "output"]
    assert sum(t.kind in ("hidden", "output") for t in taps.values()) == exp.depth + 1


def test_resmlp_blocks_add_the_skip():
    """A block's output is act(x + norm(fc2(act(norm(fc1 x))))): recomputed by hand from the taps."""
    model = build(experiment("model=resmlp", "depth=3", "model.width=7"), VECTORS)
    x = batch(VECTORS)
    taps = probe(model, x)
    block = model.blocks[0]
    stem = torch.relu(model.stem[0](x))
    expected = torch.relu(stem + block.fc2(torch.relu(block.fc1(stem))))
    torch.testing.assert_close(taps["blocks.0.residual"].post, expected)
    torch.testing.assert_close(taps["blocks.0.act2"].pre, stem + block.fc2(torch.relu(block.fc1(stem))))


def test_resnet18_sites_have_pre_activations_and_replace_every_relu():
    model = build(experiment("model=resnet18"), CIFAR)
    taps = probe(model, batch(CIFAR, n=2))
    assert list(taps)[:4] == ["act", "layer1.0.act1", "layer1.0.act2", "layer1.0.residual"]
    assert "layer3.1.act2" in taps and taps["layer3.1.act2"].weight == "layer3.1.conv2.weight"
    assert len(taps) == 1 + 8 * 3 + 1  # stem, 8 blocks x (act1, act2, residual), logits
    for name in ("act", "layer1.0.act1", "layer3.1.act2", "layer4.1.act2"):
        assert (taps[name].pre < 0).any(), f"{name} sees the pre-activation h, not relu(h)"
        torch.testing.assert_close(taps[name].post, taps[name].pre.clamp(min=0))
    relus = {name for name, m in model.named_modules() if isinstance(m, nn.ReLU)}
    assert relus == {f"{name}.activation" for name, m in sites(model).items() if isinstance(m, ActivationSite)}
    assert taps["output"].post.shape == (2, 10)


def test_resnet18_stem_choices():
    cifar = build(experiment("model=resnet18"), CIFAR)
    assert cifar.conv1.kernel_size == (3, 3) and cifar.conv1.stride == (1, 1) and isinstance(cifar.maxpool, nn.Identity)
    imagenet = build(experiment("model=resnet18", "model.cifar_stem=false"), Inputs("images", (1, 32, 32), 10))
    assert imagenet.conv1.kernel_size == (7, 7) and imagenet.conv1.in_channels == 1
    assert isinstance(imagenet.maxpool, nn.MaxPool2d)


def test_transformer_sites_per_layer():
    model = build(experiment("model=transformer", "depth=3"), TOKENS)
    model.eval()  # eval mode is where torch's fused fast path would skip the sites
    with torch.no_grad():
        taps = probe(model, batch(TOKENS))
    per_layer = [f"encoder.layers.{i}.{s}" for i in range(3) for s in ("attention", "activation", "residual")]
    assert list(taps) == ["embed_site", *per_layer, "output"]
    assert [taps[f"encoder.layers.{i}.activation"].weight for i in range(3)] == [
        f"encoder.layers.{i}.linear1.weight" for i in range(3)]
    assert {t.kind for t in taps.values()} == {"embedding", "attention", "hidden", "residual", "output"}
    assert taps["encoder.layers.0.activation"].pre.shape == (6, 12, 128)  # (N, T, dim_feedforward)


@pytest.mark.parametrize("model,overrides,inputs", [
    ("resmlp", ["depth=4"], VECTORS), ("cnn", ["depth=3"], IMAGES), ("resnet18", [], CIFAR),
    ("transformer", ["depth=1"], TOKENS)])
def test_the_activation_choice_reaches_every_site(model, overrides, inputs):
    built = build(experiment(f"model={model}", "activation=tanh", *overrides), inputs)
    acts = [m for m in built.modules() if isinstance(m, ActivationSite)]
    assert acts and all(isinstance(m.activation, nn.Tanh) for m in acts)
    assert len({id(m.activation) for m in acts}) == len(acts), "one activation module per site"
    assert not any(isinstance(m, (nn.ReLU, nn.GELU)) for m in built.modules())


# --- parameter counts ---------------------------------------------------------------------------------
def mlp_count(n_in: int, width: int, depth: int, n_out: int, norm: str) -> int:
    """Closed form: depth hidden Linear layers, the output Linear, 2 * width per norm layer."""
    return (n_in + 1) * width + (depth - 1) * (width + 1) * width + (width + 1) * n_out \
        + (2 * width * depth if norm != "none" else 0)


@pytest.mark.parametrize("depth", [3, 4, 5, 10])
@pytest.mark.parametrize("norm", ["none", "batchnorm", "layernorm"])
@pytest.mark.parametrize("preact", [False, True])
def test_resmlp_has_the_plain_mlps_parameters(depth, norm, preact):
    common = [f"depth={depth}", "model.width=16", f"model.norm={norm}"]
    plain = build(experiment("model=mlp", *common), VECTORS)
    residual = build(experiment("model=resmlp", f"model.preact={preact}", *common), VECTORS)
    assert n_params(residual) == n_params(plain) == mlp_count(10, 16, depth, 3, norm)
    linears = [m for m in residual.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == depth + 1
    stem, blocks = layout(depth)
    assert (len(residual.stem), len(residual.blocks)) == (stem, blocks) and stem + 2 * blocks == depth


def test_cnn_stages_and_parameter_count():
    assert stage_depths(5, 3) == [2, 2, 1] and stage_depths(3, 3) == [1, 1, 1] and stage_depths(7, 2) == [4, 3]
    model = build(experiment("model=cnn", "depth=5", "model.channels=[4,6,8]"), IMAGES)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(1, 4), (4, 4), (4, 6), (6, 6), (6, 8)]
    conv = lambda a, b: (a * 9 + 1) * b  # noqa: E731  3x3 kernel and a bias
    assert n_params(model) == conv(1, 4) + conv(4, 4) + conv(4, 6) + conv(6, 6) + conv(6, 8) + (8 + 1) * 3
    residual = build(experiment("model=cnn", "depth=5", "model.channels=[4,6,8]", "model.residual=true",
                                "model.norm=batchnorm"), IMAGES)
    skips = 1 * 4 + 4 * 6 + 6 * 8  # 1x1 projections where the channel count changes, no bias
    assert n_params(residual) == n_params(model) + skips + 2 * (4 + 4 + 6 + 6 + 8)


def test_resnet18_has_torchvisions_parameters():
    """torchvision's ResNet-18 for 10 classes, with the 7x7 stem conv (3*64*49) swapped for 3x3 (3*64*9)."""
    reference = n_params(torchvision.models.resnet18(weights=None, num_classes=10))
    assert n_params(build(experiment("model=resnet18"), CIFAR)) == reference - 3 * 64 * 49 + 3 * 64 * 9 == 11173962
    assert n_params(build(experiment("model=resnet18", "model.cifar_stem=false"), CIFAR)) == reference


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_parameter_count(norm_first):
    d, ff, layers, vocab, t, c = 16, 24, 2, 20, 12, 4
    model = build(experiment("model=transformer", f"depth={layers}", f"model.d_model={d}", "model.nhead=2",
                             f"model.dim_feedforward={ff}", f"model.norm_first={norm_first}"), TOKENS)
    per_layer = (3 * d * d + 3 * d) + (d * d + d) + (d * ff + ff) + (ff * d + d) + 2 * 2 * d
    expected = vocab * d + t * d + layers * per_layer + (d + 1) * c + (2 * d if norm_first else 0)
    assert n_params(model) == expected


# --- fit check ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides,kind,shape,message", [
    (["model=cnn", "dataset=moons"], "vectors", (2,),
     "model=cnn needs images; dataset=moons gives vectors (2 features); models for vectors: mlp, resmlp"),
    (["model=transformer", "dataset=digits"], "images", (1, 8, 8),
     "model=transformer needs sequences; dataset=digits gives images (1x8x8); models for images: mlp, resmlp, "
     "cnn, resnet18"),
    (["model=resnet18", "dataset=moons"], "vectors", None,
     "model=resnet18 needs images; dataset=moons gives vectors; models for vectors: mlp, resmlp"),
    (["model=mlp"], "sequences", (32,),
     "model=mlp needs vectors or images; dataset=digits gives sequences (length 32); models for sequences: "
     "transformer"),
    (["model=cnn", "model.channels=[4,8,16,32]", "depth=4"], "images", (1, 6, 6),
     "model=cnn does not fit dataset=digits, which gives images (1x6x6): 4 stages (model.channels=[4, 8, 16, 32]) "
     "need images of at least 8x8; use fewer stages"),
])
def test_models_that_do_not_fit_the_data_fail_with_one_line(overrides, kind, shape, message):
    exp = experiment(*overrides)
    with pytest.raises(ConfigError) as info:
        check_fits(exp, kind, shape)
    assert str(info.value) == message
    if shape is not None:  # and build refuses the same way, before building anything
        with pytest.raises(ConfigError, match=re.escape(message)):
            build(exp, Inputs(kind, shape, 3, vocab_size=5))


def test_models_that_fit_pass():
    for name, choice in MODELS.items():
        for kind in choice.accepts:
            check_fits(experiment(f"model={name}"), kind, {"vectors": (2,), "images": (3, 32, 32),
                                                         "sequences": (8,)}[kind])
    check_fits(experiment("model=cnn"), "images", (1, 4, 4))  # 3 stages: 4x4 -> 2x2 -> 1x1


def test_config_fit_check_reads_the_dataset_kind():
    """The command line's check uses the dataset config's KIND and input_shape(), no data loaded."""
    with pytest.raises(ConfigError, match=r"^model=cnn needs images; dataset=moons gives vectors \(2 features\); "):
        check_config_fits(experiment("model=cnn", "dataset=moons"))
    with pytest.raises(ConfigError, match=r"^model=transformer needs sequences; dataset=digits gives images"):
        check_config_fits(experiment("model=transformer", "dataset=digits"))
    with pytest.raises(ConfigError, match=r"^model=mlp needs vectors or images; dataset=majority gives sequences \(length 32\); models for sequences: transformer$"):
        check_config_fits(experiment("model=mlp", "dataset=majority"))
    check_config_fits(experiment("model=cnn", "dataset=digits"))
    check_config_fits(experiment("model=transformer", "dataset=majority"))


def test_theory_reasons():
    assert theory_reason(experiment("model=mlp")) is None
    assert "batchnorm" in theory_reason(experiment("model=mlp", "model.norm=batchnorm"))
    assert "torch_default" in theory_reason(experiment("model=mlp", "model.bias_init=torch_default"))
    assert "head" in theory_reason(experiment("model=mlp", "init.apply_to=head"))
    for name in ("resmlp", "cnn", "resnet18", "transformer"):
        assert theory_reason(experiment(f"model={name}"))


# --- training -------------------------------------------------------------------------------------------
TRAIN = {
    "mlp": (["model=mlp", "depth=3", "model.width=32", "model.norm=layernorm"], VECTORS),
    "resmlp": (["model=resmlp", "depth=5", "model.width=32", "model.norm=batchnorm"], VECTORS),
    "resmlp-preact": (["model=resmlp", "depth=4", "model.width=32", "model.preact=true"], IMAGES),
    "cnn": (["model=cnn", "depth=3", "model.channels=[8,8,16]", "model.norm=batchnorm", "model.residual=true"],
            IMAGES),
    "resnet18": (["model=resnet18"], Inputs("images", (3, 4, 4), 3)),
    "transformer": (["model=transformer", "depth=2", "model.d_model=32", "model.dim_feedforward=64"], TOKENS),
}


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c == "resnet18" else c for c in TRAIN])
def test_every_model_learns_a_small_batch(case):
    """A few Adam steps on 16 random inputs with random labels: the training loss falls by half
    (fitting labels needs every layer to pass signal and gradient)."""
    overrides, inputs = TRAIN[case]
    torch.manual_seed(0)
    model = build(experiment(*overrides), inputs)
    x, y = batch(inputs, n=16), torch.randint(0, inputs.n_classes, (16,), generator=torch.Generator().manual_seed(1))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    model.train()
    for _ in range(15):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.5 * losses[0], losses
