"""layers.csv and epochs.csv against an independent float64 NumPy forward/backward pass.

Real jobs run through ``initlab.train.job.run`` with Hydra-composed configs. The weights come
from the job itself (epoch 1: its checkpoint.pt, kept with checkpoint=last) or, for epoch 0,
from rebuilding the model with the job's seed; every statistic is then recomputed here in NumPy.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import erf

from conftest import compose_config, read_csv, run_job
from initlab.choices import build_activation
from initlab.config import to_experiment
from initlab.data import load_data
from initlab.train.job import _probe_batch
from initlab.inits import initialize
from initlab.models import MLP
from initlab.measure.probes import probe_statistics
from initlab.records import PROBE_COLUMNS
from initlab.records import EPOCH_COLUMNS, GRAD_COLUMNS, LAYER_COLUMNS, VAL_COLUMNS


# --- the NumPy reference ------------------------------------------------------------------------
def _sigmoid(h):
    return 0.5 * (1.0 + np.tanh(0.5 * h))  # overflow-free logistic


SQRT2 = math.sqrt(2.0)

# name -> (f, f'), float64
NP_ACTIVATIONS = {
    "relu": (lambda h: np.maximum(h, 0.0), lambda h: (h > 0).astype(np.float64)),
    "tanh": (np.tanh, lambda h: 1.0 - np.tanh(h) ** 2),
    "sigmoid": (_sigmoid, lambda h: _sigmoid(h) * (1.0 - _sigmoid(h))),
    "gelu": (lambda h: 0.5 * h * (1.0 + erf(h / SQRT2)),
             lambda h: 0.5 * (1.0 + erf(h / SQRT2)) + h * np.exp(-0.5 * h * h) / math.sqrt(2 * math.pi)),
    "linear": (lambda h: h, lambda h: np.ones_like(h)),
}


def np_saturated(name: str, a: np.ndarray) -> np.ndarray:
    if name == "tanh":
        return np.abs(a) > 0.99
    if name == "sigmoid":
        return (a < 0.01) | (a > 0.99)
    return np.zeros(a.shape, dtype=bool)


def np_log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def np_forward(params, act: str, x: np.ndarray):
    """params: [(W, b)] hidden layers then the output layer. Returns pre-activations, activations."""
    f, _ = NP_ACTIVATIONS[act]
    pre, post, a = [], [], x.reshape(len(x), -1)  # the MLP flattens images
    for W, b in params[:-1]:
        h = a @ W.T + b
        a = f(h)
        pre.append(h)
        post.append(a)
    W, b = params[-1]
    logits = a @ W.T + b
    return pre + [logits], post + [logits]


def np_loss_acc(params, act, x, y) -> tuple[float, float]:
    logits = np_forward(params, act, x)[0][-1]
    logp = np_log_softmax(logits)
    return float(-logp[np.arange(len(y)), y].mean()), float((logits.argmax(axis=1) == y).mean())


def np_layer_statistics(params, act: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(depth+1, 12) in PROBE_COLUMNS order, for the mean cross-entropy over (x, y)."""
    _, fprime = NP_ACTIVATIONS[act]
    pre, post = np_forward(params, act, x)
    n = len(y)
    p = np.exp(np_log_softmax(pre[-1]))
    onehot = np.zeros_like(p)
    onehot[np.arange(n), y] = 1.0
    deltas = [None] * len(params)
    deltas[-1] = (p - onehot) / n  # d(mean CE)/d(logits)
    for i in range(len(params) - 2, -1, -1):
        deltas[i] = (deltas[i + 1] @ params[i + 1][0]) * fprime(pre[i])
    inputs = [x.reshape(len(x), -1)] + post[:-1]
    rows = []
    for i, (W, _) in enumerate(params):
        h, a, d = pre[i], post[i], deltas[i]
        is_output = i == len(params) - 1
        rows.append([
            h.mean(), h.std(), (h ** 2).mean(),
            a.mean(), a.std(),
            (a == 0).mean(),
            0.0 if is_output else (a == 0).all(axis=0).mean(),  # dead: zero on every sample
            0.0 if is_output else np_saturated(act, a).mean(),
            np.sqrt((W ** 2).sum()),
            np.sqrt(((d.T @ inputs[i]) ** 2).sum()),
            np.sqrt((d.sum(axis=0) ** 2).sum()),
            np.sqrt((d ** 2).mean()),
        ])
    return np.array(rows)


