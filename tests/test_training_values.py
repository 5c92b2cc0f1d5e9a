"""Training by value: a float64 NumPy replay of a job's epochs against its records.

The replay takes from torch only the data, the initial weights (rebuilt from the job's seed) and
the batch order (``torch.randperm`` on a generator seeded like the job's); forward pass, loss,
backward pass, gradient norms and every optimizer update (torch's documented rules for SGD,
momentum/Nesterov, RMSprop, Adam and AdamW, weight decay included) are computed here. It then
checks epochs.csv (train_loss as the mean over steps, train_acc, test_loss/test_acc, grad_norm:
the mean over steps of the norm of all parameters' gradients together),
layers.csv ``grad_norm_train`` (mean over steps of each layer's weight-gradient Frobenius norm)
and the trained weights in the checkpoint.

Tolerances: torch trains in float32, the replay in float64. Measured over the 23 steps of a
digits epoch, for every optimizer below: max |diff| / max |param| <= 3.5e-7, the same for the
epoch's update W - W0 <= 1.2e-6, train_loss <= 1.4e-7 and grad_norm_train <= 2e-7 relative. The
tolerances are 1e-5 (params, losses, norms) and 1e-4 (updates), 25-80x those, while a setting
that does not reach torch or a wrong rule moves them by 1e-2 or more. Accuracies may differ by a
sample whose top two logits float32 cannot separate, so they get one sample of slack.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pytest
import torch

from conftest import compose_config, read_csv, run_job
from initlab.config import to_experiment
from initlab.data import load_data
from initlab.records import write_csv_atomic
from test_statistics import NP_ACTIVATIONS, np_forward, np_loss_acc, np_log_softmax, params_from_state, params_of, \
    rebuild_initial_model


# --- torch's optimizers, from their documentation (torch.optim.SGD/RMSprop/Adam/AdamW) ----------
class NpOptimizer:
    """The update rules, one state per parameter; ``step(params, grads)`` updates in place."""

    def __init__(self, cfg):
        self.cfg, self.state, self.t = cfg, {}, 0

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        self.t += 1
        for i, (p, g) in enumerate(zip(params, grads)):
            p -= self.delta(i, p, g.copy())

    def delta(self, i: int, p: np.ndarray, g: np.ndarray) -> np.ndarray:
        c, name = self.cfg, self.cfg.name
        lr, wd = c.lr, c.weight_decay
        st = self.state.setdefault(i, {})
        if name in ("sgd", "momentum"):
            g = g + wd * p
            if c.momentum:
                st["buf"] = g.copy() if "buf" not in st else c.momentum * st["buf"] + g  # dampening 0
                g = g + c.momentum * st["buf"] if c.nesterov else st["buf"]
            return lr * g
        if name == "rmsprop":
            g = g + wd * p
            st["v"] = c.alpha * st.get("v", 0.0) + (1 - c.alpha) * g * g
            step = g / (np.sqrt(st["v"]) + c.eps)
            if c.momentum:
                st["buf"] = c.momentum * st.get("buf", 0.0) + step
                step = st["buf"]
            return lr * step
        b1, b2 = c.betas
        decoupled = lr * wd * p if name == "adamw" else 0.0
        if name == "adam":
            g = g + wd * p
        st["m"] = b1 * st.get("m", 0.0) + (1 - b1) * g
        st["v"] = b2 * st.get("v", 0.0) + (1 - b2) * g * g
        m_hat, v_hat = st["m"] / (1 - b1 ** self.t), st["v"] / (1 - b2 ** self.t)
        return decoupled + lr * m_hat / (np.sqrt(v_hat) + c.eps)


def np_loss_delta(logits: np.ndarray, y: np.ndarray, loss: str = "cross_entropy") -> tuple[float, np.ndarray]:
    """The mean loss over the batch and dLoss/dlogits: cross-entropy, or MSE against one-hot
    targets averaged over batch and classes (dL/dz = 2 (z - onehot) / (N C))."""
    n, c = logits.shape
    if loss == "mse":
        err = logits - np.eye(c)[y]
        return float((err ** 2).mean()), 2.0 * err / (n * c)
    logp = np_log_softmax(logits)
    delta = np.exp(logp)
    delta[np.arange(n), y] -= 1.0
    return float(-logp[np.arange(n), y].mean()), delta / n


def np_gradients(params, act: str, x: np.ndarray, y: np.ndarray, loss_name: str = "cross_entropy"):
    """Mean loss, logits, and dLoss/dW, dLoss/db for every Linear (float64)."""
    _, fprime = NP_ACTIVATIONS[act]
    pre, post = np_forward(params, act, x)
    loss, delta = np_loss_delta(pre[-1], y, loss_name)
    inputs = [x.reshape(len(x), -1)] + post[:-1]
    grads = [None] * len(params)
    for i in range(len(params) - 1, -1, -1):
        grads[i] = (delta.T @ inputs[i], delta.sum(axis=0))
        if i:
            delta = (delta @ params[i][0]) * fprime(pre[i - 1])
    return loss, pre[-1], grads


def replay(exp, data, step_log: Optional[list] = None) -> tuple[list[dict], list[np.ndarray], list]:
    """Per epoch: {train_loss, train_acc, grad_norm}, per-layer mean gradient norms; and the final params.

    ``step_log``, if given, gets one dict per optimizer step: step (1-based), epoch, loss, and
    per layer the weight norm (before the update), weight- and bias-gradient norms."""
    params = [(W.copy(), b.copy()) for W, b in params_of(rebuild_initial_model(exp, data))]
    flat = [t for pair in params for t in pair]
    opt = NpOptimizer(exp.optimizer)
    x, y = data.x_train.double().numpy(), data.y_train.numpy()
    generator = torch.Generator().manual_seed(exp.seed)
    epochs, norms = [], []
    step = 0
    for epoch in range(1, exp.epochs + 1):
        order = torch.randperm(len(y), generator=generator).split(exp.batch_size)
        loss_sum, correct, grad_sum, total = 0.0, 0, np.zeros(len(params)), 0.0
        for idx in order:
            idx = idx.numpy()
            loss, logits, grads = np_gradients(params, exp.activation.name, x[idx], y[idx], exp.loss.value)
            step += 1
            if step_log is not None:
                step_log.append({"step": step, "epoch": epoch, "loss": loss,
                                 "weight_norm": [np.linalg.norm(W) for W, _ in params],
                                 "grad_norm": [np.linalg.norm(gW) for gW, _ in grads],
                                 "bias_grad_norm": [np.linalg.norm(gb) for _, gb in grads]})
            opt.step(flat, [t for pair in grads for t in pair])
            loss_sum += loss
            correct += int((logits.argmax(axis=1) == y[idx]).sum())
            grad_sum += [np.sqrt((gW ** 2).sum()) for gW, _ in grads]
            total += np.sqrt(sum((g ** 2).sum() for pair in grads for g in pair))  # all parameters
        epochs.append({"train_loss": loss_sum / len(order), "train_acc": correct / len(y),
                       "grad_norm": total / len(order)})
        norms.append(grad_sum / len(order))
    return epochs, norms, params


def run_and_replay(tmp_path, *overrides: str):
    base = ["dataset=digits", "activation=tanh", "init=xavier_normal", "depth=2", "model.width=16",
            "batch_size=64", "seed=5", "probe_size=100", "threads=1", "device=cpu", "checkpoint=last"]
    cfg = compose_config(*base, *overrides)
    exp = to_experiment(cfg)
    run_job(cfg, tmp_path)
    data = load_data(exp.dataset)
    return exp, data, replay(exp, data)


def _rel_close(got: np.ndarray, want: np.ndarray, rtol: float = 1e-5) -> None:
    """Elementwise, relative to the tensor's scale (entries near zero carry float32 noise)."""
    scale = np.abs(want).max()
    np.testing.assert_allclose(got, want, rtol=0, atol=rtol * scale)


