"""Train one MLP (or, with -m, a sweep of them) and record per-layer statistics.

    python train.py                                   # digits, relu, he_normal, depth 5
    python train.py -m activation=relu,tanh init=he_normal,orthogonal depth=5,30,50
"""

import signal
import sys

INTERRUPTED = "stopped (Ctrl-C): the same command resumes, redoing only the unfinished work"


def _stop_before_any_job(signum, frame) -> None:
    """Ctrl-C during the imports and the command-line check (the first seconds): nothing runs yet
    that needs stopping, so exit at once instead of printing the import's traceback."""
    print(INTERRUPTED, file=sys.stderr)
    sys.exit(130)


if __name__ == "__main__" and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # a background job's is ignored
    signal.signal(signal.SIGINT, _stop_before_any_job)

import logging  # noqa: E402
import os  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Optional  # noqa: E402

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from initlab import objective  # noqa: E402
from initlab.cli import check_command_line, remove_stub_run_dir  # noqa: E402
from initlab.config import ConfigError, register_configs  # noqa: E402
from initlab.train.job import run  # noqa: E402
from initlab.sweeps import check_file_bools  # noqa: E402  (registers the ${initlab_subdir:...} resolver)

CONF = Path(__file__).resolve().parent / "conf"
log = logging.getLogger("train")
register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> Optional[float]:
    """Run the job; return its ``objective`` value (for hydra/sweeper=optuna), None without one."""
    hydra_cfg = HydraConfig.get()
    output_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        if hydra_cfg.mode == RunMode.RUN:  # a sweep's jobs were checked before launch (validate_jobs)
            check_file_bools(hydra_cfg.job.config_name, [*hydra_cfg.overrides.hydra, *hydra_cfg.overrides.task], cfg)
        result = run(cfg, output_dir, hydra_cfg.launcher)
    except ConfigError as err:  # found once the data or the device is known
        if hydra_cfg.mode == RunMode.RUN:
            remove_stub_run_dir(output_dir, f"{hydra_cfg.job.name}.log")
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        log.error("%s", err)
        raise
    except Exception:
        log.exception("job failed")  # launchers drop the traceback; keep it in the job's log
        raise
    return None if cfg.objective is None else objective.value(result, cfg.objective)


if __name__ == "__main__":
    # HYDRA_FULL_ERROR=1 asks for Hydra's own report with the stack trace: skip the one-line check
    problem = None if os.environ.get("HYDRA_FULL_ERROR") == "1" else check_command_line(sys.argv[1:], CONF)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    if signal.getsignal(signal.SIGINT) is _stop_before_any_job:  # from here a KeyboardInterrupt stops the jobs
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        main()
    except KeyboardInterrupt:  # the sweep's summary, if any, is logged already: no traceback after it
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C would interrupt the shutdown itself
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)
