"""Fastfood at scale: taskspace's transform against a radix-2 butterfly implementation, forward + backward.

The reference is the structure of the public pure-PyTorch Fastfood code used for intrinsic-dimension experiments
(Li et al. 2018; Aghajanyan et al. 2021), written here from its description: ``[z; 0]`` padded to ``L``, times
``B``, a Walsh–Hadamard transform as ``log2 L`` butterfly levels that each build a new tensor, the permutation,
``G``, a second such transform, the normalisation, and the first ``D`` entries; nothing is reused between calls.
taskspace (``taskspace.projections.Fastfood``) transforms only the ``p``-block that ``z`` lives in, gathers it into
place, and runs the second transform as a few dense small-radix products. Both use the same random draws, so
their outputs are asserted equal before anything is timed.

For each ``D`` (one transform over all ``D`` outputs, ``mode="global"``) it prints the median time of a forward
and backward pass (gradient with respect to ``z``), of a forward pass alone (without autograd, as when a
subspace's θ is evaluated), and the peak memory the forward and backward pass adds, and the ratios of the two
implementations measured in the same run. Peak memory: on CUDA the allocator's peak; on Linux CPUs the process's
peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs`` before each pass), measured in a child
process in which glibc maps every allocation of 64 KiB or more on its own (``MALLOC_MMAP_THRESHOLD_``), so that
freed memory leaves the process and the peak is the pass's own (that setting slows allocation-heavy code down, so
times are measured in the parent, with the usual allocator). Usage:

    python benchmarks/fastfood.py                              # D = 2^16 ... 2^24, d = 1000, on the CPU, medians of 5
    python benchmarks/fastfood.py --device cuda --max-log2 26

On CUDA with the ``fast-hadamard-transform`` package installed, taskspace's transform is also timed with its
optional kernel backend (``set_fwht_backend("kernel")``, outputs asserted equal) and the table gains two columns:
the kernel's forward + backward time and its speed-up over taskspace's own transform. Elsewhere taskspace's own
transform is timed (``set_fwht_backend("torch")``), and the line above the table says why the kernel is not.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import torch

from common import describe_device, synchronize, timed
from taskspace.projections import Fastfood, set_fwht_backend
from taskspace.projections.fastfood import KERNEL_PACKAGE, kernel_available


def butterfly_fwht(x: torch.Tensor) -> torch.Tensor:
    """Unnormalised Walsh–Hadamard transform of the last dimension, one radix-2 level at a time."""
    L = x.shape[-1]
    lead = x.shape[:-1]
    h = 1
    while h < L:
        pairs = x.reshape(*lead, L // (2 * h), 2, h)
        a, b = pairs[..., 0, :], pairs[..., 1, :]
        x = torch.stack((a + b, a - b), dim=-2).reshape(*lead, L)
        h *= 2
    return x


class ButterflyFastfood(torch.nn.Module):
    """The reference: every step recomputed on the full length ``L`` in every call."""

    def __init__(self, ours: Fastfood):
        super().__init__()
        parts = ours.transform(0)
        self.L, self.n = parts["L"], parts["n"]
        B = torch.zeros(self.L)
        B[: ours.d_eff] = parts["B"]
        self.register_buffer("B", B)
        self.register_buffer("perm", parts["perm"].long())
        self.register_buffer("G", parts["G"].detach().clone())
        self.register_buffer("norm", torch.rsqrt(parts["G"].detach().square().sum() * self.n))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.pad(z, (0, self.L - z.shape[-1]))
        x = butterfly_fwht(x * self.B)
        x = butterfly_fwht(x[..., self.perm] * self.G)
        return (x * self.norm)[..., : self.n]


def _reset_peak(device: torch.device) -> float:
    """Start a peak-memory measurement; the current usage in bytes (the baseline)."""
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return float(torch.cuda.memory_allocated(device))
    Path("/proc/self/clear_refs").write_text("5")
    return _status_bytes("VmRSS")


def _peak(device: torch.device) -> float:
    synchronize(device)
    if device.type == "cuda":
        return float(torch.cuda.max_memory_allocated(device))
    return _status_bytes("VmHWM")


def _status_bytes(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return float(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {key}")


def _step(module: torch.nn.Module, z: torch.Tensor) -> torch.Tensor:
    z.grad = None
    out = module(z)
    out.backward(torch.ones_like(out))
    return out


def time_ms(module: torch.nn.Module, z: torch.Tensor, repeats: int) -> tuple[float, float]:
    """Median ms of (forward + backward with respect to ``z``, forward alone without autograd), each after one
    warm-up pass."""
    _step(module, z)
    both = statistics.median(timed(lambda: _step(module, z), z.device)[0] for _ in range(repeats)) * 1000
    with torch.no_grad():
        module(z)
        forward = statistics.median(timed(lambda: module(z), z.device)[0] for _ in range(repeats)) * 1000
    return both, forward


def peak_mb(module: torch.nn.Module, z: torch.Tensor) -> float:
    """Peak memory (MB) that forward + backward adds to what is allocated before it (after one warm-up pass)."""
    _step(module, z)
    base = _reset_peak(z.device)
    _step(module, z)
    return (_peak(z.device) - base) / 2**20


def build(d: int, D: int, device: torch.device):
    """(taskspace's transform, the reference with the same draws, z), outputs checked equal."""
    ours = Fastfood(d, [(D,)], mode="global", seed=0).to(device)
    reference = ButterflyFastfood(ours).to(device)
    z = torch.randn(d, generator=torch.Generator().manual_seed(1)).to(device).requires_grad_(True)
    with torch.no_grad():
        a, b = ours(z), reference(z)
        assert torch.allclose(a, b, atol=1e-5 * float(b.abs().max()), rtol=1e-4), "the outputs differ"
    return ours, reference, z


def memory(d: int, D: int, device: torch.device) -> tuple[float, float]:
    """Peak MB of (taskspace, reference): measured here on CUDA, in a child process on the CPU."""
    if device.type == "cuda":
        ours, reference, z = build(d, D, device)
        return peak_mb(ours, z), peak_mb(reference, z)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(64 * 1024)}
    out = subprocess.run([sys.executable, __file__, "--memory-of", str(D), "--d", str(d)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return tuple(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--d", type=int, default=1000, help="intrinsic dimension (default 1000)")
    ap.add_argument("--min-log2", type=int, default=16)
    ap.add_argument("--max-log2", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--memory-of", type=int, help=argparse.SUPPRESS)  # the child process of a CPU run
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.memory_of:
        ours, reference, z = build(args.d, args.memory_of, device)
        print(json.dumps([peak_mb(ours, z), peak_mb(reference, z)]))
        return
    set_fwht_backend("torch")
    with_kernel = device.type == "cuda" and kernel_available()
    print(f"device {describe_device(device)}")
    print(f"Fastfood, one global transform, d = {args.d}, forward + backward, median of {args.repeats}")
    print("ms: forward + backward (the training step's cost); fwd ms: forward alone, without autograd")
    print(f"the {KERNEL_PACKAGE} kernel: " + ("timed (the last two columns)" if with_kernel else
          "not timed (" + ("not installed" if device.type == "cuda" else "CUDA only") + ")"))
    print(f"{'D':>10} {'taskspace ms':>13} {'butterfly ms':>13} {'speed-up':>9} {'taskspace fwd':>14} "
          f"{'butterfly fwd':>14} {'fwd speed-up':>13} {'taskspace MB':>13} {'butterfly MB':>13} "
          f"{'memory ratio':>13} {'taskspace B/D':>14}" + (f" {'kernel ms':>10} {'vs taskspace':>13}"
                                                           if with_kernel else ""))
    for log2 in range(args.min_log2, args.max_log2 + 1):
        D = 1 << log2
        ours, reference, z = build(args.d, D, device)
        (ours_ms, ours_fwd), (ref_ms, ref_fwd) = time_ms(ours, z, args.repeats), time_ms(reference, z, args.repeats)
        kernel = ""
        if with_kernel:
            with torch.no_grad():
                expected = ours(z)
            set_fwht_backend("kernel")
            try:
                with torch.no_grad():
                    got = ours(z)
                assert torch.allclose(got, expected, atol=1e-5 * float(expected.abs().max()), rtol=1e-4), \
                    "the kernel's output differs"
                kernel_ms, _ = time_ms(ours, z, args.repeats)
            finally:
                set_fwht_backend("torch")
            kernel = f" {kernel_ms:10.1f} {ours_ms / kernel_ms:12.2f}x"
        del ours, reference, z
        ours_mb, ref_mb = memory(args.d, D, device)
        print(f"{D:>10,} {ours_ms:13.1f} {ref_ms:13.1f} {ref_ms / ours_ms:8.2f}x {ours_fwd:14.1f} {ref_fwd:14.1f} "
              f"{ref_fwd / ours_fwd:12.2f}x {ours_mb:13.1f} {ref_mb:13.1f} {ref_mb / max(ours_mb, 1e-9):12.2f}x "
              f"{ours_mb * 2**20 / D:14.1f}{kernel}", flush=True)


if __name__ == "__main__":
    main()
