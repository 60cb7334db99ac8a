"""Several tasks trained together: pooled, shuffled training examples (batches mix tasks) and per-task dev scores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..backbones import Backbone
from ..tasks import Example, Task, load_task
from ..tuning import evaluate


@dataclass
class MultiTask:
    tasks: dict[str, Task]

    @classmethod
    def load(cls, names: Sequence[str], data_dir: str, *, k: int = 16, seed: int = 100) -> "MultiTask":
        return cls({n: load_task(n, data_dir, k=k, seed=seed) for n in names})

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

    def dev_scores(self, backbone: Backbone, method, thetas: torch.Tensor, batch_size: int = 32) -> dict[str, float]:
        """Dev score of each task with its own theta (``thetas[i]`` for task ``names[i]``)."""
        return {
            n: evaluate(backbone, t.dev, t.metric, method=method, theta=thetas[i], batch_size=batch_size)[0]
            for i, (n, t) in enumerate(self.tasks.items())
        }
