"""Projections between an intrinsic vector z ∈ R^d and a flat delta vector theta ∈ R^D (and back).

Up-projections: :class:`LinearProjection`, IPT's :class:`IPTDecoder`, UDT's :class:`UDTUp`, and the random
:class:`Fastfood` transform of all weights; down-projections: :class:`IPTEncoder`, :class:`UDTDown`.
``build_projection(p.config())`` rebuilds any of them (see :mod:`.base`).
"""

from __future__ import annotations

from .base import PROJECTIONS, Projection, build_projection, register
from .fastfood import Fastfood, fwht, hadamard
from .linear import LinearProjection
from .mlp import IPTDecoder, IPTEncoder, UDTDown, UDTUp

__all__ = [
    "PROJECTIONS",
    "Fastfood",
    "IPTDecoder",
    "IPTEncoder",
    "LinearProjection",
    "Projection",
    "UDTDown",
    "UDTUp",
    "build_projection",
    "fwht",
    "hadamard",
    "register",
]
