"""Subspaces of delta-tuning solutions: banks, finders (IPT, the unified delta-tuning subspace, its shared
variant, random baselines, a linear subspace of a bank), tuning inside a subspace, and transfer between methods."""

from .bank import Bank, BankEntry, BankSpec, build_bank
from .finders import (FINDERS, FastfoodConfig, Finder, FitData, LinearConfig, MSFConfig, RandomAEConfig, SharedConfig,
                      UnifiedConfig, build_finder, finder_class, fit_subspace, mixing_weights)
from .multitask import MultiTask, mixed_loss
from .space import MethodSpace, ProjectedTheta, Subspace
from .transfer import transfer
from .tune import SubspaceTuneConfig, load_z, subspace_tune

__all__ = [
    "Bank",
    "BankEntry",
    "BankSpec",
    "FINDERS",
    "FastfoodConfig",
    "Finder",
    "FitData",
    "LinearConfig",
    "MSFConfig",
    "MethodSpace",
    "MultiTask",
    "ProjectedTheta",
    "RandomAEConfig",
    "SharedConfig",
    "Subspace",
    "SubspaceTuneConfig",
    "UnifiedConfig",
    "build_bank",
    "build_finder",
    "finder_class",
    "fit_subspace",
    "load_z",
    "mixed_loss",
    "mixing_weights",
    "subspace_tune",
    "transfer",
]
