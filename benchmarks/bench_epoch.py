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

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from initlab.config import BiasInit, BlobsConfig, FanMode, ModelConfig, SGDConfig, VarianceScalingConfig  # noqa: E402
from initlab.data import load_data  # noqa: E402
from initlab.inits import initialize  # noqa: E402
from initlab.train.loop import build_optimizer, evaluate, train_epoch  # noqa: E402
from initlab.models import MLP  # noqa: E402
from initlab.measure.probes import measured_weights, probe_statistics  # noqa: E402

DEPTH, WIDTH, BATCH, PROBE = 50, 128, 128, 1000


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    device = torch.device(args.device)

    data = load_data(BlobsConfig(name="blobs", n_train=60000, n_test=10000, n_features=784, n_classes=10,
                                 cluster_std=1.0, seed=0)).to(device)
    torch.manual_seed(0)
    model = MLP(data.n_features, data.n_classes, WIDTH, DEPTH, torch.nn.ReLU()).to(device)
    initialize(model, VarianceScalingConfig(name="he_normal", factor=2.0, mode=FanMode.fan_in),
               ModelConfig(name="mlp", width=WIDTH, bias_init=BiasInit.zeros, bias_std=0.0))
    optimizer = build_optimizer(model.parameters(), SGDConfig(name="sgd", lr=0.01))
    generator = torch.Generator(device=device).manual_seed(0)
    x_probe, y_probe = data.x_train[:PROBE], data.y_train[:PROBE]
    params = dict(model.named_parameters())
    weights = [params[name] for name in measured_weights(model, x_probe)]

    def initlab_epoch() -> None:
        sums = train_epoch(model, optimizer, data.x_train, data.y_train, BATCH, generator, weights)
        sums.loss.item()
        evaluate(model, data.x_test, data.y_test)
        probe_statistics(model, "relu", x_probe, y_probe)

    def initlab_no_stats() -> None:
        train_epoch(model, optimizer, data.x_train, data.y_train, BATCH, generator,
                    track_grad_norms=False).loss.item()
        evaluate(model, data.x_test, data.y_test)

    loader = DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=BATCH, shuffle=True)
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

    peak = matmul_peak(device)
    limit = epoch_flops(len(data.y_train), [data.n_features] + [WIDTH] * DEPTH + [data.n_classes]) / peak
    results = {
        "initlab, all statistics": timed(initlab_epoch, device, args.repeats),
        "initlab, statistics off": timed(initlab_no_stats, device, args.repeats),
        "plain PyTorch loop": timed(plain_epoch, device, args.repeats),
    }
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
