"""Probe statistics of the registry's ``resmlp`` and ``cnn`` against an independent NumPy pass.

The models are built as a job builds them (``initlab.models.build`` from a composed config, then
``initlab.inits.initialize``) and run in float64. The reference rebuilds the forward pass from the
models' weights with a small reverse-mode tape in NumPy (linear, 3x3/1x1 conv, LayerNorm, tanh,
ReLU, 2x2 max-pool, global average pool, sums), takes delta = dL/dh at every site and the
weight gradients from it, and lists its own rows: sites in forward order (names written out
here, not read from the model), then weights no site names, in module order. Every column of
every row agrees to 1e-9 relative, and site, kind, index, layer and weight are as listed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import compose_config
from initlab.config import to_experiment
from initlab.inits import initialize
from initlab.measure.probes import probe_statistics
from initlab.models import Inputs, build
from test_site_statistics import COL, assert_matches, np_conv, np_conv_backward, np_softmax_delta, site_row


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- a reverse-mode tape in NumPy ----------------------------------------------------------------------
class Node:
    def __init__(self, value: np.ndarray):
        self.value, self.grad = value, None

    def add_grad(self, g: np.ndarray) -> None:
        self.grad = g if self.grad is None else self.grad + g


class Tape:
    """Records each op's backward; ``backward(out, g)`` runs them in reverse order."""

    def __init__(self, params: dict[str, np.ndarray]):
        self.ops, self.p = [], {k: Node(v) for k, v in params.items()}

    def op(self, value, backward) -> Node:
        out = Node(value)
        self.ops.append((out, backward))
        return out

    def backward(self, out: Node, g: np.ndarray) -> None:
        out.add_grad(g)
        for node, fn in reversed(self.ops):
            if node.grad is not None:
                fn(node.grad)

    def linear(self, x: Node, name: str) -> Node:
        W, b = self.p[f"{name}.weight"], self.p[f"{name}.bias"]

        def back(g):
            x.add_grad(g @ W.value)
            W.add_grad(g.T @ x.value)
            b.add_grad(g.sum(axis=0))
        return self.op(x.value @ W.value.T + b.value, back)

    def conv3(self, x: Node, name: str) -> Node:
        W, b = self.p[f"{name}.weight"], self.p[f"{name}.bias"]
        out, windows = np_conv(x.value, W.value, b.value)

        def back(g):
            dW, dx = np_conv_backward(g, windows, W.value, x.value.shape)
            x.add_grad(dx)
            W.add_grad(dW)
            b.add_grad(g.sum(axis=(0, 2, 3)))
        return self.op(out, back)

    def conv1(self, x: Node, name: str) -> Node:
        W = self.p[f"{name}.weight"]
        w = W.value[:, :, 0, 0]

        def back(g):
            x.add_grad(np.einsum("nohw,oc->nchw", g, w))
            W.add_grad(np.einsum("nohw,nchw->oc", g, x.value)[:, :, None, None])
        return self.op(np.einsum("nchw,oc->nohw", x.value, w), back)

    def layernorm(self, x: Node, name: str, eps: float = 1e-5) -> Node:
        gamma, beta = self.p[f"{name}.weight"], self.p[f"{name}.bias"]
        mu, var = x.value.mean(axis=1, keepdims=True), x.value.var(axis=1, keepdims=True)
        zhat = (x.value - mu) / np.sqrt(var + eps)

        def back(g):
            gamma.add_grad((g * zhat).sum(axis=0))
            beta.add_grad(g.sum(axis=0))
            dz = g * gamma.value
            x.add_grad((dz - dz.mean(axis=1, keepdims=True) - zhat * (dz * zhat).mean(axis=1, keepdims=True))
                       / np.sqrt(var + eps))
        return self.op(zhat * gamma.value + beta.value, back)

    def act(self, x: Node, kind: str) -> Node:
        a = np.tanh(x.value) if kind == "tanh" else np.maximum(x.value, 0)
        slope = 1 - a ** 2 if kind == "tanh" else (x.value > 0).astype(float)
        return self.op(a, lambda g: x.add_grad(g * slope))

    def identity(self, x: Node) -> Node:
        return self.op(x.value, lambda g: x.add_grad(g))

    def add(self, a: Node, b: Node) -> Node:
        def back(g):
            a.add_grad(g)
            b.add_grad(g)
        return self.op(a.value + b.value, back)

    def maxpool2(self, x: Node) -> Node:
        """2x2 max-pool, stride 2; the gradient goes to the first maximum of each window."""
        n, c, h, w = x.value.shape
        win = x.value[:, :, :h // 2 * 2, :w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2)
        win = win.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
        arg = win.argmax(axis=-1)

        def back(g):
            dwin = np.zeros_like(win)
            np.put_along_axis(dwin, arg[..., None], g[..., None], axis=-1)
            dx = np.zeros_like(x.value)
            dx[:, :, :h // 2 * 2, :w // 2 * 2] = dwin.reshape(n, c, h // 2, w // 2, 2, 2) \
                .transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2 * 2, w // 2 * 2)
            x.add_grad(dx)
        return self.op(win.max(axis=-1), back)

    def spatial_mean(self, x: Node) -> Node:
        n, c, h, w = x.value.shape
        return self.op(x.value.mean(axis=(2, 3)),
                       lambda g: x.add_grad(np.broadcast_to(g[:, :, None, None] / (h * w), x.value.shape).copy()))

    def flatten(self, x: Node) -> Node:
        return self.op(x.value.reshape(len(x.value), -1), lambda g: x.add_grad(g.reshape(x.value.shape)))


class Reference:
    """A NumPy forward that records sites as it goes: ``site(name, kind, h, weight, act)``."""

    def __init__(self, params: dict[str, np.ndarray], activation: str):
        self.t, self.activation, self.sites = Tape(params), activation, []

    def site(self, name: str, kind: str, h: Node, weight: str | None = None, act: bool = False) -> Node:
        h = self.t.identity(h)  # the site's own copy of h: delta is dL/dh through this site only
        out = self.t.act(h, self.activation) if act else self.t.identity(h)
        self.sites.append((name, kind, h, out, weight, act))
        return out

    def rows(self, logits: Node, y: np.ndarray, unnamed: list[str]) -> tuple[list[dict], list[tuple]]:
        """Statistics (site_row dicts) and (site, kind, index, layer, weight) of every row."""
        self.t.backward(logits, np_softmax_delta(logits.value, y))
        want, meta, layer = [], [], 0
        for i, (name, kind, h, out, weight, act) in enumerate(self.sites):
            layer += kind in ("hidden", "output")
            W = self.t.p[weight] if weight else None
            b = self.t.p.get(weight[:-len("weight")] + "bias") if weight else None
            want.append(site_row(h.value, out.value, h.grad, None if W is None else W.value,
                                 None if W is None else W.grad, None if b is None else b.grad, 1,
                                 output=kind == "output", tanh=act and self.activation == "tanh"))
            meta.append((name, kind, i, layer if kind in ("hidden", "output") else None, weight))
        for j, weight in enumerate(unnamed):
            W, b = self.t.p[weight], self.t.p.get(weight[:-len("weight")] + "bias")
            want.append({"weight_norm": np.sqrt((W.value ** 2).sum()), "grad_norm": np.sqrt((W.grad ** 2).sum()),
                         "bias_grad_norm": None if b is None else np.sqrt((b.grad ** 2).sum())})
            meta.append((weight[:-len(".weight")], "weight", len(self.sites) + j, None, weight))
        return want, meta


# --- the registry's models, built as a job builds them ---------------------------------------------------
def job_model(inputs: Inputs, *overrides: str) -> torch.nn.Module:
    exp = to_experiment(compose_config(*overrides))
    torch.manual_seed(exp.seed)
    model = build(exp, inputs)
    initialize(model, exp.init, exp.model)
    model = model.double()
    with torch.no_grad():  # norm layers away from their (1, 0) defaults, so their affine part counts
        for name, m in model.named_modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return model


def numpy_params(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.named_parameters()}


def check(model, activation: str, x: torch.Tensor, y: torch.Tensor, want, meta) -> None:
    got = probe_statistics(model, activation, x, y)
    assert [(r.site, r.kind, r.index, r.layer, r.weight) for r in got.rows] == meta
    assert_matches(got, want)


def np_resmlp(p, x, y, depth: int, preact: bool, norm: str, activation: str):
    """The residual MLP written out: stem, blocks (post- or pre-activation), head."""
    ref = Reference(p, activation)
    t = ref.t
    n_stem = 1 if depth % 2 else 2
    n_blocks = (depth - n_stem) // 2

    def normed(h: Node, name: str) -> Node:
        return t.layernorm(h, name) if norm == "layernorm" else h

    a = t.flatten(Node(x))
    for i in range(n_stem):
        a = t.linear(a, f"stem.{i}")
        if i < (n_stem - 1 if preact else n_stem):
            a = ref.site(f"stem_acts.{i}", "hidden", normed(a, f"stem_norms.{i}"), f"stem.{i}.weight", act=True)
    for k in range(n_blocks):
        b = f"blocks.{k}"
        if preact:
            h = t.linear(ref.site(f"{b}.act1", "hidden", normed(a, f"{b}.norm1"), None, act=True), f"{b}.fc1")
            r = t.linear(ref.site(f"{b}.act2", "hidden", normed(h, f"{b}.norm2"), f"{b}.fc1.weight", act=True),
                         f"{b}.fc2")
            a = ref.site(f"{b}.residual", "residual", t.add(a, r))
        else:
            h = ref.site(f"{b}.act1", "hidden", normed(t.linear(a, f"{b}.fc1"), f"{b}.norm1"), f"{b}.fc1.weight",
                         act=True)
            s = ref.site(f"{b}.act2", "hidden", t.add(a, normed(t.linear(h, f"{b}.fc2"), f"{b}.norm2")),
                         f"{b}.fc2.weight", act=True)
            a = ref.site(f"{b}.residual", "residual", s)
    if preact:
        a = ref.site("final_act", "hidden", normed(a, "final_norm"), None, act=True)
    logits = t.linear(a, "out")
    logits = ref.site("output", "output", logits, "out.weight")
    unnamed = [f"stem.{n_stem - 1}.weight"] + [f"blocks.{k}.fc2.weight" for k in range(n_blocks)] if preact else []
    return ref.rows(logits, y, unnamed)


@pytest.mark.parametrize("depth, preact, norm", [
    (5, False, "none"), (6, False, "none"), (5, True, "none"), (6, True, "none"),
    (5, False, "layernorm"), (6, True, "layernorm")])
def test_resmlp_statistics_match_numpy(depth, preact, norm):
    inputs = Inputs("images", (1, 3, 4), 3)
    model = job_model(inputs, "model=resmlp", f"depth={depth}", "model.width=7", f"model.preact={str(preact).lower()}",
                      f"model.norm={norm}", "activation=tanh", "init=xavier_normal", "model.bias_init=normal",
                      "model.bias_std=0.3")
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(25, 1, 3, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (25,), generator=g)
    want, meta = np_resmlp(numpy_params(model), x.numpy(), y.numpy(), depth, preact, norm, "tanh")
    check(model, "tanh", x, y, want, meta)
    hidden = [m for m in meta if m[1] in ("hidden", "output")]
    assert [m[3] for m in hidden] == list(range(1, len(hidden) + 1))
    assert any(w["frac_saturated"] > 0 for w in want if "frac_saturated" in w) or norm == "none"


def np_cnn(p, x, y, depths: list[int], residual: bool, activation: str):
    """The conv stack written out: per stage 3x3 conv -> act (+ skip), max-pool between stages."""
    ref = Reference(p, activation)
    t = ref.t
    a, c_in, unnamed = Node(x), x.shape[1], []
    for s, n in enumerate(depths):
        if s > 0:
            a = t.maxpool2(a)
        for j in range(n):
            name = f"stages.{s}.{j}"
            c_out = p[f"{name}.conv.weight"].shape[0]
            h = t.conv3(a, f"{name}.conv")
            if residual:
                skip = a if c_in == c_out else t.conv1(a, f"{name}.skip")
                if c_in != c_out:
                    unnamed.append(f"{name}.skip.weight")
                h = t.add(h, skip)
            a = ref.site(f"{name}.act", "hidden", h, f"{name}.conv.weight", act=True)
            if residual:
                a = ref.site(f"{name}.residual", "residual", a)
            c_in = c_out
    logits = t.linear(t.spatial_mean(a), "head")
    logits = ref.site("output", "output", logits, "head.weight")
    return ref.rows(logits, y, unnamed)


@pytest.mark.parametrize("residual", [False, True])
def test_cnn_statistics_match_numpy(residual):
    inputs = Inputs("images", (2, 6, 5), 4)
    model = job_model(inputs, "model=cnn", "depth=3", "model.channels=[3,4]", "model.norm=none",
                      f"model.residual={str(residual).lower()}", "activation=relu", "init=he_normal",
                      "model.bias_init=normal", "model.bias_std=0.2")
    with torch.no_grad():
        model.stages[0][0].conv.bias[1] = -1e3  # channel 1 of the first conv never fires: frac_dead 1/3
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(12, 2, 6, 5, generator=g, dtype=torch.float64), torch.randint(0, 4, (12,), generator=g)
    want, meta = np_cnn(numpy_params(model), x.numpy(), y.numpy(), [2, 1], residual, "relu")
    check(model, "relu", x, y, want, meta)
    expected_sites = ["stages.0.0.act", "stages.0.1.act", "stages.1.0.act", "output"]
    if residual:
        expected_sites = ["stages.0.0.act", "stages.0.0.residual", "stages.0.1.act", "stages.0.1.residual",
                          "stages.1.0.act", "stages.1.0.residual", "output"]
    assert [m[0] for m in meta if m[1] != "weight"] == expected_sites
    assert [m[0] for m in meta if m[1] == "weight"] == (["stages.0.0.skip", "stages.1.0.skip"] if residual else [])
    got = probe_statistics(model, "relu", x, y)
    assert want[0]["frac_dead"] == pytest.approx(1 / 3) and float(got.values[0, COL["frac_dead"]]) == want[0]["frac_dead"]