OPTIMIZERS = {
    "sgd": ["optimizer=sgd", "optimizer.lr=0.1"],
    "sgd-decay": ["optimizer=sgd", "optimizer.lr=0.1", "optimizer.weight_decay=0.05"],
    "momentum": ["optimizer=momentum", "optimizer.lr=0.05", "optimizer.momentum=0.8"],
    "nesterov": ["optimizer=momentum", "optimizer.lr=0.05", "optimizer.momentum=0.8", "optimizer.nesterov=true",
                 "optimizer.weight_decay=0.02"],
    "rmsprop": ["optimizer=rmsprop", "optimizer.lr=0.01", "optimizer.alpha=0.5", "optimizer.eps=0.05"],
    "rmsprop-momentum": ["optimizer=rmsprop", "optimizer.lr=0.005", "optimizer.alpha=0.7", "optimizer.eps=0.01",
                         "optimizer.momentum=0.5", "optimizer.weight_decay=0.1"],
    "adam": ["optimizer=adam", "optimizer.lr=0.01", "optimizer.betas=[0.7,0.9]", "optimizer.eps=0.01",
             "optimizer.weight_decay=0.1"],
    "adamw": ["optimizer=adamw", "optimizer.lr=0.01", "optimizer.betas=[0.8,0.95]", "optimizer.eps=0.001",
              "optimizer.weight_decay=0.5"],
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_trained_weights_follow_the_optimizers_update_rule(tmp_path, name):
    """One epoch (23 steps): every parameter equals the NumPy replay of torch's documented rule.

    The settings are far from the defaults (eps 1e-2, alpha 0.5, betas 0.7/0.9, decay 0.1), so
    a setting that does not reach torch moves the weights by far more than the tolerance.
    """
    exp, data, (_, _, params) = run_and_replay(tmp_path, "epochs=1", *OPTIMIZERS[name])
    state = torch.load(tmp_path / "checkpoint.pt", map_location="cpu", weights_only=False)
    trained = params_from_state(state["model"], exp.depth)
    initial = params_of(rebuild_initial_model(exp, data))
    for layer, ((W, b), (W_np, b_np), (W0, _)) in enumerate(zip(trained, params, initial), start=1):
        # the update itself must be resolved, not only the weights: compare W - W0 as well
        _rel_close(W - W0, W_np - W0, rtol=1e-4)
        _rel_close(W, W_np)
        _rel_close(b, b_np)


def test_epoch_rows_are_means_over_the_steps(tmp_path):
    """epochs.csv and layers.csv grad_norm_train over three epochs against the replay."""
    exp, data, (epochs, norms, params) = run_and_replay(
        tmp_path, "epochs=3", "optimizer=momentum", "optimizer.lr=0.05")
    rows = read_csv(tmp_path / "epochs.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    n_train = len(data.y_train)
    for epoch, want in enumerate(epochs, start=1):
        row = rows[epoch]
        assert float(row["train_loss"]) == pytest.approx(want["train_loss"], rel=1e-5), epoch
        assert float(row["train_acc"]) == pytest.approx(want["train_acc"], abs=1.5 / n_train), epoch
        assert float(row["grad_norm"]) == pytest.approx(want["grad_norm"], rel=1e-5), epoch
    assert rows[0]["grad_norm"] == "", "no step at init"
    x_test, y_test = data.x_test.double().numpy(), data.y_test.numpy()
    loss, acc = np_loss_acc(params, exp.activation.name, x_test, y_test)  # the replay's own weights
    assert float(rows[-1]["test_loss"]) == pytest.approx(loss, rel=1e-5)
    assert float(rows[-1]["test_acc"]) == pytest.approx(acc, abs=1.5 / len(y_test))
    layers = read_csv(tmp_path / "layers.csv")
    for epoch, want in enumerate(norms, start=1):
        got = [float(r["grad_norm_train"]) for r in layers if int(r["epoch"]) == epoch]
        assert len(got) == exp.depth + 1
        np.testing.assert_allclose(got, want, rtol=1e-5, err_msg=f"epoch {epoch}")
    assert math.ceil(n_train / exp.batch_size) == 23  # a sum over steps would be 23x, a mean over samples 1/64


def test_partial_last_batch_counts_as_one_step(tmp_path):
    """batch_size that does not divide the training set: the mean is still over steps."""
    exp, data, (epochs, norms, _) = run_and_replay(tmp_path, "epochs=1", "batch_size=500", "optimizer.lr=0.1")
    assert len(data.y_train) % 500 != 0
    row = read_csv(tmp_path / "epochs.csv")[1]
    assert float(row["train_loss"]) == pytest.approx(epochs[0]["train_loss"], rel=1e-5)
    got = [float(r["grad_norm_train"]) for r in read_csv(tmp_path / "layers.csv") if r["epoch"] == "1"]
    np.testing.assert_allclose(got, norms[0], rtol=1e-5)


def test_csv_floats_round_trip_exactly(tmp_path):
    """Records keep every bit of a float (repr), so readers compare at float64 precision."""
    values = [0.1 + 0.2, 1 / 3, math.pi * 1e-300, 2.0 ** 0.5 * 1e20, -1e-7 / 3]
    write_csv_atomic(tmp_path / "f.csv", ["i", "v"], [{"i": i, "v": v} for i, v in enumerate(values)])
    assert [float(r["v"]) for r in read_csv(tmp_path / "f.csv")] == values
