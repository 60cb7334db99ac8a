"""What a backbone makes of examples (:class:`Batch`) and the token loss it trains them with (:func:`token_nll`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..tasks.example import Example


@dataclass
class Batch:
    """Examples and the tensors a backbone made of them. ``targets`` are the reference strings trained on."""

    examples: list[Example]
    targets: list[str]
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.tensors[key]


#: How a sequence's token losses are reduced: their mean (the default) or their sum.
REDUCTIONS = ("mean", "sum")


def token_nll(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0,
              reduction: str = "mean") -> torch.Tensor:
    """Per-sequence token negative log-likelihood, the mean (or the sum) over the sequence's scored tokens;
    ``labels`` is -100 where no token is scored."""
    flat = nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(),
        labels.reshape(-1),
        ignore_index=-100,
        reduction="none",
        label_smoothing=label_smoothing,
    ).view(labels.shape)
    if reduction == "sum":
        return flat.sum(-1)
    counts = (labels != -100).sum(-1).clamp(min=1)
    return flat.sum(-1) / counts


def first_not_none(*values):
    return next((v for v in values if v is not None), None)
