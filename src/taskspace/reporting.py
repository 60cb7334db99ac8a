"""Training curves to TensorBoard or Weights & Biases, next to ``log.jsonl``.

``--report-to tensorboard`` writes event files under ``<run>/tensorboard`` (``tensorboard --logdir runs``);
``--report-to wandb`` logs to a W&B run named after the run directory (project ``$WANDB_PROJECT``, default
``taskspace``; ``WANDB_MODE=offline`` keeps it on disk under ``<run>/wandb``). Both receive every record that
``log.jsonl`` receives: the training loss, learning rate and gradient norm at each logged step and the dev score at
each evaluation. Neither is a dependency: ``pip install "taskspace[tensorboard]"`` or ``"taskspace[wandb]"``.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Any, Callable

from .errors import ConfigError

REPORTERS = ("none", "tensorboard", "wandb")


def _scalars(record: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in record.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


class _TensorBoard:
    def __init__(self, run_dir: Path, config: dict[str, Any]):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("--report-to tensorboard needs the tensorboard package: "
                              "pip install 'taskspace[tensorboard]'") from None
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        self.writer.add_text("config", f"```\n{config}\n```")

    def __call__(self, record: dict[str, Any]) -> None:
        for key, value in _scalars(record).items():
            self.writer.add_scalar(key, value, global_step=record.get("step", 0))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _WandB:
    def __init__(self, run_dir: Path, config: dict[str, Any]):
        try:
            import wandb
        except ImportError:
            raise ConfigError("--report-to wandb needs the wandb package: pip install 'taskspace[wandb]'") from None
        # the same run directory resumes the same W&B run
        run_id = hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:16]
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "taskspace"), name=run_dir.name, id=run_id,
                              resume="allow", dir=str(run_dir), config=config, reinit="finish_previous")

    def __call__(self, record: dict[str, Any]) -> None:
        self.run.log(_scalars(record), step=int(record.get("step", 0)))

    def close(self) -> None:
        self.run.finish()


_BACKENDS: dict[str, Callable[[Path, dict[str, Any]], Any]] = {"tensorboard": _TensorBoard, "wandb": _WandB}


class Reported:
    """A ``log`` callback (``log.jsonl``) that also sends each record to a tracking backend. Use it as a context
    manager, so that the backend is closed when training ends or fails."""

    def __init__(self, log, report_to: str, run_dir: Path, config: dict[str, Any]):
        if report_to not in REPORTERS:
            raise ConfigError(f"--report-to {report_to!r}: expected one of {', '.join(REPORTERS)}")
        self.log = log
        self.backend = None if report_to == "none" else _BACKENDS[report_to](Path(run_dir), config)

    def __call__(self, record: dict[str, Any]) -> None:
        self.log(record)
        if self.backend is not None:
            self.backend(record)

    def resume(self, history: list[dict]) -> None:
        self.log.resume(history)

    def __enter__(self) -> "Reported":
        return self

    def __exit__(self, *exc) -> None:
        if self.backend is not None:
            self.backend.close()
