"""Delta methods as flat parameter vectors.

A delta method is a bijection between one flat vector ``theta`` (size ``D``) and the structured tensors it
injects into a frozen backbone. Its :class:`Layout` lists named slices of ``theta`` in a canonical, documented
order (see each method's docstring), so ``theta`` can be unflattened, flattened, stored and projected.

``method.bind(theta)`` is a context manager: within it the backbone computes with the delta. ``theta`` is either
``[D]`` (one delta for the whole batch) or ``[B, D]`` (one per example, so that a batch can mix tasks), or ``[K, D]``
with ``rows=`` (``[B]``: each example's row among K distinct thetas; LoRA then computes each distinct theta once
over its examples instead of copying its A and B per example). Autograd
flows from the loss into ``theta``, so anything that *produces* ``theta`` (an ``nn.Parameter``, a projection of
a low-dimensional vector, ...) can be trained through the same code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, Mapping

import torch

from ..backbones.base import Backbone
from ..config import Config
from ..errors import ConfigError
from ..registry import Registry


@dataclass(frozen=True)
class Slice:
    """A named block of ``theta``: elements ``[offset, offset + numel)`` viewed as ``shape``."""

    name: str
    offset: int
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def end(self) -> int:
        return self.offset + self.numel


class Layout:
    """The canonical order of a flat vector: consecutive named slices."""

    def __init__(self, entries: Iterable[tuple[str, tuple[int, ...]]]):
        slices, offset, names = [], 0, set()
        for name, shape in entries:
            if name in names:
                raise ValueError(f"duplicate slice name {name!r}")
            names.add(name)
            s = Slice(name, offset, tuple(int(x) for x in shape))
            slices.append(s)
            offset = s.end
        self.slices: tuple[Slice, ...] = tuple(slices)
        self.size = offset
        self._by_name = {s.name: s for s in self.slices}

    def __len__(self) -> int:
        return len(self.slices)

    def __getitem__(self, name: str) -> Slice:
        return self._by_name[name]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Layout) and self.slices == other.slices

    def view(self, theta: torch.Tensor, name: str) -> torch.Tensor:
        """Slice ``name`` of ``theta`` (``[D]`` or ``[B, D]``) as ``[*shape]`` or ``[B, *shape]`` (a view)."""
        s = self._by_name[name]
        return theta[..., s.offset : s.end].unflatten(-1, s.shape)

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """All slices of ``theta`` as views. One ``split`` (not one slice per entry) keeps the backward pass O(D):
        slicing each entry separately would materialise a D-sized gradient per slice."""
        if theta.shape[-1] != self.size:
            raise ConfigError(f"theta has {theta.shape[-1]} elements per row, this layout has {self.size}")
        parts = theta.split([s.numel for s in self.slices], dim=-1)
        return {s.name: part.unflatten(-1, s.shape) for s, part in zip(self.slices, parts)}

    def flatten(self, tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Inverse of :meth:`unflatten`: tensors ``[*shape]`` (or ``[B, *shape]``) to ``theta``."""
        missing = [s.name for s in self.slices if s.name not in tensors]
        extra = sorted(set(tensors) - set(self._by_name))
        if missing or extra:
            raise ConfigError(f"flatten: missing slices {missing[:5]}, unexpected {extra[:5]}")
        parts = []
        for s in self.slices:
            t = tensors[s.name]
            lead = t.shape[: t.dim() - len(s.shape)]
            if tuple(t.shape[len(lead) :]) != s.shape:
                raise ConfigError(f"flatten: slice {s.name} has shape {tuple(t.shape)}, expected {s.shape}")
            parts.append(t.reshape(*lead, s.numel))
        return torch.cat(parts, dim=-1)

    def to_json(self) -> list[list]:
        return [[s.name, list(s.shape)] for s in self.slices]

    @classmethod
    def from_json(cls, data: list) -> "Layout":
        return cls((name, tuple(shape)) for name, shape in data)

    def summary(self, groups: int = 6) -> str:
        head = ", ".join(f"{s.name}{list(s.shape)}" for s in self.slices[:groups])
        more = f", ... ({len(self.slices)} slices)" if len(self.slices) > groups else ""
        return head + more


