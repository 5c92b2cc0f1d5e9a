"""model.branch_init against what each paper promises at init (initlab.models.branches).

- skipinit (De & Smith 2020), rezero (Bachlechner et al. 2020), zero_last (torchvision's
  zero_init_residual): every block whose skip is the identity returns its input at init, and the
  network still learns (alpha and the zeroed layers get gradients).
- zero_last zeroes exactly what torchvision's ``zero_init_residual=True`` zeroes (ResNet-18).
- fixup (Zhang et al. 2019): the branch's last layer and the classifier are zero, its other
  layers are the init choice's draw times L^(-1/(2m-2)), and with the last layers moved off zero
  by a standard draw the residual stream's second moment stays within (1 + 1/L)^L <= e of its
  input at every depth, where the default init's grows like 2^L.
- The configs the papers rule out, and the models without branches, fail in one line.
"""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from torch import nn

from conftest import CONF, compose_config, read_csv, run_job
from initlab.cli import check_command_line
from initlab.config import BranchInit, to_experiment
from initlab.inits import initialize
from initlab.measure.probes import probe_statistics
from initlab.models import Inputs, build
from initlab.models.branches import BRANCH_INITS, Branched, fixup_factor

VECTORS, IMAGES = Inputs("vectors", (6,), 3), Inputs("images", (3, 8, 8), 3)

# (model overrides, inputs): every residual family and block order, norms on and off
FAMILIES = {
    "resmlp": (["model=resmlp", "model.width=16", "activation=relu"], VECTORS),
    "resmlp_bn": (["model=resmlp", "model.width=16", "model.norm=batchnorm", "activation=relu"], VECTORS),
    "resmlp_ln_preact_tanh": (["model=resmlp", "model.width=16", "model.norm=layernorm", "model.preact=true",
                               "activation=tanh"], VECTORS),
    "cnn": (["model=cnn", "model.residual=true", "model.channels=[4,8]", "activation=relu"], IMAGES),
    "cnn_bn": (["model=cnn", "model.residual=true", "model.channels=[4,8]", "model.norm=batchnorm",
                "activation=relu"], IMAGES),
    "resnet18": (["model=resnet18", "activation=relu"], IMAGES),
    "resnet18_no_norm": (["model=resnet18", "model.norm=none", "activation=relu"], IMAGES),
}


def built(family: str, branch_init: str, *extra: str, seed: int = 0, inputs=None) -> nn.Module:
    overrides, default_inputs = FAMILIES[family]
    exp = to_experiment(compose_config(*overrides, "depth=7", f"model.branch_init={branch_init}", *extra))
    torch.manual_seed(seed)
    model = build(exp, inputs or default_inputs)
    initialize(model, exp.init, exp.model)
    return model


def identity_skip(block: nn.Module) -> bool:
    """Whether the block's skip is the identity (resmlp: always; cnn: same channels; resnet18: no downsample)."""
    skip = getattr(block, "downsample", getattr(block, "skip", None))
    return skip is None or isinstance(skip, nn.Identity)


def block_io(model: nn.Module, x: torch.Tensor) -> list[tuple[nn.Module, torch.Tensor, torch.Tensor]]:
    """(block, input, output) of every residual block in one forward pass of ``x``."""
    seen = []
    hooks = [m.register_forward_hook(lambda mod, args, out: seen.append((mod, args[0], out)))
             for m in model.modules() if isinstance(m, Branched) and getattr(m, "residual", None) is not None]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("branch_init", ["zero_last", "skipinit", "rezero"])
def test_blocks_are_the_identity_at_init(family, branch_init):
    model = built(family, branch_init)
    x = torch.randn(8, *FAMILIES[family][1].shape, generator=torch.Generator().manual_seed(1))
    for mode in (model.train, model.eval):
        mode()
        io = [(b, i, o) for b, i, o in block_io(model, x) if identity_skip(b)]
        assert io, "no block with an identity skip to check"
        for block, inp, out in io:
            assert torch.equal(out, inp), f"{family} {branch_init}: a block changes its input at init"
    default = [(i, o) for b, i, o in block_io(built(family, "default"), x) if identity_skip(b)]
    assert not any(torch.equal(i, o) for i, o in default), "the default branches are not zero (test would be vacuous)"


