"""Intrinsic Prompt Tuning (IPT): multi-task subspace finding (MSF) and its random baselines.

MSF fits an auto-encoder to the bank's solutions of the training tasks: ``Proj`` (one linear layer R^D -> R^d)
and ``Proj_b`` (Linear(d -> h) -> tanh -> Linear(h -> D), the decoder that IST later keeps). The loss of a
batch mixing tasks is the task loss computed with each example's *reconstructed* theta plus
``alpha`` x the reconstruction error (mean squared error over elements, as in the paper's code):

    L = mean_i task_loss(Proj_b(Proj(theta_{task(i)}))) + alpha * mean_i MSE(Proj_b(Proj(theta_{task(i)})), theta_{task(i)})

It works for any method (IPT with prompts, and "IPT (Adapter)" with adapters): the decoder outputs that method's
theta. The anchor is zero (the auto-encoder reconstructs theta itself, as IPT does).

Baselines: :func:`random_autoencoder` (the same decoder, randomly initialised and never trained) and
:func:`fastfood_subspace` (a random Fastfood projection of all backbone weights, Aghajanyan et al.'s DID/SAID).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..backbones import Backbone
from ..deltas import DeltaMethod, build_method
from ..projections import Fastfood, IPTDecoder, IPTEncoder
from ..train import TrainConfig, log_to, train
from .bank import Bank
from .multitask import MultiTask
from .space import MethodSpace, Subspace


@dataclasses.dataclass
class MSFConfig:
    d: int = 100
    hidden: int = 768
    alpha: float = 200.0
    seed: int = 0
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(lr=1e-3, steps=300, eval_every=100))


class AutoEncoder(nn.Module):
    def __init__(self, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(theta))


def fit_msf(
    bank: Bank,
    method_name: str,
    tasks: Sequence[str],
    config: MSFConfig,
    out_dir: str | Path,
    *,
    eval_batch_size: int = 32,
) -> Subspace:
    """Multi-task subspace finding on ``tasks``' bank solutions of ``method_name``; saves into ``out_dir``."""
    out_dir = Path(out_dir)
    backbone = bank.backbone
    method = bank.method(method_name)
    data = MultiTask.load(tasks, bank.spec.data_dir, k=bank.spec.k, seed=bank.spec.data_seed)
    data.check(backbone)
    thetas, _ = bank.stacked(tasks, method_name)
    thetas = thetas.to(backbone.device)
    D = method.size
    ae = AutoEncoder(IPTEncoder(D, config.d, seed=config.seed), IPTDecoder(config.d, D, config.hidden, seed=config.seed + 1))
    ae.to(backbone.device)

    def loss_fn(examples, targets):
        rows = thetas[data.index(examples, backbone.device)]
        recon = ae(rows)
        with method.bind(recon):
            task_loss = backbone.loss(backbone.collate(examples, targets)).mean()
        return task_loss + config.alpha * (recon - rows).square().mean()

    def dev_score() -> float:
        with torch.no_grad():
            recon = ae(thetas)
        scores = data.dev_scores(backbone, method, recon, eval_batch_size)
        return sum(scores.values()) / len(scores)

    result = train(ae, loss_fn, data.train_examples(), config.train, evaluate=dev_score, run_dir=out_dir / "fit",
                   backbone=backbone, log=log_to(out_dir / "fit" / "log.jsonl"))
    ae.load_state_dict(result.best_state)
    space = Subspace(
        "ipt", config.d,
        {method_name: MethodSpace(method, torch.zeros(D, device=backbone.device), ae.decoder.freeze(), ae.encoder.freeze())},
        backbone,
        info={"tasks": list(tasks), "bank": str(bank.root), "msf": _config_dict(config),
              "best_step": result.best_step, "dev_reconstructed": result.best_score},
    )
    space.save(out_dir)
    return space


def random_autoencoder(backbone: Backbone, method: DeltaMethod, d: int, *, hidden: int = 768, seed: int = 0) -> Subspace:
    """IPT's random baseline: the auto-encoder's decoder, randomly initialised (seeded) and never trained."""
    decoder = IPTDecoder(d, method.size, hidden, seed=seed).to(backbone.device).freeze()
    return Subspace("random-ae", d, {method.name: MethodSpace(method, torch.zeros(method.size, device=backbone.device),
                                                              decoder)}, backbone, info={"seed": seed})


def fastfood_subspace(backbone: Backbone, d: int, *, mode: str = "per_tensor", said: bool = False,
                      seed: int = 0) -> Subspace:
    """A random Fastfood subspace of all backbone weights (DID; SAID with per-tensor scales)."""
    method = build_method("finetune", backbone)
    shapes = [tuple(p.shape) for p in backbone.base_parameters.values()]
    proj = Fastfood(d, shapes, mode=mode, seed=seed, said=said).to(backbone.device).freeze()
    recipe = "fastfood-said" if said else "fastfood"
    return Subspace(recipe, d, {"finetune": MethodSpace(method, torch.zeros(method.size, device=backbone.device), proj)},
                    backbone, info={"seed": seed, "mode": mode, "said": said})


def _config_dict(config: Any) -> dict:
    d = dataclasses.asdict(config)
    if "train" in d:
        d["train"].pop("progress", None)
    return d
