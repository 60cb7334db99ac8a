"""Subspaces of delta-tuning solutions: banks, IPT, the unified delta-tuning subspace, tuning and transfer."""

from .bank import Bank, BankEntry, BankSpec, build_bank
from .ipt import MSFConfig, fastfood_subspace, fit_msf, random_autoencoder
from .multitask import MultiTask
from .space import MethodSpace, ProjectedTheta, Subspace
from .tune import SubspaceTuneConfig, load_z, subspace_tune, transfer
from .unified import SharedConfig, UnifiedConfig, fit_shared, fit_unified, mixing_weights

__all__ = [
    "Bank",
    "BankEntry",
    "BankSpec",
    "MSFConfig",
    "MethodSpace",
    "MultiTask",
    "ProjectedTheta",
    "SharedConfig",
    "Subspace",
    "SubspaceTuneConfig",
    "UnifiedConfig",
    "build_bank",
    "fastfood_subspace",
    "fit_msf",
    "fit_shared",
    "fit_unified",
    "load_z",
    "mixing_weights",
    "random_autoencoder",
    "subspace_tune",
    "transfer",
]
