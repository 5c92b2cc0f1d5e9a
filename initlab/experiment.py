"""One job from config to records: data, model, init, epochs of training, statistics, result.

Read top to bottom: ``run`` is the whole job. Epoch 0 is the state at initialization; after each
epoch the rows so far and a checkpoint are written atomically, so a killed job continues where
it stopped and a finished one (``result.json`` present) is skipped, both only when asked for with
the same settings (initlab.resume). Each epoch is checked for divergence (``divergence``) before
anything that needs finite weights is measured; a diverged epoch ends the run, at init too.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import platform
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Optional

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from initlab import __version__, records, theory
from initlab.activations import build_activation
from initlab.config import ConfigError, Device, ExperimentConfig, to_experiment
from initlab.data import Data, load_data
from initlab.inits import initialize
from initlab.jacobian import probe_count, singular_values, summarize
from initlab.loop import build_optimizer, evaluate, train_epoch
from initlab.models import MLP
from initlab.probes import layer_statistics
from initlab.resume import RUNTIME_KEYS, check_same_run, extends

log = logging.getLogger(__name__)
DELTA_RMS = records.PROBE_COLUMNS.index("delta_rms")


def resolve_device(choice: Device) -> torch.device:
    if choice == Device.cuda and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA GPU is visible; valid: auto, cpu, cuda")
    if choice == Device.auto:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice.value)


def default_threads(launcher: Optional[Mapping[str, Any]] = None) -> int:
    """This job's share of the cores, so parallel jobs never oversubscribe the CPU.

    Under joblib: cores / n_jobs; under submitit: its ``cpus_per_task``; else every core this
    process may run on (which SLURM's task/affinity already limits to the allocation).
    """
    cores = len(os.sched_getaffinity(0))
    launcher = launcher or {}
    if launcher.get("n_jobs") is not None:
        jobs = cores if launcher["n_jobs"] == -1 else launcher["n_jobs"]
        return max(1, cores // max(1, jobs))
    if launcher.get("cpus_per_task") is not None:
        return max(1, min(cores, launcher["cpus_per_task"]))
    return cores


def _flat(data: Data, exp: ExperimentConfig) -> Data:
    """The MLP takes (N, F): images as C*H*W vectors (C, H, W order); token ids it cannot take."""
    if data.kind == "sequences":
        raise ConfigError(f"model={exp.model.name} takes vectors or images; dataset={exp.dataset.name} gives "
                          f"token sequences")
    return replace(data, **{k: getattr(data, k).flatten(1) for k in ("x_train", "x_test", "x_val")
                            if getattr(data, k) is not None})


def _probe_batch(data: Data, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed subset of train, drawn once from the seed: the same inputs at every epoch."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data.y_train), generator=g)[:size].to(data.x_train.device)
    return data.x_train[idx], data.y_train[idx]


def _layer_rows(epoch: int, stats: torch.Tensor, grad_norm_train: Optional[list[float]],
                predictions: Optional[dict] = None) -> list[dict]:
    rows = []
    for i, values in enumerate(stats.tolist()):
        row = {"epoch": epoch, "layer": i + 1, **dict(zip(records.PROBE_COLUMNS, values))}
        row["grad_norm_train"] = None if grad_norm_train is None else grad_norm_train[i]
        for column in records.PREDICTED_COLUMNS:
            row[column] = predictions[column][i] if predictions else None
        rows.append(row)
    return rows


def _quietly(name: str, compute, *args, fallback: Any = math.nan, **kwargs) -> Any:
    """A theory prediction, or ``fallback`` (NaN) with one warning when this configuration is
    outside what the formulas handle (sigma_w^2 overflowing, no critical point in range)."""
    try:
        with np.errstate(all="ignore"):
            return compute(*args, **kwargs)
    except (ArithmeticError, ValueError) as err:
        log.warning("mean-field %s not computed for this configuration: %s", name, err)
        return fallback


def _mean_field(exp: ExperimentConfig, model: MLP, x_probe: torch.Tensor, delta_out_rms: float) -> dict:
    """Mean-field predictions at init for this network and probe batch (initlab.theory).

    Per layer: ``q_pred`` and ``delta_rms_pred`` (anchored at the measured output-layer delta_rms);
    the hidden-to-hidden Jacobian's mean squared singular value; and the phase of the hidden
    layers' (sigma_w^2, sigma_b^2): chi1, q*, depth scales, the critical sigma_w^2. What the
    theory cannot compute for this configuration is NaN, never an error.
    """
    dims = [(layer.in_features, layer.out_features) for layer in model.linears]
    nan_layers = np.full(len(dims), math.nan)
    pred = _quietly("per-layer predictions", theory.predict_mlp, dims, exp.init, exp.activation,
                    x_probe.pow(2).mean(dim=1).double().cpu().numpy(), exp.model.bias_init.value,
                    exp.model.bias_std, delta_out_rms=delta_out_rms,
                    fallback={"q_pred": nan_layers, "delta_rms_pred": nan_layers, "jac_msv_pred": nan_layers})
    width, act, nan = exp.model.width, exp.activation, math.nan
    sigma_b2 = theory.effective_sigma_b2(exp.model.bias_init.value, exp.model.bias_std)
    sigma_w2 = float(_quietly("sigma_w2", theory.effective_sigma_w2, exp.init, width, width))
    finite = math.isfinite(sigma_w2)  # an overflowing sigma_w^2 has no meaningful phase
    xi_q, xi_c = (_quietly("depth scales", theory.depth_scales, act, sigma_w2, sigma_b2, fallback=(nan, nan))
                  if finite else (nan, nan))
    # the Jacobian is measured on the first probe_count inputs only: predict it for those
    jac_pred = _quietly("Jacobian prediction", theory.predict_mlp, dims, exp.init, exp.activation,
                        x_probe[:probe_count(width)].pow(2).mean(dim=1).double().cpu().numpy(),
                        exp.model.bias_init.value, exp.model.bias_std, fallback={"jac_msv_pred": nan_layers})
    phase = {"sigma_w2": sigma_w2, "sigma_b2": sigma_b2,
             "chi1": _quietly("chi1", theory.chi1, act, sigma_w2, sigma_b2) if finite else nan,
             "q_star": _quietly("q*", theory.fixed_point, act, sigma_w2, sigma_b2) if finite else nan,
             "xi_q": xi_q, "xi_c": xi_c,
             "critical_sigma_w2": _quietly("critical sigma_w2", theory.critical_sigma_w2, act, sigma_b2)}
    return {"q_pred": pred["q_pred"].tolist(), "delta_rms_pred": pred["delta_rms_pred"].tolist(),
            "jacobian_mean_sq_sv_pred": float(jac_pred["jac_msv_pred"][exp.depth - 1]), "phase": phase}


def divergence(row: Mapping[str, Any], stats: torch.Tensor) -> Optional[str]:
    """Why an epoch counts as diverged, or None: a non-finite loss (train, test or validation),
    or a non-finite probe statistic (overflowed weights, signals or gradients; ``stats`` as from
    ``layer_statistics``, rows = layers, columns = records.PROBE_COLUMNS)."""
    losses = [f"{key} {row[key]}" for key in ("train_loss", "test_loss", "val_loss")
              if key in row and not math.isfinite(row[key])]
    if losses:
        return ", ".join(losses)
    bad = ~torch.isfinite(stats)
    if bad.any():
        columns = [c for c, b in zip(records.PROBE_COLUMNS, bad.any(dim=0).tolist()) if b]
        layers = [str(i + 1) for i, b in enumerate(bad.any(dim=1).tolist()) if b]
        return f"non-finite probe {', '.join(columns)} in layer(s) {', '.join(layers)}"
    return None


def _choices(exp: ExperimentConfig) -> dict[str, Any]:
    """Every resolved setting that defines the run (all but resume.RUNTIME_KEYS), as plain JSON."""
    plain = OmegaConf.to_container(OmegaConf.structured(exp), resolve=True, enum_to_str=True)
    return {key: value for key, value in plain.items() if key not in RUNTIME_KEYS}


def _versions() -> dict[str, str]:
    return {"initlab": __version__, "torch": torch.__version__, "hydra": hydra.__version__,
            "python": platform.python_version()}


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def run(cfg: DictConfig, job_dir: Path, launcher: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """Run (or resume, or skip) the job described by ``cfg`` in ``job_dir``; return result.json.

    Raises ConfigError (one line) for bad settings, and for a folder whose checkpoint or result is
    of a run with other settings (see initlab.resume).
    """
    job_dir = Path(job_dir)
    exp = to_experiment(cfg)
    choices = _choices(exp)
    result_path, checkpoint_path = job_dir / records.RESULT_JSON, job_dir / records.CHECKPOINT
    extending = False
    if exp.resume and result_path.is_file():
        finished = json.loads(result_path.read_text())
        extending = (finished.get("status") == "completed" and checkpoint_path.is_file()
                     and extends(finished.get("choices"), choices))
        if not extending:
            check_same_run(records.RESULT_JSON, job_dir, finished.get("choices"), choices)
            log.info("%s exists: job already finished, skipping (resume=false reruns it)", result_path)
            return finished
    device = resolve_device(exp.device)
    state = None
    if exp.resume and checkpoint_path.is_file():
        state = torch.load(checkpoint_path, map_location=device, weights_only=False)
        check_same_run(records.CHECKPOINT, job_dir, state.get("choices"), choices, checkpoint_epoch=state["epoch"])
        if extending:  # until the longer run finishes, the folder holds an unfinished job
            log.info("extending the finished run from epoch %d to %d (its checkpoint was kept)",
                     state["epoch"], exp.epochs)
            result_path.unlink()
    job_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(exp.threads or default_threads(launcher))
    wall_start = time.perf_counter()

    data = _flat(load_data(exp.dataset), exp).to(device)
    x_probe, y_probe = _probe_batch(data, exp.probe_size, exp.seed)
    torch.manual_seed(exp.seed)
    model = MLP(data.n_features, data.n_classes, exp.model.width, exp.depth,
                build_activation(exp.activation)).to(device)
    initialize(model, exp.init, exp.model)
    optimizer = build_optimizer(model.parameters(), exp.optimizer)
    generator = torch.Generator(device=device).manual_seed(exp.seed)
    rec = records.JobRecords(job_dir, records.EPOCH_COLUMNS + (records.VAL_COLUMNS if data.y_val is not None else ()))
    mean_field: dict[str, Any] = {}

    def record_epoch(epoch: int, train_loss: float, train_acc: float, epoch_time: float,
                     grad_norm_train: Optional[list[float]]) -> tuple[dict, Optional[str]]:
        """Evaluate, probe, check for divergence, then (on a finite epoch only) predict at init and
        measure Jacobians; write. Returns the epochs.csv row and why the epoch diverged (or None)."""
        row = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc}
        row["test_loss"], row["test_acc"] = evaluate(model, data.x_test, data.y_test)
        row["epoch_time"], row["lr"] = epoch_time, optimizer.param_groups[0]["lr"]
        if data.y_val is not None:
            row["val_loss"], row["val_acc"] = evaluate(model, data.x_val, data.y_val)
        rec.epochs.append(row)
        stats = layer_statistics(model, exp.activation.name, x_probe, y_probe)  # never raises on NaN/Inf
        diverged = divergence(row, stats)
        if epoch == 0:
            mean_field.update(_mean_field(exp, model, x_probe, float(stats[-1, DELTA_RMS])))
        predictions = mean_field if epoch == 0 and not diverged else None
        rec.layers.extend(_layer_rows(epoch, stats, grad_norm_train, predictions))
        if not diverged and (epoch == 0 or (exp.jacobian_every and epoch % exp.jacobian_every == 0)):
            _measure_jacobians(rec, epoch, model, x_probe[:probe_count(exp.model.width)], predictions)
        rec.write()
        _log_epoch(row, exp.epochs)
        return row, diverged

    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if state["device_type"] == device.type:
            generator.set_state(state["generator"])
        else:  # a CUDA generator's state means nothing to the CPU's, and vice versa
            generator.manual_seed(exp.seed + state["epoch"])
            log.warning("checkpoint written on %s, resumed on %s: batch order reseeded from seed + epoch",
                        state["device_type"], device.type)
        rec.restore(state["records"])
        mean_field.update(state["mean_field"])
        start, wall_start, diverged = state["epoch"] + 1, wall_start - state["wall_time"], None
        log.info("resuming from the checkpoint after epoch %d", state["epoch"])
    else:
        records.clear(job_dir)  # a fresh start never leaves another run's files beside its own
        start = 1
        _, diverged = record_epoch(0, *evaluate(model, data.x_train, data.y_train), 0.0, None)

    last = start - 1 if diverged else exp.epochs  # a run that diverged at init takes no training step
    with logging_redirect_tqdm():  # log lines go through tqdm.write, above the bar; file logs unchanged
        bar = tqdm(range(start, last + 1), desc=job_dir.name[-40:], unit="epoch", disable=None,
                   initial=start - 1, total=exp.epochs)
        for epoch in bar:
            t0 = time.perf_counter()
            sums = train_epoch(model, optimizer, data.x_train, data.y_train, exp.batch_size, generator)
            train_loss = sums.loss.item() / sums.steps  # the epoch's one host sync
            epoch_time = time.perf_counter() - t0
            row, diverged = record_epoch(epoch, train_loss, sums.correct.item() / sums.samples, epoch_time,
                                         (sums.grad_norms / sums.steps).tolist())
            bar.set_postfix(loss=f"{train_loss:.4f}", test_acc=f"{row['test_acc']:.4f}")
            if diverged:
                break
            _save_checkpoint(checkpoint_path, epoch, model, optimizer, generator, rec, mean_field, choices,
                             time.perf_counter() - wall_start)
        bar.close()
        if diverged:
            log.warning("diverged at epoch %d (%s): recording the run as diverged", rec.epochs[-1]["epoch"],
                        diverged)

    result = {
        "status": "diverged" if diverged else "completed",
        "diverged_epoch": rec.epochs[-1]["epoch"] if diverged else None,
        "final": rec.epochs[-1],
        "wall_time": time.perf_counter() - wall_start,
        "train_time": sum(r["epoch_time"] for r in rec.epochs),
        "choices": choices,
        "data": {"n_features": data.n_features, "n_classes": data.n_classes, "n_train": len(data.y_train),
                 "n_val": 0 if data.y_val is None else len(data.y_val), "n_test": len(data.y_test)},
        "theory": mean_field["phase"],
        "rows": rec.row_counts(),
        "versions": _versions(),
        "device": _device_name(device),
    }
    records.write_json_atomic(result_path, result)
    if not exp.keep_checkpoint:
        checkpoint_path.unlink(missing_ok=True)
    return result


def _measure_jacobians(rec: records.JobRecords, epoch: int, model: MLP, x: torch.Tensor,
                       predictions: Optional[dict]) -> None:
    """Jacobian spectra on the probe inputs ``x``: a summary row per kind and every singular value."""
    for kind, sv in singular_values(model, x).items():
        predicted = predictions["jacobian_mean_sq_sv_pred"] if predictions and kind == "hidden" else None
        rec.jacobian.append({"epoch": epoch, "kind": kind, **summarize(sv), "mean_sq_sv_pred": predicted})
        rec.singular_values.extend({"epoch": epoch, "kind": kind, "sv": v} for v in sv.flatten().tolist())


def _save_checkpoint(path: Path, epoch: int, model: MLP, optimizer: torch.optim.Optimizer,
                     generator: torch.Generator, rec: records.JobRecords, mean_field: dict,
                     choices: dict, wall_time: float) -> None:
    """Everything a resumed job needs to continue identically, and the choices it must agree with."""
    checkpoint = io.BytesIO()
    torch.save({"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "generator": generator.get_state(), "records": rec.state(), "mean_field": mean_field,
                "device_type": generator.device.type, "choices": choices, "wall_time": wall_time}, checkpoint)
    records.write_bytes_atomic(path, checkpoint.getvalue())


def _log_epoch(row: dict, epochs: int) -> None:
    log.info("epoch %d/%d  train_loss %.4f  train_acc %.4f  test_loss %.4f  test_acc %.4f  %.2fs",
             row["epoch"], epochs, row["train_loss"], row["train_acc"], row["test_loss"],
             row["test_acc"], row["epoch_time"])
