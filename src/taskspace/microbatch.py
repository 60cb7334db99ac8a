"""Gradient accumulation over micro-batches, and what a loss may ask of the training step it is computed in.

:func:`backward` back-propagates a step's batch (this process's share of it, under data parallelism) in
micro-batches, each weighted by its share of the batch; a loss reads that share with :func:`micro_batch_share`, and
draws what belongs to the whole step once with :func:`once_per_step`.
"""

from __future__ import annotations

import contextvars

from .tasks.example import Example

_SHARE: contextvars.ContextVar[float] = contextvars.ContextVar("micro_batch_share", default=1.0)


def micro_batch_share() -> float:
    """The share of the step's batch that the loss being computed covers (1.0 without micro-batches).

    :func:`taskspace.train.train` weights each micro-batch's loss by its share, which adds up to the step's loss
    for a mean over examples; a loss that sums over the batch instead (IPT's code) divides by the share."""
    return _SHARE.get()


_STEP: contextvars.ContextVar[dict | None] = contextvars.ContextVar("training_step", default=None)


def once_per_step(key: str, make):
    """``make()`` the first time a training step asks for ``key``, and that same value for the rest of the step:
    a random draw that belongs to the step (UDT's mixing weights) stays one draw when :func:`taskspace.train.train`
    splits the step's batch into micro-batches, as it is without them. Outside a training step: ``make()``."""
    memo = _STEP.get()
    if memo is None:
        return make()
    if key not in memo:
        memo[key] = make()
    return memo[key]


def backward(loss_fn, batch: list[Example], targets: list[str], micro_batch_size: int | None, rank: int,
              world: int) -> float:
    """Back-propagate this process's share of the step's loss: its examples (``rank::world`` of the batch), in
    micro-batches of at most ``micro_batch_size``, each part weighted by its share of the whole batch. Returns the
    loss of those parts (a NaN is back-propagated like any value: the caller refuses it after the sum)."""
    n = len(batch)
    mine = list(range(rank, n, world))
    size = micro_batch_size or len(mine) or 1
    value = 0.0
    step = _STEP.set({})  # what once_per_step draws, shared by the step's micro-batches
    try:
        for start in range(0, len(mine), size):
            value += backward_part(loss_fn, batch, targets, mine[start:start + size])
    finally:
        _STEP.reset(step)
    return value


def backward_part(loss_fn, batch: list[Example], targets: list[str], part: list[int]) -> float:
    """One micro-batch (``part``, indices into the step's ``batch``) back-propagated; its loss."""
    n = len(batch)
    if len(part) < n:  # a part of the batch: its share of the step's (mean) loss
        share = len(part) / n
        token = _SHARE.set(share)
        try:
            loss = loss_fn([batch[i] for i in part], [targets[i] for i in part]) * share
        finally:
            _SHARE.reset(token)
    else:
        loss = loss_fn(batch, targets)
    loss.backward()
    return float(loss.detach())
