"""Per-layer statistics on the fixed probe batch: one forward and one backward, no update.

The model runs layer by layer (``MLP.forward_layers``) so every pre-activation is at hand, and
``torch.autograd.grad`` returns the gradients without touching the parameters' ``.grad``. All
statistics are stacked on the device and copied to the host once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from initlab.activations import saturation_mask
from initlab.models import MLP


def layer_statistics(model: MLP, activation: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A (depth+1, len(records.PROBE_COLUMNS)) float64 CPU tensor, columns in that order; row l-1 is layer l, the last row the output.

    Means and standard deviations pool over probe samples and units (population std); gradients
    are those of the mean cross-entropy over the probe batch. ``frac_zero`` counts zero entries,
    ``frac_dead`` units that are zero on every probe sample (0 for the output layer). Non-finite
    weights or signals give non-finite statistics, never an error: the caller checks them.
    """
    model.eval()
    linears = model.linears
    with torch.enable_grad():
        pre, post = model.forward_layers(x)
        loss = F.cross_entropy(pre[-1], y)
        grads = torch.autograd.grad(loss, [l.weight for l in linears] + [l.bias for l in linears] + pre)
    n = len(linears)
    w_grads, b_grads, deltas = grads[:n], grads[n:2 * n], grads[2 * n:]
    rows = []
    zero = torch.zeros((), dtype=torch.float64, device=x.device)
    with torch.no_grad():
        for i, (h, a) in enumerate(zip(pre, post)):
            is_output = i == n - 1
            # float64 reductions: in float32, squares of values below ~1e-19 (vanishing signals in
            # deep nets, the regime under study) underflow and norms and rms values read exactly 0
            h, a, d = h.double(), a.double(), deltas[i].double()
            rows.append(torch.stack([
                h.mean(), h.std(correction=0), h.pow(2).mean(),
                a.mean(), a.std(correction=0),
                (a == 0).double().mean(),
                zero if is_output else (a == 0).all(dim=0).double().mean(),  # frac_dead
                zero if is_output else saturation_mask(activation, a).double().mean(),
                torch.linalg.vector_norm(linears[i].weight.double()),
                torch.linalg.vector_norm(w_grads[i].double()),
                torch.linalg.vector_norm(b_grads[i].double()),
                d.pow(2).mean().sqrt(),
            ]))
    return torch.stack(rows).cpu()