def np_ambiguous_counts(params, act: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per layer, entries whose zero / saturation status float32 rounding could flip, and units
    whose dead status could flip (every entry zero or ambiguous, at least one ambiguous)."""
    pre, post = np_forward(params, act, x)
    zero, sat, dead = [], [], []
    for h, a in zip(pre, post):
        scale = h.std() + 1e-30
        ambiguous = (np.abs(h) < 1e-5 * scale) & (h != 0) if act == "relu" else np.zeros(h.shape, dtype=bool)
        zero.append(np.sum(ambiguous))
        dead.append(np.sum(((a == 0) | ambiguous).all(axis=0) & ambiguous.any(axis=0)))
        if act == "tanh":
            sat.append(np.sum(np.abs(np.abs(a) - 0.99) < 1e-5))
        elif act == "sigmoid":
            sat.append(np.sum((np.abs(a - 0.01) < 1e-5) | (np.abs(a - 0.99) < 1e-5)))
        else:
            sat.append(0)
    return np.array(zero), np.array(sat), np.array(dead)


# --- helpers ------------------------------------------------------------------------------------
def params_of(model: MLP) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(l.weight.detach().double().numpy(), l.bias.detach().double().numpy()) for l in model.linears]


def params_from_state(state: dict, depth: int) -> list[tuple[np.ndarray, np.ndarray]]:
    names = [f"hidden.{i}" for i in range(depth)] + ["out"]
    return [(state[f"{n}.weight"].double().numpy(), state[f"{n}.bias"].double().numpy()) for n in names]


def rebuild_initial_model(exp, data) -> MLP:
    """The job's epoch-0 model: same seed, same construction order as experiment.run."""
    torch.manual_seed(exp.seed)
    model = MLP(data.n_features, data.n_classes, exp.model.width, exp.depth, build_activation(exp.activation))
    initialize(model, exp.init, exp.model)
    return model


def assert_layer_rows_match(rows: list[dict], ref: np.ndarray, ambiguous, n_probe: int, width: int,
                            n_classes: int, label: str) -> None:
    zero_amb, sat_amb, dead_amb = ambiguous
    assert len(rows) == len(ref)
    for i, (row, expected) in enumerate(zip(rows, ref)):
        assert int(row["layer"]) == i + 1
        got = {c: float(row[c]) for c in PROBE_COLUMNS}
        want = dict(zip(PROBE_COLUMNS, expected))
        units = n_probe * (n_classes if i == len(ref) - 1 else width)
        for col in PROBE_COLUMNS:
            # 1e-5 relative, no absolute floor (tiny values are checked too), except: means of
            # zero-centred quantities get a floor of 1e-5 of their spread (float32 cancellation),
            # and counted fractions may differ by the units float32 rounding could flip.
            floor = {"preact_mean": 1e-5 * want["preact_std"], "act_mean": 1e-5 * want["act_std"]}.get(col, 0.0)
            if col == "frac_zero":
                floor = (zero_amb[i] + 0.5) / units if zero_amb[i] else 0.0
            if col == "frac_dead":
                floor = (dead_amb[i] + 0.5) / width if dead_amb[i] else 0.0
            if col == "frac_saturated":
                floor = (sat_amb[i] + 0.5) / units if sat_amb[i] else 0.0
            assert got[col] == pytest.approx(want[col], rel=1e-5, abs=floor), \
                f"{label} layer {i + 1} {col}: csv {got[col]!r} vs numpy {want[col]!r}"


# --- jobs ---------------------------------------------------------------------------------------
SMALL_BLOBS = ["dataset=blobs", "dataset.n_train=300", "dataset.n_test=120", "dataset.n_features=24",
               "dataset.n_classes=4", "dataset.cluster_std=3.0"]

CASES = {
    "relu-he-digits": ["activation=relu", "init=he_normal", "depth=4", "model.width=32"],
    "tanh-xavier-digits": ["activation=tanh", "init=xavier_normal", "init.gain=1.5", "depth=3", "model.width=24",
                           "probe_size=500", "dataset.val_size=200"],
    "sigmoid-normal-blobs": ["activation=sigmoid", "init=normal", "init.std=0.5", "depth=3", "model.width=16",
                             "model.bias_init=normal", "model.bias_std=0.3", *SMALL_BLOBS],
    "gelu-orthogonal-blobs": ["activation=gelu", "init=orthogonal", "depth=4", "model.width=20",
                              "optimizer=momentum", "probe_size=1000", *SMALL_BLOBS],
}


@pytest.fixture(scope="module", params=sorted(CASES))
def job(request, tmp_path_factory):
    """One epoch of a real job; the checkpoint is kept so the trained weights can be read back."""
    # device=cpu: the epoch-0 weights are rebuilt on the CPU (CUDA would draw from its own generator)
    overrides = CASES[request.param] + ["epochs=1", "checkpoint=last", "seed=3", "batch_size=64",
                                        "optimizer.lr=0.05", "threads=1", "device=cpu"]
    cfg = compose_config(*overrides)
    exp = to_experiment(cfg)
    job_dir = tmp_path_factory.mktemp(request.param)
    result = run_job(cfg, job_dir)
    data = load_data(exp.dataset)
    return {"name": request.param, "cfg": cfg, "exp": exp, "dir": job_dir, "result": result, "data": data}


def probe(job) -> tuple[np.ndarray, np.ndarray]:
    exp, data = job["exp"], job["data"]
    x, y = _probe_batch(data, exp.probe_size, exp.seed)  # the job's indices; the numbers are ours
    return x.double().numpy(), y.numpy()


def test_layers_csv_epoch0_matches_numpy(job):
    exp, data = job["exp"], job["data"]
    model = rebuild_initial_model(exp, data)
    params = params_of(model)
    x, y = probe(job)
    assert len(y) == min(exp.probe_size, len(data.y_train))
    rows = [r for r in read_csv(job["dir"] / "layers.csv") if r["epoch"] == "0"]
    ref = np_layer_statistics(params, exp.activation.name, x, y)
    assert_layer_rows_match(rows, ref, np_ambiguous_counts(params, exp.activation.name, x), len(y),
                            exp.model.width, data.n_classes, f"{job['name']} epoch 0")
    assert all(r["grad_norm_train"] == "" for r in rows), "no training has happened at epoch 0"


def test_layers_csv_epoch1_matches_numpy_with_trained_weights(job):
    exp, data = job["exp"], job["data"]
    state = torch.load(job["dir"] / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert state["epoch"] == 1
    params = params_from_state(state["model"], exp.depth)
    initial = params_of(rebuild_initial_model(exp, data))
    assert any(not np.allclose(W, W0) for (W, _), (W0, _) in zip(params, initial)), "training changed nothing"
    x, y = probe(job)
    rows = [r for r in read_csv(job["dir"] / "layers.csv") if r["epoch"] == "1"]
    ref = np_layer_statistics(params, exp.activation.name, x, y)
    assert_layer_rows_match(rows, ref, np_ambiguous_counts(params, exp.activation.name, x), len(y),
                            exp.model.width, data.n_classes, f"{job['name']} epoch 1")
    grad_train = [float(r["grad_norm_train"]) for r in rows]
    assert all(g > 0 and math.isfinite(g) for g in grad_train)


def test_epochs_csv_losses_match_numpy(job):
    exp, data = job["exp"], job["data"]
    rows = read_csv(job["dir"] / "epochs.csv")
    assert [r["epoch"] for r in rows] == ["0", "1"]
    with_val = data.y_val is not None
    assert list(rows[0]) == list(EPOCH_COLUMNS) + (list(VAL_COLUMNS) if with_val else []) + list(GRAD_COLUMNS) + ["attempt"]
    assert rows[0]["grad_norm"] == "" and 0 < float(rows[1]["grad_norm"]) < math.inf
    init_params = params_of(rebuild_initial_model(exp, data))
    trained = params_from_state(torch.load(job["dir"] / "checkpoint.pt", weights_only=False)["model"], exp.depth)
    splits = {"train": (data.x_train, data.y_train), "test": (data.x_test, data.y_test)}
    if with_val:
        splits["val"] = (data.x_val, data.y_val)
    for split, (x, y) in splits.items():
        x, y = x.double().numpy(), y.numpy()
        loss0, acc0 = np_loss_acc(init_params, exp.activation.name, x, y)
        assert float(rows[0][f"{split}_loss"]) == pytest.approx(loss0, rel=1e-5), split
        assert float(rows[0][f"{split}_acc"]) == pytest.approx(acc0, abs=0.5 / len(y)), split
        if split != "train":  # epoch-1 train loss is the running mean over the epoch's steps
            loss1, acc1 = np_loss_acc(trained, exp.activation.name, x, y)
            assert float(rows[1][f"{split}_loss"]) == pytest.approx(loss1, rel=1e-5), split
            assert float(rows[1][f"{split}_acc"]) == pytest.approx(acc1, abs=0.5 / len(y)), split
    assert float(rows[0]["epoch_time"]) == 0.0 and float(rows[1]["epoch_time"]) > 0
    assert all(float(r["lr"]) == exp.optimizer.lr for r in rows)
    train_loss1 = float(rows[1]["train_loss"])
    assert math.isfinite(train_loss1) and 0 <= float(rows[1]["train_acc"]) <= 1


def test_result_json_matches_the_last_row(job):
    result, rows = job["result"], read_csv(job["dir"] / "epochs.csv")
    assert result["status"] == "completed" and result["diverged_epoch"] is None
    assert result["final"]["epoch"] == 1
    assert result["final"]["test_loss"] == pytest.approx(float(rows[-1]["test_loss"]), rel=1e-12)
    assert result["choices"]["activation"]["name"] == job["exp"].activation.name
    assert (job["dir"] / "checkpoint.pt").is_file(), "checkpoint=last keeps it"


def test_epochs_zero_run_records_the_same_init_row(tmp_path):
    """epochs=0 gives the init row only, equal to epoch 0 of a longer run with the same seed."""
    overrides = CASES["relu-he-digits"] + ["seed=3", "threads=1", "device=cpu"]
    (tmp_path / "zero").mkdir()
    (tmp_path / "one").mkdir()
    run_job(compose_config(*overrides, "epochs=0"), tmp_path / "zero")
    run_job(compose_config(*overrides, "epochs=1"), tmp_path / "one")
    zero_layers, one_layers = read_csv(tmp_path / "zero/layers.csv"), read_csv(tmp_path / "one/layers.csv")
    assert len(zero_layers) == 5 and {r["epoch"] for r in zero_layers} == {"0"}
    assert zero_layers == one_layers[:5]
    zero_epochs = read_csv(tmp_path / "zero/epochs.csv")
    assert len(zero_epochs) == 1 and zero_epochs[0] == read_csv(tmp_path / "one/epochs.csv")[0]
    assert not (tmp_path / "zero/checkpoint.pt").exists() and not (tmp_path / "one/checkpoint.pt").exists()
    assert list(read_csv(tmp_path / "zero/layers.csv")[0]) == [*LAYER_COLUMNS, "attempt"]


# --- activation functions themselves ------------------------------------------------------------------
@pytest.mark.parametrize("overrides,reference", [
    (["activation=relu"], lambda h: np.maximum(h, 0)),
    (["activation=tanh"], np.tanh),
    (["activation=sigmoid"], lambda h: 1 / (1 + np.exp(-h))),
    (["activation=gelu"], lambda h: 0.5 * h * (1 + erf(h / SQRT2))),
    (["activation=gelu", "activation.approximate=tanh"],
     lambda h: 0.5 * h * (1 + np.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h ** 3)))),
    (["activation=leaky_relu", "activation.negative_slope=0.2"], lambda h: np.where(h > 0, h, 0.2 * h)),
    (["activation=elu", "activation.alpha=0.7"], lambda h: np.where(h > 0, h, 0.7 * np.expm1(h))),
    (["activation=selu"], lambda h: 1.0507009873554805 * np.where(h > 0, h, 1.6732632423543772 * np.expm1(h))),
    (["activation=silu"], lambda h: h / (1 + np.exp(-h))),
    (["activation=linear"], lambda h: h),
])
def test_activation_functions_match_their_formulas(overrides, reference):
    module = build_activation(to_experiment(compose_config(*overrides)).activation)
    h = np.linspace(-6, 6, 1201)
    got = module(torch.from_numpy(h)).numpy()
    np.testing.assert_allclose(got, reference(h), rtol=1e-12, atol=1e-12)


