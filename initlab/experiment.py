"""One job from config to records: data, model, init, epochs of training, statistics, result.

Read top to bottom: ``run`` is the whole job. Epoch 0 is the state at initialization; after each
epoch the rows so far and a checkpoint are written atomically, so a killed job continues where
it stopped and a finished one (``result.json`` present) is skipped.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import platform
import time
from pathlib import Path
from typing import Any, Mapping, Optional

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from initlab import __version__, records, theory
from initlab.activations import build_activation
from initlab.config import ConfigError, Device, ExperimentConfig, to_experiment
from initlab.data import Data, load_data
from initlab.inits import initialize
from initlab.jacobian import probe_count, singular_values, summarize
from initlab.loop import build_optimizer, evaluate, train_epoch
from initlab.models import MLP
from initlab.probes import layer_statistics

log = logging.getLogger(__name__)


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


def _mean_field(exp: ExperimentConfig, model: MLP, x_probe: torch.Tensor, stats: torch.Tensor) -> dict:
    """Mean-field predictions at init for this network and probe batch (initlab.theory).

    Per layer: ``q_pred`` and ``delta_rms_pred`` (anchored at the measured output-layer delta_rms);
    the hidden-to-hidden Jacobian's mean squared singular value; and the phase of the hidden
    layers' (sigma_w^2, sigma_b^2): chi1, q*, depth scales, the critical sigma_w^2.
    """
    dims = [(layer.in_features, layer.out_features) for layer in model.linears]
    sigma_b2 = theory.effective_sigma_b2(exp.model.bias_init.value, exp.model.bias_std)
    pred = theory.predict_mlp(dims, exp.init, exp.activation, x_probe.pow(2).mean(dim=1).double().cpu().numpy(),
                              exp.model.bias_init.value, exp.model.bias_std,
                              delta_out_rms=float(stats[-1, records.PROBE_COLUMNS.index("delta_rms")]))
    width = exp.model.width
    # the Jacobian is measured on the first probe_count inputs only: predict it for those
    jac_pred = theory.predict_mlp(dims, exp.init, exp.activation,
                                  x_probe[:probe_count(width)].pow(2).mean(dim=1).double().cpu().numpy(),
                                  exp.model.bias_init.value, exp.model.bias_std)
    sigma_w2 = theory.effective_sigma_w2(exp.init, width, width)
    xi_q, xi_c = theory.depth_scales(exp.activation, sigma_w2, sigma_b2)
    phase = {"sigma_w2": sigma_w2, "sigma_b2": sigma_b2,
             "chi1": theory.chi1(exp.activation, sigma_w2, sigma_b2),
             "q_star": theory.fixed_point(exp.activation, sigma_w2, sigma_b2), "xi_q": xi_q, "xi_c": xi_c,
             "critical_sigma_w2": theory.critical_sigma_w2(exp.activation, sigma_b2)}
    return {"q_pred": pred["q_pred"].tolist(), "delta_rms_pred": pred["delta_rms_pred"].tolist(),
            "jacobian_mean_sq_sv_pred": float(jac_pred["jac_msv_pred"][exp.depth - 1]), "phase": phase}


def _choices(exp: ExperimentConfig) -> dict[str, Any]:
    """The resolved choices, with their parameters, as plain JSON values."""
    plain = OmegaConf.to_container(OmegaConf.structured(exp), resolve=True, enum_to_str=True)
    return {key: plain[key] for key in ("activation", "init", "dataset", "optimizer", "model", "depth",
                                        "epochs", "batch_size", "seed", "probe_size")}


def _versions() -> dict[str, str]:
    return {"initlab": __version__, "torch": torch.__version__, "hydra": hydra.__version__,
            "python": platform.python_version()}


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def run(cfg: DictConfig, job_dir: Path, launcher: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """Run (or resume, or skip) the job described by ``cfg`` in ``job_dir``; return result.json."""
    job_dir = Path(job_dir)
    result_path = job_dir / records.RESULT_JSON
    if cfg.resume and result_path.is_file():
        log.info("%s exists: job already finished, skipping (resume=false reruns it)", result_path)
        return json.loads(result_path.read_text())
    exp = to_experiment(cfg)
    device = resolve_device(exp.device)
    job_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(exp.threads or default_threads(launcher))
    wall_start = time.perf_counter()

    data = load_data(exp.dataset).to(device)
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
                     grad_norm_train: Optional[list[float]]) -> dict:
        """Evaluate, probe and (at init and every jacobian_every epochs) measure Jacobians; write."""
        row = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc}
        row["test_loss"], row["test_acc"] = evaluate(model, data.x_test, data.y_test)
        row["epoch_time"], row["lr"] = epoch_time, optimizer.param_groups[0]["lr"]
        if data.y_val is not None:
            row["val_loss"], row["val_acc"] = evaluate(model, data.x_val, data.y_val)
        rec.epochs.append(row)
        stats = layer_statistics(model, exp.activation.name, x_probe, y_probe)
        if epoch == 0:
            mean_field.update(_mean_field(exp, model, x_probe, stats))
        rec.layers.extend(_layer_rows(epoch, stats, grad_norm_train, mean_field if epoch == 0 else None))
        if epoch == 0 or (exp.jacobian_every and epoch % exp.jacobian_every == 0):
            for kind, sv in singular_values(model, x_probe[:probe_count(exp.model.width)]).items():
                predicted = mean_field["jacobian_mean_sq_sv_pred"] if epoch == 0 and kind == "hidden" else None
                rec.jacobian.append({"epoch": epoch, "kind": kind, **summarize(sv), "mean_sq_sv_pred": predicted})
                rec.singular_values.extend({"epoch": epoch, "kind": kind, "sv": v} for v in sv.flatten().tolist())
        rec.write()
        _log_epoch(row, exp.epochs)
        return row

    checkpoint_path = job_dir / records.CHECKPOINT
    if cfg.resume and checkpoint_path.is_file():
        state = torch.load(checkpoint_path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        rec.restore(state["records"])
        mean_field.update(state["mean_field"])
        start, wall_start = state["epoch"] + 1, wall_start - state["wall_time"]
        log.info("resuming from the checkpoint after epoch %d", state["epoch"])
    else:
        start = 1
        record_epoch(0, *evaluate(model, data.x_train, data.y_train), 0.0, None)

    status, diverged_epoch = "completed", None
    bar = tqdm(range(start, exp.epochs + 1), desc=job_dir.name[-40:], unit="epoch", disable=None,
               initial=start - 1, total=exp.epochs)
    for epoch in bar:
        t0 = time.perf_counter()
        sums = train_epoch(model, optimizer, data.x_train, data.y_train, exp.batch_size, generator)
        train_loss = sums.loss.item() / sums.steps  # the epoch's one host sync
        epoch_time = time.perf_counter() - t0
        row = record_epoch(epoch, train_loss, sums.correct.item() / sums.samples, epoch_time,
                           (sums.grad_norms / sums.steps).tolist())
        bar.set_postfix(loss=f"{train_loss:.4f}", test_acc=f"{row['test_acc']:.4f}")
        if not math.isfinite(train_loss):
            status, diverged_epoch = "diverged", epoch
            log.warning("training loss is %s at epoch %d: recording the run as diverged", train_loss, epoch)
            break
        checkpoint = io.BytesIO()
        torch.save({"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "generator": generator.get_state(), "records": rec.state(), "mean_field": mean_field,
                    "wall_time": time.perf_counter() - wall_start}, checkpoint)
        records.write_bytes_atomic(checkpoint_path, checkpoint.getvalue())
    bar.close()

    result = {
        "status": status,
        "diverged_epoch": diverged_epoch,
        "final": rec.epochs[-1],
        "wall_time": time.perf_counter() - wall_start,
        "train_time": sum(r["epoch_time"] for r in rec.epochs),
        "choices": _choices(exp),
        "data": {"n_features": data.n_features, "n_classes": data.n_classes, "n_train": len(data.y_train),
                 "n_val": 0 if data.y_val is None else len(data.y_val), "n_test": len(data.y_test)},
        "theory": mean_field["phase"],
        "versions": _versions(),
        "device": _device_name(device),
    }
    records.write_json_atomic(result_path, result)
    if not exp.keep_checkpoint:
        checkpoint_path.unlink(missing_ok=True)
    return result


def _log_epoch(row: dict, epochs: int) -> None:
    log.info("epoch %d/%d  train_loss %.4f  train_acc %.4f  test_loss %.4f  test_acc %.4f  %.2fs",
             row["epoch"], epochs, row["train_loss"], row["train_acc"], row["test_loss"],
             row["test_acc"], row["epoch_time"])
