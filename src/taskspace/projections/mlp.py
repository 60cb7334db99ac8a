"""The papers' small networks: IPT's auto-encoder halves (SPEC §3) and UDT's down- and up-projections (SPEC §4).

Every layer starts with nn.Linear's default initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and
bias. With ``seed`` the values are drawn from ``torch.Generator().manual_seed(seed)`` in forward order (first layer
weight, its bias, second layer weight, its bias), so a random (untrained) network is rebuilt exactly from its
config; trained ones are restored with ``load_state_dict``.
"""

from __future__ import annotations

import torch

from .base import (
    Projection,
    check_positive,
    default_init_,
    make_generator,
    new_linear,
    register,
)


def _layers(sizes: list[tuple[int, int]], bias: bool, seed: int | None) -> list[torch.nn.Linear]:
    generator = make_generator(seed)
    return [default_init_(new_linear(i, o, bias), generator) for i, o in sizes]


@register
class IPTDecoder(Projection):
    """IPT's back-projection Proj_b: ``Linear(d -> hidden) -> tanh -> Linear(hidden -> D)``, biases on."""

    kind = "ipt_decoder"

    def __init__(self, d: int, D: int, hidden: int = 768, seed: int | None = None):
        check_positive(d, "d")
        check_positive(D, "D")
        check_positive(hidden, "hidden")
        super().__init__(d, D, {"d": d, "D": D, "hidden": hidden, "seed": seed})
        self.first, self.second = _layers([(d, hidden), (hidden, D)], True, seed)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(torch.tanh(self.first(x)))


@register
class IPTEncoder(Projection):
    """IPT's projection Proj: one ``Linear(D -> d)`` with bias."""

    kind = "ipt_encoder"

    def __init__(self, D: int, d: int, seed: int | None = None):
        check_positive(D, "D")
        check_positive(d, "d")
        super().__init__(D, d, {"D": D, "d": d, "seed": seed})
        (self.linear,) = _layers([(D, d)], True, seed)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


@register
class UDTDown(Projection):
    """UDT's down-projection: ``Linear(D -> y) -> tanh -> Linear(y -> y)``, no biases."""

    kind = "udt_down"

    def __init__(self, D: int, y: int, seed: int | None = None):
        check_positive(D, "D")
        check_positive(y, "y")
        super().__init__(D, y, {"D": D, "y": y, "seed": seed})
        self.first, self.second = _layers([(D, y), (y, y)], False, seed)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(torch.tanh(self.first(x)))


@register
class UDTUp(Projection):
    """UDT's up-projection: ``Linear(y -> D)``, no bias."""

    kind = "udt_up"

    def __init__(self, y: int, D: int, seed: int | None = None):
        check_positive(y, "y")
        check_positive(D, "D")
        super().__init__(y, D, {"y": y, "D": D, "seed": seed})
        (self.linear,) = _layers([(y, D)], False, seed)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)
