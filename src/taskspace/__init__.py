"""taskspace: delta-tuning methods as flat vectors, and the low-dimensional task subspaces they share."""

__version__ = "0.1.0"
