"""The common shape of subspace finders: ``Finder(config).fit(data) -> Subspace``.

A finder turns solutions of training tasks (a bank's, or ones it trains itself) into a :class:`Subspace`.
Every finder registers itself under its name (the ``--recipe`` of ``taskspace fit-subspace``) with
:func:`register`; its configuration is a :class:`~taskspace.config.Config`, so its options, defaults and help
are declared once. ``fit`` returns the subspace unsaved (``space.save(folder)`` writes it); a finder that trains
keeps its resumable training state in the ``work_dir`` it is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from ...backbones import Backbone
from ...config import Config
from ...deltas import DeltaMethod, build_method
from ...errors import ConfigError
from ...registry import Registry
from ...tasks.example import examples_digest
from ...train import TrainResult, log_to, train
from ..bank import Bank
from ..multitask import MultiTask
from ..space import Subspace


@dataclass
class FitData:
    """What a finder fits to: the training tasks on a backbone, with a bank of their solutions when there is one.

    Without a bank, the data folder and few-shot files are named here, and ``method_options`` gives the options
    of the methods a finder builds itself."""

    backbone: Backbone
    tasks: list[str]
    bank: Bank | None = None
    data_dir: str | None = None
    k: int = 16
    data_seed: int = 100
    resample: bool = False
    resample_k: int | None = None
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    eval_batch_size: int = 32

    @classmethod
    def from_bank(cls, bank: Bank, tasks: list[str], **kwargs: Any) -> "FitData":
        return cls(bank.backbone, list(tasks), bank, bank.spec.data_dir, bank.spec.k, bank.spec.data_seed,
                   bank.spec.resample, bank.spec.resample_k, {m: dict(o) for m, o in bank.spec.methods.items()},
                   **kwargs)

    def method(self, name: str) -> DeltaMethod:
        """The method ``name`` (the bank's, with its options, when the bank has it)."""
        if self.bank is not None and name in self.bank.spec.methods:
            return self.bank.method(name)
        return build_method(name, self.backbone, self.method_options.get(name, {}))

    def multitask(self) -> MultiTask:
        """The training tasks' data; with a bank, refused when a task of the bank's has other data than its
        solutions were trained on (train and dev splits)."""
        if self.data_dir is None:
            raise ConfigError("this finder trains on the tasks' data: name the data folder (--data-dir)")
        data = MultiTask.load(self.tasks, self.data_dir, k=self.k, seed=self.data_seed, resample=self.resample,
                              resample_k=self.resample_k)
        data.check(self.backbone)
        if self.bank is not None:
            self.bank.check_data({name: {"train": examples_digest(task.train), "dev": examples_digest(task.dev)}
                                  for name, task in data.tasks.items() if name in self.bank.spec.tasks})
        return data

    def require_bank(self, finder: str) -> Bank:
        if self.bank is None:
            raise ConfigError(f"--recipe {finder} fits a bank's solutions: pass --bank DIR")
        return self.bank

    def solutions(self, method: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The bank's solutions of the training tasks ``[T, D]`` and their common initialisation ``[D]``, on the
        backbone's device."""
        if self.bank is None:
            raise ConfigError("no bank to take the training tasks' solutions from: pass --bank DIR")
        thetas, init = self.bank.stacked(self.tasks, method)
        return thetas.to(self.backbone.device), init.to(self.backbone.device)


class Finder:
    """Base class: subclasses set ``name``, ``config_class``, ``summary`` and implement :meth:`fit`."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type[Config]] = Config
    summary: ClassVar[str] = ""
    #: Whether the finder fits a bank's solutions (else it needs none).
    needs_bank: ClassVar[bool] = False
    #: Whether it needs training tasks (a bank's, or their data).
    needs_tasks: ClassVar[bool] = True

    def __init__(self, config: Config | None = None):
        config = self.config_class() if config is None else config
        if not isinstance(config, self.config_class):
            raise ConfigError(f"{self.name} expects a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config

    def fit(self, data: FitData, work_dir: str | Path | None = None) -> Subspace:
        raise NotImplementedError

    def method_names(self) -> list[str]:
        """The methods the subspace will hold (from the config's ``methods`` or ``method``)."""
        methods = getattr(self.config, "methods", None)
        return list(methods) if methods is not None else [self.config.method]

    def _train(self, module: torch.nn.Module, loss_fn, data: MultiTask, dev_score, backbone: Backbone,
               work_dir: str | Path | None, groups=None) -> TrainResult:
        """Train ``module`` on the pooled training examples (resumable under ``work_dir/fit``) and load its best
        state."""
        fit_dir = None if work_dir is None else Path(work_dir) / "fit"
        result = train(module, loss_fn, data.train_examples(), self.config.train, evaluate=dev_score,
                       run_dir=fit_dir, backbone=backbone, groups=groups,
                       log=None if fit_dir is None else log_to(fit_dir / "log.jsonl"))
        module.load_state_dict(result.best_state)
        return result

    def info(self, data: FitData, result: TrainResult | None = None) -> dict[str, Any]:
        """What a fitted subspace records about its fit: the tasks, the bank, the config, the best step."""
        out: dict[str, Any] = {"tasks": list(data.tasks), "config": self.config.identity()}
        if data.bank is not None:
            out["bank"] = str(data.bank.root)
        if result is not None:
            out.update(best_step=result.best_step, dev=result.best_score)
        return out


#: Registry: finder name (``--recipe``) -> Finder subclass.
FINDERS: Registry[type[Finder]] = Registry("finder")
register = FINDERS.register
