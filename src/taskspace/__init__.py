"""taskspace: delta-tuning methods as flat vectors, and the low-dimensional task subspaces they share.

The names below are the Python API (README.md, "Python")::

    import taskspace

    config = taskspace.TuneConfig(task="glue-sst2", method="lora", data_dir="../shared/data/crossfit")
    result = taskspace.tune(config, "runs/sst2-lora")
    answers = taskspace.Predictor.load(result.run_dir).predict(["a gripping, beautifully acted film"])

They are imported on first use (PEP 562): ``import taskspace`` reads no model code and does not import PyTorch, so
that the command line starts fast and a program pays for what it uses.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    # tuning one delta method on one task
    "tune": "tuning",
    "TuneConfig": "tuning",
    "RunResult": "tuning",
    "TrainConfig": "train",
    # the pieces: tasks, backbones, methods
    "load_task": "tasks",
    "Task": "tasks",
    "Example": "tasks",
    "load_backbone": "backbones",
    "wrap_model": "backbones",
    "Backbone": "backbones",
    "build_method": "deltas",
    "DeltaMethod": "deltas",
    "METHODS": "deltas",
    # using a tuned run
    "Predictor": "predict",
    "Query": "predict",
    # banks and subspaces
    "Bank": "subspace",
    "BankSpec": "subspace",
    "build_bank": "subspace",
    "FitData": "subspace",
    "Finder": "subspace",
    "FINDERS": "subspace",
    "build_finder": "subspace",
    "fit_subspace": "subspace",
    "MSFConfig": "subspace",
    "UnifiedConfig": "subspace",
    "SharedConfig": "subspace",
    "RandomAEConfig": "subspace",
    "FastfoodConfig": "subspace",
    "MSF": "subspace.finders",
    "Unified": "subspace.finders",
    "Shared": "subspace.finders",
    "RandomAutoEncoder": "subspace.finders",
    "FastfoodFinder": "subspace.finders",
    "Subspace": "subspace",
    "SubspaceTuneConfig": "subspace",
    "subspace_tune": "subspace",
    "transfer": "subspace",
    # what taskspace raises on purpose
    "TaskspaceError": "errors",
    "ConfigError": "errors",
    "DataError": "errors",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from taskspace.backbones import Backbone, load_backbone, wrap_model
    from taskspace.deltas import METHODS, DeltaMethod, build_method
    from taskspace.errors import ConfigError, DataError, TaskspaceError
    from taskspace.predict import Predictor, Query
    from taskspace.subspace import (FINDERS, Bank, BankSpec, FastfoodConfig, Finder, FitData, MSFConfig,
                                    RandomAEConfig, SharedConfig, Subspace, SubspaceTuneConfig, UnifiedConfig,
                                    build_bank, build_finder, fit_subspace, subspace_tune, transfer)
    from taskspace.subspace.finders import MSF, FastfoodFinder, RandomAutoEncoder, Shared, Unified
    from taskspace.tasks import Example, Task, load_task
    from taskspace.train import TrainConfig
    from taskspace.tuning import RunResult, TuneConfig, tune


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'taskspace' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"taskspace.{module}"), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
