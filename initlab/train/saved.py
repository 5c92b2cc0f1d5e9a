"""A finished job's model, back in memory: rebuilt from the job's own config, its kept weights loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Union

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch import nn

from initlab import records
from initlab.config import register_configs, to_experiment
from initlab.data import load_data
from initlab.models import build_model

CONF = Path(__file__).resolve().parents[2] / "conf"


def load_model(job_dir: Union[str, Path], weights: str = records.BEST_WEIGHTS, config_dir: Path = CONF) -> nn.Module:
    """The model of ``job_dir`` with ``weights`` loaded: ``best.pt`` (checkpoint=best|both) or
    ``checkpoint.pt`` (checkpoint=last|both; its ``model`` entry), on the CPU, in eval mode.

    The config is composed again from the job's ``.hydra/overrides.yaml`` over ``config_dir``
    (the conf/ tree it ran with); the dataset is loaded to size the model (classes, input shape).
    Raises FileNotFoundError when the job kept no such file.
    """
    job_dir = Path(job_dir)
    overrides = [str(o) for o in OmegaConf.load(job_dir / ".hydra" / "overrides.yaml")]
    register_configs()
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        exp = to_experiment(compose("config", overrides=overrides))
    model = build_model(exp, load_data(exp.dataset))
    state = torch.load(job_dir / weights, map_location="cpu", weights_only=weights == records.BEST_WEIGHTS)
    model.load_state_dict(state["model"] if weights == records.CHECKPOINT else state)
    return model.eval()
