"""Decoder-only backbones (GPT-2, Llama): the answer continues the input; loss on the answer tokens only."""

from __future__ import annotations

from typing import Sequence

import torch
from transformers.cache_utils import DynamicCache

from ..tasks.example import Example
from .base import Backbone, Batch, first_not_none, option_rows, token_nll


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count only attended tokens, so left padding does not shift positions."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


class CausalBackbone(Backbone):
    family = "causal"

    def __init__(self, model, tokenizer, **options):
        super().__init__(model, tokenizer, **options)
        cfg = model.config
        self.eos_id = first_not_none(getattr(tokenizer, "eos_token_id", None), cfg.eos_token_id)
        # GPT-2 has no padding token; padded positions are masked, so EOS serves.
        self.pad_id = first_not_none(getattr(tokenizer, "pad_token_id", None), cfg.pad_token_id, self.eos_id)
        # Sentencepiece tokenizers mark the word boundary themselves ("answer" -> "▁an swer"); byte-level BPE
        # (GPT-2) needs the space written out (" answer" -> "Ġanswer"). Probe once which kind this is.
        self._write_space = True
        if tokenizer is not None:
            plain = tokenizer("answer", add_special_tokens=False).input_ids
            spaced = tokenizer(" answer", add_special_tokens=False).input_ids
            self._write_space = not (spaced == plain or spaced[1:] == plain)

    # ------------------------------------------------------------------------------------------------------------
    def _prompt_ids(self, example: Example) -> list[int]:
        ids = self.tokenizer(self.format_input(example)).input_ids
        return ids[: self.max_input_length]

    def _answer_ids(self, text: str) -> list[int]:
        ids = self.tokenizer((" " + text) if self._write_space else text, add_special_tokens=False).input_ids
        return ids[: self.max_output_length - 1] + [self.eos_id]

    def _pack(self, prompts: list[list[int]], answers: list[list[int]]) -> dict[str, torch.Tensor]:
        """Right-padded ``prompt + answer`` sequences with labels on the answer tokens."""
        length = max(len(p) + len(a) for p, a in zip(prompts, answers))
        ids = torch.full((len(prompts), length), self.pad_id, dtype=torch.long)
        labels = torch.full((len(prompts), length), -100, dtype=torch.long)
        mask = torch.zeros((len(prompts), length), dtype=torch.long)
        for i, (p, a) in enumerate(zip(prompts, answers)):
            seq = p + a
            ids[i, : len(seq)] = torch.tensor(seq)
            labels[i, len(p) : len(seq)] = torch.tensor(a)
            mask[i, : len(seq)] = 1
        dev = self.device
        return {"input_ids": ids.to(dev), "attention_mask": mask.to(dev), "labels": labels.to(dev)}

    def collate(self, examples: Sequence[Example], targets: Sequence[str] | None = None) -> Batch:
        examples = list(examples)
        targets = [e.target for e in examples] if targets is None else list(targets)
        prompts = [self._prompt_ids(e) for e in examples]
        tensors = self._pack(prompts, [self._answer_ids(t) for t in targets])
        tensors["prompt_lengths"] = torch.tensor([len(p) for p in prompts], dtype=torch.long)
        return Batch(examples, targets, tensors)

    # ------------------------------------------------------------------------------------------------------------
    def _sequence_nll(self, input_ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        embeds, full_mask, n = self._embed_inputs(input_ids, mask)
        out = self.model(
            inputs_embeds=embeds, attention_mask=full_mask, position_ids=_positions(full_mask), use_cache=False
        )
        # Position n + t predicts real token t + 1.
        logits = out.logits[:, n : n + input_ids.shape[1] - 1]
        return token_nll(logits, labels[:, 1:], self.label_smoothing)

    def loss(self, batch: Batch) -> torch.Tensor:
        return self._sequence_nll(batch["input_ids"], batch["attention_mask"], batch["labels"])

    # ------------------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def option_scores(self, batch: Batch) -> list[torch.Tensor]:
        """Mean log-likelihood of each option's tokens (and EOS) after the input."""
        examples = batch.examples
        index, spans = option_rows(examples, self.device)
        prompts = [self._prompt_ids(e) for e in examples]
        rows_prompts = [prompts[i] for i in index.tolist()]
        answers = [self._answer_ids(o) for e in examples for o in e.options]
        packed = self._pack(rows_prompts, answers)
        with self.row_map(index):
            nll = self._sequence_nll(packed["input_ids"], packed["attention_mask"], packed["labels"])
        return [-nll[a:b] for a, b in spans]

    @torch.no_grad()
    def generate(self, batch: Batch) -> list[str]:
        """Greedy continuation of each (left-padded) input up to ``max_output_length`` tokens or EOS."""
        prompts = [self._prompt_ids(e) for e in batch.examples]
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, width - len(p) :] = torch.tensor(p)
            mask[i, width - len(p) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        embeds, mask, _ = self._embed_inputs(ids, mask)
        positions = _positions(mask)
        cache = DynamicCache()
        out = self.model(
            inputs_embeds=embeds, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True
        )
        done = torch.zeros(len(prompts), dtype=torch.bool, device=self.device)
        tokens = []
        for step in range(self.max_output_length):
            nxt = out.logits[:, -1].argmax(-1).masked_fill(done, self.pad_id)
            tokens.append(nxt)
            done |= nxt == self.eos_id
            if bool(done.all()) or step == self.max_output_length - 1:
                break
            mask = torch.cat([mask, mask.new_ones(len(prompts), 1)], dim=1)
            positions = positions[:, -1:] + 1
            out = self.model(
                input_ids=nxt[:, None],
                attention_mask=mask,
                position_ids=positions,
                past_key_values=out.past_key_values,
                use_cache=True,
            )
        generated = torch.stack(tokens, 1).tolist()
        return [s.strip() for s in self.tokenizer.batch_decode(generated, skip_special_tokens=True)]
