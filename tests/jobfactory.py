"""Job folders in the real on-disk format, written without training, for analysis and figure tests.

A job here is what initlab.records and Hydra write: result.json, epochs.csv, layers.csv,
jacobian.csv, jacobian_sv.csv, optionally steps.csv and distributions.csv (through
initlab.records' own writers; every CSV ends in the ``attempt`` column) and .hydra/{config,hydra,
overrides}.yaml. The numbers are made up but shaped like real ones (a per-layer gain, accuracy
curves that rise towards a plateau, seed noise), so figures of any grid shape render in seconds.
Group parameters come from conf/<group>/<name>.yaml, as Hydra would compose them.
"""

from __future__ import annotations

import copy
import functools
import json
import itertools
import math
import zlib
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
from omegaconf import OmegaConf

from initlab import records

ROOT = Path(__file__).resolve().parents[1]
EXCLUDE_KEYS = ["resume", "checkpoint", "checkpoint_every_s", "threads", "device", "logger", "logger.histograms",
                "objective"]  # conf/config.yaml's
N_CLASSES = 10
WIDTH = 16
N_INPUTS = 2  # probe inputs of the Jacobian
SITE_COLUMNS = ("site", "kind", "index")  # appended to layers.csv since P6
GRAD_NORM = "grad_norm"  # appended to epochs.csv since P6
NO_THEORY = "no mean-field map for this model (BatchNorm / attention)"
ATTEMPT = "attempt"  # the last column of every CSV since P7 (restarts on a plateau)
STEP_COLUMNS = ("step", "epoch", "loss", "lr", "site", "layer", "weight_norm", "grad_norm", "bias_grad_norm")
DISTRIBUTION_COLUMNS = ("epoch", "site", "kind", "index", "layer", "tensor", "stat", "bin_lo", "bin_hi", "value")
QUANTILES = {"q01": 0.01, "q05": 0.05, "q25": 0.25, "q50": 0.5, "q75": 0.75, "q95": 0.95, "q99": 0.99}
HIST_EDGES = np.linspace(-4.0, 4.0, 41)  # 40 fixed bins; values outside are clipped into the end bins


def sites(model: str, depth: int) -> list[tuple[str, str, Optional[str]]]:
    """(site, kind, weight) in forward order, as initlab.models names them for ``model``.

    mlp: hidden.i.act for i < depth, then output; any other model here: a residual-MLP shape
    (a projection act, blocks with act + norm + residual output), then output. Weight rows (kind
    ``weight``, no site) follow for weights no site names: ``embed.weight`` on non-MLP models.
    """
    if model == "mlp":
        return [(f"hidden.{i}.act", "hidden", f"hidden.{i}.weight") for i in range(depth)] + [
            ("output", "output", "out.weight")]
    out = [("proj.act", "hidden", "proj.weight")]
    for b in range(max(depth - 1, 0)):
        out += [(f"blocks.{b}.norm", "norm", None), (f"blocks.{b}.act", "hidden", f"blocks.{b}.linear.weight"),
                (f"blocks.{b}", "residual", None)]
    return out + [("output", "output", "head.weight"), ("embed.weight", "weight", "embed.weight")]


def group(name: str, option: str, **params) -> dict:
    """conf/<name>/<option>.yaml without its defaults list, with ``params`` on top."""
    return {**copy.deepcopy(_group_file(name, option)), **params}


@functools.lru_cache(maxsize=None)
def _group_file(name: str, option: str) -> dict:
    """Read once per test session: a full grid writes hundreds of jobs from the same few files."""
    node = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / name / f"{option}.yaml"))
    node.pop("defaults", None)
    return node


def layer_gain(activation: str, init: str) -> float:
    """How much the post-activation std changes per layer (1: the signal is preserved)."""
    if init == "zero":
        return 0.0
    if init.startswith("he") or init == "lecun_normal" and activation == "selu":
        return 1.0
    if init in ("normal", "trunc_normal"):
        return 1.2
    return 0.75 if activation in ("relu", "gelu") else 0.97


