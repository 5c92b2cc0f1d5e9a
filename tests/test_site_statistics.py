"""Probe statistics of models beyond the plain MLP against independent float64 NumPy passes.

Each model runs in float64 here, so the probe's numbers and NumPy's agree to rounding (1e-9
relative). The references compute forward and backward by hand from the models' weights:
an MLP with LayerNorm between each Linear and its activation, and a small CNN (Conv2d ->
ReLU site -> Conv2d (no bias) -> ReLU site without a weight -> average pooling -> Linear ->
output site), whose statistics pool over samples and positions and whose ``frac_dead`` counts
channels; its second conv, named by no site, gets a row of kind ``weight``. A token model checks
the sequence layout (N, T, D) and that the input-output Jacobian is skipped for token ids.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn

from initlab.measure.jacobian import singular_values
from initlab.measure.probes import probe_statistics
from initlab.models import MLP
from initlab.models.sites import ActivationSite, Site
from initlab.records import PROBE_COLUMNS

COL = {c: i for i, c in enumerate(PROBE_COLUMNS)}


def np_softmax_delta(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """d(mean cross-entropy)/d(logits)."""
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    return p / len(y)


def site_row(h, a, d, W, dW, db, dead_axis, output=False, tanh=False) -> dict:
    """One row's statistics from NumPy arrays; ``dead_axis``: the channel/feature axis; ``tanh``:
    the site applies tanh, saturated where |tanh| > 0.99."""
    zero = np.moveaxis(a == 0, dead_axis, 0).reshape(a.shape[dead_axis], -1)
    row = {"preact_mean": h.mean(), "preact_std": h.std(), "preact_sq": (h ** 2).mean(),
           "act_mean": a.mean(), "act_std": a.std(), "frac_zero": (a == 0).mean(),
           "frac_dead": 0.0 if output else zero.all(axis=1).mean(), "frac_saturated": (np.abs(a) > 0.99).mean() if tanh and not output else 0.0,
           "delta_rms": np.sqrt((d ** 2).mean())}
    if W is not None:
        row.update(weight_norm=np.sqrt((W ** 2).sum()), grad_norm=np.sqrt((dW ** 2).sum()))
        row["bias_grad_norm"] = None if db is None else np.sqrt((db ** 2).sum())
    return row


def assert_matches(got, want: list[dict]) -> None:
    assert len(got.rows) == len(want)
    for i, expected in enumerate(want):
        for column in PROBE_COLUMNS:
            value, present = float(got.values[i, COL[column]]), bool(got.present[i, COL[column]])
            if expected.get(column) is None:
                assert not present, f"row {i} {column} should be empty"
            else:
                assert present and value == pytest.approx(expected[column], rel=1e-9, abs=1e-300), \
                    f"row {got.rows[i].site} {column}: {value!r} vs numpy {expected[column]!r}"


# --- an MLP with LayerNorm -------------------------------------------------------------------------
def np_layernorm_mlp(params, x, y, eps=1e-5):
    """Rows for Linear -> LayerNorm -> tanh blocks and the output Linear (weights as NumPy)."""
    depth = len(params["hidden"])
    a, cache = x, []
    for (W, b), (g, beta) in zip(params["hidden"], params["norms"]):
        z = a @ W.T + b
        mu, var = z.mean(axis=1, keepdims=True), z.var(axis=1, keepdims=True)
        zhat = (z - mu) / np.sqrt(var + eps)
        h = zhat * g + beta
        cache.append((a, zhat, var, h, np.tanh(h)))
        a = np.tanh(h)
    Wo, bo = params["out"]
    logits = a @ Wo.T + bo
    d_out = np_softmax_delta(logits, y)
    rows = [None] * (depth + 1)
    rows[depth] = site_row(logits, logits, d_out, Wo, d_out.T @ a, d_out.sum(axis=0), 1, output=True)
    da = d_out @ Wo
    for i in range(depth - 1, -1, -1):
        a_in, zhat, var, h, post = cache[i]
        (W, _), (g, _) = params["hidden"][i], params["norms"][i]
        dh = da * (1 - post ** 2)  # delta at the site: dL/dh, h the LayerNorm's output
        dzhat = dh * g
        dz = (dzhat - dzhat.mean(axis=1, keepdims=True)
              - zhat * (dzhat * zhat).mean(axis=1, keepdims=True)) / np.sqrt(var + eps)
        rows[i] = site_row(h, post, dh, W, dz.T @ a_in, dz.sum(axis=0), 1, tanh=True)
        da = dz @ W
    return rows


def test_layernorm_mlp_matches_numpy():
    torch.manual_seed(0)
    model = MLP(12, 4, 9, 3, nn.Tanh(), norm="layernorm").double()
    with torch.no_grad():
        for norm in model.norms:  # away from the (1, 0) defaults, so the affine part is tested
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.3, 0.3)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(40, 12, generator=g, dtype=torch.float64), torch.randint(0, 4, (40,), generator=g)
    got = probe_statistics(model, "tanh", x, y)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    params = {"hidden": [(state[f"hidden.{i}.weight"], state[f"hidden.{i}.bias"]) for i in range(3)],
              "norms": [(state[f"norms.{i}.weight"], state[f"norms.{i}.bias"]) for i in range(3)],
              "out": (state["out.weight"], state["out.bias"])}
    assert_matches(got, np_layernorm_mlp(params, x.numpy(), y.numpy()))
    assert [(r.site, r.kind, r.layer) for r in got.rows] == [
        ("acts.0", "hidden", 1), ("acts.1", "hidden", 2), ("acts.2", "hidden", 3), ("output", "output", 4)]


# --- a small CNN -----------------------------------------------------------------------------------
def np_conv(x, W, b):
    """3x3 convolution, padding 1, stride 1: (N, C, H, W) -> (N, O, H, W); and its windows."""
    windows = sliding_window_view(np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1))), (3, 3), axis=(2, 3))
    out = np.einsum("nchwkl,ockl->nohw", windows, W)
    return (out if b is None else out + b[None, :, None, None]), windows


def np_conv_backward(dout, windows, W, shape):
    """Gradients of the weight and of the input of ``np_conv``."""
    dW = np.einsum("nohw,nchwkl->ockl", dout, windows)
    dxpad = np.zeros((shape[0], shape[1], shape[2] + 2, shape[3] + 2))
    for k in range(3):
        for l in range(3):
            dxpad[:, :, k:k + shape[2], l:l + shape[3]] += np.einsum("nohw,oc->nchw", dout, W[:, :, k, l])
    return dW, dxpad[:, :, 1:-1, 1:-1]


def small_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), ActivationSite(nn.ReLU(inplace=True), weight="0.weight"),
        nn.Conv2d(4, 3, 3, padding=1, bias=False), ActivationSite(nn.ReLU()),
        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(3 * 3 * 3, 5), Site("output", weight="6.weight"))


def test_cnn_statistics_pool_over_positions_and_match_numpy():
    torch.manual_seed(0)
    model = small_cnn().double()
    with torch.no_grad():
        model[0].bias[1] = -1e3  # channel 1 of the first conv never fires: frac_dead 1/4 there
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(30, 2, 6, 6, generator=g, dtype=torch.float64), torch.randint(0, 5, (30,), generator=g)
    got = probe_statistics(model, "relu", x, y)

    p = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    xn, yn = x.numpy(), y.numpy()
    h1, win1 = np_conv(xn, p["0.weight"], p["0.bias"])
    a1 = np.maximum(h1, 0)
    h2, win2 = np_conv(a1, p["2.weight"], None)
    a2 = np.maximum(h2, 0)
    pooled = a2.reshape(30, 3, 3, 2, 3, 2).mean(axis=(3, 5))
    flat = pooled.reshape(30, -1)
    logits = flat @ p["6.weight"].T + p["6.bias"]
    d_out = np_softmax_delta(logits, yn)
    d_pooled = (d_out @ p["6.weight"]).reshape(30, 3, 3, 3)
    da2 = np.repeat(np.repeat(d_pooled, 2, axis=2), 2, axis=3) / 4
    dh2 = da2 * (h2 > 0)
    dW2, da1 = np_conv_backward(dh2, win2, p["2.weight"], a1.shape)
    dh1 = da1 * (h1 > 0)
    dW1, _ = np_conv_backward(dh1, win1, p["0.weight"], xn.shape)
    want = [site_row(h1, a1, dh1, p["0.weight"], dW1, dh1.sum(axis=(0, 2, 3)), 1),
            site_row(h2, a2, dh2, None, None, None, 1),
            site_row(logits, logits, d_out, p["6.weight"], d_out.T @ flat, d_out.sum(axis=0), 1, output=True),
            {"weight_norm": np.sqrt((p["2.weight"] ** 2).sum()), "grad_norm": np.sqrt((dW2 ** 2).sum())}]
    assert_matches(got, want)
    assert want[0]["frac_dead"] >= 0.25 and float(got.values[0, COL["frac_dead"]]) == want[0]["frac_dead"]
    assert [(r.site, r.kind, r.index, r.layer, r.weight) for r in got.rows] == [
        ("1", "hidden", 0, 1, "0.weight"), ("3", "hidden", 1, 2, None), ("7", "output", 2, 3, "6.weight"),
        ("2", "weight", 3, None, "2.weight")]
    assert got.weights == ["0.weight", "6.weight", "2.weight"]


def test_cnn_jacobian_is_input_to_logits_on_flattened_inputs():
    torch.manual_seed(0)
    model = small_cnn().double()
    x = torch.randn(3, 2, 6, 6, dtype=torch.float64)
    spectra = singular_values(model, x)
    assert set(spectra) == {"input_output"}, "no hidden-to-hidden Jacobian outside plain MLPs"
    jac = torch.autograd.functional.jacobian(lambda v: model(v.unsqueeze(0)).squeeze(0), x[1]).reshape(5, -1)
    np.testing.assert_allclose(spectra["input_output"][1].numpy(), torch.linalg.svdvals(jac).numpy(), rtol=1e-10)


# --- token inputs --------------------------------------------------------------------------------------
class TokenModel(nn.Module):
    """Embedding -> tanh site per position (N, T, D) -> mean over positions -> Linear -> output."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(7, 4)
        self.act = ActivationSite(nn.Tanh(), kind="embedding", weight="embed.weight")
        self.head = nn.Linear(4, 3)
        self.output = Site("output", weight="head.weight")

    def forward(self, tokens):
        return self.output(self.head(self.act(self.embed(tokens)).mean(dim=1)))


