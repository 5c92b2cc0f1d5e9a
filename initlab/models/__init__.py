"""The models under study, one registry entry per ``model`` choice; every model exposes
measurement sites (initlab.models.sites).

Each ``ModelChoice`` carries everything about a choice: how to build it from the config and the
data's shape, which data kinds it takes (``vectors`` (N, F), ``images`` (N, C, H, W),
``sequences`` (N, T) token ids) and whether the mean-field theory of initlab.theory covers it.
Adding a model is one module, one YAML under conf/model/, one schema in initlab.config and one
entry in ``MODELS``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Callable, Optional

from torch import nn

from initlab import kernel_shaping
from initlab.choices import INITS, build_activation
from initlab.config import ApplyTo, BiasInit, ConfigError, ConvNorm, ExperimentConfig, ModelConfig, Norm
from initlab.memory import refused_if_too_large
from initlab.models.cnn import CNN
from initlab.models.mlp import MLP
from initlab.models.resmlp import ResMLP
from initlab.models.resnet import resnet18
from initlab.models.transformer import Transformer

KINDS = ("vectors", "images", "sequences")
Shape = tuple[int, ...]
ActFactory = Callable[[], nn.Module]


@dataclass(frozen=True)
class Inputs:
    """What a model needs to know of the data: kind, per-sample shape, classes, vocabulary."""

    kind: str
    shape: Shape
    n_classes: int
    vocab_size: Optional[int] = None
    pad_id: Optional[int] = None  # the token id of padding (initlab.data.Data.pad_id)


@dataclass(frozen=True)
class ModelChoice:
    """One ``model`` choice: ``build(cfg, depth, inputs, activation)`` -> nn.Module (activation
    is a factory: one fresh module per site), the data kinds it takes, and ``theory_reason(cfg)``:
    why the mean-field predictions do not apply, or None where they do."""

    build: Callable[[Any, int, Inputs, ActFactory], nn.Module]
    accepts: tuple[str, ...]
    theory_reason: Callable[[Any], Optional[str]]
    fit: Optional[Callable[[Any, Shape], Optional[str]]] = None  # per-sample shape -> what fits, or None


def _mlp_theory(cfg: ModelConfig) -> Optional[str]:
    if cfg.norm != Norm.none:
        return f"initlab implements no mean-field map for model.norm={cfg.norm.value} (model.norm=none has one)"
    if cfg.bias_init == BiasInit.torch_default:
        return "no single sigma_b^2 for model.bias_init=torch_default (its variance is 1/(3 fan_in) per layer)"
    return None


def _cnn_fit(cfg: ModelConfig, shape: Shape) -> Optional[str]:
    """The max-pools between stages halve the image: 2^(stages - 1) pixels a side are needed."""
    need = 2 ** (len(cfg.channels) - 1)
    if min(shape[1:]) < need:
        return (f"{len(cfg.channels)} stages (model.channels={list(cfg.channels)}) need images of at least "
                f"{need}x{need}; use fewer stages")
    return None


MODELS: dict[str, ModelChoice] = {
    "mlp": ModelChoice(
        build=lambda cfg, depth, inp, act: MLP(math.prod(inp.shape), inp.n_classes, cfg.width, depth, act(),
                                               norm=cfg.norm.value),
        accepts=("vectors", "images"), theory_reason=_mlp_theory),
    "resmlp": ModelChoice(
        build=lambda cfg, depth, inp, act: ResMLP(math.prod(inp.shape), inp.n_classes, cfg.width, depth, act,
                                                  norm=cfg.norm.value, preact=cfg.preact,
                                                  branch_init=cfg.branch_init.value),
        accepts=("vectors", "images"),
        theory_reason=lambda cfg: "initlab implements no mean-field map for residual sums yet"),
    "cnn": ModelChoice(
        build=lambda cfg, depth, inp, act: CNN(inp.shape[0], inp.n_classes, cfg.channels, depth, act,
                                               batchnorm=cfg.norm.value == "batchnorm", residual=cfg.residual,
                                               branch_init=cfg.branch_init.value),
        accepts=("images",), theory_reason=lambda cfg: "initlab implements no mean-field map for conv nets",
        fit=_cnn_fit),
    "resnet18": ModelChoice(
        build=lambda cfg, depth, inp, act: resnet18(inp.shape[0], inp.n_classes, act, cifar_stem=cfg.cifar_stem,
                                                    norm=cfg.norm.value, branch_init=cfg.branch_init.value),
        accepts=("images",),
        theory_reason=lambda cfg: "initlab implements no mean-field map for "
        + ("BatchNorm residual nets" if cfg.norm == ConvNorm.batchnorm else "residual conv nets")),
    "transformer": ModelChoice(
        build=lambda cfg, depth, inp, act: Transformer(inp.vocab_size, inp.shape[0], inp.n_classes, depth, act,
                                                       d_model=cfg.d_model, nhead=cfg.nhead,
                                                       dim_feedforward=cfg.dim_feedforward,
                                                       norm_first=cfg.norm_first, dropout=cfg.dropout,
                                                       pad_id=inp.pad_id),
        accepts=("sequences",), theory_reason=lambda cfg: "initlab implements no mean-field map for attention"),
}


def inputs_of(data: Any) -> Inputs:
    """The ``Inputs`` of an initlab.data.Data (kind, input_shape, n_classes, vocab_size, pad_id)."""
    return Inputs(data.kind, tuple(data.input_shape), data.n_classes, getattr(data, "vocab_size", None),
                  getattr(data, "pad_id", None))


def _describe(kind: str, shape: Optional[Shape]) -> str:
    if shape is None:
        return kind
    if kind == "vectors":
        return f"vectors ({math.prod(shape)} features)"
    if kind == "images":
        return f"images ({'x'.join(map(str, shape))})"
    return f"{kind} (length {shape[0]})"


def check_fits(exp: ExperimentConfig, data_kind: str, input_shape: Optional[Shape] = None) -> None:
    """Raise ConfigError (one line) unless ``exp.model`` takes this data.

    ``input_shape`` is per sample ((F,), (C, H, W), (T,)); None checks the kind only (what the
    command line can know before loading). The line names the model, the dataset and what fits.
    """
    name, dataset = exp.model.name, exp.dataset.name
    choice = MODELS[name]
    given = _describe(data_kind, input_shape)
    if data_kind not in choice.accepts:
        fitting = [m for m, c in MODELS.items() if data_kind in c.accepts]
        raise ConfigError(f"model={name} needs {' or '.join(choice.accepts)}; dataset={dataset} gives {given}; "
                          f"models for {data_kind}: {', '.join(fitting) or 'none'}")
    if input_shape is not None and choice.fit is not None:
        reason = choice.fit(exp.model, tuple(input_shape))
        if reason:
            raise ConfigError(f"model={name} does not fit dataset={dataset}, which gives {given}: {reason}")


def check_config_fits(exp: ExperimentConfig) -> None:
    """``check_fits`` on the data kind and per-sample shape the dataset config declares (its class's
    ``KIND`` and ``input_shape()``), and kernel shaping's targets against the depth
    (kernel_shaping.check_solvable), before any data is loaded."""
    kind = getattr(type(exp.dataset), "KIND", None)
    if kind is not None:
        shape = exp.dataset.input_shape() if hasattr(exp.dataset, "input_shape") else None
        check_fits(exp, kind, shape)
    kernel_shaping.check_solvable(exp)


def sizes(exp: ExperimentConfig) -> str:
    """``model=mlp (depth=5, width=128)``: the model choice and the parameters its tensors grow with
    (integers and lists of them), for a refusal of sizes that do not fit in memory."""
    values = {f.name: getattr(exp.model, f.name) for f in fields(exp.model)}
    grown = [f"{k}={v}" for k, v in values.items() if isinstance(v, (int, list)) and not isinstance(v, bool)]
    return f"model={exp.model.name} ({', '.join([f'depth={exp.depth}', *grown])})"


def sizes_for(exp: ExperimentConfig, inputs: Inputs) -> str:
    """``model=mlp (depth=5, width=10000000000) for dataset=digits's images (1x8x8)``: ``sizes``
    and the data's shape (and vocabulary), for a refusal of a model too large for memory."""
    given = _describe(inputs.kind, inputs.shape)
    given = given[:-1] + f", vocab_size={inputs.vocab_size})" if inputs.vocab_size else given
    return f"{sizes(exp)} for dataset={exp.dataset.name}'s {given}"


