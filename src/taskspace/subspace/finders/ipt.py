"""Intrinsic Prompt Tuning's multi-task subspace finding (MSF), and IPT's random baseline.

MSF fits an auto-encoder to the bank's solutions of the training tasks: ``Proj`` (one linear layer R^D -> R^d)
and ``Proj_b`` (Linear(d -> h) -> tanh -> Linear(h -> D), the decoder that IST later keeps). The loss of a
batch mixing tasks is the task loss computed with each example's *reconstructed* theta plus
``alpha`` x the reconstruction error (mean squared error over elements, as in the paper's code):

    L = task_loss(Proj_b(Proj(theta_{task(i)})) for the batch) + alpha * MSE(Proj_b(Proj(theta)), theta)

``alpha`` = 200 balances the reconstruction against the task loss of the original code: label-smoothed (0.1)
and summed over the batch's tokens (``lm_loss="code"``, the default). ``lm_loss="mean"`` takes the mean token
loss per example, unsmoothed, averaged over the batch, which makes the reconstruction term weigh some 10^2-10^3
times more at the same alpha.

It works for any method (IPT with prompts, "IPT (Adapter)" with adapters, even full fine-tuning on a small
model): the decoder outputs that method's theta. The anchor is zero (the auto-encoder reconstructs theta itself,
as IPT does).

The random baseline (``random-ae``) is the same decoder, randomly initialised (seeded) and never trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ...config import Config, at_least, non_negative, option
from ...deltas import METHODS
from ...projections import IPTDecoder, IPTEncoder
from ...train import TrainConfig
from ..multitask import mixed_loss
from ..space import MethodSpace, Subspace
from .base import FitData, Finder, register


#: lm_loss -> (label smoothing, token reduction) of MSF's task loss.
LM_LOSSES = {"code": (0.1, "sum"), "mean": (0.0, "mean")}


@dataclass
class MSFConfig(Config):
    method: str = option("prompt", "the method whose solutions are auto-encoded", choices=METHODS)
    d: int = option(100, "intrinsic dimension", check=at_least(1))
    hidden: int = option(768, "hidden size of the decoder", check=at_least(1))
    alpha: float = option(200.0, "weight of the reconstruction loss", check=non_negative)
    lm_loss: str = option("code", "the task loss alpha balances: code (IPT's code: label-smoothed 0.1, summed over "
                                  "the batch's tokens) or mean (the mean token loss, unsmoothed)",
                          choices=LM_LOSSES)
    seed: int = option(0, "seed of the encoder (the decoder's is seed + 1) and of the data order")
    train: TrainConfig = option(help="training settings",
                                factory=lambda: TrainConfig(lr=1e-3, steps=300, eval_every=100))


class AutoEncoder(nn.Module):
    def __init__(self, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(theta))


@register
class MSF(Finder):
    name = "ipt"
    config_class = MSFConfig
    summary = "IPT's multi-task subspace finding: an auto-encoder of a bank's solutions of one method"
    needs_bank = True

    def fit(self, data: FitData, work_dir: str | Path | None = None) -> Subspace:
        c = self.config
        backbone = data.backbone
        data.require_bank(self.name)
        method = data.method(c.method)
        tasks = data.multitask()
        thetas, _ = data.solutions(c.method)
        D = method.size
        ae = AutoEncoder(IPTEncoder(D, c.d, seed=c.seed), IPTDecoder(c.d, D, c.hidden, seed=c.seed + 1))
        ae.to(backbone.device)

        def loss_fn(examples, targets):
            index = tasks.index(examples, backbone.device)
            rows = thetas[index]
            recon = ae(rows)
            smoothing, tokens = LM_LOSSES[c.lm_loss]
            task_loss = mixed_loss(backbone, method, examples, targets, index, lambda r: recon[r],
                                   label_smoothing=smoothing, tokens=tokens)
            return task_loss + c.alpha * (recon - rows).square().mean()

        def dev_score() -> float:
            return tasks.mean_dev_score(backbone, method, lambda i: ae(thetas[i]), data.eval_batch_size)

        result = self._train(ae, loss_fn, tasks, dev_score, backbone, work_dir)
        anchor = torch.zeros(D, device=backbone.device)
        space = MethodSpace(method, anchor, ae.decoder.freeze(), ae.encoder.freeze())
        return Subspace(self.name, c.d, {c.method: space}, backbone, info=self.info(data, result))


@dataclass
class RandomAEConfig(Config):
    method: str = option("prompt", "the method the decoder outputs", choices=METHODS)
    d: int = option(100, "intrinsic dimension", check=at_least(1))
    hidden: int = option(768, "hidden size of the decoder", check=at_least(1))
    seed: int = option(0, "seed of the decoder's random weights")


@register
class RandomAutoEncoder(Finder):
    name = "random-ae"
    config_class = RandomAEConfig
    summary = "IPT's random baseline: the auto-encoder's decoder, randomly initialised and never trained"
    needs_tasks = False

    def fit(self, data: FitData, work_dir: str | Path | None = None) -> Subspace:
        c = self.config
        method = data.method(c.method)
        decoder = IPTDecoder(c.d, method.size, c.hidden, seed=c.seed).to(data.backbone.device).freeze()
        anchor = torch.zeros(method.size, device=data.backbone.device)
        return Subspace(self.name, c.d, {c.method: MethodSpace(method, anchor, decoder)}, data.backbone,
                        info={"config": c.identity()})
