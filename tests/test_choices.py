"""The choice registries (initlab.choices): one entry per YAML file, and each entry's parts agree
with each other: the theory's phi is the torch module's, sigma_w^2 is what the fill draws, the
saturation rule reads torch tensors and NumPy arrays alike. Importing them loads no torch.
"""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
import seaborn as sns
import torch
import yaml

from conftest import CONF, ROOT, compose_config, group_choices
from initlab.choices import ACTIVATIONS, INITS
from initlab.cli import check_single_run
from initlab.config import to_experiment

REGISTRIES = {"activation": ACTIVATIONS, "init": INITS}


@pytest.mark.parametrize("group", REGISTRIES)
def test_every_yaml_file_has_one_registry_entry_and_vice_versa(group):
    files = group_choices(group)
    names = [yaml.safe_load((CONF / group / f"{f}.yaml").read_text())["name"] for f in files]
    assert names == files, "a YAML file's name field is its file name"
    assert sorted(REGISTRIES[group]) == files
    assert all(key == choice.name for key, choice in REGISTRIES[group].items())


def test_importing_the_choices_and_the_theory_loads_no_torch_or_seaborn():
    code = ("import sys, initlab.choices, initlab.theory; "
            "print(sorted(m for m in ('torch', 'seaborn', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_colours_are_the_palettes_the_figures_always_used():
    """tab10 in hue pairs per init family, Dark2 then black per activation (as drawn since P3)."""
    t10 = dict(zip(("blue", "orange", "green", "red", "purple", "brown", "pink", "grey", "olive", "cyan"),
                   sns.color_palette("tab10")))
    inits = {"he_normal": "blue", "he_uniform": "cyan", "xavier_normal": "green", "xavier_uniform": "olive",
             "normal": "orange", "trunc_normal": "brown", "zero": "grey", "orthogonal": "red",
             "lecun_normal": "purple", "lecun_uniform": "pink"}
    for name, hue in inits.items():
        assert INITS[name].color == tuple(t10[hue]), name
    activations = ("relu", "tanh", "sigmoid", "gelu", "linear", "leaky_relu", "elu", "selu", "silu")
    assert tuple(ACTIVATIONS) == activations  # plot order
    for name, color in zip(activations, [*sns.color_palette("Dark2"), (0.0, 0.0, 0.0)]):
        assert ACTIVATIONS[name].color == tuple(color), name
    for registry in REGISTRIES.values():
        colors = [c.color for c in registry.values()]
        assert len(set(colors)) == len(colors), "every choice of a group has its own colour"
        assert all(len(c) == 3 and all(0 <= v <= 1 for v in c) for c in colors)


ACTIVATION_OVERRIDES = [[f"activation={name}"] for name in ACTIVATIONS] + [
    ["activation=leaky_relu", "activation.negative_slope=0.3"], ["activation=elu", "activation.alpha=0.5"],
    ["activation=gelu", "activation.approximate=tanh"]]


@pytest.mark.parametrize("overrides", ACTIVATION_OVERRIDES, ids=" ".join)
def test_theory_expectations_describe_the_torch_module(overrides):
    """E[phi(sqrt(q) z)^2] and E[phi'(sqrt(q) z)^2] of the torch module (autograd for phi'),
    integrated independently on a fine grid, match the choice's expectations object."""
    cfg = to_experiment(compose_config(*overrides)).activation
    choice = ACTIVATIONS[cfg.name]
    module, gaussian = choice.module(cfg), choice.expectations(cfg)
    z = torch.linspace(-10, 10, 40_000, dtype=torch.float64)  # kinks at 0 fall mid-cell: O(h^2)
    density = torch.exp(-0.5 * z**2) / np.sqrt(2 * np.pi)
    for q in (0.3, 1.0, 4.0):
        x = (np.sqrt(q) * z).requires_grad_()
        phi = module(x)
        (dphi,) = torch.autograd.grad(phi.sum(), x)
        second = torch.trapezoid(phi.detach() ** 2 * density, z).item()
        grad = torch.trapezoid(dphi**2 * density, z).item()
        assert float(gaussian.second_moment(q)) == pytest.approx(second, rel=1e-6), q
        assert float(gaussian.grad_moment(q)) == pytest.approx(grad, rel=1e-6), q


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_saturation_rule_reads_torch_and_numpy_alike(name):
    rule = ACTIVATIONS[name].saturated
    if rule is None:
        assert name not in ("tanh", "sigmoid"), "bounded activations have a flat part"
        return
    post = np.linspace(-1.0, 1.0, 2001)
    mask = rule(post)
    assert mask.dtype == bool and np.array_equal(mask, rule(torch.from_numpy(post)).numpy())
    expected = np.abs(post) > 0.99 if name == "tanh" else (post < 0.01) | (post > 0.99)
    assert np.array_equal(mask, expected)


@pytest.mark.parametrize("name", INITS)
def test_sigma_w2_is_what_the_fill_draws(name):
    """fan_in * mean(W^2) of the fill on a large Linear-shaped weight, for every init as its YAML
    file sets it (the mean-field theory's sigma_w^2 of that layer)."""
    cfg = to_experiment(compose_config(f"init={name}")).init
    fan_in, fan_out = 300, 500
    if INITS[name].theory_reason is not None:  # data-dependent: the fill is only its pre-init
        with pytest.raises(ValueError, match="^" + re.escape(INITS[name].theory_reason)):
            INITS[name].sigma_w2(cfg, fan_in, fan_out)
        return
    torch.manual_seed(0)
    w = INITS[name].fill(torch.empty(fan_out, fan_in), cfg)
    empirical = fan_in * w.double().pow(2).mean().item()
    assert INITS[name].sigma_w2(cfg, fan_in, fan_out) == pytest.approx(empirical, rel=0.01, abs=1e-12)


@pytest.mark.parametrize("group", REGISTRIES)
def test_a_name_with_no_choice_is_refused_in_one_line(group):
    """``activation.name=foo`` composes (the override replaces the YAML's name): the schema refuses
    it before any training, naming the valid choices, in train.py's pre-check too."""
    registry = REGISTRIES[group]
    expected = (f"{group}.name='nosuch' is no {group}; valid: {', '.join(registry)} "
                f"(choose one with {group}=NAME)")
    assert check_single_run([f"{group}.name=nosuch"], CONF) == expected
    first = next(iter(registry))
    assert check_single_run([f"{group}={first}", f"{group}.name={first}"], CONF) is None
