"""Encoder backbones (BERT family; the default is all-MiniLM-L6-v2): choose among a task's options.

An input is encoded by the backbone *with* the bound deltas, mean-pooled over its real tokens (virtual prompt
tokens excluded) and compared by cosine similarity to each option's embedding, computed by the *frozen*
backbone (cached per option text). ``similarity_scale`` turns cosines into logits; the loss is cross-entropy
over the example's options. This is the bi-encoder scoring that sentence encoders are trained for; tasks
without options cannot be expressed and are rejected.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..tasks.example import Example
from .base import Backbone, Batch


class EncoderBackbone(Backbone):
    family = "encoder"
    auto_class = "AutoModel"
    load_kwargs = {"add_pooling_layer": False}  # sentence embeddings pool the tokens themselves
    decode_modes = ("rank",)  # an encoder cannot generate: it chooses among a task's options

    @classmethod
    def default_max_input_length(cls, path: str, local: bool) -> int:
        # Sentence-transformers folders state the length the encoder was trained with.
        config = Path(path) / "sentence_bert_config.json"
        if local and config.is_file():
            return int(json.loads(config.read_text())["max_seq_length"])
        return super().default_max_input_length(path, local)

    def __init__(self, model, tokenizer, *, similarity_scale: float = 20.0, **options):
        options.setdefault("task_prefix", False)
        super().__init__(model, tokenizer, **options)
        if similarity_scale <= 0:
            raise ConfigError(f"similarity_scale={similarity_scale}: expected a positive number")
        self.similarity_scale = float(similarity_scale)
        self._option_cache: dict[str, torch.Tensor] = {}

    def describe(self) -> dict:
        return {**super().describe(), "similarity_scale": self.similarity_scale}

    def check_task(self, has_options: bool, task: str) -> None:
        if not has_options:
            raise ConfigError(
                f"task {task!r} has no options (it is generative); the encoder backbone {self.name!r} can only "
                "choose among options. Use a seq2seq or causal backbone for it."
            )

    # ------------------------------------------------------------------------------------------------------------
    def _tokenize(self, texts: Sequence[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.tokenizer(list(texts), max_length=max_length, truncation=True, padding=True, return_tensors="pt")
        return enc.input_ids.to(self.device), enc.attention_mask.to(self.device)

    def collate(self, examples: Sequence[Example], targets: Sequence[str] | None = None) -> Batch:
        examples = list(examples)
        for e in examples:
            self.check_task(e.has_options, e.task)
        targets = [e.target for e in examples] if targets is None else list(targets)
        gold = []
        for e, t in zip(examples, targets):
            if t not in e.options:
                raise ConfigError(f"target {t!r} of a {e.task!r} example is not one of its options {e.options!r}")
            gold.append(e.options.index(t))
        ids, mask = self._tokenize([self.format_input(e) for e in examples], self.max_input_length)
        tensors = {"input_ids": ids, "attention_mask": mask, "gold": torch.tensor(gold, device=self.device)}
        return Batch(examples, targets, tensors)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Unit-length mean-pooled embeddings ``[B, d]`` under the bound deltas."""
        embeds, full_mask, n = self._embed_inputs(input_ids, attention_mask)
        hidden = self.model(inputs_embeds=embeds, attention_mask=full_mask, return_dict=True).last_hidden_state
        hidden = hidden[:, n:]
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, dim=-1)

    @torch.no_grad()
    def option_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        """Frozen-backbone embeddings of option texts ``[K, d]`` (computed once per text)."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._option_cache))
        if missing:
            was_training = self.model.training
            self.model.eval()
            try:
                with self.suspended():
                    for start in range(0, len(missing), 64):
                        chunk = missing[start : start + 64]
                        ids, mask = self._tokenize(chunk, self.max_output_length)
                        for text, vec in zip(chunk, self.embed(ids, mask)):
                            self._option_cache[text] = vec
            finally:
                self.model.train(was_training)
        return torch.stack([self._option_cache[t] for t in texts])

    def _scores(self, batch: Batch) -> torch.Tensor:
        """Logits ``[B, max options]``; padding columns are -inf."""
        examples = batch.examples
        inputs = self.embed(batch["input_ids"], batch["attention_mask"])
        width = max(len(e.options) for e in examples)
        logits = inputs.new_full((len(examples), width), float("-inf"))
        for i, e in enumerate(examples):
            options = self.option_embeddings(e.options).to(inputs.dtype)
            logits[i, : len(e.options)] = self.similarity_scale * (options @ inputs[i])
        return logits

    def loss(self, batch: Batch, *, label_smoothing: float | None = None, reduction: str = "mean") -> torch.Tensor:
        # One choice per example: its mean and its sum are the same.
        smoothing = self._loss_settings(label_smoothing, reduction)
        return F.cross_entropy(self._scores(batch).float(), batch["gold"], reduction="none", label_smoothing=smoothing)

    @torch.no_grad()
    def option_scores(self, batch: Batch) -> list[torch.Tensor]:
        logits = self._scores(batch)
        return [logits[i, : len(e.options)] for i, e in enumerate(batch.examples)]
