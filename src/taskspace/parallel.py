"""Data-parallel training over processes (torch.distributed: gloo on CPUs, nccl on GPUs).

Launched by ``torchrun --nproc-per-node N -m taskspace COMMAND ...`` (or accelerate), the commands that train one
thing (``tune``, ``multitask``, ``fit-subspace``, ``subspace-tune``) run it data-parallel: every process holds the
whole model and trainable, each step's batch is split over the processes (example ``i`` of the step goes to rank
``i mod N``), each computes its share of the step's loss, and the gradients are summed over the processes before
clipping and the optimiser step, so every process takes the same step that one process would take on the whole
batch (up to the order of floating-point sums). Evaluation runs whole on every process and rank 0's score is
used by all; a resumed run starts every process from rank 0's checkpoint.

Only rank 0 writes the command's results (its ``--out``) and reports to tensorboard or wandb; the other ranks
write theirs to a private scratch folder that is deleted when the command ends, and print nothing. ``bank`` is different: it shares its entries out over the
processes (each entry trained by one process), see :func:`taskspace.subspace.bank.build_bank`.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from typing import Iterator

import torch

from .errors import ConfigError


def launched_world() -> tuple[int, int]:
    """(rank, world size) that a launcher (torchrun, accelerate) put in ``RANK`` / ``WORLD_SIZE``; (0, 1) without
    one."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
    except ValueError:
        raise ConfigError("RANK and WORLD_SIZE must be integers (as torchrun sets them)") from None
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"RANK={rank}, WORLD_SIZE={world}: expected 0 <= RANK < WORLD_SIZE")
    return rank, world


def group() -> tuple[int, int]:
    """(rank, world size) of the initialised process group that training uses; (0, 1) when there is none."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@contextlib.contextmanager
def data_parallel(args) -> Iterator[tuple[int, int]]:
    """Within this block, a command launched on several processes trains data-parallel: the process group is
    started (nccl when CUDA is available, else gloo), and on ranks other than 0 ``args.out`` is replaced by a
    scratch folder and the output silenced. One process: nothing changes."""
    rank, world = launched_world()
    if world == 1:
        yield 0, 1
        return
    import torch.distributed as dist

    started = not dist.is_initialized()
    if started:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    scratch = None
    try:
        if rank > 0:
            scratch = tempfile.mkdtemp(prefix=f"taskspace-rank{rank}-")
            args.out = os.path.join(scratch, "out")
            for name, quiet in (("progress", False), ("report_to", "none")):  # no bars, no second wandb run
                if hasattr(args, name):
                    setattr(args, name, quiet)
            with contextlib.redirect_stdout(io.StringIO()):
                yield rank, world
        else:
            yield rank, world
        dist.barrier()
    finally:
        if started:
            dist.destroy_process_group()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def broadcast_object(obj, src: int = 0):
    """``obj`` as rank ``src`` holds it, on every rank (unchanged without a process group)."""
    rank, world = group()
    if world == 1:
        return obj
    import torch.distributed as dist

    box = [obj if rank == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_sum_(tensors: list[torch.Tensor]) -> None:
    """Sum each tensor over the ranks, in place (one flat buffer, one collective)."""
    rank, world = group()
    if world == 1 or not tensors:
        return
    import torch.distributed as dist

    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    offset = 0
    for t in tensors:
        t.copy_(flat[offset: offset + t.numel()].view_as(t))
        offset += t.numel()