def test_vanishing_signals_are_measured_not_flushed_to_zero():
    """Activations and gradients near 1e-20 (deep nets with small inits) have squares below
    float32's range; the statistics must still match float64 NumPy, not read 0."""
    torch.manual_seed(0)
    exp = to_experiment(compose_config("activation=linear", "init=normal", "init.std=1e-4"))
    model = MLP(64, 5, 16, 6, build_activation(exp.activation))
    initialize(model, exp.init, exp.model)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(200, 64, generator=g), torch.randint(0, 5, (200,), generator=g)
    got = probe_statistics(model, "linear", x, y).values.numpy()
    params = params_of(model)
    ref = np_layer_statistics(params, "linear", x.double().numpy(), y.numpy())
    assert ref[:, PROBE_COLUMNS.index("act_std")].min() < 1e-19  # the regime this is about
    assert ref[:, PROBE_COLUMNS.index("delta_rms")].min() < 1e-19
    rows = [{"layer": i + 1, **dict(zip(PROBE_COLUMNS, r))} for i, r in enumerate(got)]
    assert_layer_rows_match(rows, ref, np_ambiguous_counts(params, "linear", x.double().numpy()), 200, 16, 5,
                            "tiny signals")


def test_frac_dead_counts_units_zero_on_every_sample_and_frac_zero_counts_entries():
    """Units pushed dead by a large negative bias: frac_dead is exactly their share of the layer,
    while frac_zero also counts the live units' zero entries; both match NumPy in every layer."""
    torch.manual_seed(0)
    exp = to_experiment(compose_config("activation=relu", "init=he_normal"))
    model = MLP(20, 3, 10, 3, build_activation(exp.activation))
    initialize(model, exp.init, exp.model)
    with torch.no_grad():
        model.hidden[0].bias[:4] = -1e3  # 4 of 10 units of layer 1 never fire
        model.hidden[1].bias[7:] = -1e3  # 3 of 10 units of layer 2
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(300, 20, generator=g), torch.randint(0, 3, (300,), generator=g)
    got = probe_statistics(model, "relu", x, y).values.numpy()
    dead, zero = got[:, PROBE_COLUMNS.index("frac_dead")], got[:, PROBE_COLUMNS.index("frac_zero")]
    assert dead[0] == 0.4 and dead[1] == 0.3
    assert dead[-1] == 0.0, "the output layer (logits) has no dead units"
    assert zero[0] > dead[0] + 0.1 and zero[1] > dead[1] + 0.1  # live ReLUs are zero on about half the samples
    params = params_of(model)
    ref = np_layer_statistics(params, "relu", x.double().numpy(), y.numpy())
    rows = [{"layer": i + 1, **dict(zip(PROBE_COLUMNS, r))} for i, r in enumerate(got)]
    assert_layer_rows_match(rows, ref, np_ambiguous_counts(params, "relu", x.double().numpy()), 300, 10, 3,
                            "dead units")


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_probe_statistics_of_non_finite_weights_are_non_finite_not_an_error(bad):
    """The probe pass runs on every epoch, a diverged one too: overflowed weights give non-finite
    statistics for the divergence check, never an exception."""
    torch.manual_seed(0)
    model = MLP(20, 3, 10, 3, build_activation(to_experiment(compose_config("activation=tanh")).activation))
    with torch.no_grad():
        model.hidden[1].weight[0, 0] = bad
    x, y = torch.randn(50, 20), torch.randint(0, 3, (50,))
    stats = probe_statistics(model, "tanh", x, y).values.numpy()
    assert stats.shape == (4, len(PROBE_COLUMNS))
    assert np.isfinite(stats[0, PROBE_COLUMNS.index("preact_sq")])  # layer 1 is untouched
    assert not np.isfinite(stats[1, PROBE_COLUMNS.index("weight_norm")])
