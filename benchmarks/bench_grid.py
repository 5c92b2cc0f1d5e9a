"""Whole sweeps: time ``+experiment=grid_quick`` per launcher, and project the full ``+experiment=grid``.

``time``: runs ``python train.py -m +experiment=grid_quick threads=null hydra/launcher=L`` for each
launcher L, one after another, each into a fresh sweep folder, and prints the wall time, the jobs
finished and the speed-up over the last launcher named (default: batched, batched_parallel,
parallel; ``threads=null`` lets each launcher give its jobs or groups their share of the cores).
Overrides after ``--`` shrink the sweep for a smoke run (``-- epochs=1 depth=3 seed=0``).

``project``: the full grid is 4 activations x 8 inits x 6 depths (one seed) of 50 epochs on MNIST.
The batched launcher groups jobs that differ only in init, so the grid is 24 groups of 8 members,
one per (activation, depth), run one after another. For each group this measures, on the
MNIST-shaped ``blobs`` set (the same shapes as MNIST: 60 000 x 784, 10 classes, batch 128, width
128, every statistic on), the group's fixed seconds (data, model, records at init, Jacobian,
result.json) and seconds per epoch, by training it for 1 and for 1 + E epochs in fresh folders
(bench_ensemble.group_seconds); the projection is

    grid seconds = sum over groups of (fixed + 50 x per-epoch seconds),

an upper bound where members diverge or stop early (they are masked; here every member is
counted for all 50 epochs) and without Hydra's start-up and MNIST loading (seconds). ``--members 1``
projects one job at a time instead (each group's per-epoch cost times 8). Timings of groups
running side by side (batched_parallel) are measured with ``--threads`` set to each group's share
of the cores; divide the sum by the number of groups at a time (perfect packing).

    python benchmarks/bench_grid.py time [--launchers batched parallel] [-- OVERRIDES]
    python benchmarks/bench_grid.py project [--device cuda] [--depths 5 50] [--activations relu]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

import torch
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_ensemble import GRID_INITS, group_seconds, machine, one_at_a_time, train_group  # noqa: E402
from bench_epoch import DEVICES, check_at_least, check_device, check_distinct, check_samples, conf_choices  # noqa: E402

GRID = OmegaConf.load(ROOT / "conf/experiment/grid.yaml")
GRID_ACTIVATIONS = GRID.hydra.sweeper.params.activation.split(",")
GRID_DEPTHS = [int(d) for d in str(GRID.hydra.sweeper.params.depth).split(",")]


def time_sweeps(launchers: Sequence[str], overrides: Sequence[str]) -> None:
    """Wall time of grid_quick under each launcher; raises SystemExit(1) if a sweep fails."""
    print(machine(torch.device("cpu")))
    print(f"+experiment=grid_quick threads=null {' '.join(overrides)}".rstrip())
    walls, jobs = {}, {}
    with tempfile.TemporaryDirectory(prefix="bench_grid_") as tmp:
        for launcher in launchers:
            sweep = Path(tmp) / launcher
            command = [sys.executable, "train.py", "-m", "+experiment=grid_quick", "threads=null",
                       f"hydra/launcher={launcher}", f"hydra.sweep.dir={sweep}", *overrides]
            t0 = time.perf_counter()
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
            walls[launcher] = time.perf_counter() - t0
            if done.returncode != 0:
                print(done.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"hydra/launcher={launcher}: train.py exited {done.returncode}")
            jobs[launcher] = len(list(sweep.rglob("result.json")))
    base = launchers[-1]
    print(f"| launcher | jobs finished | wall s | speed-up over {base} |")
    print("|---|---|---|---|")
    for launcher in launchers:
        print(f"| {launcher} | {jobs[launcher]} | {walls[launcher]:.1f} | {walls[base] / walls[launcher]:.2f}x |")


def project(args: argparse.Namespace) -> None:
    """Measure every (activation, depth) group and print the projected full grid."""
    members = args.members
    trainer = train_group if members > 1 else one_at_a_time
    per_group = len(GRID_INITS) // members  # groups of `members` per (activation, depth)
    print(machine(torch.device(args.device)))
    print(f"full grid: {len(args.activations)} activations x {len(GRID_INITS)} inits x depths "
          f"{', '.join(map(str, args.depths))}, {args.grid_epochs} epochs, {args.samples} samples; "
          f"{'groups of ' + str(members) if members > 1 else 'one job at a time'}; job epochs 1 + {args.epochs}")
    print("| activation | depth | fixed s | s/epoch | projected s |")
    print("|---|---|---|---|---|")
    projected = []
    for activation in args.activations:
        for depth in args.depths:
            fixed, per_epoch = group_seconds(trainer, depth, members, args, f"activation={activation}")
            line, seconds = projected_row(activation, depth, fixed, per_epoch, per_group, args.grid_epochs)
            projected.append(seconds)
            print(line, flush=True)
    print(projected_total(projected))


def projected_row(activation: str, depth: int, fixed: float, per_epoch: float, groups: int,
                  grid_epochs: int) -> tuple[str, Optional[float]]:
    """One row of project's table and its projected seconds (``groups`` x (fixed + grid_epochs x
    per_epoch)); '-' and None where the per-epoch time is not positive: the longer job was not
    slower than the 1-epoch job (noise at tiny sizes), so the row was not measured and a 0 there
    would read as a free epoch."""
    if per_epoch <= 0:
        return f"| {activation} | {depth} | - | - | - |", None
    seconds = groups * (fixed + grid_epochs * per_epoch)
    return f"| {activation} | {depth} | {fixed:.2f} | {per_epoch:.3f} | {seconds:.0f} |", seconds


def projected_total(projected: Sequence[Optional[float]]) -> str:
    """project's last line: the sum of the rows, or what is missing from it."""
    measured = [s for s in projected if s is not None]
    total = sum(measured)
    if len(measured) == len(projected):
        return f"projected full grid: {total:.0f} s = {total / 3600:.2f} h"
    return (f"projected full grid: not measured ({len(projected) - len(measured)} of {len(projected)} rows took no "
            f"longer with more epochs; raise --samples or --epochs); the measured rows sum to {total:.0f} s")


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The options of both subcommands, each refused in one line before any work when out of range:
    an unknown activation or launcher (Hydra's 76-line MissingConfigException after the set-up),
    a value named twice (its row printed twice with one timing), depth 0 or too few samples (a
    ConfigError traceback)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    timing = sub.add_parser("time", help="wall time of grid_quick per launcher")
    timing.add_argument("--launchers", nargs="+", default=["batched", "batched_parallel", "parallel"],
                        metavar="LAUNCHER", help="choices of hydra/launcher, each once")
    timing.add_argument("overrides", nargs="*", help="after --: overrides for every sweep")
    proj = sub.add_parser("project", help="project the full grid from measured group timings")
    proj.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=DEVICES)
    proj.add_argument("--activations", nargs="+", default=GRID_ACTIVATIONS, metavar="ACTIVATION",
                      help="choices of the activation group, each once")
    proj.add_argument("--depths", type=int, nargs="+", default=GRID_DEPTHS)
    proj.add_argument("--members", type=int, default=len(GRID_INITS), choices=(1, 2, 4, 8),
                      help="inits per group (8: the batched launcher's grouping; 1: one job at a time)")
    proj.add_argument("--samples", type=int, default=60000)
    proj.add_argument("--epochs", type=int, default=2, help="E: timed epochs per measurement (after the first)")
    proj.add_argument("--grid-epochs", type=int, default=int(GRID.epochs))
    proj.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads per group")
    args = parser.parse_args(argv)
    if args.command == "time":
        check_distinct(timing, args, ["launchers"])
        check_known(timing, "launchers", args.launchers, conf_choices("hydra/launcher"))
        return args
    check_at_least(proj, args, ["depths", "epochs", "grid_epochs", "threads"])
    check_samples(proj, args.samples)
    check_distinct(proj, args, ["activations", "depths"])
    check_known(proj, "activations", args.activations, conf_choices("activation"))
    check_device(proj, args.device)
    return args


def check_known(parser: argparse.ArgumentParser, flag: str, values: Sequence[str], valid: Sequence[str]) -> None:
    """parser.error naming the first of ``values`` that is not among ``valid`` (a config group's choices)."""
    unknown = [v for v in values if v not in valid]
    if unknown:
        parser.error(f"--{flag}: unknown {unknown[0]!r}; valid: {', '.join(valid)}")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    if args.command == "time":
        time_sweeps(args.launchers, args.overrides)
        return
    args.vary = "init"
    torch.set_num_threads(args.threads)
    project(args)


if __name__ == "__main__":
    main()