def build(exp: ExperimentConfig, inputs: Inputs) -> nn.Module:
    """The model ``exp.model`` describes for ``inputs`` (CPU, torch's default init; fit checked;
    sizes whose parameters cannot be allocated are a ConfigError naming them, initlab.memory)."""
    check_fits(exp, inputs.kind, inputs.shape)
    with refused_if_too_large(sizes_for(exp, inputs)):
        model = MODELS[exp.model.name].build(exp.model, exp.depth, inputs, lambda: build_activation(exp.activation))
    kernel_shaping.shape(model, exp)  # activation.transform: solved for this model's depth
    return model


def build_model(exp: ExperimentConfig, data: Any) -> nn.Module:
    """``build`` for an initlab.data.Data (its kind, input_shape, n_classes, vocab_size)."""
    return build(exp, inputs_of(data))


def theory_reason(exp: ExperimentConfig) -> Optional[str]:
    """Why the mean-field predictions are empty for this run, or None where they apply."""
    if exp.init.apply_to == ApplyTo.head:
        return "init.apply_to=head leaves the hidden layers at torch's default draw"
    if INITS[exp.init.name].theory_reason is not None:
        return INITS[exp.init.name].theory_reason
    return MODELS[exp.model.name].theory_reason(exp.model)


__all__ = ["MLP", "MODELS", "KINDS", "Inputs", "ModelChoice", "build", "build_model", "check_config_fits", "check_fits",
           "inputs_of", "sizes", "sizes_for", "theory_reason"]
