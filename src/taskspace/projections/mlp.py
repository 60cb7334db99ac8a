"""The papers' small networks as one :class:`MLP`: IPT's auto-encoder halves (SPEC §3) and UDT's down- and
up-projections (SPEC §4) are named factories of it.

Every layer starts with nn.Linear's default initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and
bias. With ``seed`` the values are drawn from ``torch.Generator().manual_seed(seed)`` in forward order (first layer
weight, its bias, second layer weight, its bias, ...), so a random (untrained) network is rebuilt exactly from its
config; trained ones are restored with ``load_state_dict``.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..errors import ConfigError
from .base import Projection, check_positive, default_init_, make_generator, new_linear, register

ACTIVATIONS = {"tanh": torch.tanh}


@register
class MLP(Projection):
    """``Linear(sizes[0] -> sizes[1]) -> act -> Linear(sizes[1] -> sizes[2]) -> act -> ...`` (no activation after
    the last layer); ``bias`` for every layer or none."""

    kind = "mlp"

    def __init__(self, sizes: Sequence[int], activation: str | None = "tanh", bias: bool = True,
                 seed: int | None = None):
        sizes = [int(check_positive(s, "size")) for s in sizes]
        if len(sizes) < 2:
            raise ConfigError(f"an MLP needs at least two sizes (input and output), got {sizes}")
        if activation is not None and activation not in ACTIVATIONS:
            raise ConfigError(f"activation={activation!r}: expected one of {', '.join(ACTIVATIONS)} or none")
        super().__init__(sizes[0], sizes[-1], {"sizes": sizes, "activation": activation, "bias": bool(bias),
                                               "seed": seed})
        generator = make_generator(seed)
        self.layers = torch.nn.ModuleList(default_init_(new_linear(i, o, bias), generator)
                                          for i, o in zip(sizes[:-1], sizes[1:]))
        self.activation = activation

    def project(self, x: torch.Tensor) -> torch.Tensor:
        act = ACTIVATIONS[self.activation] if self.activation is not None else None
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if act is not None and i < len(self.layers) - 1:
                x = act(x)
        return x


# The papers' networks ------------------------------------------------------------------------------------------


def IPTDecoder(d: int, D: int, hidden: int = 768, seed: int | None = None) -> MLP:
    """IPT's back-projection Proj_b: ``Linear(d -> hidden) -> tanh -> Linear(hidden -> D)``, biases on."""
    _check(d=d, D=D, hidden=hidden)
    return MLP([d, hidden, D], "tanh", True, seed)


def IPTEncoder(D: int, d: int, seed: int | None = None) -> MLP:
    """IPT's projection Proj: one ``Linear(D -> d)`` with bias."""
    _check(D=D, d=d)
    return MLP([D, d], None, True, seed)


def UDTDown(D: int, y: int, seed: int | None = None) -> MLP:
    """UDT's down-projection: ``Linear(D -> y) -> tanh -> Linear(y -> y)``, no biases."""
    _check(D=D, y=y)
    return MLP([D, y, y], "tanh", False, seed)


def UDTUp(y: int, D: int, seed: int | None = None) -> MLP:
    """UDT's up-projection: ``Linear(y -> D)``, no bias."""
    _check(y=y, D=D)
    return MLP([y, D], None, False, seed)


def _check(**sizes: int) -> None:
    """Each size checked under the name the caller used (``d``, ``D``, ``y``, ``hidden``)."""
    for name, value in sizes.items():
        check_positive(value, name)
