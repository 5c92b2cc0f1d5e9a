"""Seconds per member-epoch of vectorized ensembles against one model at a time, and the FLOP floor.

Setting (P8's "Numbers to reach"): MLPs of width 128, batch 128, SGD lr 0.01, relu, on the
MNIST-shaped ``blobs`` set (60 000 x 784, 10 classes, offline), every statistic a grid job records
on (per-layer gradient norms every step, train/test evaluation and probe statistics every epoch,
the Jacobian at init). For each depth it prints, in one process:

- **job, one at a time**: ``initlab.train.job.run`` (what the basic launcher runs per job);
- **ensemble K**: ``initlab.ensemble.run_group`` over K members (see ``train_group``), for each K
  in ``--groups``; members differ in init (the grid's 8 inits in turn) and, beyond 8, in seed;
  ``--vary seed`` makes every member a different seed of he_normal instead (each draws its own
  batch order: the per-member gather);
- with ``--side-by-side N``, **ensemble K, N side by side**: N such groups at once, each in its own
  process with ``--threads`` / N threads, as ``hydra/launcher=batched_parallel`` runs a sweep's
  groups on a multi-core CPU; per member-epoch divides the wall time by N x K;
- the single-model epochs of bench_epoch.py (initlab's epoch with and without statistics, a plain
  DataLoader loop) and a **hooks loop** in the reference notebook's style (forward and backward
  hooks on every Linear keep every batch's pre-activations and their gradients; statistics pooled
  over the epoch at its end);
- the **FLOP floor** of one member-epoch: 6 x parameters x training samples (forward 2, backward 4
  FLOPs per parameter and sample) divided by the measured fp32 matmul peak; "of peak" is floor /
  time, i.e. the fraction of the peak a variant reaches.

Job timings (``run``, ``run_group``) are whole jobs in fresh folders: the seconds of an epoch are
(time of 1 + E epochs - time of 1 epoch) / E, so set-up, data generation, the records at init
and result.json cancel out; per member-epoch divides by K. Single-model epochs are the best of
``--repeats`` after a warm-up epoch. Never timed in tests: ``tests/test_bench_ensemble.py`` runs
tiny sizes and checks the output's format only.

    python benchmarks/bench_ensemble.py                         # the full setting (minutes to hours on a CPU)
    python benchmarks/bench_ensemble.py --device cuda --groups 1 8 32   # see benchmarks/gpu.sh
    python benchmarks/bench_ensemble.py --samples 600 --depths 2 --groups 1 2 --epochs 1 --peak-size 256
    python benchmarks/bench_ensemble.py --depths 50 --groups 8 --profile    # torch.profiler's top operators
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_epoch import (BATCH, DEVICES, WIDTH, check_at_least, check_device, check_samples, job_config,  # noqa: E402
                         matmul_peak, one_model_epochs, timed)
from initlab.config import to_experiment  # noqa: E402
from initlab.data import load_data  # noqa: E402
from initlab.inits import initialize  # noqa: E402
from initlab.models import build_model  # noqa: E402
from initlab.train.job import run  # noqa: E402

GRID_INITS = tuple(OmegaConf.load(ROOT / "conf/experiment/grid.yaml").hydra.sweeper.params.init.split(","))
COLUMNS = ("depth", "variant", "members", "s/member-epoch", "vs one job", "of peak")


def train_group(cfgs: Sequence[DictConfig], job_dirs: Sequence[Path]) -> None:
    """Train ``cfgs`` as one vectorized ensemble, writing each member's folder in ``job_dirs``.

    The one place this benchmark uses P8's ensemble API (initlab.ensemble, helper "ens"); adapt it
    here if that API changes."""
    from initlab.ensemble import run_group

    run_group(list(cfgs), list(job_dirs))


def member_configs(depth: int, members: int, args: argparse.Namespace, epochs: int, *extra: str) -> list[DictConfig]:
    """The K jobs of one group (bench_epoch's setting, ``extra`` overrides on top), composed from
    conf/ as train.py would; ``args``: samples, vary, device, threads."""
    cfgs = []
    for k in range(members):
        if args.vary == "init":
            init, seed = GRID_INITS[k % len(GRID_INITS)], k // len(GRID_INITS)
        else:
            init, seed = "he_normal", k
        cfgs.append(job_config(depth, args.samples, f"init={init}", f"seed={seed}", f"epochs={epochs}",
                               f"device={args.device}", f"threads={args.threads}", *extra))
    return cfgs


def job_seconds(train: Callable[[Sequence[DictConfig], Sequence[Path]], None], depth: int, members: int,
                args: argparse.Namespace, *extra: str) -> float:
    """Seconds per member-epoch of ``train`` (a group trainer) by the difference of 1 + E and 1 epochs
    (E = ``args.epochs``)."""
    return group_seconds(train, depth, members, args, *extra)[1] / members


def group_seconds(train: Callable[[Sequence[DictConfig], Sequence[Path]], None], depth: int, members: int,
                  args: argparse.Namespace, *extra: str) -> tuple[float, float]:
    """(fixed, per epoch) seconds of one group trained by ``train``: per epoch = (time of 1 + E
    epochs - time of 1 epoch) / E; fixed = time of 1 epoch - per epoch (data, model, records at
    init, Jacobian, result.json: what does not grow with the epochs)."""
    def whole(epochs: int) -> float:
        cfgs = member_configs(depth, members, args, epochs, *extra)
        with tempfile.TemporaryDirectory(prefix="bench_ensemble_") as tmp:
            dirs = [Path(tmp) / f"member{k}" for k in range(members)]
            t0 = time.perf_counter()
            train(cfgs, dirs)
            if args.device == "cuda":
                torch.cuda.synchronize()
            return time.perf_counter() - t0

    one = whole(1)
    per_epoch = max(whole(1 + args.epochs) - one, 0.0) / args.epochs
    return max(one - per_epoch, 0.0), per_epoch


def _group_worker(depth: int, members: int, args: argparse.Namespace, epochs: int) -> None:
    """Train one group of ``members`` for ``epochs`` into a fresh folder."""
    with tempfile.TemporaryDirectory(prefix="bench_ensemble_") as tmp:
        train_group(member_configs(depth, members, args, epochs), [Path(tmp) / f"member{k}" for k in range(members)])


def _side_by_side_worker(depth: int, members: int, args: argparse.Namespace, start: multiprocessing.Barrier,
                         results: multiprocessing.Queue) -> None:
    """One process of a side-by-side run: warm up on a tiny group, then train the group for 1 and
    for 1 + E epochs, each phase started together with the other processes; puts its two times."""
    torch.set_num_threads(args.threads)
    _group_worker(1, members, argparse.Namespace(**{**vars(args), "samples": 300}), 1)
    times = []
    for epochs in (1, 1 + args.epochs):
        start.wait()
        t0 = time.perf_counter()
        _group_worker(depth, members, args, epochs)
        times.append(time.perf_counter() - t0)
    results.put(times)


def side_by_side_seconds(depth: int, members: int, args: argparse.Namespace) -> float:
    """Seconds per member-epoch of N = ``args.side_by_side`` groups of ``members`` trained at once,
    one spawned process each with ``args.threads`` // N threads (at least 1): per phase the wall
    time is the slowest process's, and per member-epoch = (wall of 1 + E epochs - wall of 1
    epoch) / (E x N x K); each process warms up (imports, thread pools) before either phase."""
    n = args.side_by_side
    share = argparse.Namespace(**{**vars(args), "threads": max(1, args.threads // n)})
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(n), context.Queue()
    workers = [context.Process(target=_side_by_side_worker, args=(depth, members, share, start, results))
               for _ in range(n)]
    for worker in workers:
        worker.start()
    times = [results.get() for _ in workers]
    for worker in workers:
        worker.join()
    one, more = max(t[0] for t in times), max(t[1] for t in times)
    return max(more - one, 0.0) / args.epochs / (n * members)


def one_at_a_time(cfgs: Sequence[DictConfig], job_dirs: Sequence[Path]) -> None:
    """The basic launcher: each job by itself through ``initlab.train.job.run``."""
    for cfg, job_dir in zip(cfgs, job_dirs):
        run(cfg, job_dir)


def hooks_epoch(cfg: DictConfig, device: torch.device) -> Callable[[], None]:
    """One epoch of the job ``cfg`` as the reference notebook logs it: hooks on every Linear keep
    each batch's pre-activation and its gradient (train and test forwards alike); per-layer mean,
    std and gradient norm are pooled over the epoch at its end."""
    exp = to_experiment(cfg)
    data = load_data(exp.dataset).to(device)
    torch.manual_seed(exp.seed)
    model = build_model(exp, data).to(device)
    initialize(model, exp.init, exp.model)
    optimizer = torch.optim.SGD(model.parameters(), lr=exp.optimizer.lr)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    kept: dict[int, list] = {i: [] for i in range(len(linears))}
    grads: dict[int, list] = {i: [] for i in range(len(linears))}
    pooled: list[tuple[float, float, float]] = []  # per layer: mean, std, gradient norm of the epoch

    def keep(i: int, out: torch.Tensor) -> None:
        kept[i].append(out.detach())
        if out.requires_grad:  # a training forward: keep dL/d(pre-activation) too
            out.register_hook(lambda grad: grads[i].append(grad.detach()))

    for i, layer in enumerate(linears):
        layer.register_forward_hook(lambda _m, _inp, out, i=i: keep(i, out))
    generator = torch.Generator(device=device).manual_seed(exp.seed)

    def epoch() -> None:
        model.train()
        order = torch.randperm(len(data.y_train), device=device, generator=generator)
        for start in range(0, len(order), BATCH):
            idx = order[start:start + BATCH]
            loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss.item()
        model.eval()
        with torch.no_grad():
            for start in range(0, len(data.y_test), 1000):
                model(data.x_test[start:start + 1000]).argmax(1).sum().item()
        pooled.clear()
        for i in kept:
            pre = torch.cat(kept[i])
            pooled.append((pre.mean().item(), pre.std().item(), torch.cat(grads[i]).norm().item()))
            kept[i].clear()
            grads[i].clear()

    return epoch


def warm_up(args: argparse.Namespace) -> None:
    """A tiny job and a tiny group first, so the first timed job pays no imports or thread-pool
    start-up."""
    tiny = argparse.Namespace(**{**vars(args), "samples": 300})
    for train, members in ((one_at_a_time, 1), (train_group, 2)):
        with tempfile.TemporaryDirectory(prefix="bench_ensemble_") as tmp:
            train(member_configs(1, members, tiny, 1), [Path(tmp) / f"member{k}" for k in range(members)])


PROFILE_SAMPLES = 12_000  # torch.profiler keeps ~7 KB an operator call: ~30 MB a depth-50 group step


def profile_group(args: argparse.Namespace) -> None:
    """Where a group's time goes (the statistics pass, per-member gathers, records): torch.profiler's
    operators by self time over a whole 1 + E epoch job of the largest group at the first depth,
    on at most PROFILE_SAMPLES training samples (the test set a sixth of them, as in the table):
    60 000 samples of a group of 8 at depth 50 held more than 24 GiB of profiler events."""
    from torch.profiler import ProfilerActivity, profile

    members = max(args.groups, default=1)
    trainer = train_group if args.groups else one_at_a_time
    samples = min(args.samples, PROFILE_SAMPLES)
    cfgs = member_configs(args.depths[0], members, argparse.Namespace(**{**vars(args), "samples": samples}),
                          1 + args.epochs)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device == "cuda" else [])
    with tempfile.TemporaryDirectory(prefix="bench_ensemble_") as tmp, profile(activities=activities) as prof:
        trainer(cfgs, [Path(tmp) / f"member{k}" for k in range(members)])
    sort = "self_cuda_time_total" if args.device == "cuda" else "self_cpu_time_total"
    cut = f" (--samples {args.samples} cut to {samples}: profiler events fill memory)" if samples < args.samples else ""
    print(f"{members} member(s), depth {args.depths[0]}, 1 + {args.epochs} epochs, {samples} training samples{cut}")
    print(prof.key_averages().table(sort_by=sort, row_limit=25))


def n_params(depth: int, n_features: int = 784, n_classes: int = 10) -> int:
    sizes = [n_features] + [WIDTH] * depth + [n_classes]
    return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))


def machine(device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or
                                                                              platform.machine())
    return (f"device: {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


def row(depth: int, variant: str, members: object, seconds: float, one_job: float, floor: float) -> str:
    """A table row; ``seconds`` not positive (a difference of two job times that noise made negative,
    clamped to 0) is no measurement, so every figure of the row reads "-" rather than 0.0000."""
    if seconds <= 0:
        return f"| {depth} | {variant} | {members} | - | - | - |"
    vs = f"{one_job / seconds:.2f}x" if one_job > 0 else "-"
    return f"| {depth} | {variant} | {members} | {seconds:.4f} | {vs} | {floor / seconds:.0%} |"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=DEVICES)
    parser.add_argument("--depths", type=int, nargs="+", default=[5, 20, 50])
    parser.add_argument("--groups", type=int, nargs="*", default=[1, 4, 8, 16],
                        help="members per ensemble; none: no ensemble rows")
    parser.add_argument("--samples", type=int, default=60000, help="training samples (test: a sixth)")
    parser.add_argument("--epochs", type=int, default=2, help="E: timed epochs per job (after the first)")
    parser.add_argument("--repeats", type=int, default=2, help="single-model epochs: best of this many")
    parser.add_argument("--vary", choices=("init", "seed"), default="init", help="what members differ in")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads per job")
    parser.add_argument("--side-by-side", type=int, default=1,
                        help="N > 1: also time N groups at once, one process each (batched_parallel)")
    parser.add_argument("--peak-size", type=int, default=4096, help="n of the n x n matmul measuring the peak")
    parser.add_argument("--profile", action="store_true",
                        help="instead of the table: torch.profiler's top operators of the largest group at the "
                             "first depth (one job at a time without --groups), trained for 1 + E epochs")
    args = parser.parse_args(argv)
    check_at_least(parser, args, ["depths", "groups", "epochs", "repeats", "threads", "peak_size", "side_by_side"])
    check_samples(parser, args.samples)
    check_device(parser, args.device)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    if args.profile:
        profile_group(args)
        return
    warm_up(args)
    peak = matmul_peak(device, args.peak_size)
    print(machine(device))
    print(f"fp32 matmul peak ({args.peak_size}^2 torch.mm): {peak / 1e9:.1f} GFLOP/s; width {WIDTH}, batch {BATCH}, "
          f"{args.samples} samples, members vary in {args.vary}, job epochs: 1 + {args.epochs}")
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for depth in args.depths:
        floor = 6 * n_params(depth) * args.samples / peak
        one_job = job_seconds(one_at_a_time, depth, 1, args)
        print(row(depth, "FLOP floor", 1, floor, one_job, floor), flush=True)
        print(row(depth, "job, one at a time", 1, one_job, one_job, floor), flush=True)
        for members in args.groups:
            seconds = job_seconds(train_group, depth, members, args)
            print(row(depth, "ensemble", members, seconds, one_job, floor), flush=True)
            if args.side_by_side > 1:
                seconds = side_by_side_seconds(depth, members, args)
                print(row(depth, f"ensemble, {args.side_by_side} side by side", members, seconds, one_job, floor),
                      flush=True)
        cfg = job_config(depth, args.samples, f"threads={args.threads}")
        epochs = {**one_model_epochs(cfg, device), "hooks loop (reference)": hooks_epoch(cfg, device)}
        for name, epoch in epochs.items():
            print(row(depth, name, 1, timed(epoch, device, args.repeats), one_job, floor), flush=True)


if __name__ == "__main__":
    main()
