"""The Fastfood transform (Le et al. 2013) as a random up-projection of all weights (Aghajanyan et al. 2021), SPEC §5.

For one transform with ``n`` outputs and input ``z ∈ R^d``, ``L`` is the next power of two >= max(n, d) and

    out = (H G Π H B [z; 0])[:n] / (sqrt(L · sum(G²)) · sqrt(n / L))        (= (...)[:n] / sqrt(n · sum(G²)))

with ``H`` the unnormalised L x L Walsh–Hadamard matrix (Sylvester order), ``B = diag(b)``, ``b ∈ {±1}^L``,
``G = diag(g)``, ``g ~ N(0, 1)^L`` and ``Π`` the permutation ``(Π v)[k] = v[perm[k]]``.

**Normalisation.** Over the random ``B``, ``Π`` and ``G`` every output entry has ``E[out_i²] = |z|² / n``, so
``E|out|² = |z|²`` for every transform, whatever ``n``, ``L`` and ``d``: ``H B`` multiplies the norm by ``sqrt(L)``
and gives entries of mean square ``|z|²``; after ``Π`` and ``G`` the second ``H`` gives entries of mean square
``sum(G²) · |z|²`` (the cross terms vanish because the signs of ``g`` are symmetric), and the division by
``sqrt(n · sum(G²))`` leaves ``|z|² / n`` per entry.

**Randomness, in this exact order.** One ``torch.Generator().manual_seed(seed)`` on the CPU; for each transform in
order (the tensors of ``shapes`` in order for ``mode="per_tensor"``, the single transform over all ``D`` outputs for
``mode="global"``): ``b = torch.randint(0, 2, (L,)) * 2 - 1``, then ``perm = torch.randperm(L)``, then
``g = torch.randn(L)``, each with that generator. A config (``d``, ``shapes``, ``mode``, ``seed``, ...) therefore
reloads the same transform bit-exactly on every device. Only the first ``d`` entries of ``b`` ever touch ``[z; 0]``;
the others are drawn (so the order does not depend on them) but not kept.

**SAID** (``said=True``, Aghajanyan's structure-aware variant): the last ``T`` entries of ``z`` (``T`` = number of
transforms) give per-transform scales ``λ_t = 1 + z_t`` multiplying each transform's output; the first ``d - T``
entries feed the transforms (so ``d`` counts the scales too, and ``L`` uses ``d - T``). Writing the scales as
``1 + z_t`` makes ``z = 0`` the natural start (unit scales, the pre-trained model) rather than a point where the
scales and the transforms' gradients both vanish.

**Speed.** ``H B [z; 0]`` is computed as the length-``p`` transform of ``b[:p] · z`` tiled ``L / p`` times
(``p`` = next power of two >= d: ``H_L = H_{L/p} ⊗ H_p`` and ``[z; 0]`` lives in the first block), so the tiling
and ``Π`` become one gather from a ``p``-vector; only the second ``H`` is a full O(L log L) transform. Transforms
of equal ``L`` run as one batched call. ``B``, the gather index of ``Π`` (and ``G`` unless trainable) are
non-persistent buffers: the config rebuilds them, so a state dict holds only a trained ``G``. Large CPU tensors
page-fault on every allocation; setting ``THP_MEM_ALLOC_ENABLE=1`` before starting Python (transparent huge pages in PyTorch's CPU
allocator) made a full-model projection 1.5 to 2x as fast on our 2-core machine. Timings for all-MiniLM-L6-v2's
weights (D = 22.7M, d = 1000): the docstring of ``tests/test_projections.py`` (about 0.4-0.55 s per forward and
0.9-1.3 s per forward + backward on 2 cores, either mode).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import torch

from ..errors import ConfigError
from .base import Projection, check_positive, register

MODES = ("per_tensor", "global")

#: Largest radix of the mixed-radix Walsh–Hadamard transform, in bits (dense 2^b x 2^b Hadamard blocks).
MAX_RADIX_BITS = 6

#: :meth:`Fastfood.dense` refuses matrices with more elements than this.
DENSE_LIMIT = 1 << 20

#: Where :func:`fwht` computes: ``"auto"`` (the ``fast-hadamard-transform`` CUDA kernel for a CUDA tensor when that
#: package is installed, taskspace's own transform otherwise), ``"torch"`` (taskspace's own, everywhere) or
#: ``"kernel"`` (the kernel; a tensor it cannot take is refused). See :func:`set_fwht_backend`.
FWHT_BACKENDS = ("auto", "torch", "kernel")
_backend = "auto"

#: The lengths the kernel transforms in one call (fast-hadamard-transform 1.x: dtypes float32, float16 and bfloat16,
#: up to 32768; we keep at least 8 per call); longer transforms are composed of such calls (:func:`kernel_fwht`).
KERNEL_MIN_LENGTH, KERNEL_MAX_LENGTH = 1 << 3, 1 << 15
KERNEL_PACKAGE = "fast-hadamard-transform"


def set_fwht_backend(name: str) -> str:
    """Choose where :func:`fwht` (so every :class:`Fastfood`) computes, one of :data:`FWHT_BACKENDS`; returns the
    previous choice. The kernel is an optional fast path on CUDA (``pip install fast-hadamard-transform``); its
    results equal taskspace's own up to float rounding, so the choice is not part of a run's identity."""
    global _backend
    if name not in FWHT_BACKENDS:
        raise ConfigError(f"fwht backend {name!r}: expected one of {', '.join(FWHT_BACKENDS)}")
    if name == "kernel":
        _kernel(required=True)
    previous, _backend = _backend, name
    return previous


def _kernel(required: bool = False):
    """The kernel's ``hadamard_transform(x, scale)``, or None when the package is not installed (refused with what
    to install when ``required``). Looked up once (:func:`_import_kernel`)."""
    transform, error = _import_kernel()
    if transform is None and required:
        raise ConfigError(f"fwht backend 'kernel' needs the {KERNEL_PACKAGE} package (CUDA only): "
                          f"pip install {KERNEL_PACKAGE} ({error})")
    return transform


@functools.lru_cache(maxsize=None)
def _import_kernel():
    """(the kernel's function or None, why not): a failed import is not cached by Python, and ``auto`` asks on
    every transform of a CUDA tensor."""
    try:
        from fast_hadamard_transform import hadamard_transform
    except ImportError as e:
        return None, str(e)
    return hadamard_transform, ""


def kernel_available() -> bool:
    """Whether the ``fast-hadamard-transform`` package is installed (its kernel runs on CUDA only)."""
    return _kernel() is not None


def _kernel_applies(x: torch.Tensor) -> bool:
    """Whether the kernel can transform ``x``: a CUDA tensor of a dtype it takes, long enough."""
    return x.is_cuda and x.dtype in (torch.float32, torch.float16, torch.bfloat16) and x.shape[-1] >= KERNEL_MIN_LENGTH


def _kernel_for(x: torch.Tensor):
    """The kernel to transform ``x`` with, or None for taskspace's own transform."""
    if _backend == "torch":
        return None
    fits = _kernel_applies(x)
    if _backend == "kernel":
        if not fits:
            raise ConfigError(f"fwht backend 'kernel': the kernel takes CUDA tensors of float32, float16 or bfloat16 "
                              f"with length >= {KERNEL_MIN_LENGTH}, got {x.device.type} {x.dtype} of length "
                              f"{x.shape[-1]} (set_fwht_backend('auto') uses it only where it applies)")
        return _kernel(required=True)
    return _kernel() if fits else None


def kernel_fwht(x: torch.Tensor, transform, max_length: int = KERNEL_MAX_LENGTH,
                min_length: int = KERNEL_MIN_LENGTH) -> torch.Tensor:
    """``x @ H`` along the last dimension (length ``L``, a power of two >= ``min_length``) with ``transform(x,
    scale)``, a kernel that multiplies the rows of its input by the Hadamard matrix of their length, for lengths in
    ``[min_length, max_length]``. Longer ``L``: ``H_L = H_{L/m} ⊗ H_m``, so ``x`` viewed as ``[..., L/m, m]`` is
    transformed along its last axis, then (transposed) along the other one, recursively."""
    L = x.shape[-1]
    if L <= max_length:
        return transform(x.contiguous(), 1.0)
    inner = max_length
    if L // inner < min_length:
        inner = L // min_length
    lead = x.shape[:-1]
    y = transform(x.reshape(*lead, L // inner, inner).contiguous(), 1.0)
    y = kernel_fwht(y.transpose(-1, -2), transform, max_length, min_length)
    return y.transpose(-1, -2).reshape(*lead, L)


def hadamard(n: int, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> torch.Tensor:
    """The unnormalised ``n x n`` Walsh–Hadamard matrix (Sylvester construction, ``H_2n = [[H, H], [H, -H]]``)."""
    _check_power_of_two(n, "n")
    h = torch.ones(1, 1, dtype=dtype, device=device)
    while h.shape[0] < n:
        h = torch.cat((torch.cat((h, h), 1), torch.cat((h, -h), 1)), 0)
    return h


def fwht(x: torch.Tensor) -> torch.Tensor:
    """Unnormalised Walsh–Hadamard transform along the last dimension (length a power of two): ``x @ H``.

    Mixed radix: ``H_L = H_{r_1} ⊗ ... ⊗ H_{r_m}`` with ``r_i <= 2^MAX_RADIX_BITS``; ``x`` is viewed as
    ``[..., r_1, ..., r_m]`` and each axis is multiplied by a small dense Hadamard matrix, O(L log L) overall in
    ``m`` passes of dense matrix products. On 2 CPU cores this ran 1.5x (L = 2^12), 3x (L = 2^20) and 5.6x
    (L = 2^24) faster than a radix-2 butterfly (log2 L passes, each allocating new tensors); radices 2^4 to 2^7
    were within the machine's noise of each other. Leading dimensions are batch dimensions.
    Differentiable through ordinary autograd (its backward is the same transform of the gradient). On CUDA, with
    the ``fast-hadamard-transform`` package installed, the kernel computes it instead (:func:`set_fwht_backend`).
    """
    if x.dim() == 0:
        raise ConfigError("fwht: expected a tensor with at least one dimension")
    L = x.shape[-1]
    _check_power_of_two(L, "fwht: the last dimension")
    kernel = _kernel_for(x)
    if kernel is not None:
        return kernel_fwht(x, kernel)
    bits = L.bit_length() - 1
    if bits == 0:
        return x.clone()
    m = -(-bits // MAX_RADIX_BITS)
    chunks = [bits // m + (1 if i < bits % m else 0) for i in range(m)]
    lead = x.shape[:-1]
    y, post = x, L
    for b in chunks:
        r = 1 << b
        post //= r
        h = hadamard(r, x.dtype, x.device)
        if post == 1:
            y = y.reshape(-1, r) @ h  # h is symmetric
        elif y.numel() == r * post:  # one plain product: faster than a batched one with a single batch
            y = torch.mm(h, y.reshape(r, post))
        else:
            y = torch.matmul(h, y.reshape(-1, r, post))
    return y.reshape(*lead, L)


@register
class Fastfood(Projection):
    """Random Fastfood up-projection ``z ∈ R^d -> theta ∈ R^D``, ``D = sum(numel(shape) for shape in shapes)``.

    ``theta`` is the flattened concatenation of the tensors of ``shapes``, in order. ``mode="per_tensor"``: one
    transform per shape (SPEC §5, Aghajanyan et al.); ``mode="global"``: one transform over all ``D`` outputs.
    ``trainable_G=True`` makes each ``G`` an ``nn.Parameter`` (UDT §5.3). The normalisation is computed from the
    initial ``G`` and stays fixed, as in the original code: recomputed from the current ``G`` it would make the
    output blind to G's scale, and G's gradient orthogonal to G. ``said=True``: the last ``T`` entries of ``z`` scale the transforms (see the module doc).
    """

    kind = "fastfood"

    def __init__(self, d: int, shapes: Sequence[Sequence[int]], mode: str = "per_tensor", seed: int = 0,
                 trainable_G: bool = False, said: bool = False):
        check_positive(d, "d")
        shapes = _check_shapes(shapes)
        if mode not in MODES:
            raise ConfigError(f"mode={mode!r}: expected one of {', '.join(MODES)}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"seed={seed!r}: expected an integer")
        sizes = [math.prod(s) for s in shapes]
        D = sum(sizes)
        ns = sizes if mode == "per_tensor" else [D]
        T = len(ns)
        if said and d <= T:
            raise ConfigError(
                f"said=True with d={d}: the last T={T} entries of z are the per-transform scales "
                f"({T} transform{'s' if T > 1 else ''} in mode {mode!r}), so d must exceed {T}"
            )
        super().__init__(d, D, {"d": d, "shapes": [list(s) for s in shapes], "mode": mode, "seed": seed,
                         "trainable_G": bool(trainable_G), "said": bool(said)})
        self.shapes = shapes
        self.mode = mode
        self.seed = seed
        self.said = bool(said)
        self.trainable_G = bool(trainable_G)
        self.num_transforms = T
        self.d_eff = d - T if said else d
        self.d_pad = _next_power_of_two(self.d_eff)
        self.sizes = tuple(ns)
        self.lengths = tuple(_next_power_of_two(max(n, self.d_eff)) for n in ns)

        draws = [(b[: self.d_eff].float(), perm.int(), g) for b, perm, g in self._draws()]

        # Transforms with equal L form one group, computed in one batched call (groups in order of first use).
        members: dict[int, list[int]] = {}
        for t, L in enumerate(self.lengths):
            members.setdefault(L, []).append(t)
        self._groups: list[tuple[int, tuple[int, ...]]] = [(L, tuple(ts)) for L, ts in members.items()]
        self._where: list[tuple[int, int]] = [(0, 0)] * T  # transform -> (group, row)
        for gi, (L, ts) in enumerate(self._groups):
            for row, t in enumerate(ts):
                self._where[t] = (gi, row)
            b = torch.zeros(len(ts), self.d_pad)
            for row, t in enumerate(ts):
                b[row, : self.d_eff] = draws[t][0]
            perm = torch.stack([draws[t][1] for t in ts])
            g = torch.stack([draws[t][2] for t in ts])
            offsets = torch.arange(len(ts), dtype=torch.int32).unsqueeze(1) * self.d_pad
            self.register_buffer(f"B_{gi}", b, persistent=False)
            # The tiling of H_p (b · z) to length L followed by Π is a gather at perm mod p (+ the row's offset).
            self.register_buffer(f"index_{gi}", ((perm % self.d_pad) + offsets).flatten(), persistent=False)
            n = torch.tensor([float(ns[t]) for t in ts])
            # 1 / sqrt(n · sum(G²)) of the initial G, rebuilt from the seed: frozen even when G is trained.
            self.register_buffer(f"norm_{gi}", torch.rsqrt((g * g).sum(-1) * n), persistent=False)
            if self.trainable_G:
                self.register_parameter(f"G_{gi}", torch.nn.Parameter(g))
            else:
                self.register_buffer(f"G_{gi}", g, persistent=False)
            if self.said:
                self.register_buffer(f"scale_index_{gi}", torch.tensor(ts, dtype=torch.long) + self.d_eff,
                                     persistent=False)
        del draws

    def _draws(self):
        """Each transform's ``(b, perm, g)`` from the seed, in the documented order."""
        generator = torch.Generator().manual_seed(self.seed)
        for L in self.lengths:
            b = torch.randint(0, 2, (L,), generator=generator) * 2 - 1
            perm = torch.randperm(L, generator=generator)
            yield b, perm, torch.randn(L, generator=generator)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        z = x[..., : self.d_eff]
        if self.d_pad > self.d_eff:
            z = torch.nn.functional.pad(z, (0, self.d_pad - self.d_eff))
        outs: list[torch.Tensor | None] = [None] * self.num_transforms
        for gi, (L, ts) in enumerate(self._groups):
            b, g, scale = getattr(self, f"B_{gi}"), getattr(self, f"G_{gi}"), getattr(self, f"norm_{gi}")
            h = fwht(z.unsqueeze(-2) * b)  # [..., T_g, p]: H_p B z, one row per transform
            if self.said:
                scale = scale * (1.0 + x.index_select(-1, getattr(self, f"scale_index_{gi}")))
            h = h * scale.unsqueeze(-1)
            u = h.flatten(-2).index_select(-1, getattr(self, f"index_{gi}"))  # Π (H_L B [z; 0]), all rows
            w = fwht(u.unflatten(-1, (len(ts), L)) * g)
            # unbind, not one select per row: each select's backward would allocate a zero gradient of the
            # whole [T_g, L] group (quadratic in T_g); unbind's backward stacks the rows' gradients once.
            for t, row in zip(ts, w.unbind(-2)):
                outs[t] = row if self.sizes[t] == L else row[..., : self.sizes[t]]
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)  # type: ignore[arg-type]

    def transform(self, t: int) -> dict[str, Any]:
        """Transform ``t``'s random parts: ``B`` (its first d - T or d entries, the only ones used; a view), ``perm``
        (int32, ``(Π v)[k] = v[perm[k]]``; drawn again from the seed, as only its gather index is kept), ``G`` (a
        view: trained if G is trainable), and its ``L`` and ``n``."""
        if not 0 <= t < self.num_transforms:
            raise ConfigError(f"transform {t}: this Fastfood has {self.num_transforms} transform(s)")
        gi, row = self._where[t]
        perm = next(perm for i, (_, perm, _) in enumerate(self._draws()) if i == t)
        return {
            "L": self.lengths[t],
            "n": self.sizes[t],
            "B": getattr(self, f"B_{gi}")[row, : self.d_eff],
            "perm": perm.int(),
            "G": getattr(self, f"G_{gi}")[row],
        }

    @torch.no_grad()
    def dense(self) -> torch.Tensor:
        """The matrix ``M`` with ``theta = z @ M``, ``[d, D]``, built by projecting the basis vectors (small sizes
        only, at most ``DENSE_LIMIT`` elements). With ``said=True`` the map is not linear in ``z``; this returns the
        ``[d - T, D]`` matrix of the transforms with all scales 1."""
        rows = self.d_eff
        if rows * self.d_out > DENSE_LIMIT:
            raise ConfigError(
                f"Fastfood.dense: a {rows} x {self.d_out} matrix exceeds the limit of {DENSE_LIMIT} elements"
            )
        ref = self.G_0
        basis = torch.eye(rows, dtype=ref.dtype, device=ref.device)
        if self.said:  # scale entries 0: unit scales
            basis = torch.cat((basis, basis.new_zeros(rows, self.num_transforms)), dim=-1)
        return self.project(basis)

    def extra_repr(self) -> str:
        return (f"d={self.d_in}, D={self.d_out}, mode={self.mode!r}, transforms={self.num_transforms}, "
                f"trainable_G={self.trainable_G}, said={self.said}")


def _next_power_of_two(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def _check_power_of_two(n: int, what: str) -> None:
    if n < 1 or n & (n - 1):
        raise ConfigError(f"{what} = {n}: expected a power of two")


def _check_shapes(shapes: Any) -> list[tuple[int, ...]]:
    if isinstance(shapes, (str, bytes)) or not isinstance(shapes, Sequence) or len(shapes) == 0:
        raise ConfigError(f"shapes={shapes!r}: expected a non-empty list of tensor shapes")
    out = []
    for s in shapes:
        if isinstance(s, int) and not isinstance(s, bool):
            s = (s,)
        if not isinstance(s, (Sequence, torch.Size)) or isinstance(s, (str, bytes)) or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in s
        ):
            raise ConfigError(f"shapes: {s!r} is not a shape of positive integers")
        out.append(tuple(int(v) for v in s))
    return out
