"""Several tasks trained together: pooled, shuffled training examples (batches mix tasks), the one loss of a batch
that mixes tasks, and per-task dev scores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..backbones import Backbone
from ..deltas import DeltaMethod
from ..deltas.base import first_of_groups
from ..evaluation import evaluate
from ..microbatch import micro_batch_share
from ..tasks import Example, Task, load_task


@dataclass
class MultiTask:
    tasks: dict[str, Task]

    @classmethod
    def load(cls, names: Sequence[str], data_dir: str, *, k: int = 16, seed: int = 100, resample: bool = False,
             resample_k: int | None = None, pool_test: bool = False) -> "MultiTask":
        return cls({n: load_task(n, data_dir, k=k, seed=seed, resample=resample, resample_k=resample_k,
                                 pool_test=pool_test) for n in names})

    @property
    def names(self) -> list[str]:
        return list(self.tasks)

    def train_examples(self) -> list[Example]:
        """Every task's training examples; the training loop's shuffle mixes tasks in each batch."""
        return [e for t in self.tasks.values() for e in t.train]

    def index(self, examples: Sequence[Example], device: torch.device | str = "cpu") -> torch.Tensor:
        """Each example's task as a row index into ``names``."""
        position = {n: i for i, n in enumerate(self.tasks)}
        return torch.tensor([position[e.task] for e in examples], dtype=torch.long, device=device)

    def check(self, backbone: Backbone) -> None:
        for t in self.tasks.values():
            backbone.check_task(t.info.has_options, t.name)

    def dev_scores(self, backbone: Backbone, method: DeltaMethod, theta_of_task: Callable[[int], torch.Tensor],
                   batch_size: int = 32) -> dict[str, float]:
        """Dev score of each task with its own theta, ``theta_of_task(i)`` (``[D]``) for task ``names[i]``: decoded
        one task at a time, so that D-sized thetas of many tasks are never held at once."""
        out = {}
        for i, (name, task) in enumerate(self.tasks.items()):
            with torch.no_grad():
                theta = theta_of_task(i)
            out[name] = evaluate(backbone, task.dev, task.metric, method=method, theta=theta, batch_size=batch_size,
                                 settle=True)[0]
        return out

    def mean_dev_score(self, backbone: Backbone, method: DeltaMethod, theta_of_task: Callable[[int], torch.Tensor],
                       batch_size: int = 32) -> float:
        """The mean over tasks of :meth:`dev_scores` (each task weighs the same)."""
        scores = self.dev_scores(backbone, method, theta_of_task, batch_size)
        return sum(scores.values()) / len(scores)


def mixed_loss(backbone: Backbone, method: DeltaMethod, examples: Sequence[Example], targets: Sequence[str],
               index: torch.Tensor, theta_of: Callable[[torch.Tensor], torch.Tensor], *,
               label_smoothing: float | None = None, tokens: str = "mean") -> torch.Tensor:
    """The loss of a batch that mixes tasks, every example computed with its own task's theta.

    ``index`` holds each example's task row; ``theta_of(rows)`` returns the thetas ``[len(rows), D]`` of the batch
    rows ``rows``. ``tokens="mean"``: the mean over examples of each example's mean token loss; ``"sum"``: the sum
    of every token loss in the batch (IPT's original code; under micro-batches, divided by the micro-batch's share
    of the step, see :func:`taskspace.microbatch.micro_batch_share`). ``label_smoothing`` None: the backbone's option.
    A method that takes per-example theta gets one bind for the whole batch: the thetas of the batch's distinct
    tasks (``theta_of`` called with one row of each task) and each example's row among them, the examples ordered
    by task (so LoRA computes each task's update once over its examples; a task's rows must therefore share one
    theta, as every caller's do). One that does not (full fine-tuning, a model copy per theta) runs once per
    distinct task in the batch, each with its rows' share.
    """
    def per_example(batch_rows: list[int]) -> torch.Tensor:
        batch = backbone.collate([examples[i] for i in batch_rows], [targets[i] for i in batch_rows])
        return backbone.loss(batch, label_smoothing=label_smoothing, reduction=tokens)

    # a sum over the batch's tokens is the whole step's, also when train() passes a micro-batch of it
    scale = 1.0 / micro_batch_share() if tokens == "sum" else 1.0 / len(examples)
    if method.supports_per_example:
        distinct, rows = index.unique(return_inverse=True)
        order = torch.argsort(rows, stable=True)  # each task's examples together: LoRA slices, never copies
        with method.bind(theta_of(first_of_groups(rows, distinct.numel())), rows=rows[order]):
            return per_example(order.tolist()).sum() * scale
    total = 0.0
    for t in index.unique().tolist():
        rows = (index == t).nonzero().flatten()
        with method.bind(theta_of(rows[:1])[0]):
            total = total + per_example(rows.tolist()).sum()
    return total * scale
