"""A linear subspace of a bank: the principal directions of one method's solutions around their mean.

Not in the papers: it asks whether MSF's non-linear auto-encoder is needed, with the same bank and the same d.
With the bank's solutions of the n training tasks (rows of X, ``[n, D]``), their mean mu and the thin SVD of the
centred rows, ``X - mu = P S V^T``, the subspace of dimension d is

    theta = mu + V_d diag(s_d / sqrt(n)) z

``V_d``: the top-d right singular vectors (orthonormal directions in R^D), ``s_d`` their singular values. The scale
makes one unit of a coordinate of z one standard deviation of the bank along its direction: the training tasks'
own codes ``z_i = diag(sqrt(n) / s_d) V_d^T (theta_i - mu)`` have mean 0 and mean square 1 in every coordinate.
So IST's start z ~ N(0, 0.02^2) lies at the bank's mean, the solutions it was fitted to lie at |z_j| of about 1,
and a per-element optimiser's step of lr moves theta by lr standard deviations along each direction alike, however
unequal the bank's spread along them. The down-projection is that code map (the up-projection's pseudo-inverse),
so ``up(down(theta - mu))`` is theta's orthogonal projection onto the subspace (fit-subspace's reconstruction
tables).

The fit is exact and deterministic: one SVD in float64 on the CPU, each direction's sign fixed so that its
largest-magnitude entry is positive. n solutions span at most n - 1 directions around their mean, so a larger d
is refused, as is a d beyond the directions the solutions actually span (identical solutions span fewer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from ...config import Config, at_least, option
from ...deltas import METHODS
from ...errors import ConfigError
from ...projections import LinearProjection
from ..space import MethodSpace, Subspace
from .base import FitData, Finder, register


@dataclass
class LinearConfig(Config):
    method: str = option("prompt", "the method whose solutions are fitted", choices=METHODS)
    d: int = option(100, "intrinsic dimension: how many principal directions of the bank are kept", check=at_least(1))


def principal_directions(thetas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean ``[D]``, directions ``[D, k]`` with orthonormal columns, singular values ``[k]`` in descending order)
    of the rows of ``thetas`` ``[n, D]`` around their mean, ``k = min(n, D)``; in float64 on the CPU, each
    direction's sign fixed so that its largest-magnitude entry is positive (the SVD leaves the sign open)."""
    rows = thetas.detach().to("cpu", torch.float64)
    mean = rows.mean(0)
    _, singular, vh = torch.linalg.svd(rows - mean, full_matrices=False)
    directions = vh.T
    largest = directions.abs().argmax(0)
    signs = torch.sign(directions[largest, torch.arange(directions.shape[1])])
    return mean, directions * signs, singular


def spanned(singular: torch.Tensor, thetas: torch.Tensor) -> int:
    """How many of ``singular`` (the centred ``thetas``' singular values) stand above the rounding of the stored
    numbers: rounding each entry of ``thetas`` to its dtype moves the matrix by at most eps x its Frobenius norm,
    so a singular value below that could be rounding alone (centring does not enlarge it)."""
    norm = float(torch.linalg.vector_norm(thetas.detach().to("cpu", torch.float64)))
    tolerance = torch.finfo(thetas.dtype).eps * norm
    return int((singular > tolerance).sum())


@register
class Linear(Finder):
    name = "linear"
    config_class = LinearConfig
    summary = ("a linear subspace: the top-d principal directions of a bank's solutions of one method around their "
               "mean (exact SVD; not in the papers)")
    needs_bank = True

    def fit(self, data: FitData, work_dir: str | Path | None = None) -> Subspace:
        c = self.config
        data.require_bank(self.name)
        method = data.method(c.method)
        thetas, _ = data.solutions(c.method)
        n = thetas.shape[0]
        if c.d > n - 1:
            raise ConfigError(f"d={c.d}: {n} {c.method} solutions span at most {n - 1} directions around their mean; "
                              f"choose d <= {n - 1} or fit to more training tasks")
        mean, directions, singular = principal_directions(thetas)
        rank = spanned(singular, thetas)
        if c.d > rank:
            raise ConfigError(f"d={c.d}: the {n} {c.method} solutions span only {rank} directions around their mean "
                              f"(the others are rounding); choose d <= {rank}")
        scale = singular[:c.d] / math.sqrt(n)
        up = LinearProjection(c.d, method.size, bias=False, init="zeros")
        down = LinearProjection(method.size, c.d, bias=False, init="zeros")
        with torch.no_grad():
            up.linear.weight.copy_(directions[:, :c.d] * scale)
            down.linear.weight.copy_((directions[:, :c.d] / scale).T)
        device = data.backbone.device
        explained = singular.square() / singular.square().sum()
        info = {**self.info(data), "singular_values": singular[:c.d].tolist(),
                "explained_variance": explained[:c.d].tolist(), "explained_total": float(explained[:c.d].sum()),
                "scale": "one unit of z_j is one standard deviation of the solutions along direction j "
                         "(singular value / sqrt(n))"}
        space = MethodSpace(method, mean.to(device=device, dtype=thetas.dtype), up.to(device).freeze(),
                            down.to(device).freeze())
        return Subspace(self.name, c.d, {c.method: space}, data.backbone, info=info)
