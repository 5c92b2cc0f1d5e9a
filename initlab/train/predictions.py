"""Mean-field predictions beside a job's measurements at init (initlab.theory), or why none.

The theory covers plain MLPs: dense layers and an activation, no normalization. For any other
model the predicted columns stay empty and ``theory_reason`` says why, instead of an error.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from initlab import kernel_shaping, theory
from initlab.choices import INITS
from initlab.config import ExperimentConfig
from initlab.measure.jacobian import probe_count
from initlab import models

log = logging.getLogger(__name__)
PHASE_KEYS = ("sigma_w2", "sigma_b2", "chi1", "q_star", "xi_q", "xi_c", "critical_sigma_w2")


def theory_reason(exp: ExperimentConfig) -> Optional[str]:
    """None when mean-field predictions exist for this run, else one sentence saying why not (the
    model choice's own rule: initlab.models.MODELS)."""
    return models.theory_reason(exp)


def _quietly(name: str, compute, *args, fallback: Any = math.nan, **kwargs) -> Any:
    """A theory prediction, or ``fallback`` (NaN) with one warning when this configuration is
    outside what the formulas handle (sigma_w^2 overflowing, no critical point in range)."""
    try:
        with np.errstate(all="ignore"):
            return compute(*args, **kwargs)
    except (ArithmeticError, ValueError) as err:
        why = "a value overflows a float" if isinstance(err, OverflowError) else err  # not "(34, 'Numerical ...')"
        log.warning("mean-field %s not computed for this configuration: %s", name, why)
        return fallback


def unshaped_weights(exp: ExperimentConfig) -> Optional[str]:
    """Why the weight layers of a kernel-shaped run (``activation.transform`` tat or dks) do not keep
    q and c as TAT and DKS assume (sigma_w^2 = 1 on every hidden layer, zero biases: the kernel
    they shape is then the network's), in words for the job's warning; None where they do, or where
    nothing is shaped. Read from the config alone, so runs the theory does not cover are told too."""
    if exp.activation.transform.value == "none":
        return None
    if exp.init.apply_to.value == "head":
        return "init.apply_to=head leaves the hidden layers at torch's default draw (sigma_w^2 = 1/3)"
    init_reason = INITS[exp.init.name].theory_reason
    if init_reason is not None:  # "init=lsuv sets each layer's scale from the data batch ..."
        return init_reason
    if exp.model.bias_init.value != "zeros":  # normal needs bias_std > 0
        return f"model.bias_init={exp.model.bias_init.value} draws nonzero biases (sigma_b^2 > 0)"
    sigma_w2 = _quietly("sigma_w2", theory.effective_sigma_w2, exp.init, exp.model.width, exp.model.width)
    if not math.isclose(sigma_w2, 1.0, rel_tol=1e-9):
        return f"this run has sigma_w^2 = {sigma_w2:.4g}"
    return None


def no_predictions() -> dict:
    """The predictions of a run outside the theory: no per-layer values, every phase key None."""
    return {"q_pred": [], "delta_rms_pred": [], "jacobian_mean_sq_sv_pred": None,
            "phase": dict.fromkeys(PHASE_KEYS)}


def mean_field(exp: ExperimentConfig, model: nn.Module, x_probe: torch.Tensor, delta_out_rms: float) -> dict:
    """Mean-field predictions at init for this network and probe batch (initlab.theory).

    Per layer (1..depth+1): ``q_pred`` and ``delta_rms_pred`` (anchored at the measured
    output-layer delta_rms); the hidden-to-hidden Jacobian's mean squared singular value; and the
    phase of the hidden layers' (sigma_w^2, sigma_b^2): chi1, q*, depth scales, the critical
    sigma_w^2 (a kernel-shaped net's at the q = 1 it keeps: kernel_shaping.kept_length). What the
    theory cannot compute for this configuration is NaN, never an error; a model outside the
    theory (``theory_reason``) gets ``no_predictions``.
    """
    if kernel_shaping.shaped_sites(model) and (unshaped := unshaped_weights(exp)):
        log.warning("activation.transform=%s shapes the kernel for weights that keep q (sigma_w^2 = 1: "
                    "init=scaled_orthogonal) and zero biases; %s, so its kernel is not the shaped one (q is not "
                    "kept at 1)", exp.activation.transform.value, unshaped)
    if theory_reason(exp) is not None:
        return no_predictions()
    dims = [(layer.in_features, layer.out_features) for layer in model.linears]
    nan_layers = np.full(len(dims), math.nan)
    x_probe = kernel_shaping.network_inputs(model, x_probe)  # a shaped net's PLN changes the q0 it reads
    act = kernel_shaping.theory_activation(exp, model)  # phi, or the shaped phi_hat the model carries
    pred = _quietly("per-layer predictions", theory.predict_mlp, dims, exp.init, act,
                    x_probe.pow(2).mean(dim=1).double().cpu().numpy(), exp.model.bias_init.value,
                    exp.model.bias_std, delta_out_rms=delta_out_rms,
                    fallback={"q_pred": nan_layers, "delta_rms_pred": nan_layers, "jac_msv_pred": nan_layers})
    width, nan = exp.model.width, math.nan
    sigma_b2 = theory.effective_sigma_b2(exp.model.bias_init.value, exp.model.bias_std)
    if not math.isfinite(sigma_b2):
        log.warning("mean-field sigma_b2 not computed for this configuration: model.bias_std=%g squared "
                    "overflows a float", exp.model.bias_std)
        sigma_b2 = nan
    sigma_w2 = float(_quietly("sigma_w2", theory.effective_sigma_w2, exp.init, width, width))
    finite = math.isfinite(sigma_w2) and math.isfinite(sigma_b2)  # an overflowing sigma^2 has no meaningful phase
    kept = kernel_shaping.kept_length(model, sigma_w2, sigma_b2)  # a shaped net's q = 1, else the theory's q*
    xi_q, xi_c = (_quietly("depth scales", theory.depth_scales, act, sigma_w2, sigma_b2, q_star=kept,
                           fallback=(nan, nan)) if finite else (nan, nan))
    # the Jacobian is measured on the first probe_count inputs only: predict it for those
    jac_pred = _quietly("Jacobian prediction", theory.predict_mlp, dims, exp.init, act,
                        x_probe[:probe_count(width)].pow(2).mean(dim=1).double().cpu().numpy(),
                        exp.model.bias_init.value, exp.model.bias_std, fallback={"jac_msv_pred": nan_layers})
    phase = {"sigma_w2": sigma_w2, "sigma_b2": sigma_b2,
             "chi1": _quietly("chi1", theory.chi1, act, sigma_w2, sigma_b2, q_star=kept) if finite else nan,
             "q_star": kept or (_quietly("q*", theory.fixed_point, act, sigma_w2, sigma_b2) if finite else nan),
             "xi_q": xi_q, "xi_c": xi_c,
             "critical_sigma_w2": (_quietly("critical sigma_w2", theory.critical_sigma_w2, act, sigma_b2)
                                   if math.isfinite(sigma_b2) else nan)}
    return {"q_pred": pred["q_pred"].tolist(), "delta_rms_pred": pred["delta_rms_pred"].tolist(),
            "jacobian_mean_sq_sv_pred": float(jac_pred["jac_msv_pred"][exp.depth - 1]), "phase": phase}
