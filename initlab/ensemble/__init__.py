"""Vectorized ensembles: jobs that differ only in ``VARYING`` settings train as one stacked model.

``plan`` groups a sweep's configs, ``run_group`` trains one group and writes every member's
folder as initlab.train.job.run would; ``Stacked`` and ``train_epoch``/``evaluate`` are the
vectorized model and epoch (the benchmark uses them directly).
"""

from initlab.ensemble.epoch import EnsembleSums, evaluate, train_epoch
from initlab.ensemble.group import run_group
from initlab.ensemble.grouping import VARYING, group_key, member_bytes, plan, unbatchable
from initlab.ensemble.stack import Stacked

__all__ = ["VARYING", "EnsembleSums", "Stacked", "evaluate", "group_key", "member_bytes", "plan", "run_group",
           "train_epoch", "unbatchable"]
