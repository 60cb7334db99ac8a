"""What the families' ``predict`` share: examples grouped by whether they have options, the row map of option
ranking, and a step of greedy generation."""

from __future__ import annotations

from typing import Sequence

import torch

from ..tasks.example import Example


def group_options(examples: Sequence[Example]) -> tuple[list[int], list[int]]:
    """Indices of examples with options and of those without, in order."""
    with_options = [i for i, e in enumerate(examples) if e.options]
    without = [i for i, e in enumerate(examples) if not e.options]
    return with_options, without


def option_rows(examples: Sequence[Example], device: torch.device) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Row map for ranking: one row per (example, option); and each example's [start, end) range of rows."""
    index, spans, start = [], [], 0
    for i, e in enumerate(examples):
        index.extend([i] * len(e.options))
        spans.append((start, start + len(e.options)))
        start += len(e.options)
    return torch.tensor(index, dtype=torch.long, device=device), spans


def take_tokens(tokens: list[list[int]], active: torch.Tensor, nxt: torch.Tensor, eos_id: int,
                last_step: bool) -> torch.Tensor | None:
    """One step of greedy generation with finished rows leaving the batch: append each active row's token
    ``nxt`` to ``tokens[row]``; return the positions (within the active rows) that go on generating, or None when
    none does (all produced EOS, or this was the last step). The caller keeps those rows of its per-row state."""
    for row, token in zip(active.tolist(), nxt.tolist()):
        tokens[row].append(token)
    keep = nxt != eos_id
    if last_step or not bool(keep.any()):
        return None
    return keep.nonzero().squeeze(1)
