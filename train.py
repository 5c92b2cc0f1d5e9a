"""Train one MLP (or, with -m, a sweep of them) and record per-layer statistics.

    python train.py                                   # digits, relu, he_normal, depth 5
    python train.py -m activation=relu,tanh init=he_normal,orthogonal depth=5,30,50
"""

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from initlab.config import ConfigError, register_configs
from initlab.experiment import run
from initlab.sweeps import job_subdir  # noqa: F401  (registers the ${initlab_subdir:...} resolver)

log = logging.getLogger("train")
register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    try:
        run(cfg, Path(hydra_cfg.runtime.output_dir), hydra_cfg.launcher)
    except ConfigError as err:
        log.error("%s", err)
        if hydra_cfg.mode == RunMode.RUN:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        raise
    except Exception:
        log.exception("job failed")  # launchers drop the traceback; keep it in the job's log
        raise


if __name__ == "__main__":
    main()
