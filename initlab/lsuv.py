"""LSUV, layer-sequential unit-variance init (Mishkin & Matas 2016, "All you need is a good init",
Algorithm 1), with the layers and the pre-init of the ``lsuv`` package (by the paper's first author).

The paper: pre-initialize every conv/fully connected weight with an orthonormal matrix (Saxe et
al. 2014), then from the first layer to the last, while |Var(B_L) - 1| >= tol and fewer than
T_max tries, forward a data batch, read the variance of layer L's output B_L and divide W_L by
sqrt(Var(B_L)).

The package (lsuv 0.3.0) chooses the layers (every Linear, Conv and ConvTranspose, and
nn.MultiheadAttention as one unit scaled through its output projection) and draws the same
orthonormal pre-init as initlab's fill (tests/test_lsuv.py compares them). Its rescaling loop is
not used, because it departs from the paper: from the second rescaling of a layer on, its
``apply_weights_correction`` multiplies the FIRST layer's weight instead of the current one (its
counter is reset only between layers), which shows whenever one rescaling is not enough (biases,
target far off); it also tests |std - 1| instead of |Var - 1| and allows max_attempts + 1 tries.
``rescale`` below is Algorithm 1 as written, with the package's layers in its order (module
registration order, which in every initlab model runs each layer after the layers feeding it).

Variances are over all entries of a layer's output (batch, features, positions), unbiased, in
eval mode as the package forwards: dropout is off and BatchNorm uses its running statistics (at
init mean 0, variance 1, so it passes the layer output almost unchanged).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Optional

import torch
from lsuv.lsuvinit import get_scalable_weight, is_relevant_layer
from torch import nn

log = logging.getLogger(__name__)


def rescaled_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(module name, module) of every layer the package rescales, in the order it processes them
    (``model.apply``'s order: children before their parent, siblings in registration order)."""
    names = {id(m): name for name, m in model.named_modules()}
    out: list[tuple[str, nn.Module]] = []
    model.apply(lambda m: out.append((names[id(m)], m)) if is_relevant_layer(m) else None)
    return out


@torch.no_grad()
def output_variances(model: nn.Module, x: torch.Tensor, layers: list[tuple[str, nn.Module]]) -> list[Optional[float]]:
    """Unbiased variance over all entries (batch, features, positions) of each layer's output on
    ``x`` in eval mode (None for a layer the forward never calls); the mode is restored."""
    seen: dict[int, float] = {}

    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        out = output[0] if isinstance(output, tuple) else output
        seen[id(module)] = out.detach().double().var().item()

    handles = [m.register_forward_hook(hook) for _, m in layers]
    training = model.training
    try:
        model.eval()(x)
    finally:
        model.train(training)
        for handle in handles:
            handle.remove()
    return [seen.get(id(m)) for _, m in layers]


@torch.no_grad()
def rescale(model: nn.Module, x: torch.Tensor, target_var: float, tol: float, max_iters: int) -> dict:
    """LSUV's layer-by-layer rescaling (Algorithm 1) of an already pre-initialized ``model`` on the
    batch ``x`` (model input on the model's device: (N, ...) floats or (N, T) token ids).

    Returns the report: ``target_var``, ``tol``, ``max_iters``, ``batch_size`` and ``layers``, one
    dict per rescaled layer in processing order with ``layer`` (module name), ``variance`` (its
    output's variance on ``x`` once every layer is done; None if the forward never calls it),
    ``iterations`` (rescalings, <= max_iters) and ``converged`` (|variance - target_var| <= tol).
    A layer that does not converge in max_iters is logged as a warning, not an error (the paper's
    T_max). Raises ValueError for a model with no layer to rescale.
    """
    layers = rescaled_layers(model)
    if not layers:
        raise ValueError("init=lsuv found no Linear, Conv or MultiheadAttention layer to rescale")
    fastpath = torch.backends.mha.get_fastpath_enabled()  # the fused path never calls out_proj
    torch.backends.mha.set_fastpath_enabled(False)
    iterations = []
    try:
        for _, layer in layers:
            weight, n = get_scalable_weight(layer), 0
            var = output_variances(model, x, [("", layer)])[0]
            while var and abs(var - target_var) > tol and n < max_iters:  # a silent layer (0, None) stays
                weight.mul_(math.sqrt(target_var / var))
                n += 1
                var = output_variances(model, x, [("", layer)])[0]
            iterations.append(n)
        variances = output_variances(model, x, layers)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    report = []
    for (name, _), var, n in zip(layers, variances, iterations):
        converged = var is not None and abs(var - target_var) <= tol
        report.append({"layer": name, "variance": var, "iterations": n, "converged": converged})
    missed = [f"{r['layer']} ({r['variance']})" for r in report if not r["converged"]]
    if missed:
        log.warning("LSUV: output variance not within %g of %g after at most %d rescalings at %s",
                    tol, target_var, max_iters, ", ".join(missed))
    return {"target_var": target_var, "tol": tol, "max_iters": max_iters, "batch_size": int(x.shape[0]),
            "layers": report}
