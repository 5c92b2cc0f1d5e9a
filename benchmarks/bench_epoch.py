"""Time one training epoch three ways, in one process, and relate it to the machine's matmul peak.

Setting (the reference study's deepest MLP): depth 50, width 128, batch 128, SGD lr 0.01, on the
MNIST-shaped ``blobs`` set (60 000 x 784, 10 classes), generated offline.

1. initlab: ``train_epoch`` (per-layer gradient norms accumulated on the device) + test
   evaluation + the per-layer probe statistics, i.e. everything a job does per epoch;
2. initlab with statistics off: ``train_epoch`` without gradient norms + test evaluation, no probe
   (so 1 / 2 - 1 is the cost of the statistics alone);
3. a plain PyTorch loop: DataLoader over a TensorDataset, ``.item()`` every step, and the same
   test evaluation in DataLoader batches.

The FLOP limit is the epoch's forward+backward FLOPs divided by the measured fp32 matmul rate.
Prints a table and the ratios; see benchmarks/README.md for recorded figures.

    python benchmarks/bench_epoch.py [--device cpu|cuda] [--repeats 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from initlab.config import register_configs, to_experiment  # noqa: E402
from initlab.data import load_data  # noqa: E402
from initlab.inits import initialize  # noqa: E402
from initlab.measure.probes import measured_weights, probe_statistics  # noqa: E402
from initlab.models import build_model  # noqa: E402
from initlab.sweeps import group_options  # noqa: E402
from initlab.train.loop import build_optimizer, evaluate, train_epoch  # noqa: E402

DEPTH, WIDTH, BATCH, PROBE = 50, 128, 128, 1000
DEVICES = ("cpu", "cuda")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_at_least(parser: argparse.ArgumentParser, args: argparse.Namespace, names: Sequence[str],
                   low: int = 1) -> None:
    """parser.error (one line, before any work) for a count or size below ``low``, in a single value
    or a list: 0 repeats printed inf and nan as results, depth 0 ended in a ConfigError traceback."""
    for name in names:
        value = getattr(args, name)
        bad = [v for v in (value if isinstance(value, list) else [value]) if v < low]
        if bad:
            parser.error(f"{_flag(name)} must be >= {low}, got {bad[0]}")


def check_distinct(parser: argparse.ArgumentParser, args: argparse.Namespace, names: Sequence[str]) -> None:
    """parser.error for a list option naming a value twice: results are kept per value, so the second
    measurement overwrote the first and both rows printed it."""
    for name in names:
        values = getattr(args, name)
        twice = [v for v in dict.fromkeys(values) if values.count(v) > 1]
        if twice:
            parser.error(f"{_flag(name)} names {twice[0]} twice; give each value once")


def check_device(parser: argparse.ArgumentParser, device: str) -> None:
    """parser.error for ``--device cuda`` without a GPU, which torch refuses only after set-up, in a
    traceback."""
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but no CUDA GPU is visible; valid: cpu, cuda")


def min_samples() -> int:
    """The fewest training samples of the benchmarks' blobs set: every one of its classes (conf/dataset/
    blobs.yaml) needs one, or composing the job fails with dataset.n_classes must be <= dataset.n_train."""
    return int(OmegaConf.load(ROOT / "conf/dataset/blobs.yaml").n_classes)


def check_samples(parser: argparse.ArgumentParser, samples: int) -> None:
    """parser.error for ``--samples`` below the blobs set's class count (see min_samples)."""
    low = min_samples()
    if samples < low:
        parser.error(f"--samples must be >= {low} (one training sample per class of dataset blobs), got {samples}")


