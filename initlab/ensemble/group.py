"""Train K jobs as one vectorized ensemble; every member's folder as its solo ``run`` writes it.

Each member is an initlab.train.job.Job: its own resume/skip decision, model, init, optimizer,
schedule, early stopping, generator, callbacks and records. Only the trained epochs and their
evaluation run stacked (initlab.ensemble.epoch); everything between epochs is the member's own
``end_epoch``. A member leaves the stack when its attempt ends (diverged, stopped early, or its
epochs done); a restart puts it back at epoch 1 of its new attempt while the others go on, so
members may be at different epochs. ``epoch_time`` of a member is its share of the stacked
epoch (the epoch's seconds over the members trained in it).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
from omegaconf import DictConfig

from initlab.config import ConfigError
from initlab.ensemble.epoch import evaluate, train_epoch
from initlab.ensemble.grouping import group_key, unbatchable
from initlab.ensemble.stack import Stacked
from initlab.joblog import member_records
from initlab.train.job import Job, overflowed_epoch

log = logging.getLogger(__name__)


MemberEnd = Callable[[int, dict[str, Any]], None]


def run_group(cfgs: Sequence[DictConfig], job_dirs: Sequence[Path],
              launcher: Optional[Mapping[str, Any]] = None, on_end: Optional[MemberEnd] = None) -> list[dict[str, Any]]:
    """Run (or resume, or skip) the jobs ``cfgs`` in ``job_dirs`` as one ensemble; returns each
    member's result.json content, in order. ``on_end(i, result)``, where given, is called as soon
    as member ``i`` has its result (found finished, or its folder's records written), so a sweep
    counts a member that diverged or stopped early while the others go on.

    Members already finished are skipped, members with a checkpoint resume from it. Raises
    ConfigError before any training when a member's config is bad (its message names the
    member's folder), is ``unbatchable``, or differs from the first member outside VARYING:
    the launcher groups with ``plan`` and runs a bad job alone, where it fails as under ``run``.
    """
    if len(cfgs) != len(job_dirs):
        raise ValueError(f"{len(cfgs)} configs for {len(job_dirs)} job folders")
    jobs: list[Job] = []
    try:
        for cfg, job_dir in zip(cfgs, job_dirs):
            try:
                with member_records(job_dir):
                    jobs.append(Job(cfg, job_dir, launcher))
            except ConfigError as err:
                raise ConfigError(f"{job_dir}: {err}") from err
            why = unbatchable(jobs[-1].exp)
            if why is not None:
                raise ConfigError(f"{job_dir}: cannot be an ensemble member: {why}")
        keys = {group_key(cfg) for cfg in cfgs}
        if len(keys) > 1:
            raise ConfigError("members differ outside initlab.ensemble.VARYING; group them with initlab.ensemble.plan")
        return _train(jobs, job_dirs, on_end or (lambda i, result: None))
    finally:
        for job in jobs:
            job.release()


def _train(jobs: list[Job], job_dirs: Sequence[Path], on_end: MemberEnd) -> list[dict[str, Any]]:
    """run_group's ensemble once its members hold their folders: the unfinished ones trained together."""
    results: list[Optional[dict]] = [job.finished for job in jobs]
    todo = [i for i, job in enumerate(jobs) if job.finished is None]
    for i, result in enumerate(results):
        if result is not None:
            on_end(i, result)
    if not todo:
        return results
    log.info("ensemble of %d members (%d already finished)", len(todo), len(jobs) - len(todo))
    data = None
    for i in todo:
        with member_records(job_dirs[i]):
            jobs[i].prepare(data)
        data = jobs[i].data
    members = [jobs[i] for i in todo]
    stacked = Stacked([job.model for job in members])
    last = [job.last_epoch() for job in members]
    exp = members[0].exp
    steps_per_epoch = -(-len(data.y_train) // exp.batch_size)
    done = [False] * len(members)
    while True:
        for j, job in enumerate(members):
            while not done[j] and job.start > last[j]:
                with member_records(job.job_dir):
                    again = job.next_attempt()
                if again:
                    last[j] = job.last_epoch()
                else:
                    done[j] = True
        active = [j for j in range(len(members)) if not done[j]]
        stacked.restack(active)
        for j, job in enumerate(members):
            if done[j] and results[todo[j]] is None:
                with member_records(job.job_dir):
                    results[todo[j]] = job.finish()
                on_end(todo[j], results[todo[j]])
        if not active:
            break
        t0 = time.perf_counter()
        states = [members[j].state for j in active]
        measured = members[0]
        names = {id(p): n for n, p in measured.model.named_parameters()}
        sums = train_epoch(stacked, [s.optimizer for s in states], [s.generator for s in states],
                           data.x_train, data.y_train, exp.batch_size,
                           [names[id(w)] for w in measured.measured],
                           [None if b is None else names[id(b)] for b in measured.biases], loss=exp.loss.value,
                           log_every=exp.log_every_steps,
                           first_steps=[(members[j].start - 1) * steps_per_epoch + 1 for j in active])
        evaluated = [{"test": v} for v in evaluate(stacked, data.x_test, data.y_test, exp.loss.value)]
        if data.y_val is not None:
            for e, v in zip(evaluated, evaluate(stacked, data.x_val, data.y_val, exp.loss.value)):
                e["val"] = v
        per_member = torch.cat([torch.stack([sums.loss / sums.steps, sums.correct.double() / sums.samples,
                                             sums.total_grad_norm / sums.steps], dim=1).double(),
                                sums.grad_norms.double() / sums.steps], dim=1).tolist()  # the epoch's host sync
        epoch_time = (time.perf_counter() - t0) / len(active)
        for row, j in enumerate(active):
            job = members[j]
            train_loss, train_acc, grad_norm, *grad_norm_train = per_member[row]
            with member_records(job.job_dir):
                if sums.overflows[row] is not None:  # recorded as its solo run records it
                    train_loss, train_acc = overflowed_epoch(job.start, sums.overflows[row])
                end = job.end_epoch(job.start, train_loss, train_acc, epoch_time, grad_norm, grad_norm_train,
                                    sums.logged[row], evaluated[row])
            job.start += 1
            if end.diverged or end.stop:
                job.diverged = end.diverged
                last[j] = job.start - 1
    return results
