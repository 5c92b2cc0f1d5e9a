"""Jacobian singular values against exact results: orthogonal linear nets and Gaussian products."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from initlab.kernel_shaping import PerLocationNormalization
from initlab.measure.jacobian import singular_values, summarize
from initlab.models import MLP


def resolved(reference: torch.Tensor, dtype: torch.dtype = torch.float32) -> np.ndarray:
    """Reference singular values as a Jacobian computed in ``dtype`` resolves them: those below
    s_max · n · eps (NumPy's matrix_rank tolerance) are 0."""
    floor = reference.max() * len(reference) * torch.finfo(dtype).eps
    return torch.where(reference < floor, 0.0, reference).numpy()


def make_mlp(activation: nn.Module, depth: int, width: int, init, in_features: int = 48) -> MLP:
    torch.manual_seed(0)
    model = MLP(in_features, 10, width, depth, activation)
    with torch.no_grad():
        for layer in model.linears:
            init(layer.weight)
            layer.bias.zero_()
    return model


def test_orthogonal_linear_network_is_an_exact_isometry():
    model = make_mlp(nn.Identity(), depth=12, width=64, init=nn.init.orthogonal_)
    sv = singular_values(model, torch.randn(8, 48))["hidden"]
    assert sv.shape == (8, 64)
    np.testing.assert_allclose(sv.numpy(), 1.0, atol=1e-4)


def test_hidden_jacobian_matches_the_explicit_product_of_layer_jacobians():
    model = make_mlp(nn.Tanh(), depth=4, width=16, init=lambda w: nn.init.normal_(w, 0, 0.4))
    x = torch.randn(3, 48)
    sv = singular_values(model, x)["hidden"]
    for i in range(3):
        h = model.hidden[0](x[i]).detach().double()
        jac = torch.eye(16, dtype=torch.float64)
        for layer in model.hidden[1:]:
            d = 1 - torch.tanh(h) ** 2
            w = layer.weight.detach().double()
            jac = w @ torch.diag(d) @ jac
            h = w @ torch.tanh(h) + layer.bias.detach().double()
        np.testing.assert_allclose(sv[i].numpy(), resolved(torch.linalg.svdvals(jac)), rtol=1e-5, atol=1e-9)


def test_the_hidden_jacobian_starts_from_the_normalized_inputs_a_shaped_net_reads():
    """A DKS net's first layer reads its inputs after PLN (each sample at length 1): h^1 and so
    the h^1 -> h^depth Jacobian are taken there, as in the forward pass and the prediction."""
    model = make_mlp(nn.Tanh(), depth=4, width=16, init=lambda w: nn.init.normal_(w, 0, 0.6))
    model.input_norm = PerLocationNormalization()
    x = torch.randn(3, 48) * torch.tensor([[0.2], [1.0], [5.0]])
    sv = singular_values(model, x)["hidden"]
    for i in range(3):
        v, first = x[i].double(), model.hidden[0]
        h = first.weight.detach().double() @ (v / v.pow(2).mean().sqrt()) + first.bias.detach().double()
        jac = torch.eye(16, dtype=torch.float64)
        for layer in model.hidden[1:]:
            w = layer.weight.detach().double()
            jac = w @ torch.diag(1 - torch.tanh(h) ** 2) @ jac
            h = w @ torch.tanh(h) + layer.bias.detach().double()
        np.testing.assert_allclose(sv[i].numpy(), resolved(torch.linalg.svdvals(jac)), rtol=1e-5, atol=1e-6)


def test_gaussian_linear_network_mean_squared_singular_value_is_sigma_w2_to_the_depth():
    width, depth, sigma_w2 = 256, 9, 1.2
    model = make_mlp(nn.Identity(), depth, width, lambda w: nn.init.normal_(w, 0, (sigma_w2 / w.shape[1]) ** 0.5))
    stats = summarize(singular_values(model, torch.randn(4, 48))["hidden"])
    expected = sigma_w2 ** (depth - 1)  # E tr(J J^T)/N over depth-1 Gaussian layers
    assert abs(stats["mean_sq_sv"] / expected - 1) < 0.1


def test_relu_he_is_critical_but_not_isometric():
    """chi1 = 1 keeps the mean squared singular value near 1, while the spectrum spreads (PSG 2017)."""
    model = make_mlp(nn.ReLU(), depth=16, width=256, init=lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"))
    stats = summarize(singular_values(model, torch.randn(16, 48))["hidden"])
    assert 0.7 < stats["mean_sq_sv"] < 1.4
    assert stats["sv_max"] > 3 and stats["sv_min"] < 0.1


def test_summary_columns_are_pooled_statistics():
    sv = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    stats = summarize(sv)
    assert (stats["n_inputs"], stats["n_sv"]) == (2, 2)
    assert stats["mean_sq_sv"] == np.mean([1, 4, 9, 16])
    assert stats["var_sq_sv"] == np.var([1, 4, 9, 16])
    assert (stats["sv_min"], stats["sv_max"], stats["sv_q50"]) == (1.0, 4.0, 2.5)


def test_non_finite_weights_give_nan_singular_values_not_an_error():
    """An overflowed network has no SVD; the measurement reports NaN instead of raising."""
    model = make_mlp(nn.Tanh(), depth=3, width=16, init=nn.init.orthogonal_)
    with torch.no_grad():
        model.hidden[1].weight[0, 0] = float("nan")
    spectra = singular_values(model, torch.randn(4, 48))
    assert set(spectra) == {"hidden", "input_output"}
    for sv in spectra.values():
        assert torch.isnan(sv).all()
        summary = summarize(sv)
        assert np.isnan(summary["mean_sq_sv"]) and np.isnan(summary["sv_q50"])



def test_dead_relu_units_give_singular_values_of_exactly_zero():
    """dh^3/dh^1 = W^3 D^2 W^2 D^1 of a relu net has rank min(live units of h^1, of h^2): the rest
    are exact zeros, which a float32 Jacobian's SVD reported as noise from 1e-80 to 1e-7 · s_max
    (jacobian_spectra's axis then spread over 12 decades). They are recorded as 0, and every
    other value as the float64 product of the live blocks."""
    width = 128
    model = make_mlp(nn.ReLU(), depth=3, width=width, init=lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"))
    x = torch.randn(4, 48)
    sv = singular_values(model, x)["hidden"]
    h1 = model.hidden[0](x).detach()
    h2 = model.hidden[1](torch.relu(h1)).detach()
    w2, w3 = (model.hidden[k].weight.detach().double() for k in (1, 2))
    for i in range(4):
        live1, live2 = h1[i] > 0, h2[i] > 0
        rank = min(int(live1.sum()), int(live2.sum()))
        expected = torch.linalg.svdvals(w3[:, live2] @ w2[live2][:, live1])[:rank]
        assert int((sv[i] == 0).sum()) == width - rank > 40
        np.testing.assert_allclose(sv[i, :rank].numpy(), expected.numpy(), rtol=1e-4)
    assert summarize(sv)["sv_min"] == 0.0


def test_a_float64_jacobian_resolves_singular_values_below_float32s_floor():
    """The floor follows the Jacobian's dtype: in float64, s = 1e-9 · s_max is measured, not 0."""
    model = make_mlp(nn.Identity(), depth=3, width=16, init=nn.init.orthogonal_).double()
    with torch.no_grad():
        u, s, vh = torch.linalg.svd(model.hidden[1].weight)
        s[-1] = 1e-9
        model.hidden[1].weight.copy_(u @ torch.diag(s) @ vh)
    sv = singular_values(model, torch.randn(3, 48, dtype=torch.float64))["hidden"]
    np.testing.assert_allclose(sv[:, -1].numpy(), 1e-9, rtol=1e-5)
    assert (sv[:, :-1] > 0.5).all()