@pytest.mark.parametrize("family", ["resmlp", "cnn", pytest.param("resnet18", marks=pytest.mark.slow)])
@pytest.mark.parametrize("branch_init", ["skipinit", "rezero", "fixup"])
def test_alpha_is_a_learnable_scalar_that_gets_a_gradient(family, branch_init):
    model = built(family, branch_init, *(["model.norm=none"] if family == "resnet18" and branch_init == "fixup" else []))
    alphas = {n: p for n, p in model.named_parameters() if n.endswith("gain.alpha")}
    blocks = [m for m in model.modules() if isinstance(m, Branched) and m.gain is not None]
    assert len(alphas) == len(blocks) > 0
    assert all(p.shape == () and p.requires_grad and p.item() == (1.0 if branch_init == "fixup" else 0.0)
               for p in alphas.values())
    x = torch.randn(8, *FAMILIES[family][1].shape, generator=torch.Generator().manual_seed(1))
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):  # fixup: the zero classifier moves first, then the last layers, then alpha
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), torch.arange(8) % 3).backward()
        opt.step()
    assert all(p.grad is not None and p.grad.abs().item() > 0 for p in alphas.values()), branch_init
    for block in blocks:
        last = block.branch_layers()[-1]
        assert last.weight.abs().sum() > 0, "the branch's last layer still sits at zero after three steps"


def zero_weights(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if n.endswith(".weight") and not p.detach().any()}


def test_zero_last_zeroes_what_torchvision_zero_init_residual_zeroes():
    ours = built("resnet18", "zero_last", "model.cifar_stem=false", inputs=Inputs("images", (3, 32, 32), 10))
    reference = torchvision.models.resnet18(weights=None, num_classes=10, zero_init_residual=True)
    expected = zero_weights(reference)
    assert expected == {f"layer{s}.{i}.bn2.weight" for s in range(1, 5) for i in range(2)}
    assert zero_weights(ours) == expected


@pytest.mark.parametrize("family,zeroed", [("resmlp", "fc2"), ("resmlp_bn", "norm2"), ("resmlp_ln_preact_tanh", "fc2"),
                                           ("cnn", "conv"), ("cnn_bn", "norm")])
def test_zero_last_zeroes_the_branch_end_and_keeps_every_other_draw(family, zeroed):
    """The final op with a weight: the norm in post-activation blocks with a norm, else the last
    layer (weight and bias); every other parameter is the init choice's draw, unchanged."""
    default, zero_last = built(family, "default", "model.bias_init=normal", "model.bias_std=0.1"), \
        built(family, "zero_last", "model.bias_init=normal", "model.bias_std=0.1")
    changed = {n for n, p in zero_last.state_dict().items() if not torch.equal(p, default.state_dict()[n])}
    blocks = [n for n, m in zero_last.named_modules() if isinstance(m, Branched) and m.branch_init == "zero_last"]
    has_bias = zeroed in ("fc2", "conv")
    assert changed == {f"{b}.{zeroed}.{p}" for b in blocks for p in ("weight", "bias")[: 1 + has_bias]}
    assert all(not zero_last.state_dict()[n].any() for n in changed)


def test_fixup_factor_is_the_papers_closed_form():
    assert fixup_factor(16, 2) == pytest.approx(16 ** -0.5)
    assert fixup_factor(81, 3) == pytest.approx(1 / 3)
    assert fixup_factor(7, 1) == 1.0


@pytest.mark.parametrize("depth", [3, 8, 21])
def test_fixup_scales_zeroes_and_keeps_the_rest_of_the_draw_in_resmlp(depth):
    overrides = ["model=resmlp", "model.width=16", "model.bias_init=normal", "model.bias_std=0.1", f"depth={depth}"]
    models = {}
    for branch_init in ("default", "fixup"):
        exp = to_experiment(compose_config(*overrides, f"model.branch_init={branch_init}"))
        torch.manual_seed(0)
        models[branch_init] = build(exp, VECTORS)
        initialize(models[branch_init], exp.init, exp.model)
    default, fixup = (dict(models[k].named_parameters()) for k in ("default", "fixup"))
    n_blocks = (depth - 1) // 2
    for name, p in fixup.items():
        if ".fc1.weight" in name:
            torch.testing.assert_close(p, default[name] * n_blocks ** -0.5, rtol=1e-6, atol=0)
        elif ".fc2." in name or name.startswith("out."):
            assert not p.any(), f"{name} is not zero"
        elif name.endswith("gain.alpha"):
            assert p.item() == 1.0
        else:
            assert torch.equal(p, default[name]), f"{name} changed"
    out = models["fixup"](torch.randn(5, 6))
    assert not out.any(), "Fixup's network outputs zero logits at init at every depth (rule 1)"


