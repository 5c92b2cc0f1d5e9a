"""The submitit launchers' task settings, checked before a sweep starts.

hydra/launcher=slurm, batched_slurm, local and batched_local hand their settings to submitit,
which hands them to ``sbatch`` (or to its local executor) only once the sweep folder exists and
the jobs are being submitted. There, ``mem_gb=-1`` or an unknown partition ended in a 40-line
traceback beside an empty sweep folder, a ``cpus_per_task`` no node has left the array pending
for ever in silence, and ``timeout_min=-1`` killed every local task at once. So the numbers are
checked against their ranges here, and on SLURM the task's own batch script, as submitit writes
it, is put to ``sbatch --test-only``: the cluster answers whether it could ever run it.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from initlab.config.enums import NO_GPU

SLURM_TARGETS = ("submitit_launcher.SlurmLauncher", ".BatchedSlurmLauncher")
LOCAL_TARGETS = ("submitit_launcher.LocalLauncher", ".BatchedLocalLauncher")
# The smallest valid value of each integer setting (hydra_submitit_launcher's BaseQueueConf and
# SlurmQueueConf; None, where a field allows it, leaves the choice to the cluster).
MINIMUM = {"timeout_min": 1, "cpus_per_task": 1, "gpus_per_node": 0, "tasks_per_node": 1, "mem_gb": 1, "nodes": 1,
           "array_parallelism": 1, "signal_delay_s": 0, "max_num_timeout": 0, "cpus_per_gpu": 1, "gpus_per_task": 0}
NULLABLE = {"cpus_per_task", "gpus_per_node", "mem_gb", "cpus_per_gpu", "gpus_per_task"}
ONE_PROCESS = ("tasks_per_node", "nodes")  # submitit would start one copy of the job per task
NAMED = ("partition", "account", "qos", "timeout_min", "cpus_per_task", "mem_gb", "gpus_per_node", "nodes",
         "constraint", "exclude", "gres", "additional_parameters")
SBATCH_SECONDS = 30
log = logging.getLogger(__name__)
UNREACHABLE = ("Unable to contact slurm controller", "Could not establish a configuration source")


def executor_of(launcher: DictConfig) -> Optional[str]:
    """"slurm" or "local" for a submitit launcher (Hydra's or the batched one), else None."""
    target = str(launcher.get("_target_", ""))
    if target.endswith(SLURM_TARGETS):
        return "slurm"
    return "local" if target.endswith(LOCAL_TARGETS) else None


def check_queue(launcher: DictConfig) -> Optional[str]:
    """The one-line refusal of a submitit launcher's settings (``hydra.launcher``), or None when
    they are valid or the launcher is not submitit's. On SLURM, None also needs ``sbatch
    --test-only`` to accept the task's batch script."""
    executor = executor_of(launcher)
    if executor is None:
        return None
    for key, low in MINIMUM.items():
        value = launcher.get(key)
        if executor == "slurm" and key == "timeout_min":
            low = 0  # sbatch --time=0: no time limit
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            return (f"hydra.launcher.{key}={value}; valid: an integer >= {low}" + (" or null" if key in NULLABLE else "")
                    + (" (0: no time limit)" if key == "timeout_min" and low == 0 else ""))
    for key in ONE_PROCESS:
        if launcher.get(key, 1) != 1:
            return (f"hydra.launcher.{key}={launcher.get(key)}; valid: 1 (an initlab job is one process: more would "
                    f"train the same job folder several times at once)")
    if executor == "slurm":
        return _signal_after_limit(launcher) or sbatch_test(launcher)
    return None


def device_refusal(device: str, launcher: DictConfig) -> Optional[str]:
    """The one-line refusal of ``device`` (a job's ``device`` value) where the sweep's jobs would
    see no GPU, or None: ``device=cuda`` under a submitit launcher that asks for no GPU (submitit's
    local executor then hides every GPU, SLURM allocates none), or under any launcher whose jobs
    run on this machine (all but SLURM's) where torch sees no CUDA GPU. Found by each job instead,
    it failed every job of the sweep with a traceback."""
    if device != "cuda":
        return None
    executor = executor_of(launcher)
    asks = launcher.get("gpus_per_node") if executor == "local" else slurm_gpus(launcher)
    if executor is not None and not asks:
        where = "SLURM allocates none" if executor == "slurm" else "submitit's local executor hides every GPU"
        return (f"device=cuda but hydra.launcher.gpus_per_node={launcher.get('gpus_per_node')} asks for no GPU "
                f"({where}); valid: hydra.launcher.gpus_per_node=1 (or more), or device=auto or cpu")
    if executor == "slurm":
        return None  # the nodes' GPUs are not this machine's
    import torch

    return None if torch.cuda.is_available() else NO_GPU


def slurm_gpus(launcher: DictConfig) -> bool:
    """Whether a SLURM launcher's settings ask for a GPU: ``gpus_per_node`` or ``gpus_per_task``
    above 0, or a ``gres`` naming ``gpu`` with a count above 0 (``gpu``, ``gpu:2``, ``gpu:a100:1``;
    not ``gpu:0``), in the launcher's own fields or in ``additional_parameters`` (there also
    ``gpus``, sbatch's ``[type:]count``). Syntax from sbatch(1), --gres and --gpus."""
    extra = {str(key).replace("-", "_"): value for key, value in (launcher.get("additional_parameters") or {}).items()}
    counts = [launcher.get("gpus_per_node"), launcher.get("gpus_per_task")]
    counts += [_count(str(extra[key])) for key in ("gpus", "gpus_per_node", "gpus_per_task") if key in extra]
    for gres in (launcher.get("gres"), extra.get("gres")):
        entries = str(gres or "").split(",")
        counts += [_count(entry) for entry in entries if entry.strip().split(":")[0].lower() == "gpu"]
    return any(isinstance(count, int) and count > 0 for count in counts)


def _count(spec: str) -> int:
    """The count of a GRES or --gpus entry: its last ``:`` field when a number (a trailing
    ``(S:0-1)`` socket list dropped), else 1 (``gpu`` or ``gpu:a100`` ask for one)."""
    last = spec.split("(")[0].strip().split(":")[-1]
    return int(last) if last.isdigit() else 1


def _signal_after_limit(launcher: DictConfig) -> Optional[str]:
    """SLURM signals a task ``signal_delay_s`` before its time limit (the checkpoint-and-requeue
    signal); a delay not shorter than the limit signals it as it starts, and every task dies at
    once (the preset's 120 s with ``timeout_min=1``). sbatch --test-only cannot see this."""
    limit, delay = launcher.get("timeout_min"), launcher.get("signal_delay_s")
    if limit and delay is not None and delay >= 60 * limit:
        return (f"hydra.launcher.signal_delay_s={delay} is not shorter than timeout_min={limit} ({60 * limit} s): SLURM "
                f"would signal every task as it starts; valid: signal_delay_s < 60 x timeout_min")
    return None


def sbatch_test(launcher: DictConfig) -> Optional[str]:
    """Ask ``sbatch --test-only`` whether the cluster would ever run one task with these settings
    (the script submitit would submit, written by submitit). Returns the one-line refusal: no
    sbatch here, or sbatch's own reason (``Invalid partition name specified``, ``Requested node
    configuration is not available``)."""
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        return ("hydra/launcher=slurm submits with SLURM's sbatch, which is not on PATH here; valid: run the sweep on "
                "a machine of the cluster, or hydra/launcher=local to try it on this one")
    from hydra_plugins.initlab_batched_launcher._core import submitit_executor

    settings = _settings(launcher)
    with tempfile.TemporaryDirectory(prefix="initlab_sbatch_") as folder:
        settings["submitit_folder"] = f"{folder}/%j"
        queue = submitit_executor("slurm", settings)
        script = f"{folder}/task.sh"
        try:  # submitit's own writer of the script it submits (internal: guarded)
            text = queue._executor._make_submission_file_text("true", "test-only")
        except AttributeError as err:
            log.warning("settings not tested with sbatch --test-only (this submitit writes its script otherwise: %s);"
                        " the cluster answers when the sweep submits", err)
            return None
        with open(script, "w") as f:
            f.write(text)
        try:
            proc = subprocess.run([sbatch, "--test-only", script], capture_output=True, text=True,
                                  timeout=SBATCH_SECONDS)
        except subprocess.TimeoutExpired:
            return f"sbatch --test-only did not answer within {SBATCH_SECONDS} s: is slurmctld reachable?"
    if proc.returncode == 0:
        return None
    reason = sbatch_reason(proc.stderr) or f"exit status {proc.returncode}"
    if any(words in reason for words in UNREACHABLE):
        return f"sbatch --test-only could not ask the cluster ({reason}): is slurmctld up? (SLURM_CONF, sinfo)"
    named = ", ".join(f"{k}={settings[k]}" for k in NAMED if settings.get(k) not in (None, {}))
    return f"hydra.launcher ({named}): SLURM would never run such a task (sbatch --test-only: {reason})"


def sbatch_reason(stderr: str) -> str:
    """sbatch's reason among its stderr lines: the last that is not its pointer to --help
    (``sbatch: unrecognized option '--foo=bar'`` comes before ``Try "sbatch --help" ...``)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and "--help" not in line]
    reason = lines[-1] if lines else ""
    for prefix in ("sbatch: error: ", "sbatch: ", "allocation failure: "):
        reason = reason.removeprefix(prefix)
    return reason


def _settings(launcher: DictConfig) -> dict[str, Any]:
    """The launcher's queue parameters as submitit takes them (no Hydra target, no group size)."""
    settings = OmegaConf.to_container(launcher, resolve=True)
    return {k: v for k, v in settings.items() if k not in ("_target_", "max_members")}
