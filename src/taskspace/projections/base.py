"""The common interface of projections: differentiable maps between an intrinsic vector and a flat delta vector.

A :class:`Projection` maps ``x`` of shape ``[d_in]`` or ``[B, d_in]`` to ``[d_out]`` or ``[B, d_out]``. Up-projections
map an intrinsic vector ``z ∈ R^d`` to ``theta ∈ R^D``; down-projections (IPT's encoder, UDT's ``Linear -> tanh ->
Linear``) map ``theta`` back to ``R^d``.

``projection.config()`` is a JSON-serialisable dict (``kind`` and every constructor argument, seeds included) and
``build_projection(config)`` rebuilds the module: seeded random weights come back identical, trained parameters are
restored with ``load_state_dict``. Every kind registers itself in :data:`PROJECTIONS` with :func:`register`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from ..errors import ConfigError
from ..registry import Registry

#: Registry: kind name -> Projection subclass.
PROJECTIONS: Registry[type[Projection]] = Registry("projection kind", key="kind")
register = PROJECTIONS.register


class Projection(torch.nn.Module):
    """Base class: a map ``[d_in]`` / ``[B, d_in]`` -> ``[d_out]`` / ``[B, d_out]``.

    Subclasses set ``kind``, call ``super().__init__(d_in, d_out, arguments)`` with a dict of every constructor
    argument (recorded for :meth:`config`), and implement :meth:`project`, which receives a tensor whose last
    dimension is ``d_in`` (the shape has already been checked). Subclasses validate their own arguments first, so
    that an error names the option as the caller spelt it (``d``, ``D``, ``y``).
    """

    kind: ClassVar[str] = ""

    def __init__(self, d_in: int, d_out: int, arguments: Mapping[str, Any] | None = None):
        super().__init__()
        self.d_in = check_positive(d_in, "d_in")
        self.d_out = check_positive(d_out, "d_out")
        self._arguments = dict(arguments or {})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() not in (1, 2) or x.shape[-1] != self.d_in:
            raise ConfigError(
                f"{type(self).__name__}: input must have shape [{self.d_in}] or [batch, {self.d_in}], "
                f"got {tuple(x.shape)}"
            )
        return self.project(x)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """``{"kind": ..., <every constructor argument>}``, JSON-serialisable."""
        return {"kind": self.kind, **{k: _jsonable(v) for k, v in self._arguments.items()}}

    def freeze(self):
        """Stop gradients to every parameter (``requires_grad = False``); returns ``self``."""
        for p in self.parameters():
            p.requires_grad_(False)
        return self

    def extra_repr(self) -> str:
        return f"d_in={self.d_in}, d_out={self.d_out}"


def build_projection(config: Mapping[str, Any]) -> Projection:
    """Rebuild a projection from :meth:`Projection.config` (trained parameters: ``load_state_dict`` afterwards)."""
    if not isinstance(config, Mapping) or "kind" not in config:
        raise ConfigError(f"a projection config must be a dict with a 'kind', got {config!r}")
    kind = config["kind"]
    cls = PROJECTIONS.lookup(kind)
    arguments = {k: v for k, v in config.items() if k != "kind"}
    names = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(arguments) - names)
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown} for projection {kind!r}; valid: {sorted(names)}")
    return cls(**arguments)


def check_positive(value: Any, name: str) -> int:
    """``value`` as an int >= 1, else a ConfigError naming the option."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}={value!r}: expected a positive integer")
    return int(value)


def make_generator(seed: int | None) -> torch.Generator | None:
    """A CPU generator seeded with ``seed`` (None: use the global RNG). CPU, so a seed gives the same numbers on
    every device; the caller moves the weights."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed={seed!r}: expected an integer or None")
    return torch.Generator().manual_seed(seed)


def new_linear(d_in: int, d_out: int, bias: bool) -> torch.nn.Linear:
    """An ``nn.Linear`` without its (discarded) default initialisation; fill it with :func:`default_init_`."""
    return torch.nn.utils.skip_init(torch.nn.Linear, d_in, d_out, bias=bias)


@torch.no_grad()
def default_init_(linear: torch.nn.Linear, generator: torch.Generator | None) -> torch.nn.Linear:
    """``nn.Linear``'s default initialisation, weight then bias, both U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (what
    kaiming-uniform with a = sqrt(5) amounts to), drawn from ``generator`` (None: the global RNG)."""
    bound = 1.0 / math.sqrt(linear.in_features)
    linear.weight.uniform_(-bound, bound, generator=generator)
    if linear.bias is not None:
        linear.bias.uniform_(-bound, bound, generator=generator)
    return linear


def _jsonable(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, Mapping):
        return {k: _jsonable(x) for k, x in v.items()}
    return v