def test_fixup_in_cnn_zeroes_each_residual_conv_and_keeps_the_projections():
    default, fixup = built("cnn", "default"), built("cnn", "fixup")
    d = dict(default.named_parameters())
    for name, p in fixup.named_parameters():
        if ".conv." in name or name.startswith("head."):
            assert not p.any(), name
        elif name.endswith("gain.alpha"):
            assert p.item() == 1.0
        else:  # the 1x1 projections, as the paper's downsampling convs, keep the standard draw
            assert torch.equal(p, d[name]), name
    assert any(".skip." in n for n in d), "no projection in the test net"


@pytest.mark.slow
def test_fixup_resnet18_is_the_papers_network():
    """No BatchNorm; conv2 and fc zero, conv1 times 8^(-1/2), the projections and the stem as
    drawn; alpha = 1 and every scalar bias 0; and with random scalars each block computes the
    authors' FixupBasicBlock.forward (github.com/hongyi-zhang/Fixup), written out here."""
    default, fixup = built("resnet18_no_norm", "default"), built("resnet18_no_norm", "fixup")
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fixup.modules())
    d = dict(default.named_parameters())
    scalars = 0
    for name, p in fixup.named_parameters():
        if name.endswith(".beta") or name.endswith(".alpha"):
            scalars += 1
            assert p.item() == (1.0 if name.endswith("alpha") else 0.0), name
        elif ".conv2." in name or name.startswith("fc."):
            assert not p.any(), name
        elif ".conv1." in name:
            torch.testing.assert_close(p, d[name] * 8 ** -0.5, rtol=1e-6, atol=0)
        else:
            assert torch.equal(p, d[name]), name
    assert scalars == 8 * 5 + 2
    with torch.no_grad():
        for p in fixup.parameters():
            p.copy_(torch.randn_like(p) * 0.1 if p.dim() == 0 else p + 0.01 * torch.randn_like(p))
        for block in (fixup.layer1[0], fixup.layer2[0]):  # an identity skip and a projection
            x = torch.randn(2, block.conv1.in_channels, 8, 8)
            b1a, b1b, b2a, b2b = (getattr(block, n).beta for n in ("bias1a", "bias1b", "bias2a", "bias2b"))
            out = torch.relu(block.conv1(x + b1a) + b1b)
            out = block.conv2(out + b2a) * block.gain.alpha + b2b
            identity = x if block.downsample is None else block.downsample(x + b1a)
            torch.testing.assert_close(block(x), torch.relu(out + identity))
        x = torch.randn(2, 3, 8, 8)
        h = torch.relu(fixup.conv1(x) + fixup.bias1.beta)
        h = fixup.layer4(fixup.layer3(fixup.layer2(fixup.layer1(h))))
        torch.testing.assert_close(fixup(x), fixup.fc(h.mean(dim=(2, 3)) + fixup.bias2.beta))


def stream_growth(n_blocks: int, branch_init: str, width: int = 128) -> float:
    """Mean square of the residual stream after the last block over the one before the first,
    in a pre-activation ReLU resmlp with He init and every branch's last layer drawn by He too
    (under fixup: as if it had left zero)."""
    exp = to_experiment(compose_config("model=resmlp", "model.preact=true", f"model.width={width}",
                                       "activation=relu", "init=he_normal", f"depth={2 * n_blocks + 1}",
                                       f"model.branch_init={branch_init}"))
    torch.manual_seed(0)
    model = build(exp, Inputs("vectors", (width,), 3))
    initialize(model, exp.init, exp.model)
    with torch.no_grad():
        for block in model.blocks:
            nn.init.kaiming_normal_(block.fc2.weight, nonlinearity="relu")
        if branch_init == "fixup":  # alpha = 1: the multiplier does not hide the scaling
            assert all(b.gain.alpha.item() == 1.0 for b in model.blocks)
        io = block_io(model, torch.randn(512, width, generator=torch.Generator().manual_seed(1)))
    first_in, last_out = io[0][1], io[-1][2]
    return (last_out.pow(2).mean() / first_in.pow(2).mean()).item()