class Binding:
    """Context manager returned by :meth:`DeltaMethod.bind`."""

    def __init__(self, method: "DeltaMethod", theta: "torch.Tensor | FlatParameters",
                 rows: torch.Tensor | None = None):
        self._views: dict[str, torch.Tensor] | None = None
        if isinstance(theta, FlatParameters):
            if theta.layout != method.layout:
                raise ConfigError(f"{method.name}: these parameters were made for another layout")
            self._views = theta.views()
            theta = theta.flat
        if theta.dim() not in (1, 2) or theta.shape[-1] != method.size:
            raise ConfigError(
                f"{method.name}: theta must have shape [{method.size}] or [batch, {method.size}], "
                f"got {tuple(theta.shape)}"
            )
        if theta.dim() == 2 and not method.supports_per_example:
            raise ConfigError(f"{method.name} does not support per-example theta ([batch, D]); bind one [D] vector")
        if rows is not None:
            rows = _check_rows(method, theta, rows)
        self.method = method
        self.theta = theta
        self.rows = rows
        self.per_example = theta.dim() == 2
        self._handles: list = []

    def __enter__(self) -> "Binding":
        views = self._views if self._views is not None else self.method.layout.unflatten(self.theta)
        try:
            if self.rows is None:
                self._handles = list(self.method._install(views, self.per_example))
            else:
                self._handles = list(self.method._install_rows(views, self.rows))
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._remove()

    def _remove(self) -> None:
        for h in reversed(self._handles):
            h.remove()
        self._handles = []


def first_of_groups(inverse: torch.Tensor, groups: int) -> torch.Tensor:
    """For ``inverse`` (each row's group, ``[n]``, groups ``0 .. groups - 1`` all present): each group's first row."""
    n = inverse.shape[0]
    first = torch.full((groups,), n, dtype=torch.long, device=inverse.device)
    return first.scatter_reduce(0, inverse, torch.arange(n, device=inverse.device), reduce="amin")


def _check_rows(method: "DeltaMethod", theta: torch.Tensor, rows: Any) -> torch.Tensor:
    """``rows`` as a long tensor on theta's device: one entry per example, each a row of the ``[K, D]`` theta."""
    if theta.dim() != 2:
        raise ConfigError(f"{method.name}: rows= maps examples to the rows of a [K, D] theta; got theta of shape "
                          f"{tuple(theta.shape)}")
    rows = torch.as_tensor(rows, device=theta.device)
    if rows.dim() != 1 or rows.numel() == 0 or rows.dtype not in (torch.int32, torch.int64):
        raise ConfigError(f"{method.name}: rows must be a non-empty 1-d integer tensor (one theta row per "
                          f"example), got {tuple(rows.shape)} {rows.dtype}")
    if int(rows.min()) < 0 or int(rows.max()) >= theta.shape[0]:
        raise ConfigError(f"{method.name}: rows must lie in [0, {theta.shape[0]}) (the rows of theta), got "
                          f"{int(rows.min())} to {int(rows.max())}")
    return rows.long()


class FlatParameters(torch.nn.Module):
    """A trainable theta: one flat vector whose layout slices are this module's parameters (views into it).

    Binding it hands the slices to the method directly, so each slice's gradient lands in its own parameter as
    in plain PyTorch, instead of being concatenated into a D-sized gradient on every step (which costs as much
    as a third of a full fine-tuning step). The optimiser updates the slices in place, i.e. the flat vector.
    ``state_dict`` holds the flat vector as ``theta``.
    """

    def __init__(self, theta: torch.Tensor, layout: Layout):
        super().__init__()
        if theta.shape != (layout.size,):
            raise ConfigError(f"theta must have shape [{layout.size}], got {tuple(theta.shape)}")
        self.layout = layout
        self.flat = theta.detach().clone()
        self.slices = torch.nn.ParameterList(torch.nn.Parameter(v) for v in layout.unflatten(self.flat).values())

    def views(self) -> dict[str, torch.Tensor]:
        return {s.name: p for s, p in zip(self.layout.slices, self.slices)}

    @property
    def theta(self) -> torch.Tensor:
        """The current theta (shares memory with the parameters; detached)."""
        return self.flat

    def state_dict(self, *args, **kwargs):  # noqa: D102 - one flat tensor, not one entry per slice
        return {"theta": self.flat.detach().clone()}

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # noqa: D102
        with torch.no_grad():
            self.flat.copy_(state_dict["theta"])


@dataclass
class MethodConfig(Config):
    """Base of the per-method configuration dataclasses (fields declared with :func:`taskspace.config.option`).
    Values are checked against the backbone by the method's ``validate``."""