def test_sequence_sites_pool_over_positions_and_count_dead_features():
    torch.manual_seed(0)
    model = TokenModel().double()
    with torch.no_grad():
        model.embed.weight[:, 2] = 0.0  # feature 2 is zero for every token: dead
    g = torch.Generator().manual_seed(3)
    tokens, y = torch.randint(0, 7, (20, 5), generator=g), torch.randint(0, 3, (20,), generator=g)
    got = probe_statistics(model, "tanh", tokens, y)
    E, W = model.embed.weight.detach().numpy(), model.head.weight.detach().numpy()
    h = E[tokens.numpy()]
    a = np.tanh(h)
    d_out = np_softmax_delta(a.mean(axis=1) @ W.T + model.head.bias.detach().numpy(), y.numpy())
    dh = np.repeat((d_out @ W)[:, None, :], 5, axis=1) / 5 * (1 - a ** 2)
    dE = np.zeros_like(E)
    np.add.at(dE, tokens.numpy().ravel(), dh.reshape(-1, 4))
    row = site_row(h, a, dh, E, dE, None, 2, tanh=True)
    assert row["frac_dead"] == 0.25
    assert_matches(got, [row, site_row(a.mean(axis=1) @ W.T + model.head.bias.detach().numpy(),
                                       a.mean(axis=1) @ W.T + model.head.bias.detach().numpy(), d_out, W,
                                       d_out.T @ a.mean(axis=1), d_out.sum(axis=0), 1, output=True)])
    assert singular_values(model, tokens) == {}, "token ids have no input-output Jacobian"


