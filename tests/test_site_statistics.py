"""Probe statistics of models beyond the plain MLP against independent float64 NumPy passes.

Each model runs in float64 here, so the probe's numbers and NumPy's agree to rounding (1e-9
relative). The references compute forward and backward by hand from the models' weights:
an MLP with LayerNorm or BatchNorm (the probe batch's own statistics) between each Linear and its
activation, and a small CNN (Conv2d ->
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


# --- MLPs with LayerNorm and BatchNorm ------------------------------------------------------------
def np_normalized_mlp(params, x, y, axis, tanh, eps=1e-5):
    """Rows for Linear -> norm -> activation blocks and the output Linear (weights as NumPy). The norm
    standardizes over ``axis`` with the biased variance: 1, each example's features (LayerNorm);
    0, each feature over the batch (BatchNorm as a training step normalizes), its backward pass
    through the batch statistics (Ioffe & Szegedy 2015, sec. 3). ``tanh``: tanh, else ReLU."""
    depth = len(params["hidden"])
    act = np.tanh if tanh else (lambda v: np.maximum(v, 0))
    a, cache = x, []
    for (W, b), (g, beta) in zip(params["hidden"], params["norms"]):
        z = a @ W.T + b
        mu, var = z.mean(axis=axis, keepdims=True), z.var(axis=axis, keepdims=True)
        zhat = (z - mu) / np.sqrt(var + eps)
        h = zhat * g + beta
        cache.append((a, zhat, var, h, act(h)))
        a = act(h)
    Wo, bo = params["out"]
    logits = a @ Wo.T + bo
    d_out = np_softmax_delta(logits, y)
    rows = [None] * (depth + 1)
    rows[depth] = site_row(logits, logits, d_out, Wo, d_out.T @ a, d_out.sum(axis=0), 1, output=True)
    da = d_out @ Wo
    for i in range(depth - 1, -1, -1):
        a_in, zhat, var, h, post = cache[i]
        (W, _), (g, _) = params["hidden"][i], params["norms"][i]
        dh = da * ((1 - post ** 2) if tanh else (h > 0))  # delta at the site: dL/dh, h the norm's output
        dzhat = dh * g
        dz = (dzhat - dzhat.mean(axis=axis, keepdims=True)
              - zhat * (dzhat * zhat).mean(axis=axis, keepdims=True)) / np.sqrt(var + eps)
        rows[i] = site_row(h, post, dh, W, dz.T @ a_in, dz.sum(axis=0), 1, tanh=tanh)
        da = dz @ W
    return rows


def numpy_params(model, depth):
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    return {"hidden": [(state[f"hidden.{i}.weight"], state[f"hidden.{i}.bias"]) for i in range(depth)],
            "norms": [(state[f"norms.{i}.weight"], state[f"norms.{i}.bias"]) for i in range(depth)],
            "out": (state["out.weight"], state["out.bias"])}


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
    assert_matches(got, np_normalized_mlp(numpy_params(model, 3), x.numpy(), y.numpy(), axis=1, tanh=True))
    assert [(r.site, r.kind, r.layer) for r in got.rows] == [
        ("acts.0", "hidden", 1), ("acts.1", "hidden", 2), ("acts.2", "hidden", 3), ("output", "output", 4)]


def batchnorm_mlp():
    """A float64 BatchNorm MLP with its affine parameters and running statistics away from their
    defaults (running mean 0, variance 1: the identity that eval mode used at init)."""
    torch.manual_seed(0)
    model = MLP(12, 4, 9, 3, nn.ReLU(), norm="batchnorm").double()
    with torch.no_grad():
        for norm in model.norms:
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.3, 0.3)
            norm.running_mean.uniform_(-2, 2)
            norm.running_var.uniform_(3, 5)
            norm.num_batches_tracked.fill_(7)
    return model


def test_batchnorm_mlp_is_probed_with_the_probe_batchs_statistics():
    """Eval mode normalized by the running statistics, at init mean 0 and variance 1: every
    BatchNorm was the identity and a BatchNorm net's epoch-0 records were those of the net without
    it. The probe pass normalizes as a training step does, gradients through the batch statistics,
    and leaves the running statistics and every module's mode as they were."""
    model = batchnorm_mlp()
    buffers = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "batches" in k}
    model.train()
    model.acts[1].eval()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(40, 12, generator=g, dtype=torch.float64), torch.randint(0, 4, (40,), generator=g)
    got = probe_statistics(model, "relu", x, y)
    want = np_normalized_mlp(numpy_params(model, 3), x.numpy(), y.numpy(), axis=0, tanh=False)
    for i, row in enumerate(want[:3]):  # the batch mean removes a hidden bias: its gradient is 0 but for rounding
        got_bias = float(got.values[i, COL["bias_grad_norm"]])
        assert row["bias_grad_norm"] < 1e-15 and got_bias < 1e-15
        row["bias_grad_norm"] = got_bias
    assert_matches(got, want)
    for key, value in buffers.items():
        assert torch.equal(model.state_dict()[key], value), f"{key} changed by the probe"
    assert model.training and not model.acts[1].training and model.norms[0].training


