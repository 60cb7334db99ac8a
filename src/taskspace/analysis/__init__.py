"""Analysis of subspaces and their solutions: relative performance tables."""

from .relative import Table, mean, ratio, relative_table

__all__ = ["Table", "mean", "ratio", "relative_table"]