def write_job(path: Path, *, activation: str = "relu", init: str = "he_normal", depth: int = 3, seed: int = 0,
              epochs: int = 2, init_params: Optional[dict] = None, optimizer: str = "sgd",
              optimizer_params: Optional[dict] = None,
              overrides: Iterable[str] = (), gain: Optional[float] = None, status: str = "completed",
              frac_dead: bool = True, jacobian: bool = True, theory: bool = True, rows: bool = True,
              model: str = "mlp", model_params: Optional[dict] = None, site_columns: bool = True,
              grad_norm: bool = True, n_params: Optional[int] = 1000, val: bool = False,
              curve: Optional[list[float]] = None, attempts: int = 1, attempt_column: bool = True,
              best_epoch: Optional[int] = None, stopped_epoch: Optional[int] = None, restored_best: bool = False,
              lr: Optional[list[float]] = None, steps_per_epoch: int = 0, distributions: bool = False,
              presets: Optional[dict] = None, planned_epochs: Optional[int] = None, logger: str = "none") -> Path:
    """One finished job in ``path``; returns ``path``.

    ``gain`` overrides layer_gain (0.001 with depth 500 underflows to exact zeros);
    ``status="diverged"`` makes the last epoch's losses and accuracies NaN; ``frac_dead``/``jacobian``/
    ``theory``/``rows`` False write a job as older initlab versions did, and so do ``site_columns``/``grad_norm``
    False (layers.csv without site/kind/index, epochs.csv without grad_norm) and ``n_params=None``.
    ``planned_epochs``: the config's ``epochs`` where the run ended before it (early stopping at
    ``stopped_epoch`` = ``epochs``), else ``epochs``.
    ``presets`` (group -> option, e.g. {"deep_plain": "relu_he"}) are Hydra runtime choices of
    preset groups, which set other groups and have no node of their own in the config.
    ``model`` (with ``model_params`` over conf/model/<model>.yaml, or a plain dict where no YAML
    exists) chooses the site layout (``sites``); a model other than mlp records no theory and
    says why (result.json theory_reason). ``val``: epochs.csv has val_loss/val_acc. ``curve``:
    the validation accuracy per epoch 0..epochs (the test accuracy without ``val``) instead of the
    made-up rise. ``logger``: the logger group's choice in .hydra/hydra.yaml (not one of the run's
    choices: Hydra's override_dirname excludes it, as conf/config.yaml says).
    """
    key = (activation, init, depth, seed) + ((model,) if model != "mlp" else ())  # MLP values as before P6
    rng = np.random.default_rng(zlib.crc32(repr(key).encode()))
    path = Path(path)
    (path / ".hydra").mkdir(parents=True, exist_ok=True)
    g = layer_gain(activation, init) if gain is None else gain
    if gain is None and "factor" in (init_params or {}):  # He et al.: Var(W) = 2 / fan_in keeps relu's signal
        g *= math.sqrt(init_params["factor"] / 2)
    config = {"activation": group("activation", activation), "init": group("init", init, **(init_params or {})),
              "dataset": group("dataset", "digits"), "optimizer": group("optimizer", optimizer, **(optimizer_params or {})),
              "model": _model_group(model, model_params), "depth": depth, "epochs": planned_epochs or epochs,
              "batch_size": 128, "seed": seed, "device": "cpu", "probe_size": 50, "threads": 1, "resume": True,
              "checkpoint": "none", "jacobian_every": 0}

    # epochs.csv: accuracy rises to a plateau that is high where the signal is preserved
    reach = depth / 5 if model == "mlp" else depth / 50  # the skip paths carry the signal of deep residual nets
    plateau = 0.1 + 0.85 * math.exp(-abs(math.log(g)) * reach) if g > 0 else 0.1
    epoch_rows = []
    for e in range(epochs + 1):
        rise = 1 - math.exp(-1.5 * e)
        train = min(1.0, 0.1 + (plateau - 0.1) * rise + 0.01 * rng.standard_normal() * (e > 0))
        test = max(0.0, train - 0.03 * rise)
        epoch_rows.append({"epoch": e, "train_loss": -math.log(max(train, 0.05)) + 0.05,
                           "train_acc": train, "test_loss": -math.log(max(test, 0.05)) + 0.1, "test_acc": test,
                           "epoch_time": 0.0 if e == 0 else 0.01, "lr": 0.01 if lr is None else lr[e]})
        if val:
            epoch_rows[-1].update(val_loss=epoch_rows[-1]["test_loss"] + 0.01,
                                  val_acc=curve[e] if curve is not None else max(0.0, test - 0.01))
        elif curve is not None:
            epoch_rows[-1]["test_acc"] = curve[e]
        if grad_norm:
            epoch_rows[-1][GRAD_NORM] = None if e == 0 else float(g * depth * math.exp(-0.3 * e)
                                                                  * math.exp(0.05 * rng.standard_normal()))
    diverged_epoch = None
    if status == "diverged":
        diverged_epoch = epochs
        epoch_rows[-1].update(train_loss=float("nan"), test_loss=float("nan"), train_acc=float("nan"),
                              test_acc=float("nan"))  # as a job writes them: NaN logits have no accuracy

    # layers.csv: one row per site in forward order (an MLP: hidden layers 1..depth, then the output
    # layer depth+1), then weight rows
    predicted = theory and model == "mlp"  # other models keep the columns, empty
    columns = [c for c in records.LAYER_COLUMNS if c not in SITE_COLUMNS]
    if site_columns:
        columns += list(SITE_COLUMNS)
    if model != "mlp" and not site_columns:
        raise ValueError("only MLP jobs were recorded without site columns")
    if frac_dead and "frac_dead" not in columns:
        columns.insert(columns.index("frac_zero") + 1, "frac_dead")
    if not frac_dead and "frac_dead" in columns:
        columns.remove("frac_dead")
    if not theory:
        columns = [c for c in columns if c not in records.PREDICTED_COLUMNS]
    layer_rows = []
    layout = sites(model, depth)
    for e, (index, (site, kind, weight)) in itertools.product(range(epochs + 1), enumerate(layout)):
        layer = sum(k in ("hidden", "output") for _, k, _ in layout[:index + 1]) if kind in ("hidden", "output") else None
        position = index + 1  # the made-up statistics grow with the position in the forward pass
        if model == "mlp" and kind == "output":
            position = depth + 1
        noise = math.exp(0.05 * rng.standard_normal())
        std = g ** position * noise * (1 + 0.1 * e)  # float: 0.001**500 is exactly 0.0
        zero = 0.5 if activation == "relu" and g > 0 else (1.0 if g == 0 else 0.0)
        row = {"epoch": e, "layer": layer, "site": site, "kind": kind, "index": index, "preact_mean": 0.0, "preact_std": std, "preact_sq": std ** 2,
               "act_mean": 0.4 * std if activation == "relu" else 0.01 * rng.standard_normal() * std,
               "act_std": std, "frac_zero": zero, "frac_dead": 0.0 if g > 0 else 1.0,
               "frac_saturated": 0.2 if activation in ("tanh", "sigmoid") and g > 1 else 0.0,
               "weight_norm": 4.0 * (g > 0), "grad_norm": 0.1 * std * g ** max(depth - position, 0),
               "bias_grad_norm": 0.01 * std, "delta_rms": 0.01 * (g ** (depth + 1 - position) if g > 0 else float(position > depth)),
               "grad_norm_train": None if e == 0 else 0.1 * std}
        if kind == "output":  # the output layer is linear
            row.update(frac_zero=0.0, frac_dead=0.0, frac_saturated=0.0)
        if e == 0:
            row.update(q_pred=(g ** position) ** 2, delta_rms_pred=0.01 * g ** (depth + 1 - position) if g > 0 else 0.0)
        if kind == "weight":  # a weight no site names: only its weight columns
            row = {k: (v if k in ("epoch", "site", "kind", "index", "weight_norm", "grad_norm", "grad_norm_train")
                       else None) for k, v in row.items()}
        elif kind in ("norm", "residual"):  # no weight of its own
            row.update(weight_norm=None, grad_norm=None, bias_grad_norm=None, grad_norm_train=None)
        if not predicted:
            row.update(q_pred=None, delta_rms_pred=None)
        layer_rows.append({k: v for k, v in row.items() if k in columns})

    jac_rows, sv_rows = [], []
    if jacobian:
        for kind, n in (("input_output", N_CLASSES), ("hidden", WIDTH)):
            sv = np.sort(rng.gamma(4.0, 0.25, N_INPUTS * n)) * (g ** depth if kind == "hidden" else 1.0)
            q = {f"sv_q{int(p * 100):02d}": float(np.quantile(sv, p)) for p in records.JACOBIAN_QUANTILES}
            jac_rows.append({"epoch": 0, "kind": kind, "n_inputs": N_INPUTS, "n_sv": n,
                             "mean_sq_sv": float(np.mean(sv ** 2)), "var_sq_sv": float(np.var(sv ** 2)),
                             "sv_min": float(sv.min()), "sv_max": float(sv.max()), "sv_std": float(sv.std()), **q,
                             "mean_sq_sv_pred": float(g ** (2 * depth)) if kind == "hidden" and predicted else None})
            sv_rows += [{"epoch": 0, "kind": kind, "sv": float(v)} for v in sv]
    epoch_columns = [*(c for c in records.EPOCH_COLUMNS if c not in (GRAD_NORM, *records.VAL_COLUMNS)),
                     *(records.VAL_COLUMNS if val else ()), *([GRAD_NORM] if grad_norm else [])]
    step_rows = _steps(rng, layout, layer_rows, epoch_rows, steps_per_epoch) if steps_per_epoch else None
    dist_rows = _distributions(rng, layout, layer_rows, activation) if distributions else None
    tail = [ATTEMPT] if attempt_column else []
    if attempts > 1 and not attempt_column:
        raise ValueError("restarts write the attempt column")
    files = {records.EPOCHS_CSV: (list(dict.fromkeys(epoch_columns)), epoch_rows),
             records.LAYERS_CSV: (columns, layer_rows),
             **({records.JACOBIAN_CSV: (list(records.JACOBIAN_COLUMNS), jac_rows),
                 records.JACOBIAN_SV_CSV: (list(records.JACOBIAN_SV_COLUMNS), sv_rows)} if jacobian else {}),
             **({"steps.csv": (list(STEP_COLUMNS), step_rows)} if step_rows is not None else {}),
             **({"distributions.csv": (list(DISTRIBUTION_COLUMNS), dist_rows)} if dist_rows is not None else {})}
    written = {}
    for name, (cols, final_rows) in files.items():
        all_rows = [{**row, ATTEMPT: a} for a in range(attempts - 1) for row in _stalled(name, final_rows)]
        all_rows += [{**row, ATTEMPT: attempts - 1} for row in final_rows] if attempt_column else final_rows
        records.write_csv_atomic(path / name, cols + tail, all_rows)
        written[name] = len(all_rows)

    final = epoch_rows[best_epoch] if restored_best else epoch_rows[-1]
    result = {"status": status, "diverged_epoch": diverged_epoch, "final": final, "wall_time": 1.0,
              "train_time": 0.01 * epochs,
              "choices": {k: v for k, v in config.items() if k not in ("device", "threads", "resume",
                                                                        "checkpoint", "jacobian_every")},
              "data": {"n_features": 64, "n_classes": N_CLASSES, "n_train": 1437, "n_val": 0, "n_test": 360},
              "device": "cpu (x86_64, 1 threads)"}
    if n_params is not None:
        result["n_params"] = n_params
    if model != "mlp":
        result["theory_reason"] = NO_THEORY
        result["theory"] = dict.fromkeys(("sigma_w2", "sigma_b2", "chi1", "q_star", "xi_q", "xi_c",
                                          "critical_sigma_w2"))  # what a job outside the theory writes
    elif site_columns:
        result["theory_reason"] = None
    if predicted:
        sigma_w2 = float(config["init"].get("factor", 1.0))
        chi1 = g ** 2
        xi = None if chi1 in (0.0, 1.0) else -1 / math.log(chi1)
        result["theory"] = {"sigma_w2": sigma_w2, "sigma_b2": 0.0, "chi1": chi1, "q_star": None, "xi_q": xi,
                            "xi_c": xi, "critical_sigma_w2": 2.0}
    if attempt_column:
        result.update(final_attempt=attempts - 1, best_epoch=best_epoch, stopped_epoch=stopped_epoch,
                      restored_best=restored_best)
    if rows:
        result["rows"] = written
    records.write_json_atomic(path / records.RESULT_JSON, result)

    overrides = list(overrides) or [f"activation={activation}", f"init={init}", f"depth={depth}", f"seed={seed}"]
    choices = {"model": model, "optimizer": optimizer, "dataset": "digits", "init": init, "activation": activation,
               "hydra/launcher": "basic", "logger": logger, "experiment": "deep_plain" if presets else None,
               **(presets or {})}
    hydra = {"hydra": {"runtime": {"choices": choices},
                       "job": {"override_dirname": ",".join(sorted(overrides)),
                               "config": {"override_dirname": {"kv_sep": "=", "item_sep": ",",
                                                               "exclude_keys": EXCLUDE_KEYS}}}}}
    OmegaConf.save(OmegaConf.create(hydra), path / ".hydra" / "hydra.yaml")
    OmegaConf.save(OmegaConf.create(config), path / ".hydra" / "config.yaml")
    OmegaConf.save(OmegaConf.create(overrides), path / ".hydra" / "overrides.yaml")
    return path


