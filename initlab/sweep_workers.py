"""Joblib workers end with the sweep that started them.

Under ``hydra/launcher=parallel`` and ``batched_parallel`` the jobs run in loky worker processes,
children of the sweep's process. Killed with ``kill -9``, that process takes none of them along:
they trained their jobs to the end holding the job folders' locks (so the rerun the README
promises was refused, "in use by another running job", by processes the user could not see),
then idled for loky's five minutes. Each worker now watches its parent and exits as soon as the
sweep's process is gone: its job folder is then as after a ``kill -9`` of a job, which the rerun
resumes from the last checkpoint.
"""

from __future__ import annotations

import logging
import os
import threading
import time

SWEEP_PID = "INITLAB_SWEEP_PID"  # set by the sweep's process; its workers inherit it
JOBLIB_TARGETS = ("JoblibLauncher", "BatchedParallelLauncher")  # hydra/launcher=parallel, batched_parallel
POLL_S = 0.5
log = logging.getLogger("initlab.sweep")
_watching = threading.Event()


def remember_sweep_process() -> None:
    """Called in the sweep's process before its launcher starts workers (they inherit the environment)."""
    os.environ[SWEEP_PID] = str(os.getpid())


def exit_with_the_sweep(launcher_target: str) -> None:
    """In a joblib worker (``launcher_target``, the job's ``hydra.launcher._target_``, names one),
    exit at once if the sweep's process is gone already, else start a daemon thread that exits
    the worker within POLL_S of its parent's death. Anywhere else (the basic launcher runs jobs in
    the sweep's own process; submitit's run under their own controllers or on other nodes) nothing."""
    sweep = os.environ.get(SWEEP_PID)
    if not launcher_target.endswith(JOBLIB_TARGETS) or sweep is None or int(sweep) == os.getpid():
        return
    if os.getppid() != int(sweep):  # reparented before its first job: the sweep died while it started
        _leave(int(sweep))
    if _watching.is_set():  # one watcher per worker, for all the jobs it runs
        return
    _watching.set()
    threading.Thread(target=_watch, args=(int(sweep),), name="initlab-sweep-watch", daemon=True).start()


def _watch(sweep: int) -> None:
    while os.getppid() == sweep:
        time.sleep(POLL_S)
    _leave(sweep)


def _leave(sweep: int) -> None:
    log.error("the sweep's process %d is gone (killed?): this worker stops too; rerun the sweep's command to "
              "resume", sweep)
    logging.shutdown()
    os._exit(1)
