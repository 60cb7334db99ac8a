"""Analysis of subspaces and their solutions: relative performance tables."""

from .relative import Table, gain_kept, mean, mean_interval, ratio, relative_mean, relative_table, transfer_matrix

__all__ = ["Table", "gain_kept", "mean", "mean_interval", "ratio", "relative_mean", "relative_table", "transfer_matrix"]
