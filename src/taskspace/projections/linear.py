"""A linear projection ``x -> x W^T + b``: learnt, or random and frozen when seeded."""

from __future__ import annotations

import torch

from ..errors import ConfigError
from .base import (
    Projection,
    check_positive,
    default_init_,
    make_generator,
    new_linear,
    register,
)

INITS = ("default", "normal", "zeros")


@register
class LinearProjection(Projection):
    """One ``nn.Linear(d_in, d_out, bias)``.

    ``init``: ``"default"`` (nn.Linear's U(-1/sqrt(d_in), 1/sqrt(d_in)) for weight and bias), ``"normal"``
    (weight N(0, std^2), bias zero) or ``"zeros"``. With ``seed`` the random values are drawn from
    ``torch.Generator().manual_seed(seed)`` (weight first, then bias), so a random frozen projection is rebuilt
    exactly from its config; without it they come from the global RNG.
    """

    kind = "linear"

    def __init__(self, d_in: int, d_out: int, bias: bool = True, init: str = "default", std: float = 0.02,
                 seed: int | None = None):
        check_positive(d_in, "d_in")
        check_positive(d_out, "d_out")
        if init not in INITS:
            raise ConfigError(f"init={init!r}: expected one of {', '.join(INITS)}")
        if not isinstance(std, (int, float)) or isinstance(std, bool) or std < 0:
            raise ConfigError(f"std={std!r}: expected a non-negative number")
        arguments = {"d_in": d_in, "d_out": d_out, "bias": bool(bias), "init": init, "std": float(std), "seed": seed}
        super().__init__(d_in, d_out, arguments)
        generator = make_generator(seed)
        self.linear = new_linear(d_in, d_out, bool(bias))
        with torch.no_grad():
            if init == "default":
                default_init_(self.linear, generator)
            elif init == "normal":
                self.linear.weight.normal_(0.0, float(std), generator=generator)
                if self.linear.bias is not None:
                    self.linear.bias.zero_()
            else:
                self.linear.weight.zero_()
                if self.linear.bias is not None:
                    self.linear.bias.zero_()

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)
