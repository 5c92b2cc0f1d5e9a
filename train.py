"""Train one MLP (or, with -m, a sweep of them) and record per-layer statistics.

    python train.py                                   # digits, relu, he_normal, depth 5
    python train.py -m activation=relu,tanh init=he_normal,orthogonal depth=5,30,50
"""

import logging
import os
import signal
import sys
from pathlib import Path
from typing import Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from initlab import objective
from initlab.cli import check_command_line, remove_stub_run_dir
from initlab.config import ConfigError, register_configs
from initlab.train.job import run
from initlab.sweeps import check_file_bools  # the module registers the ${initlab_subdir:...} resolver

CONF = Path(__file__).resolve().parent / "conf"
log = logging.getLogger("train")
INTERRUPTED = "stopped (Ctrl-C): the same command resumes, redoing only the unfinished work"
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
    try:
        main()
    except KeyboardInterrupt:  # the sweep's summary, if any, is logged already: no traceback after it
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C would interrupt the shutdown itself
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)
