"""What the families' ``predict`` share: examples grouped by whether they have options, the row map of option
ranking, and a step of greedy generation."""

from __future__ import annotations

from typing import Callable, Sequence

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
                last_step: bool, done: Callable[[int], bool] | None = None) -> torch.Tensor | None:
    """One step of greedy generation with finished rows leaving the batch: append each active row's token
    ``nxt`` to ``tokens[row]``; return the positions (within the active rows) that go on generating, or None when
    none does (all produced EOS, or this was the last step). A row also leaves when ``done(row)`` (asked after its
    token was appended) says its answer's score is settled. The caller keeps those rows of its per-row state."""
    rows = active.tolist()
    for row, token in zip(rows, nxt.tolist()):
        tokens[row].append(token)
    keep = nxt != eos_id
    if last_step or not bool(keep.any()):
        return None
    if done is not None:
        keep = keep & torch.tensor([bool(k) and not done(row) for row, k in zip(rows, keep.tolist())],
                                   dtype=torch.bool, device=keep.device)
        if not bool(keep.any()):
            return None
    return keep.nonzero().squeeze(1)


def settled_rows(settle: Callable[[str, Sequence[str]], bool] | None, tokens: list[list[int]], examples, decode
                 ) -> Callable[[int], bool] | None:
    """``done(row)`` for :func:`take_tokens`: whether row's text so far (``decode(tokens[row])``) settles its
    example's score under ``settle`` (:func:`taskspace.tasks.settled.settled_check`); None without ``settle``."""
    if settle is None:
        return None
    return lambda row: settle(decode(tokens[row]), examples[row].references)