def _stalled(name: str, rows: list[dict]) -> list[dict]:
    """An earlier attempt's rows: the final attempt's shape, stuck at chance with halved statistics."""
    if name == records.EPOCHS_CSV:
        return [{**r, "train_acc": 0.1, "test_acc": 0.1, "train_loss": math.log(10), "test_loss": math.log(10)}
                for r in rows]
    if name == records.LAYERS_CSV:
        return [{**r, "act_std": None if r.get("act_std") is None else r["act_std"] / 2} for r in rows]
    if name == "steps.csv":
        return [{**r, "loss": math.log(10)} for r in rows]
    if name == "distributions.csv":
        return [{**r, "value": r["value"] / 2 if r["stat"] != "hist" else r["value"]} for r in rows]
    return rows


def _steps(rng: np.random.Generator, layout: list, layer_rows: list[dict], epoch_rows: list[dict],
           per_epoch: int) -> list[dict]:
    """steps.csv: every optimizer step of epochs 1.., one row per layers.csv row with a weight."""
    out, step = [], 0
    weighted = [(site, row) for (site, kind, weight), row in zip(layout, layer_rows) if weight is not None]
    for e in range(1, len(epoch_rows)):
        for _ in range(per_epoch):
            step += 1
            loss = epoch_rows[e]["train_loss"] * (1 + 0.5 / step) * math.exp(0.05 * rng.standard_normal())
            for site, row in weighted:
                grad = (row.get("grad_norm") or 0.0) * math.exp(-0.1 * step) * math.exp(0.1 * rng.standard_normal())
                out.append({"step": step, "epoch": e, "loss": loss, "lr": epoch_rows[e]["lr"], "site": site,
                            "layer": row.get("layer"), "weight_norm": row.get("weight_norm"), "grad_norm": grad,
                            "bias_grad_norm": 0.1 * grad})
    return out


