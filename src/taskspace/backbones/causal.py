"""Decoder-only backbones (GPT-2, Llama): the answer continues the input; loss on the answer tokens only."""

from __future__ import annotations

from typing import Sequence

import torch
from transformers.cache_utils import DynamicCache

from ..tasks.example import Example
from .base import Backbone
from .batch import Batch, first_not_none, token_nll
from .decoding import option_rows, settled_rows, take_tokens
from .templates import TEMPLATES, TRUNCATIONS, Template, default_template


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count only attended tokens, so left padding does not shift positions."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


class CausalBackbone(Backbone):
    family = "causal"
    auto_class = "AutoModelForCausalLM"
    templates = TEMPLATES
    truncations = TRUNCATIONS

    @classmethod
    def default_template(cls, tokenizer, name: str = "") -> str:
        return default_template(tokenizer, name)

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
        self._template = Template.build(self.template, tokenizer, self._write_space) if tokenizer is not None else None

    @property
    def prompt_template(self) -> Template:
        """The token ids around every formatted input (:mod:`.templates`), as an export records them."""
        return self._template

    # ------------------------------------------------------------------------------------------------------------
    def _prompt_ids(self, example: Example) -> list[int]:
        """The template around the formatted input; an input too long for ``max_input_length`` is cut where the
        ``truncation`` setting says (its middle by default)."""
        body = self.tokenizer(self.format_input(example), add_special_tokens=False).input_ids
        return self._template.prompt_ids(body, self.max_input_length, self.truncation)

    def _answer_ids(self, text: str) -> list[int]:
        spaced = self._template.answer_space
        ids = self.tokenizer((" " + text) if spaced else text, add_special_tokens=False).input_ids
        return ids[: self.max_output_length - 1] + [self.eos_id]

    def _left_padded(self, prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts padded on the left, so that every prompt ends in the last column (``ids``, ``mask``)."""
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, width - len(p) :] = torch.tensor(p)
            mask[i, width - len(p) :] = 1
        return ids, mask

    def _right_padded(self, answers: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Answers padded on the right (``ids``, and ``labels`` that are -100 on padding)."""
        width = max(len(a) for a in answers)
        ids = torch.full((len(answers), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(answers), width), -100, dtype=torch.long)
        for i, a in enumerate(answers):
            ids[i, : len(a)] = torch.tensor(a)
            labels[i, : len(a)] = torch.tensor(a)
        return ids, labels

    def _pack(self, prompts: list[list[int]], answers: list[list[int]]) -> dict[str, torch.Tensor]:
        """``prompt + answer`` sequences: prompts left-padded so that all answers start in the same column
        (``answer_start``), answers right-padded; ``labels`` hold the answer tokens (-100 elsewhere)."""
        p_ids, p_mask = self._left_padded(prompts)
        a_ids, a_labels = self._right_padded(answers)
        ids = torch.cat([p_ids, a_ids], dim=1)
        mask = torch.cat([p_mask, (a_labels != -100).long()], dim=1)
        labels = torch.cat([torch.full_like(p_ids, -100), a_labels], dim=1)
        dev = self.device
        return {"input_ids": ids.to(dev), "attention_mask": mask.to(dev), "labels": labels.to(dev),
                "answer_start": torch.tensor(p_ids.shape[1])}

    def collate(self, examples: Sequence[Example], targets: Sequence[str] | None = None) -> Batch:
        examples = list(examples)
        targets = [e.target for e in examples] if targets is None else list(targets)
        prompts = [self._prompt_ids(e) for e in examples]
        tensors = self._pack(prompts, [self._answer_ids(t) for t in targets])
        return Batch(examples, targets, tensors)

    # ------------------------------------------------------------------------------------------------------------
    def _answer_nll(self, input_ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, answer_start: int,
                    label_smoothing: float, reduction: str = "mean") -> torch.Tensor:
        """NLL of the answer tokens (columns ``answer_start`` on), their mean or sum. The LM head runs only on the
        positions that predict an answer token: the last prompt column and the answer columns but the last."""
        embeds, full_mask, _ = self._embed_inputs(input_ids, mask)
        width = input_ids.shape[1] - answer_start
        out = self.model(inputs_embeds=embeds, attention_mask=full_mask, position_ids=_positions(full_mask),
                         use_cache=False, logits_to_keep=width + 1)
        return token_nll(out.logits[:, :-1], labels[:, answer_start:], label_smoothing, reduction)

    def loss(self, batch: Batch, *, label_smoothing: float | None = None, reduction: str = "mean") -> torch.Tensor:
        smoothing = self._loss_settings(label_smoothing, reduction)
        return self._answer_nll(batch["input_ids"], batch["attention_mask"], batch["labels"],
                                int(batch["answer_start"]), smoothing, reduction)

    # ------------------------------------------------------------------------------------------------------------
    def _prefill(self, prompts: list[list[int]]) -> tuple[object, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run the left-padded prompts once: (KV cache, attention mask, last positions ``[B]``, next-token logits
        ``[B, V]``). The LM head runs on the last position only."""
        ids, mask = self._left_padded(prompts)
        ids, mask = ids.to(self.device), mask.to(self.device)
        embeds, mask, _ = self._embed_inputs(ids, mask)
        positions = _positions(mask)
        out = self.model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                         past_key_values=DynamicCache(), use_cache=True, logits_to_keep=1)
        return out.past_key_values, mask, positions[:, -1], out.logits[:, -1]

    @torch.no_grad()
    def option_scores(self, batch: Batch) -> list[torch.Tensor]:
        """Mean log-likelihood of each option's tokens (and EOS) after the input, never label-smoothed.

        The input is encoded once per example. Then all of an example's options run in one more pass, laid side by
        side after the input in the same row: an attention mask lets each option token see the input and the
        earlier tokens of its own option only, and positions restart after the input for every option, so each
        option is scored exactly as if it followed the input alone (without copying the input's KV cache).
        """
        examples = batch.examples
        n = len(examples)
        cache, mask, last, first_logits = self._prefill([self._prompt_ids(e) for e in examples])
        answers = [[self._answer_ids(o) for o in e.options] for e in examples]
        # An option's last token is never an input: no position after it is scored.
        width = max(sum(len(a) - 1 for a in options) for options in answers)
        first = first_logits.float().log_softmax(-1)
        rest = None
        if width > 0:
            ids = torch.full((n, width), self.pad_id, dtype=torch.long)
            positions = torch.zeros((n, width), dtype=torch.long)
            segment = torch.full((n, width), -1, dtype=torch.long)  # which option a column belongs to
            for i, options in enumerate(answers):
                col = 0
                for k, a in enumerate(options):
                    length = len(a) - 1
                    ids[i, col : col + length] = torch.tensor(a[:-1])
                    positions[i, col : col + length] = int(last[i]) + 1 + torch.arange(length)
                    segment[i, col : col + length] = k
                    col += length
            same = (segment[:, :, None] == segment[:, None, :]) & (segment[:, :, None] >= 0)
            own = same & torch.ones(width, width, dtype=torch.bool).tril()
            sees = torch.cat([mask.bool()[:, None, :].expand(n, width, mask.shape[1]), own.to(self.device)], dim=2)
            out = self.model(input_ids=ids.to(self.device), attention_mask=sees[:, None],
                             position_ids=positions.to(self.device), past_key_values=cache, use_cache=True)
            rest = out.logits.float().log_softmax(-1)
        scores = []
        for i, options in enumerate(answers):
            col, per_option = 0, []
            for a in options:
                target = torch.tensor(a, device=self.device)
                logp = first[i, target[0]]
                if len(a) > 1:
                    steps = rest[i, col : col + len(a) - 1]
                    logp = logp + steps.gather(1, target[1:, None]).sum()
                    col += len(a) - 1
                per_option.append(logp / len(a))
            scores.append(torch.stack(per_option))
        return scores

    @torch.no_grad()
    def option_scores_reencoded(self, batch: Batch) -> list[torch.Tensor]:
        """:meth:`option_scores` computed the plain way, one full input + option sequence per option (the reference
        that the KV-cached path is tested and benchmarked against)."""
        examples = batch.examples
        index, spans = option_rows(examples, self.device)
        prompts = [self._prompt_ids(e) for e in examples]
        packed = self._pack([prompts[i] for i in index.tolist()],
                            [self._answer_ids(o) for e in examples for o in e.options])
        with self.row_map(index):
            nll = self._answer_nll(packed["input_ids"], packed["attention_mask"], packed["labels"],
                                   int(packed["answer_start"]), 0.0)
        return [-nll[a:b] for a, b in spans]

    @torch.no_grad()
    def generate(self, batch: Batch, settle=None) -> list[str]:
        """Greedy continuation of each input up to ``max_output_length`` tokens or EOS.

        A row that has produced EOS leaves the batch (its cache rows are dropped), so the remaining steps cost only
        what the unfinished rows need.
        """
        n = len(batch)
        cache, mask, last, logits = self._prefill([self._prompt_ids(e) for e in batch.examples])
        tokens: list[list[int]] = [[] for _ in range(n)]
        done = settled_rows(settle, tokens, batch.examples, self._decode_answer)
        active = torch.arange(n, device=self.device)  # rows of the batch still generating
        for step in range(self.max_output_length):
            nxt = logits.argmax(-1)
            kept = take_tokens(tokens, active, nxt, self.eos_id, step == self.max_output_length - 1, done)
            if kept is None:
                break
            if len(kept) < len(active):
                active, nxt, mask, last = active[kept], nxt[kept], mask[kept], last[kept]
                cache.batch_select_indices(kept)
            mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=1)
            last = last + 1
            with self.row_map(active):
                out = self.model(input_ids=nxt[:, None], attention_mask=mask, position_ids=last[:, None],
                                 past_key_values=cache, use_cache=True)
            logits = out.logits[:, -1]
        return [self._decode_answer(t) for t in tokens]