def conf_choices(group: str) -> list[str]:
    """The choices of a config group (``activation``, ``hydra/launcher``) as train.py composes them,
    so an option naming one is refused in one line, not in Hydra's MissingConfigException."""
    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return group_options(group)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int) -> float:
    """Best of ``repeats`` after one warm-up call, in seconds."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_peak(device: torch.device, n: int = 4096) -> float:
    """Sustained fp32 FLOP/s of one large square torch.mm."""
    a, b = (torch.randn(n, n, device=device) for _ in range(2))
    seconds = timed(lambda: torch.mm(a, b), device, repeats=5)
    return 2 * n**3 / seconds


def epoch_flops(n_samples: int, sizes: list[int]) -> float:
    """Forward (2 m n per sample per Linear) plus backward (twice that) FLOPs of one epoch."""
    return 3 * 2 * n_samples * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def job_config(depth: int, samples: int = 60000, *overrides: str) -> DictConfig:
    """The benchmark's job (relu, he_normal, SGD lr 0.01, width 128, batch 128, blobs with
    ``samples`` training and samples / 6 test samples), composed from conf/ as train.py composes it;
    ``overrides`` replace the setting's value of their key (``activation=tanh``) or add one."""
    register_configs()
    setting = ["dataset=blobs", f"dataset.n_train={samples}", f"dataset.n_test={max(samples // 6, 10)}",
               "optimizer=sgd", "optimizer.lr=0.01", "activation=relu", "init=he_normal", "model=mlp",
               f"model.width={WIDTH}", f"batch_size={BATCH}", f"depth={depth}", f"probe_size={min(PROBE, samples)}"]
    replaced = {o.split("=", 1)[0] for o in overrides}
    setting = [s for s in setting if s.split("=", 1)[0] not in replaced]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=[*setting, *overrides])


def one_model_epochs(cfg: DictConfig, device: torch.device) -> dict:
    """The three single-model epochs of the module docstring for the job ``cfg``, as callables:
    variant name -> epoch(). The model is built and initialized as initlab.train.job builds it."""
    exp = to_experiment(cfg)
    data = load_data(exp.dataset).to(device)
    torch.manual_seed(exp.seed)
    model = build_model(exp, data).to(device)
    initialize(model, exp.init, exp.model)
    optimizer = build_optimizer(model.parameters(), exp.optimizer)
    generator = torch.Generator(device=device).manual_seed(exp.seed)
    batch = exp.batch_size
    x_probe, y_probe = data.x_train[:exp.probe_size], data.y_train[:exp.probe_size]
    params = dict(model.named_parameters())
    weights = [params[name] for name in measured_weights(model, x_probe)]

    def initlab_epoch() -> None:
        sums = train_epoch(model, optimizer, data.x_train, data.y_train, batch, generator, weights)
        sums.loss.item()
        evaluate(model, data.x_test, data.y_test)
        probe_statistics(model, exp.activation.name, x_probe, y_probe)

    def initlab_no_stats() -> None:
        train_epoch(model, optimizer, data.x_train, data.y_train, batch, generator,
                    track_grad_norms=False).loss.item()
        evaluate(model, data.x_test, data.y_test)

    loader = DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=batch, shuffle=True)
    test_loader = DataLoader(TensorDataset(data.x_test, data.y_test), batch_size=1000)

    def plain_epoch() -> None:
        model.train()
        for xb, yb in loader:
            loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss.item()
        model.eval()
        with torch.no_grad():
            correct = sum((model(xb).argmax(1) == yb).sum().item() for xb, yb in test_loader)
        correct / len(data.y_test)

    return {"initlab, all statistics": initlab_epoch, "initlab, statistics off": initlab_no_stats,
            "plain PyTorch loop": plain_epoch}


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The options, refused in one line before any work when out of range: ``--repeats 0`` ran 32 s
    and printed inf and nan as results, ``--device cuda`` without a GPU ended in a traceback."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=DEVICES)
    parser.add_argument("--repeats", type=int, default=2, help="best of this many epochs per variant (default 2)")
    args = parser.parse_args(argv)
    check_at_least(parser, args, ["repeats"])
    check_device(parser, args.device)
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    device = torch.device(args.device)

    cfg = job_config(DEPTH)
    epochs = one_model_epochs(cfg, device)
    n_train = cfg.dataset.n_train
    peak = matmul_peak(device)
    limit = epoch_flops(n_train, [cfg.dataset.n_features] + [WIDTH] * DEPTH + [cfg.dataset.n_classes]) / peak
    results = {name: timed(epoch, device, args.repeats) for name, epoch in epochs.items()}
    plain = results["plain PyTorch loop"]
    print(f"device: {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"fp32 matmul peak: {peak / 1e9:.1f} GFLOP/s -> FLOP limit of one epoch: {limit:.2f} s")
    print(f"{'variant':28s} {'s/epoch':>8s} {'vs plain':>9s} {'FLOP limit / time':>18s}")
    for name, seconds in results.items():
        print(f"{name:28s} {seconds:8.2f} {seconds / plain:8.2f}x {limit / seconds:17.0%}")
    overhead = results["initlab, all statistics"] / results["initlab, statistics off"] - 1
    print(f"statistics cost (gradient norms every step + probe): {overhead:+.1%} of an epoch")


if __name__ == "__main__":
    main()