class DeltaMethod:
    """Base class: subclasses set ``name``, ``config_class`` and implement ``_entries``, ``_install``, ``init``."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    #: The learning rate a run of this method uses unless told otherwise (few-shot, batch 8, a few hundred steps).
    default_lr: ClassVar[float] = 1e-3
    supports_per_example: ClassVar[bool] = True
    #: Whether some theta leaves the backbone's outputs exactly unchanged (LoRA with B = 0, adapters with W_up = 0,
    #: BitFit / fine-tuning at 0). Prompt and prefix tuning always change the computation.
    has_neutral: ClassVar[bool] = False
    #: With a neutral value: the suffixes of the slices whose being zero alone makes theta neutral (LoRA's B,
    #: an adapter's W_up); empty means every slice must be zero.
    neutral_slices: ClassVar[tuple[str, ...]] = ()

    def __init__(self, backbone: Backbone, config: MethodConfig | None = None):
        config = self.config_class() if config is None else config
        if not isinstance(config, self.config_class):
            raise ConfigError(f"{self.name} expects a {self.config_class.__name__}, got {type(config).__name__}")
        self.backbone = backbone
        self.config = config
        self.validate()
        self.layout = Layout(self._entries())
        if self.layout.size == 0:
            raise ConfigError(f"{self.name} with {config} has no parameters on backbone {backbone.name}")

    @property
    def size(self) -> int:
        return self.layout.size

    def validate(self) -> None:
        """Check the configuration against the backbone; raise ConfigError naming the option."""

    def _entries(self) -> list[tuple[str, tuple[int, ...]]]:
        raise NotImplementedError

    def _install(self, views: dict[str, torch.Tensor], per_example: bool) -> list:
        """Register the backbone injections for unflattened ``views``; return their handles."""
        raise NotImplementedError

    def _install_rows(self, views: dict[str, torch.Tensor], rows: torch.Tensor) -> list:
        """Install a per-example theta given as its distinct rows (``views`` of ``[K, ...]``) and each example's
        row (``rows``, ``[B]``). By default every example gets its own copy of its row; a method that can compute
        each distinct row once over its examples (LoRA) overrides this."""
        return self._install({name: v.index_select(0, rows) for name, v in views.items()}, True)

    def init(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """A freshly initialised theta ``[D]`` (float32, on the backbone's device); ``generator`` is a CPU
        generator, so the same seed gives the same theta on every device."""
        theta = torch.zeros(self.size)
        self._fill_init(theta, generator)
        return theta.to(self.backbone.device)

    def _fill_init(self, theta: torch.Tensor, generator: torch.Generator | None) -> None:
        """Write the initial values into the zero CPU vector ``theta`` (default: all zeros)."""

    def neutral(self) -> torch.Tensor:
        """A theta that leaves the backbone's outputs exactly unchanged (zeros for the methods that have one)."""
        if not self.has_neutral:
            raise ConfigError(f"{self.name} has no neutral value: any {self.name} theta changes the computation")
        return torch.zeros(self.size, device=self.backbone.device)

    def is_neutral(self, theta: torch.Tensor) -> bool:
        """Whether ``theta`` (``[D]``) leaves the backbone's outputs exactly unchanged."""
        if not self.has_neutral:
            return False
        if not self.neutral_slices:
            return not bool(theta.any())
        views = self.layout.unflatten(theta)
        return not any(bool(v.any()) for name, v in views.items() if name.endswith(self.neutral_slices))

    def bind(self, theta: "torch.Tensor | FlatParameters", rows: torch.Tensor | None = None) -> Binding:
        """Within the returned context the backbone computes with this delta; theta is [D], [B, D] or the
        trainable :class:`FlatParameters`. With ``rows`` (``[B]`` integers), theta ``[K, D]`` holds K distinct
        thetas and example i computes with ``theta[rows[i]]`` (several tasks in one batch: the same result as
        binding ``theta[rows]``, without a copy per example where the method can avoid it)."""
        return Binding(self, theta, rows)

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "config": self.config.to_dict(), "size": self.size}



#: Registry: method name -> DeltaMethod subclass (each method's module registers it with :func:`register`).
METHODS: Registry[type[DeltaMethod]] = Registry("method")
register = METHODS.register


def kaiming_uniform_(t: torch.Tensor, fan_in: int, generator: torch.Generator | None) -> torch.Tensor:
    """nn.Linear's default initialisation (kaiming-uniform with a = sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return t.uniform_(-bound, bound, generator=generator)


def add_to_output(out: torch.Tensor, delta: torch.Tensor, offset: int, width: int) -> torch.Tensor:
    """``out`` with ``delta`` added to its last-dimension slice ``[offset, offset + width)``."""
    total = out.shape[-1]
    if offset == 0 and width == total:
        return out + delta
    return out + torch.nn.functional.pad(delta, (offset, total - offset - width))
