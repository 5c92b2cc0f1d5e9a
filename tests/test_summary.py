"""The model summary of the job log: torchinfo's table with the model's parameter count, taken
without changing the model (mode, BatchNorm statistics, parameters) or the global RNG."""

from __future__ import annotations

import pytest
import torch

from conftest import compose_config
from initlab.config import to_experiment
from initlab.models import Inputs, build
from initlab.models.summary import describe

pytest.importorskip("torchinfo", reason="torchinfo (requirements.txt) is not installed")


@pytest.mark.parametrize("overrides,inputs", [
    (["model=resmlp", "depth=5", "model.norm=batchnorm"], Inputs("vectors", (10,), 3)),
    (["model=cnn", "depth=3", "model.norm=batchnorm", "model.residual=true"], Inputs("images", (1, 8, 8), 3)),
    (["model=resnet18"], Inputs("images", (3, 8, 8), 10)),
    (["model=transformer", "depth=2"], Inputs("sequences", (7,), 2, vocab_size=13)),
])
def test_describe_counts_parameters_and_leaves_the_model_alone(overrides, inputs):
    model = build(to_experiment(compose_config(*overrides)), inputs)
    model.train()
    x = torch.randint(0, 13, (2, *inputs.shape)) if inputs.kind == "sequences" else torch.randn(2, *inputs.shape)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    text, n_params = describe(model, x)
    assert n_params == sum(p.numel() for p in model.parameters())
    assert f"Total params: {n_params:,}" in text
    assert type(model).__name__ in text and "ActivationSite" in text and "Site (output)" in text
    assert model.training and torch.equal(torch.get_rng_state(), rng)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "BatchNorm statistics or weights changed"