@pytest.mark.parametrize("norm", ["batchnorm", "layernorm"])
def test_normalized_mlps_measure_without_error_and_have_no_hidden_jacobian(norm):
    torch.manual_seed(0)
    model = MLP(10, 3, 8, 3, nn.ReLU(), norm=norm)
    x, y = torch.randn(16, 10), torch.randint(0, 3, (16,))
    stats = probe_statistics(model, "relu", x, y)
    assert len(stats.rows) == 4 and bool(torch.isfinite(stats.values[stats.present]).all())
    assert set(singular_values(model, x[:4])) == {"input_output"}
    assert not math.isnan(float(stats.values[-1, COL["delta_rms"]]))


@pytest.mark.parametrize("norm", ["batchnorm", "layernorm"])
def test_a_normalized_mlp_job_has_no_predictions_and_says_why(tmp_path, norm):
    from conftest import compose_config, read_csv, run_job

    result = run_job(compose_config(f"model.norm={norm}", "depth=2", "model.width=8", "epochs=1", "threads=1",
                                    "device=cpu", "probe_size=100"), tmp_path)
    assert result["status"] == "completed"
    assert result["theory_reason"] == f"no mean-field map for model.norm={norm} (model.norm=none has one)"
    assert all(v is None for v in result["theory"].values())
    layers = read_csv(tmp_path / "layers.csv")
    assert [r["site"] for r in layers] == ["acts.0", "acts.1", "output"] * 2
    assert all(r["q_pred"] == "" and r["delta_rms_pred"] == "" for r in layers)
    assert {r["kind"] for r in read_csv(tmp_path / "jacobian.csv")} == {"input_output"}
    assert result["n_params"] == (64 + 1) * 8 + 2 * 8 + (8 + 1) * 8 + 2 * 8 + (8 + 1) * 10