def test_batchnorm_mlp_jacobian_holds_the_probe_batchs_statistics_fixed():
    """Per input, d logits / d x through BatchNorm as the affine map that normalized the probe
    batch: W_out diag(relu') diag(g / sqrt(var + eps)) W ... (NumPy), the running statistics unused."""
    model, eps = batchnorm_mlp(), 1e-5
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 12, generator=g, dtype=torch.float64)
    sv = singular_values(model, x[:5], x)["input_output"].numpy()
    params = numpy_params(model, 3)
    a, scales, masks = x.numpy(), [], []
    for (W, b), (gain, beta) in zip(params["hidden"], params["norms"]):
        z = a @ W.T + b
        scale = gain / np.sqrt(z.var(axis=0) + eps)
        h = (z - z.mean(axis=0)) * scale + beta
        scales.append(scale)
        masks.append(h > 0)
        a = np.maximum(h, 0)
    for i in range(5):
        jac = np.eye(12)
        for (W, _), scale, mask in zip(params["hidden"], scales, masks):
            jac = (mask[i] * scale)[:, None] * (W @ jac)
        want = np.linalg.svd(params["out"][0] @ jac, compute_uv=False)
        np.testing.assert_allclose(sv[i], want, rtol=1e-9, atol=1e-12)  # 0 below the resolution
    assert not np.allclose(singular_values(model, x[:5])["input_output"].numpy(), sv), \
        "the statistics are x_batch's, not those of the few inputs differentiated"


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
    assert result["theory_reason"] == (f"initlab implements no mean-field map for model.norm={norm} "
                                       "(model.norm=none has one)")
    assert all(v is None for v in result["theory"].values())
    layers = read_csv(tmp_path / "layers.csv")
    assert [r["site"] for r in layers] == ["acts.0", "acts.1", "output"] * 2
    assert all(r["q_pred"] == "" and r["delta_rms_pred"] == "" for r in layers)
    assert {r["kind"] for r in read_csv(tmp_path / "jacobian.csv")} == {"input_output"}
    assert result["n_params"] == (64 + 1) * 8 + 2 * 8 + (8 + 1) * 8 + 2 * 8 + (8 + 1) * 10


def test_a_deep_batchnorm_resmlp_records_normalized_signals_at_init(tmp_path):
    """The review's case (resmlp, BatchNorm, he_normal, depth 50, width 64): at epoch 0 the 24th
    block's act_std read 1.26e4 (eval mode's running statistics, mean 0 and variance 1 at init, made
    every BatchNorm the identity); with the probe batch's statistics, as the first training step
    normalizes, it is about 3. The losses stay eval mode's, those of the model the job saves."""
    from conftest import compose_config, read_csv, run_job

    run_job(compose_config("model=resmlp", "model.norm=batchnorm", "init=he_normal", "depth=50", "model.width=64",
                           "dataset=blobs", "dataset.n_train=400", "dataset.n_test=100", "dataset.n_features=20",
                           "epochs=0", "threads=1", "device=cpu"), tmp_path)
    layers = {r["site"]: r for r in read_csv(tmp_path / "layers.csv")}
    assert 1 < float(layers["blocks.23.act2"]["act_std"]) < 10
    assert 1 < float(layers["output"]["act_std"]) < 30


@pytest.mark.parametrize("overrides, message", [
    (["batch_size=16"], "batch_size=16 leaves a last batch of 1 of the 33 training samples, and model.norm=batchnorm "
                        "normalizes each batch by its own statistics and needs at least 2 samples in it; valid: a "
                        "batch_size that leaves 0 or at least 2, e.g. 15 or 17"),
    (["batch_size=1"], "batch_size=1 with 33 training samples: model.norm=batchnorm normalizes each batch by its own "
                       "statistics and needs at least 2 samples in it; valid: batch_size >= 2"),
    (["probe_size=1"], "probe_size=1: model.norm=batchnorm normalizes each batch by its own statistics and needs at "
                       "least 2 samples in it; valid: probe_size >= 2"),
])
def test_batchnorm_batches_of_one_sample_are_refused_before_training(tmp_path, overrides, message):
    """n_train=33, batch_size=16 crashed mid-epoch on the last batch ("Expected more than 1 value per
    channel when training"): BatchNorm1d sees one value per feature of a sample. A CNN's BatchNorm2d
    sees a map per channel, and a model without BatchNorm no batch statistics: both train."""
    from conftest import compose_config, run_job

    from initlab.config import ConfigError

    base = ["dataset=moons", "dataset.n_train=33", "dataset.n_test=20", "epochs=1", "depth=2", "model.width=8",
            "threads=1", "device=cpu", "batch_size=32"]
    with pytest.raises(ConfigError) as err:
        run_job(compose_config(*base, "model.norm=batchnorm", *overrides), tmp_path / "bn")
    assert str(err.value) == message
    assert run_job(compose_config(*base, "model.norm=layernorm", *overrides), tmp_path / "ln")["status"] == "completed"
    cnn = ["model=cnn", "model.channels=[4]", "model.norm=batchnorm", "dataset=shapes", "dataset.n_train=33",
           "dataset.n_test=20", "dataset.size=8", "epochs=1", "depth=1", "threads=1", "device=cpu", *overrides]
    assert run_job(compose_config(*cnn), tmp_path / "cnn")["status"] == "completed"
