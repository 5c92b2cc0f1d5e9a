"""LSUV, layer-sequential unit-variance init (Mishkin & Matas 2016, "All you need is a good init",
Algorithm 1), through the ``lsuv`` package (by the paper's first author).

The paper: pre-initialize every conv/fully connected weight with an orthonormal matrix (Saxe et
al. 2014), then from the first layer to the last, while |Var(B_L) - 1| >= tol and fewer than
T_max tries, forward a data batch, read the variance of layer L's output B_L and divide W_L by
sqrt(Var(B_L)). The package does the rescaling; three of its details differ from the paper and
are wrapped here:

* its test is on the standard deviation, |std - target| <= std_tol, not on the variance. With
  std_tol = sqrt(target_var + tol) - sqrt(target_var) the std test implies the paper's
  |Var - target_var| <= tol (both ends: (2 s - sqrt(v + tol))^2 >= v - tol);
* it rescales up to max_attempts + 1 times per layer: we pass max_attempts = max_iters - 1;
* it reports nothing: we count each layer's rescalings (a change of its weight between two
  forward passes) and measure every layer's output variance on the batch once it is done.

Layers are the package's: every Linear, Conv and ConvTranspose, and nn.MultiheadAttention as one
unit (scaled through its output projection). Their order is the module registration order, which
in every initlab model runs each layer after the layers that feed it. Variances are measured in
eval mode, as the package forwards: dropout is off and BatchNorm uses its running statistics
(at init mean 0, variance 1, so it passes the layer output almost unchanged).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Optional

import torch
from lsuv import lsuv_with_singlebatch
from lsuv.lsuvinit import get_scalable_weight, is_relevant_layer
from torch import nn

log = logging.getLogger(__name__)


def std_tolerance(target_var: float, tol: float) -> float:
    """The package's std_tol under which |std - sqrt(target_var)| <= std_tol implies
    |std^2 - target_var| <= tol (the tighter of the two sides of the variance interval)."""
    return math.sqrt(target_var + tol) - math.sqrt(target_var)


def rescaled_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(module name, module) of every layer the package rescales, in the order it processes them
    (``model.apply``'s order: children before their parent, siblings in registration order)."""
    names = {id(m): name for name, m in model.named_modules()}
    out: list[tuple[str, nn.Module]] = []
    model.apply(lambda m: out.append((names[id(m)], m)) if is_relevant_layer(m) else None)
    return out


class _Recorder:
    """Counts each layer's rescalings during the package's run: before every forward pass it
    compares each layer's scaled weight with a copy taken before the previous pass."""

    def __init__(self, layers: list[tuple[str, nn.Module]]):
        self.weights = [get_scalable_weight(m) for _, m in layers]
        self.copies = [w.detach().clone() for w in self.weights]
        self.iterations = [0] * len(layers)

    def __call__(self, module: nn.Module, args: Any) -> None:
        for i, (weight, copy) in enumerate(zip(self.weights, self.copies)):
            if not torch.equal(weight, copy):
                self.iterations[i] += 1
                copy.copy_(weight)


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


def rescale(model: nn.Module, x: torch.Tensor, target_var: float, tol: float, max_iters: int) -> dict:
    """LSUV's layer-by-layer rescaling of an already orthonormal ``model`` on the batch ``x``
    (model input, on the model's device: (N, ...) floats or (N, T) token ids).

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
    device = next(model.parameters()).device
    recorder = _Recorder(layers)
    handle = model.register_forward_pre_hook(recorder)
    try:
        lsuv_with_singlebatch(model, x, needed_std=math.sqrt(target_var), std_tol=std_tolerance(target_var, tol),
                              max_attempts=max_iters - 1, do_orthonorm=False, verbose=False, device=device)
    finally:
        handle.remove()
    variances = output_variances(model, x, layers)
    report = []
    for (name, _), var, iterations in zip(layers, variances, recorder.iterations):
        converged = var is not None and abs(var - target_var) <= tol
        report.append({"layer": name, "variance": var, "iterations": iterations, "converged": converged})
    missed = [f"{r['layer']} ({r['variance']})" for r in report if not r["converged"]]
    if missed:
        log.warning("LSUV: output variance not within %g of %g after %d rescalings at %s",
                    tol, target_var, max_iters, ", ".join(missed))
    return {"target_var": target_var, "tol": tol, "max_iters": max_iters, "batch_size": int(x.shape[0]),
            "layers": report}
