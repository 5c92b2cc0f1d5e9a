"""Config tests: every choice of every group composes, converts to its typed schema and names
something the code can build; range checks raise one-line ConfigErrors; Hydra refuses unknown keys.
"""

from __future__ import annotations

import re

import pytest
import torch
import yaml
from hydra.errors import ConfigCompositionException
from torch import nn

from conftest import CONF, GROUPS, TOP_KEYS, compose_config, group_choices
from initlab.choices import ACTIVATIONS, INITS, build_activation
from initlab.config import SCHEMAS, ConfigError, ExperimentConfig, to_experiment
from initlab.data import LOADERS
from initlab.inits import initialize
from initlab.train.loop import build_optimizer
from initlab.models import MLP, MODELS, Inputs, build

# a small input of each kind of data, for building any model
INPUTS = {"vectors": Inputs("vectors", (5,), 3), "images": Inputs("images", (1, 8, 8), 3),
          "sequences": Inputs("sequences", (6,), 3, vocab_size=11)}

ALL_CHOICES = [(group, choice) for group in GROUPS for choice in group_choices(group)]


def schema_of(group: str, choice: str) -> type:
    """The dataclass a YAML file extends, read from its ``/schema/<group>/<name>@_here_`` default."""
    defaults = yaml.safe_load((CONF / group / f"{choice}.yaml").read_text())["defaults"]
    (entry,) = [d for d in defaults if isinstance(d, str) and d.startswith(f"/schema/{group}/")]
    return SCHEMAS[group][entry.split("/")[-1].split("@")[0]]


def test_every_group_has_choices():
    for group in GROUPS:
        assert group_choices(group), f"conf/{group}/ has no options"
    assert {"relu", "tanh", "sigmoid", "gelu"} <= set(group_choices("activation"))
    assert {"he_normal", "orthogonal", "zero"} <= set(group_choices("init"))


def test_default_config_composes():
    cfg = compose_config()
    exp = to_experiment(cfg)
    assert isinstance(exp, ExperimentConfig)
    for group in GROUPS:
        node = getattr(exp, group)
        assert type(node) is schema_of(group, node.name)
    assert exp.depth > 0 and exp.epochs >= 0 and exp.batch_size > 0 and exp.probe_size > 0


