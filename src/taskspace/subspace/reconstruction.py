"""How well a fitted subspace holds the training tasks' solutions, scored on the bank's test examples."""

from __future__ import annotations

from typing import Sequence

import torch

from ..errors import ConfigError
from ..evaluation import evaluate
from .bank import Bank
from .space import Subspace


def _bank_test_score(space: Subspace, bank: Bank, task_name: str, method: str, theta: torch.Tensor) -> float | None:
    """``theta``'s score on the test examples the bank's entries of ``task_name`` were scored on."""
    task, test = bank.spec.test_split(task_name)
    if not test:
        return None
    return evaluate(space.backbone, test, task.metric, method=space[method].method, theta=theta,
                    batch_size=bank.spec.eval_batch_size, settle=True)[0]


def reconstruction_scores(space: Subspace, bank: Bank, tasks: Sequence[str],
                          method: str) -> tuple[list[float | None], list[float | None]]:
    """Test scores of the bank's solutions after a round trip through the subspace, ``up(down(theta))``, and of
    the solutions themselves (IPT's T_train(MSF) when the tasks are the training tasks)."""
    ms = space[method]
    if ms.down is None:
        raise ConfigError(f"the {space.recipe} subspace has no down-projection for {method}")
    scores, refs = [], []
    for t in tasks:
        entry = bank.entry(t, method)
        with torch.no_grad():
            delta = entry.theta.to(ms.anchor.device) - ms.anchor
            theta = ms.anchor + ms.up(ms.down(delta))
        scores.append(_bank_test_score(space, bank, t, method, theta))
        refs.append(entry.scores.get("test"))
    return scores, refs


def task_vector_scores(space: Subspace, bank: Bank, tasks: Sequence[str],
                       method: str) -> tuple[list[float | None], list[float | None]]:
    """The shared variant: each training task's own vector decoded with ``method``, and that method tuned in its
    original space (the bank entry; None when the bank lacks the method)."""
    if space.task_vectors is None:
        raise ConfigError(f"the {space.recipe} subspace keeps no task vectors")
    known = list(space.info.get("tasks", []))
    ms = space[method]
    scores, refs = [], []
    for t in tasks:
        if t not in known:
            raise ConfigError(f"{t!r} is not a training task of this subspace ({', '.join(known)})")
        with torch.no_grad():
            theta = ms.theta(space.task_vectors[known.index(t)].to(ms.anchor))
        scores.append(_bank_test_score(space, bank, t, method, theta))
        refs.append(bank.score(t, method) if method in bank.spec.methods else None)
    return scores, refs
