"""Projections between an intrinsic vector z ∈ R^d and a flat delta vector theta ∈ R^D (and back).

Up-projections: :class:`LinearProjection`, the :class:`MLP` (IPT's decoder :func:`IPTDecoder` and UDT's
:func:`UDTUp` are named factories of it), and the random :class:`Fastfood` transform of all weights;
down-projections: the MLPs :func:`IPTEncoder` and :func:`UDTDown`.
``build_projection(p.config())`` rebuilds any of them (see :mod:`.base`).
"""

from __future__ import annotations

from .base import PROJECTIONS, Projection, build_projection, register
from .fastfood import FWHT_BACKENDS, Fastfood, fwht, hadamard, kernel_fwht, set_fwht_backend
from .linear import LinearProjection
from .mlp import MLP, IPTDecoder, IPTEncoder, UDTDown, UDTUp

__all__ = [
    "FWHT_BACKENDS",
    "PROJECTIONS",
    "Fastfood",
    "IPTDecoder",
    "IPTEncoder",
    "LinearProjection",
    "MLP",
    "Projection",
    "UDTDown",
    "UDTUp",
    "build_projection",
    "fwht",
    "hadamard",
    "kernel_fwht",
    "register",
    "set_fwht_backend",
]
