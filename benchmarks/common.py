"""What every benchmark shares: clocks read after the device has finished its queued work, and the device named.

CUDA kernels run asynchronously: a clock read right after a call measures the launch, not the work. Every timing
here synchronises the device before starting and before stopping the clock.
"""

from __future__ import annotations

import os
import time

import torch

from taskspace.backbones.dtypes import cpu_model


def synchronize(device: str | torch.device) -> None:
    """Wait until ``device`` has finished everything queued on it (a no-op on the CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: str | torch.device):
    """(seconds, result) of ``fn()``, measured between two synchronisations of ``device``."""
    synchronize(device)
    start = time.perf_counter()
    out = fn()
    synchronize(device)
    return time.perf_counter() - start, out


def describe_device(device: str | torch.device) -> str:
    """The device in words: the GPU's name, or the CPU's model and the threads PyTorch uses."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)}), torch {torch.__version__}"
    return (f"cpu ({cpu_model()}; {torch.get_num_threads()} threads of {os.cpu_count()} cores), "
            f"torch {torch.__version__}")
