"""Prompt tuning (Lester et al. 2021): n trainable soft tokens prepended to the input embeddings.

For encoder-decoder backbones the prompt goes before the encoder input; for decoder-only backbones before the
input text; for encoders before the ``[CLS]`` token (and it is excluded from pooling).

theta layout: ``prompt [n_tokens, d]`` (row i is the i-th virtual token). Initialisation: N(0, init_std²)
(IPT: 100 tokens, std 0.02); ``init=vocab``: the embeddings of randomly drawn vocabulary tokens; ``init=text``:
the embeddings of the tokens of ``init_text`` (repeated, then cut, to n_tokens; peft's TEXT initialisation,
Lester et al.'s initialisation from words that describe the task).
There is no neutral theta: any prompt changes the computation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ConfigError
from ..config import option
from .base import DeltaMethod, MethodConfig, register


@dataclass
class PromptConfig(MethodConfig):
    n_tokens: int = option(20, "number of soft prompt tokens n")
    init: str = option("normal", "initialisation: normal (N(0, init_std^2)), vocab (random token embeddings) or "
                                 "text (the embeddings of init_text's tokens)")
    init_std: float = option(0.02, "standard deviation of the normal initialisation")
    init_text: str = option("", "with init=text: the text whose token embeddings start the prompt (repeated, then "
                                "cut, to n_tokens)", since="0.2")


@register
class PromptTuning(DeltaMethod):
    """Prompt tuning: soft tokens prepended to the input embeddings."""

    name = "prompt"
    default_lr = 0.3  # docs/budget.md: 0.03 left every swept task far behind on SmolLM2
    config_class = PromptConfig

    def validate(self) -> None:
        c = self.config
        if c.n_tokens < 1:
            raise ConfigError(f"prompt n_tokens={c.n_tokens}: expected at least one token")
        if c.init not in ("normal", "vocab", "text"):
            raise ConfigError(f"prompt init={c.init!r}: expected 'normal', 'vocab' or 'text'")
        if (c.init == "text") != bool(c.init_text):
            raise ConfigError("prompt init_text: give it with init=text, and only then (it is the text whose token "
                              "embeddings start the prompt)")
        if c.init == "text" and not self._text_ids():
            raise ConfigError(f"prompt init_text={c.init_text!r}: the tokenizer makes no tokens of it")
        if c.init_std <= 0:
            raise ConfigError(f"prompt init_std={c.init_std}: expected a positive number")

    def _entries(self):
        return [("prompt", (self.config.n_tokens, self.backbone.hidden_size))]

    def _fill_init(self, theta, generator):
        c = self.config
        if c.init == "normal":
            theta.normal_(0.0, c.init_std, generator=generator)
            return
        table = self.backbone.model.get_input_embeddings().weight
        if c.init == "text":
            ids = self._text_ids()
            pick = torch.tensor((ids * -(-c.n_tokens // len(ids)))[: c.n_tokens])
        else:
            special = set(self.backbone.tokenizer.all_special_ids)
            candidates = torch.tensor([i for i in range(table.shape[0]) if i not in special])
            pick = candidates[torch.randint(len(candidates), (c.n_tokens,), generator=generator)]
        theta.copy_(table.detach()[pick.to(table.device)].float().reshape(-1).cpu())

    def _text_ids(self) -> list[int]:
        return list(self.backbone.tokenizer(self.config.init_text, add_special_tokens=False)["input_ids"])

    def _install(self, views, per_example):
        prompt = views["prompt"]

        def prefix(_batch: int) -> torch.Tensor:
            return self.backbone.rows(prompt) if per_example else prompt.unsqueeze(0)

        return [self.backbone.add_input_prefix(prefix)]
