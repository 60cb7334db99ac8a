"""Encoder-decoder backbones (T5, BART): text-to-text loss, greedy generation, option ranking by likelihood."""

from __future__ import annotations

from typing import Sequence

import torch
from transformers.cache_utils import DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput

from ..errors import ConfigError
from ..tasks.example import Example
from .base import Backbone
from .batch import Batch, first_not_none, token_nll
from .decoding import option_rows, settled_rows, take_tokens


def shift_right(labels: torch.Tensor, start_id: int, pad_id: int) -> torch.Tensor:
    """Decoder inputs for teacher forcing: ``start`` followed by the labels without their last token."""
    shifted = labels.new_full(labels.shape, pad_id)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = start_id
    return shifted.masked_fill(shifted == -100, pad_id)


def name_of(model) -> str:
    return getattr(model.config, "name_or_path", "") or model.config.model_type


class Seq2SeqBackbone(Backbone):
    family = "seq2seq"
    auto_class = "AutoModelForSeq2SeqLM"

    def __init__(self, model, tokenizer, **options):
        super().__init__(model, tokenizer, **options)
        cfg = model.config
        start = getattr(cfg, "decoder_start_token_id", None)
        if start is None and getattr(model, "generation_config", None) is not None:
            start = model.generation_config.decoder_start_token_id
        if start is None:
            raise ConfigError(
                f"{name_of(model)}: the model config has no decoder_start_token_id (T5 uses its pad id, BART its "
                "EOS id); set it in config.json"
            )
        self.decoder_start_id = int(start)
        self.pad_id = first_not_none(getattr(tokenizer, "pad_token_id", None), cfg.pad_token_id)
        self.eos_id = first_not_none(getattr(tokenizer, "eos_token_id", None), cfg.eos_token_id)

    # ------------------------------------------------------------------------------------------------------------
    def _tokenize_inputs(self, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(
            [self.format_input(e) for e in examples],
            max_length=self.max_input_length,
            truncation=True,
            padding=True,
            return_tensors="pt",
        )
        return {"input_ids": enc.input_ids.to(self.device), "attention_mask": enc.attention_mask.to(self.device)}

    def _tokenize_targets(self, texts: Sequence[str]) -> torch.Tensor:
        out = self.tokenizer(
            text_target=list(texts),
            max_length=self.max_output_length,
            truncation=True,
            padding=True,
            return_tensors="pt",
        )
        return out.input_ids.masked_fill(out.attention_mask == 0, -100).to(self.device)

    def collate(self, examples: Sequence[Example], targets: Sequence[str] | None = None) -> Batch:
        examples = list(examples)
        targets = [e.target for e in examples] if targets is None else list(targets)
        tensors = self._tokenize_inputs(examples)
        tensors["labels"] = self._tokenize_targets(targets)
        return Batch(examples, targets, tensors)

    # ------------------------------------------------------------------------------------------------------------
    def _encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[BaseModelOutput, torch.Tensor]:
        embeds, mask, _ = self._embed_inputs(input_ids, attention_mask)
        encoder_out = self.model.get_encoder()(inputs_embeds=embeds, attention_mask=mask, return_dict=True)
        return encoder_out, mask

    def _decode_nll(self, encoder_out: BaseModelOutput, mask: torch.Tensor, labels: torch.Tensor,
                    label_smoothing: float, reduction: str = "mean") -> torch.Tensor:
        out = self.model(
            encoder_outputs=encoder_out,
            attention_mask=mask,
            decoder_input_ids=shift_right(labels, self.decoder_start_id, self.pad_id),
            use_cache=False,
            return_dict=True,
        )
        return token_nll(out.logits, labels, label_smoothing, reduction)

    def loss(self, batch: Batch, *, label_smoothing: float | None = None, reduction: str = "mean") -> torch.Tensor:
        smoothing = self._loss_settings(label_smoothing, reduction)
        encoder_out, mask = self._encode(batch["input_ids"], batch["attention_mask"])
        return self._decode_nll(encoder_out, mask, batch["labels"], smoothing, reduction)

    # ------------------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def option_scores(self, batch: Batch) -> list[torch.Tensor]:
        """Mean token log-likelihood of every option of every example (all examples must have options); never
        label-smoothed. The input is encoded once; its encoder states are copied to one row per option."""
        examples = batch.examples
        encoder_out, mask = self._encode(batch["input_ids"], batch["attention_mask"])
        index, spans = option_rows(examples, mask.device)
        labels = self._tokenize_targets([o for e in examples for o in e.options])
        expanded = BaseModelOutput(last_hidden_state=encoder_out.last_hidden_state.index_select(0, index))
        with self.row_map(index):
            nll = self._decode_nll(expanded, mask.index_select(0, index), labels, 0.0)
        return [-nll[a:b] for a, b in spans]

    @torch.no_grad()
    def generate(self, batch: Batch, settle=None) -> list[str]:
        """Greedy decoding up to ``max_output_length`` tokens; a row that has produced EOS leaves the batch."""
        encoder_out, mask = self._encode(batch["input_ids"], batch["attention_mask"])
        n = mask.shape[0]
        hidden = encoder_out.last_hidden_state
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        step_ids = torch.full((n, 1), self.decoder_start_id, dtype=torch.long, device=mask.device)
        tokens: list[list[int]] = [[] for _ in range(n)]
        done = settled_rows(settle, tokens, batch.examples, self._decode_answer)
        active = torch.arange(n, device=mask.device)  # rows of the batch still generating
        for step in range(self.max_output_length):
            with self.row_map(active):
                out = self.model(
                    encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
                    attention_mask=mask,
                    decoder_input_ids=step_ids,
                    past_key_values=cache,
                    use_cache=True,
                    return_dict=True,
                )
            cache = out.past_key_values
            nxt = out.logits[:, -1].argmax(-1)
            kept = take_tokens(tokens, active, nxt, self.eos_id, step == self.max_output_length - 1, done)
            if kept is None:
                break
            if len(kept) < len(active):
                active, nxt, mask, hidden = active[kept], nxt[kept], mask[kept], hidden[kept]
                cache.batch_select_indices(kept)
            step_ids = nxt[:, None]
        return [self._decode_answer(t) for t in tokens]
