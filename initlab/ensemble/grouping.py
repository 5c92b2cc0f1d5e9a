"""Which jobs can train together as one vectorized ensemble, and how many at once.

Two jobs share a group when every setting outside ``VARYING`` (and the runtime keys, which
change how a job runs, not what it computes) is equal: then their models have the same shapes
and their training the same schedule, and only the values of parameters, batch orders and
per-member hyperparameters differ.
"""

from __future__ import annotations

import json
import math
from typing import Optional, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from initlab.config import ExperimentConfig, to_experiment
from initlab.resume import RUNTIME_KEYS

VARYING: tuple[str, ...] = ("seed", "init", "model.bias_init", "model.bias_std", "optimizer.lr",
                            "optimizer.weight_decay") + RUNTIME_KEYS
MEMORY_SHARE = 0.5  # of the free memory, for the stacked members (the rest: data, probes, the OS)


def unbatchable(exp: ExperimentConfig) -> Optional[str]:
    """Why this job cannot be a member of a vectorized ensemble, or None when it can.

    BatchNorm keeps running statistics in buffers, which a vmapped forward cannot update per
    member; dropout and the crop-and-flip augmentation draw random numbers per batch, which a
    shared forward cannot draw in each member's own order; resnet18 has BatchNorm throughout; the
    transformer's encoder layers (fused attention kernels) are not vmapped here.
    """
    model = exp.model
    if model.name in ("resnet18", "transformer"):
        return f"model={model.name} is not vectorized (BatchNorm in resnet18, fused attention in the transformer)"
    if getattr(model, "norm", None) is not None and model.norm.value == "batchnorm":
        return "model.norm=batchnorm: running statistics cannot be kept per member under vmap"
    if getattr(model, "dropout", 0.0):
        return f"model.dropout={model.dropout}: dropout masks cannot follow each member's own random stream"
    if getattr(exp.dataset, "augment", False):
        return "dataset.augment=true: the augmentation draws from each member's generator per batch"
    return None


def group_key(cfg: DictConfig) -> str:
    """The settings two members must share: the resolved config without ``VARYING``, as JSON."""
    plain = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    for dotted in VARYING:
        *parents, leaf = dotted.split(".")
        node = plain
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return json.dumps(plain, sort_keys=True, default=str)


def free_bytes(device: torch.device) -> int:
    """Free memory of the device: torch.cuda.mem_get_info on a GPU, MemAvailable of /proc/meminfo
    on the CPU (bytes)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 4 << 30


def member_bytes(n_params: int, activations: int, optimizer_slots: int) -> int:
    """Bytes one member needs (float32): parameters, their gradient and ``optimizer_slots``
    state tensors each of the parameters' size, plus ``activations`` values kept for backward."""
    return 4 * (n_params * (2 + optimizer_slots) + activations)


def _estimate(exp: ExperimentConfig) -> int:
    """Per-member bytes of ``exp`` from its widths: parameters and one batch's activations."""
    width = getattr(exp.model, "width", None) or max(getattr(exp.model, "channels", None) or [128]) * 64
    n_params = exp.depth * width * width + 1000 * width
    slots = {"sgd": 0, "momentum": 1, "rmsprop": 2}.get(exp.optimizer.name, 2)
    return member_bytes(n_params, 4 * exp.batch_size * width * (exp.depth + 2), slots)


def plan(cfgs: Sequence[DictConfig], max_members: Optional[int] = None) -> list[list[int]]:
    """Groups of ``cfgs`` (lists of indexes, in sweep order) that train as one ensemble.

    Jobs with equal ``group_key`` share a group, at most ``max_members`` each (None: as many as
    MEMORY_SHARE of the free memory holds, by ``member_bytes``); an ``unbatchable`` job, or one
    whose config does not validate (its own run reports the error), is a group of one.
    Raises ValueError for ``max_members`` < 1.
    """
    if max_members is not None and max_members < 1:
        raise ValueError(f"max_members={max_members}; valid: an integer >= 1 or None (automatic)")
    groups: dict[str, list[int]] = {}
    out: list[list[int]] = []
    limits: dict[str, int] = {}
    for i, cfg in enumerate(cfgs):
        try:
            exp = to_experiment(cfg)
        except Exception:  # noqa: BLE001 - the job's own run raises it, with its message
            out.append([i])
            continue
        if unbatchable(exp) is not None:
            out.append([i])
            continue
        key = group_key(cfg)
        if key not in limits:
            device = torch.device("cuda" if exp.device.value != "cpu" and torch.cuda.is_available() else "cpu")
            limits[key] = max_members or max(1, math.floor(MEMORY_SHARE * free_bytes(device) / _estimate(exp)))
        members = groups.setdefault(key, [])
        if not members:
            out.append(members)
        members.append(i)
        if len(members) >= limits[key]:
            del groups[key]
    return out