def _distributions(rng: np.random.Generator, layout: list, layer_rows: list[dict], activation: str) -> list[dict]:
    """distributions.csv: per epoch and site, quantiles of weight/preact/act samples drawn with the
    site's preact_std, and the post-activation histogram over HIST_EDGES (fractions)."""
    out = []
    n_sites = len(layout)
    for i, row in enumerate(layer_rows):
        site, kind, weight = layout[i % n_sites]
        if kind == "weight":
            continue
        pre = rng.standard_normal(400) * (row.get("preact_std") or 1.0)
        post = np.maximum(pre, 0.0) if activation == "relu" and kind == "hidden" else (
            np.tanh(pre) if kind == "hidden" else pre)
        base = {"epoch": row["epoch"], "site": site, "kind": kind, "index": i % n_sites, "layer": row.get("layer")}
        tensors = {"preact": pre, "act": post}
        if weight is not None:
            tensors = {"weight": rng.standard_normal(256) * 0.25 * (1 + 0.1 * row["epoch"]), **tensors}
        for tensor, x in tensors.items():
            out += [{**base, "tensor": tensor, "stat": stat, "bin_lo": None, "bin_hi": None,
                     "value": float(np.quantile(x, q))} for stat, q in QUANTILES.items()]
        counts, _ = np.histogram(np.clip(post, HIST_EDGES[0], HIST_EDGES[-1]), HIST_EDGES)
        out += [{**base, "tensor": "act", "stat": "hist", "bin_lo": float(lo), "bin_hi": float(hi),
                 "value": float(c / len(post))} for lo, hi, c in zip(HIST_EDGES[:-1], HIST_EDGES[1:], counts)]
    return out


