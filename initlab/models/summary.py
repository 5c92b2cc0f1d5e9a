"""The model summary that starts a job's log: torchinfo's layer table and the parameter count."""

from __future__ import annotations

import torch
from torch import nn


def describe(model: nn.Module, input_example: torch.Tensor) -> tuple[str, int]:
    """(layer table, number of parameters) of ``model`` on a batch like ``input_example``.

    ``input_example``: a small batch as the data gives it ((N, F), (N, C, H, W) or (N, T) long;
    N >= 2 for BatchNorm in training mode). The table lists every module to full depth with its
    output shape and parameter count (torchinfo.summary, one forward pass in eval mode without
    gradients, so BatchNorm statistics and the RNG are untouched; the train/eval mode is
    restored). ``n_params`` counts every parameter (trainable or not).
    """
    import torchinfo  # imported here: only the job's log needs it

    stats = torchinfo.summary(model, input_data=[input_example], depth=100, verbose=0, device=input_example.device,
                              col_names=("output_size", "num_params"), row_settings=("var_names",),
                              mode="eval")
    return str(stats), sum(p.numel() for p in model.parameters())