@pytest.mark.parametrize("n_blocks", [2, 8, 32])
def test_fixup_keeps_the_residual_stream_bounded_at_every_depth(n_blocks):
    """Zhang et al. 2019, sec. 3: each branch adds Var/L, so the stream grows by (1 + 1/L)^L < e."""
    growth = stream_growth(n_blocks, "fixup")
    assert growth == pytest.approx((1 + 1 / n_blocks) ** n_blocks, rel=0.25)
    assert growth < math.e * 1.25
    if n_blocks >= 8:
        assert stream_growth(n_blocks, "default") > 2 ** n_blocks / 4, "the default's stream grows like 2^L"


@pytest.mark.parametrize("args,words", [
    (["model=cnn", "model.branch_init=rezero"], ["model.branch_init=rezero", "model.residual=true"]),
    (["model=resmlp", "model.norm=batchnorm", "model.branch_init=fixup"], ["fixup", "model.norm=none"]),
    (["model=cnn", "model.residual=true", "model.norm=batchnorm", "model.branch_init=fixup"], ["fixup", "model.norm=none"]),
    (["model=resnet18", "dataset=shapes", "model.branch_init=fixup"], ["fixup", "resnet18", "model.norm=none"]),
    (["model=mlp", "model.branch_init=skipinit"], ["branch_init", "model=mlp"]),
    (["model=transformer", "dataset=majority", "model.branch_init=rezero"], ["branch_init", "model=transformer"]),
    (["model=resmlp", "model.branch_init=zero"], ["model.branch_init", "zero_last"]),
])
def test_configs_the_papers_rule_out_fail_in_one_line(args, words):
    line = check_command_line(args, CONF)
    assert line is not None and "\n" not in line, line
    assert all(w in line for w in words), line


def test_branch_init_leaves_the_default_network_unchanged():
    """default adds no parameter and no module: the networks of earlier runs are the same."""
    for family in FAMILIES:
        model = built(family, "default")
        assert not any("gain" in n for n, _ in model.named_modules()), family


@pytest.mark.parametrize("family", ["resmlp", "resmlp_ln_preact_tanh", "cnn_bn",
                                    pytest.param("resnet18_no_norm", marks=pytest.mark.slow)])
@pytest.mark.parametrize("branch_init", ["zero_last", "fixup", "skipinit", "rezero"])
def test_probe_rows_keep_the_default_sites(family, branch_init):
    """The same layers.csv rows (site, kind, layer, weight) as default, every present value finite."""
    no_norm = ["model.norm=none"] if branch_init == "fixup" else []  # fixup refuses norms
    overrides, inputs = FAMILIES[family]
    activation = next(o.split("=")[1] for o in overrides if o.startswith("activation="))
    x = torch.randn(16, *inputs.shape, generator=torch.Generator().manual_seed(2))
    y = torch.arange(16) % 3
    rows = {}
    for choice in ("default", branch_init):
        stats = probe_statistics(built(family, choice, *no_norm), activation, x, y)
        rows[choice] = [(r.site, r.kind, r.layer, r.weight) for r in stats.rows]
        assert torch.isfinite(stats.values[stats.present]).all(), choice
    assert rows[branch_init] == rows["default"]


@pytest.mark.parametrize("overrides", [["model=resmlp", "model.branch_init=fixup"],
                                       ["model=resmlp", "model.preact=true", "model.branch_init=rezero"]])
def test_a_job_trains_with_a_branch_init_and_records_the_same_sites(tmp_path, overrides):
    """A whole job: the branch init reaches the run (fixup: zero logits at epoch 0, so the loss is
    log(classes)), the network learns, and layers.csv has the default run's rows."""
    base = ["dataset=digits", "depth=5", "model.width=16", "epochs=2", "probe_size=50", "threads=1", "device=cpu",
            "optimizer.lr=0.1"]
    run_job(compose_config(*base, *overrides), tmp_path / "branch")
    run_job(compose_config(*base, *overrides[:-1]), tmp_path / "default")
    epochs = read_csv(tmp_path / "branch" / "epochs.csv")
    if "fixup" in overrides[-1]:
        assert float(epochs[0]["train_loss"]) == pytest.approx(math.log(10), rel=1e-6)
    assert float(epochs[-1]["train_loss"]) < float(epochs[0]["train_loss"])

    def sites(job: str) -> list[tuple[str, ...]]:
        return [(r["epoch"], r["site"], r["kind"], r["layer"]) for r in read_csv(tmp_path / job / "layers.csv")]

    assert sites("branch") == sites("default")


def test_the_config_offers_exactly_the_branch_inits_the_models_build():
    assert [b.value for b in BranchInit] == list(BRANCH_INITS)