def _model_group(model: str, params: Optional[dict]) -> dict:
    """conf/model/<model>.yaml with ``params`` on top (width WIDTH for the MLP), or, for a model
    whose YAML is not on this branch, ``{"name": model, **params}``."""
    params = {**({"width": WIDTH} if model == "mlp" else {}), **(params or {})}
    if (ROOT / "conf" / "model" / f"{model}.yaml").is_file():
        return group("model", model, **params)
    return {"name": model, "width": WIDTH, **params}


def write_sweep(root: Path, activations: Iterable[str] = ("relu",), inits: Iterable[str] = ("he_normal",),
                depths: Iterable[int] = (3,), seeds: Iterable[int] = (0,), **job) -> Path:
    """Every combination as a job folder under ``root`` (named like Hydra's override_dirname)."""
    root = Path(root)
    for act, init, depth, seed in itertools.product(activations, inits, depths, seeds):
        write_job(root / f"activation={act},depth={depth},init={init},seed={seed}", activation=act, init=init,
                  depth=depth, seed=seed, **job)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    return root


OPTUNA_SWEEPER = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"


def write_search(root: Path, trials: Iterable[dict], objective: str = "val_acc", depth: int = 3,
                 epochs: int = 2) -> Path:
    """An Optuna search as hydra/sweeper=optuna_search leaves it: one job per trial, numbered in
    order (Hydra's job.num), ``objective`` in each job's config and Optuna's sweeper in its
    hydra.yaml. Each trial is ``{"factor", "lr", "final"}`` (the final validation accuracy; its
    loss is 1 - accuracy) and optionally ``"status": "diverged"``."""
    root = Path(root)
    for num, trial in enumerate(trials):
        factor, lr = trial["factor"], trial["lr"]
        overrides = [f"init.factor={factor}", f"optimizer.lr={lr}"]
        path = write_job(root / ",".join(overrides), depth=depth, epochs=epochs, val=True,
                         init_params={"factor": factor}, optimizer_params={"lr": lr}, overrides=overrides,
                         curve=[0.1] * epochs + [trial["final"]], status=trial.get("status", "completed"))
        result = json.loads((path / records.RESULT_JSON).read_text())
        result["final"]["val_loss"] = 1.0 - trial["final"]
        records.write_json_atomic(path / records.RESULT_JSON, result)
        hydra_yaml, config_yaml = path / ".hydra" / "hydra.yaml", path / ".hydra" / "config.yaml"
        hydra = OmegaConf.load(hydra_yaml)
        hydra.hydra.sweeper = {"_target_": OPTUNA_SWEEPER, "direction": "maximize" if objective.endswith("_acc")
                               else "minimize"}
        hydra.hydra.sweep = {"dir": str(root)}
        hydra.hydra.job.num = num
        OmegaConf.save(hydra, hydra_yaml)
        config = OmegaConf.load(config_yaml)
        config.objective = objective
        OmegaConf.save(config, config_yaml)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    (root / "optimization_results.yaml").write_text("name: optuna\n")
    return root