@pytest.mark.parametrize("group,choice", ALL_CHOICES, ids=[f"{g}={c}" for g, c in ALL_CHOICES])
def test_every_choice_composes_and_converts(group, choice):
    exp = to_experiment(compose_config(f"{group}={choice}"))
    node = getattr(exp, group)
    assert type(node) is schema_of(group, choice)
    assert node.name == choice, "the file name and the name field must agree (records use the name)"
    # ... and names something the code can build
    if group == "activation":
        assert choice in ACTIVATIONS
        act = build_activation(node)
        assert isinstance(act, nn.Module)
        assert act(torch.linspace(-3, 3, 7)).shape == (7,)
    elif group == "init":
        assert choice in INITS
        model = MLP(5, 3, 8, 2, nn.ReLU())
        initialize(model, node, exp.model, x=torch.randn(16, 5))  # a data batch, for data-dependent inits
        assert all(torch.isfinite(layer.weight).all() for layer in model.linears)
    elif group == "dataset":
        assert choice in LOADERS
    elif group == "optimizer":
        params = [nn.Parameter(torch.zeros(3))]
        opt = build_optimizer(params, node)
        expected = {"sgd": torch.optim.SGD, "momentum": torch.optim.SGD, "rmsprop": torch.optim.RMSprop,
                    "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[choice]
        assert type(opt) is expected
        group0 = opt.param_groups[0]
        assert group0["lr"] == node.lr and group0["weight_decay"] == node.weight_decay
        if hasattr(node, "momentum"):
            assert group0["momentum"] == node.momentum
        if hasattr(node, "betas"):
            assert tuple(group0["betas"]) == tuple(node.betas)
    elif group == "model":  # the registry builds it for each kind of data it accepts: logits per class
        assert MODELS[choice].accepts
        for kind in MODELS[choice].accepts:
            inputs = INPUTS[kind]
            model = build(exp, inputs)
            x = torch.randint(0, 11, (2, *inputs.shape)) if kind == "sequences" else torch.randn(2, *inputs.shape)
            assert model(x).shape == (2, 3)


def test_choice_parameters_are_typed():
    exp = to_experiment(compose_config("init=he_uniform", "init.mode=fan_out", "init.factor=4",
                                       "optimizer=adam", "optimizer.betas=[0.8,0.9]", "dataset=blobs",
                                       "dataset.n_classes=3", "model.bias_init=normal", "model.bias_std=0.5"))
    assert exp.init.mode.value == "fan_out" and exp.init.factor == 4.0
    assert list(exp.optimizer.betas) == [0.8, 0.9]
    assert exp.dataset.n_classes == 3
    assert exp.model.bias_init.value == "normal" and exp.model.bias_std == 0.5


# Range checks (the CLI tests in test_train_cli.py check the same messages end to end).
RANGE_ERRORS = [
    (["depth=0"], r"depth must be > 0, got 0"),
    (["depth=-1"], r"depth must be > 0, got -1"),
    (["epochs=-1"], r"epochs must be >= 0, got -1"),
    (["batch_size=0"], r"batch_size must be > 0, got 0"),
    (["batch_size=9223372036854775808"], r"^batch_size must be > 0 and <= 2\*\*63 - 1 \(torch's int64\), got 9223372036854775808$"),
    (["probe_size=0"], r"probe_size must be > 0, got 0"),
    (["threads=0"], r"threads must be in \(0, 2147483647\] or null, got 0"),
    (["jacobian_every=-1"], r"jacobian_every must be >= 0, got -1"),
    (["log_every_steps=-2"], r"log_every_steps must be in \[0, 2147483647\], got -2"),
    (["distributions_every=-1"], r"distributions_every must be in \[0, 2147483647\], got -1"),
    (["model.width=0"], r"model.width must be > 0, got 0"),
    (["model.bias_init=normal", "model.bias_std=0"], r"model.bias_std .* must be > 0, got 0"),
    (["model.bias_std=0.5"], r"model.bias_std must be 0 with model.bias_init=zeros .*, got 0.5"),
    (["model.bias_init=torch_default", "model.bias_std=0.5"],
     r"model.bias_std must be 0 with model.bias_init=torch_default .*, got 0.5"),
    (["model=resmlp", "depth=2"], r"^depth must be >= 3 with model=resmlp \(a stem of 1 or 2 Linear layers and at least "
                                  r"one residual block of 2\), got 2$"),
    (["model=resmlp", "model.width=0"], r"model.width must be > 0, got 0"),
    (["model=cnn", "depth=2"], r"^depth must be >= 3 with model=cnn \(one conv layer per stage of "
                               r"model.channels=\[16, 32, 64\] at least\), got 2$"),
    (["model=cnn", "model.channels=[8,0]"], r"model.channels must be 1 or more integers, each > 0, got \[8, 0\]"),
    (["model=cnn", "model.channels=[]"], r"^model.channels must be 1 or more integers, each > 0, got \[\]$"),
    (["model=transformer", "model.nhead=3"], r"^model.d_model must be a multiple of model.nhead \(3\), got 64$"),
    (["model=transformer", "model.dropout=1"], r"model.dropout must be in \[0, 1\), got 1"),
    (["model=transformer", "model.d_model=0"], r"model.d_model must be > 0, got 0"),
    (["init.embedding=true"], r"^init.embedding=true changes nothing with model=mlp \(no embedding layers\); "
                              r"models with embeddings: transformer$"),
    (["optimizer.lr=-0.1"], r"optimizer.lr must be finite and > 0, got -0.1"),
    (["optimizer.lr=inf"], r"optimizer.lr must be finite and > 0, got inf"),
    (["optimizer.weight_decay=-1"], r"optimizer.weight_decay must be finite and >= 0, got -1"),
    (["optimizer.momentum=1"], r"optimizer.momentum must be in \[0, 1\), got 1"),
    (["optimizer.nesterov=true"], r"optimizer.nesterov=true needs optimizer.momentum > 0"),
    (["optimizer=rmsprop", "optimizer.alpha=1"], r"optimizer.alpha must be in \[0, 1\), got 1"),
    (["optimizer=rmsprop", "optimizer.momentum=nan"], r"optimizer.momentum must be in \[0, 1\), got nan"),
    (["optimizer=adam", "optimizer.betas=[0.9,1.0]"], r"optimizer.betas must be 2 numbers, each in \[0, 1\), got \[0.9, 1.0\]"),
    (["optimizer=adam", "optimizer.betas=[0.9]"], r"optimizer.betas must be 2 numbers"),
    (["optimizer=adamw", "optimizer.betas=[nan,0.9]"], r"optimizer.betas must be 2 numbers, each in \[0, 1\), got \[nan, 0.9\]"),
    (["optimizer=adam", "optimizer.eps=0"], r"optimizer.eps must be finite and > 0, got 0"),
    (["init=he_normal", "init.factor=0"], r"init.factor must be finite and > 0, got 0"),
    (["init=he_normal", "init.factor=inf"], r"init.factor must be finite and > 0, got inf"),
    (["init=xavier_normal", "init.gain=-1"], r"init.gain must be finite and > 0, got -1"),
    (["init=orthogonal", "init.gain=nan"], r"init.gain must be finite and > 0, got nan"),
    (["init=normal", "init.std=0"], r"init.std must be finite and > 0, got 0"),
    (["init=normal", "init.std=inf"], r"init.std must be finite and > 0, got inf"),
    (["init=trunc_normal", "init.mean=0.5", "init.a=-0.1", "init.b=0.1"],
     r"init.mean must be within 2 init.std of \[init.a, init.b\], i.e. in \[-0.3, 0.3\], got 0.5"),
    (["init=trunc_normal", "init.a=0.2", "init.b=100"], r"init.mean, init.std, init.a, init.b = 0.0, 0.1, 0.2, 100.0: \[a, b\] holds too little of N\(mean, "
                                                            r"std\^2\) .* \(acceptance 4.\de-04 < 0.1\)"),
    (["init=trunc_normal", "init.b=-inf"], r"init.b must be finite, got -inf"),
    (["init=trunc_normal", "init.a=1", "init.b=1"], r"init.a must be < init.b, got a=1.0, b=1.0"),
    (["activation=leaky_relu", "activation.negative_slope=-0.1"],
     r"negative_slope must be in \[0, 3\.4028234663852886e\+38\], got -0.1"),  # torch's float32 bounds it
    (["activation=elu", "activation.alpha=0"], r"activation.alpha must be in \(0, 3\.4028234663852886e\+38\], got 0"),
    (["activation=gelu", "activation.approximate=erf"], r"approximate must be one of none, tanh; got 'erf'"),
    (["activation=leaky_relu", "activation.transform=tat", "activation.c_val_0_target=1.5"],
     r"activation.c_val_0_target must be in \[0, 1\] or null, got 1.5"),
    (["activation=tanh", "activation.transform=dks", "activation.c_slope_1_target=1"],
     r"activation.c_slope_1_target must be finite and > 1 or null, got 1"),
    (["activation=tanh", "activation.transform=tat", "activation.c_curve_target=0"],
     r"activation.c_curve_target must be finite and > 0 or null, got 0"),
    (["dataset.val_size=-1"], r"dataset.val_size must be >= 0, got -1"),
    (["dataset.test_size=0"], r"dataset.test_size must be > 0, got 0"),
    (["dataset=blobs", "dataset.n_classes=1"], r"dataset.n_classes must be >= 2, got 1"),
    (["dataset=circles", "dataset.factor=1"], r"dataset.factor must be in \[0, 1\), got 1"),
    (["dataset=moons", "dataset.noise=-0.1"], r"dataset.noise must be finite and >= 0, got -0.1"),
    (["dataset=moons", "dataset.noise=inf"], r"dataset.noise must be finite and >= 0, got inf"),
    (["dataset=blobs", "dataset.cluster_std=nan"], r"dataset.cluster_std must be finite and > 0, got nan"),
    (["dataset=xor", "dataset.seed=4294967296"], r"dataset.seed must be in \[0, 4294967295\], got 4294967296"),
    (["seed=-1"], r"^seed must be in \[0, 4294967295\], got -1"),
    (["dataset=mnist", "dataset.std=[0.3,0.3]"], r"dataset.std must have one value per channel \(1 for mnist\)"),
    (["dataset=cifar10", "dataset.std=[0.2,0,0.2]"],
     r"dataset.std must be 1 or more numbers, each finite and > 0, got \[0.2, 0.0, 0.2\]"),
    (["dataset=mnist", "dataset.mean=[inf]"], r"dataset.mean must be 1 or more numbers, each finite, got \[inf\]"),
    (["dataset=spiral", "dataset.n_train=0"], r"dataset.n_train must be > 0, got 0"),
    (["+init.factr=2"], r"unknown init parameter\(s\) factr for init=he_normal; valid: apply_to, embedding, factor, mode"),
    (["+activation.slope=2"], r"unknown activation parameter\(s\) slope for activation=relu; valid: c_curve_target, c_slope_1_target, c_val_0_target, transform$"),
    (["+optimizer.beta=0.9"], r"unknown optimizer parameter\(s\) beta for optimizer=sgd; valid: lr, momentum, "
                              r"nesterov, weight_decay"),
    (["+epoch=3"], "^" + re.escape(f"unknown key epoch; valid top-level keys: {TOP_KEYS}") + "$"),
    (["+logger.histograms=true"], r"^unknown logger parameter\(s\) histograms for logger=none; logger=none takes "
                                  r"no parameters$"),
    (["+foo=1", "++bar.baz=2"], r"^unknown keys bar, foo; valid top-level keys: activation, "),
]


@pytest.mark.parametrize("overrides,message", RANGE_ERRORS, ids=[" ".join(o) for o, _ in RANGE_ERRORS])
def test_out_of_range_values_raise_one_line_config_errors(overrides, message):
    cfg = compose_config(*overrides)  # Hydra accepts the types; the ranges are ours
    with pytest.raises(ConfigError) as info:
        to_experiment(cfg)
    text = str(info.value)
    assert "\n" not in text
    assert re.search(message, text), text


@pytest.mark.parametrize("model", group_choices("model"))
def test_every_model_refuses_a_depth_below_1(model):
    """resnet18 is 18 deep whatever ``depth`` says, and took depth=-3 silently (rc 0) where every
    other model refused it: a count is an integer > 0 for every model."""
    with pytest.raises(ConfigError) as info:
        to_experiment(compose_config(f"model={model}", "depth=-3"))
    assert str(info.value) == "depth must be > 0, got -3"


@pytest.mark.parametrize("overrides,message", [
    (["init.factr=2"], r"Key 'factr' not in 'VarianceScalingConfig'"),
    (["init.mode=fan_x"], r"Invalid value 'fan_x', expected one of \[fan_in, fan_out\]"),
    (["depth=three"], r"Value 'three' of type 'str' could not be converted to Integer"),
    (["model.bias_init=uniform"], r"Invalid value 'uniform', expected one of \[zeros, normal, torch_default\]"),
    (["init.apply_to=tail"], r"Invalid value 'tail', expected one of \[all, head\]"),
    (["model=cnn", "model.norm=layernorm"], r"Invalid value 'layernorm', expected one of \[none, batchnorm\]"),
    (["device=tpu"], r"Invalid value 'tpu', expected one of \[auto, cpu, cuda\]"),
    (["activation=swish"], r"Could not find 'activation/swish'"),
])
def test_hydra_refuses_unknown_keys_types_and_choices(overrides, message):
    with pytest.raises(ConfigCompositionException) as info:
        compose_config(*overrides)
    text = str(info.value) + str(info.value.__cause__ or "")
    assert re.search(message, text), text


def test_valid_edge_values_are_accepted():
    """Boundaries that are inside the ranges: no spurious errors."""
    exp = to_experiment(compose_config("epochs=0", "depth=1", "model.width=1", "batch_size=1", "probe_size=1",
                                       "optimizer.momentum=0.99", "optimizer.nesterov=true"))
    assert (exp.epochs, exp.depth, exp.model.width) == (0, 1, 1)
    exp = to_experiment(compose_config("activation=leaky_relu", "activation.negative_slope=0",
                                       "init=trunc_normal", "init.a=-0.5", "init.b=0.5"))
    assert exp.activation.negative_slope == 0 and exp.init.b == 0.5


EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_file_passes_the_top_level_key_check(name):
    """Experiment files add ``hydra.sweeper.params``; only unknown keys of the experiment are refused."""
    assert isinstance(to_experiment(compose_config(f"+experiment={name}")), ExperimentConfig)
