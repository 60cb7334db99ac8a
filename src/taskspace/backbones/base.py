"""The frozen backbone: one interface over seq2seq, causal-LM and encoder models.

A backbone owns a frozen Hugging Face model and offers ``collate`` (examples -> tensors), ``loss`` (per-example
training loss) and ``predict`` (strings: generated text, or the chosen option). Delta methods never touch the
model directly; they register *injections* with the backbone while they are bound:

- an **output edit** on a module (``add_output_edit``): ``out <- fn(input, out)``, used by LoRA, adapters, BitFit;
- an **input prefix** (``add_input_prefix``): virtual token embeddings prepended to the (encoder) input, used by
  prompt tuning;
- an **attention prefix** on a self-attention module (``add_attention_prefix``): key/value rows prepended in
  attention, used by prefix-tuning;
- **parameter overrides** (``override_parameters``): replacement tensors for frozen weights, used by full
  fine-tuning and by Fastfood projections of all weights.

Per-example deltas (``theta`` of shape ``[B, D]``) give tensors with a leading batch dimension. When the backbone
internally expands a batch (one row per answer option when ranking options), it installs a *row map* and
injections read their per-example tensors through :meth:`Backbone.rows`.
"""

from __future__ import annotations

import contextlib
import hashlib
from functools import partial
from pathlib import Path
from typing import Callable, ClassVar, Iterator, Sequence

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from ..errors import ConfigError
from ..tasks.example import Example
from .attention import PREFIX_ATTR, WRAPPABLE, PrefixProvider, use_taskspace_attention
# Batch, token_nll and first_not_none were defined here; they stay importable from here
from .batch import REDUCTIONS, Batch, first_not_none, token_nll  # noqa: F401
from .checkpointing import LayerCheckpointing
# option_rows, take_tokens and the dtype helpers were defined here; they stay importable from here
from .decoding import group_options, option_rows, take_tokens
from .dtypes import DTYPE_CHOICES, DTYPES, FAST_BF16_ENV, default_dtype, fast_bfloat16, resolve_dtype
from .sites import AttentionSite, Sites, discover_sites


class _Handle:
    """Undo an injection: calls ``fn`` once."""

    def __init__(self, fn: Callable[[], None]):
        self._fn: Callable[[], None] | None = fn

    def remove(self) -> None:
        if self._fn is not None:
            self._fn()
            self._fn = None


class Backbone(LayerCheckpointing, nn.Module):
    """Base class of the three backbone families. Subclasses implement ``collate``, ``loss`` and ``predict``."""

    family: ClassVar[str] = ""
    #: The transformers auto class that loads this family's models, and extra arguments it needs.
    auto_class: ClassVar[str] = "AutoModel"
    load_kwargs: ClassVar[dict] = {}
    #: How predictions are made: ``generate`` (the papers' protocol: every task answered by generated text, scored
    #: as a string) or ``rank`` (an example with options gets its most likely option).
    decode_modes: ClassVar[tuple[str, ...]] = ("generate", "rank")

    #: The input templates this family can use (:mod:`.templates`): the papers' ``[task] input`` form only.
    templates: ClassVar[tuple[str, ...]] = ("plain",)

    #: Where an input longer than ``max_input_length`` is cut (:data:`.templates.TRUNCATIONS`; the first is the
    #: default): the tokenizer keeps an input's beginning.
    truncations: ClassVar[tuple[str, ...]] = ("right",)

    @classmethod
    def default_template(cls, tokenizer, name: str = "") -> str:
        return "plain"

    @classmethod
    def default_max_input_length(cls, path: str, local: bool) -> int:
        """The input length a model of this family is truncated to unless told otherwise."""
        return 512

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        *,
        name: str,
        max_input_length: int = 512,
        max_output_length: int = 64,
        task_prefix: bool = True,
        label_smoothing: float = 0.0,
        decode: str | None = None,
        dropout: bool = False,
        gradient_checkpointing: bool = False,
        template: str | None = None,
        truncation: str | None = None,
        weight_files: Sequence[str | Path] | None = None,
    ):
        super().__init__()
        truncation = self.truncations[0] if truncation is None else truncation
        if truncation not in self.truncations:
            raise ConfigError(f"truncation={truncation!r}: the {self.family} family takes "
                              f"{' or '.join(self.truncations)}")
        #: Where an input too long for ``max_input_length`` is cut; recorded in every artefact.
        self.truncation = truncation
        template = self.default_template(tokenizer, name) if template is None else template
        if template not in self.templates:
            raise ConfigError(f"template={template!r}: the {self.family} family takes "
                              f"{' or '.join(self.templates)} (see taskspace.backbones.templates)")
        #: How an input is laid out before its answer (:mod:`.templates`); recorded in every artefact.
        self.template = template
        decode = self.decode_modes[0] if decode is None else decode
        if decode not in self.decode_modes:
            raise ConfigError(
                f"decode={decode!r}: the {self.family} family can use {' or '.join(self.decode_modes)}"
            )
        self.decode = decode
        for what, value in (("max_input_length", max_input_length), ("max_output_length", max_output_length)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{what}={value!r}: expected a positive integer")
        self.model = model
        self._tokenizer = tokenizer
        self.name = name
        self.max_input_length = max_input_length
        self.max_output_length = max_output_length
        self.task_prefix = task_prefix
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing={label_smoothing}: expected a value in [0, 1)")
        self.label_smoothing = label_smoothing
        if not isinstance(dropout, bool):
            raise ConfigError(f"dropout={dropout!r}: expected true or false")
        self.dropout = dropout
        if not isinstance(gradient_checkpointing, bool):
            raise ConfigError(f"gradient_checkpointing={gradient_checkpointing!r}: expected true or false")
        self.gradient_checkpointing = gradient_checkpointing
        model.requires_grad_(False)
        model.eval()
        self.attn_implementation = use_taskspace_attention(model)
        self.sites: Sites = discover_sites(model)
        # The frozen parameters, deduplicated (tied weights appear once), in named_parameters order, and every
        # (module, attribute) that holds each of them, so that an override replaces tied weights together.
        self.base_parameters: dict[str, nn.Parameter] = dict(model.named_parameters())
        holders: dict[int, list[tuple[nn.Module, str]]] = {}
        for mod in model.modules():
            for attr, p in mod._parameters.items():
                if p is not None:
                    holders.setdefault(id(p), []).append((mod, attr))
        self._holders = {name: holders[id(p)] for name, p in self.base_parameters.items()}
        self._input_prefixes: list[Callable[[int], torch.Tensor]] = []
        self._overrides: list[dict[str, torch.Tensor]] = []
        self._suspended = 0
        self._row_index: torch.Tensor | None = None
        self._weight_files = [Path(f) for f in weight_files] if weight_files else None
        self._fingerprint: str | None = None
        if gradient_checkpointing:
            self._checkpoint_layers()

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            raise ConfigError(f"backbone {self.name!r} was built without a tokenizer (it can only count parameters)")
        return self._tokenizer

    # ----------------------------------------------------------------------------------------------------------
    # Description

    @property
    def model_type(self) -> str:
        return self.model.config.model_type

    @property
    def hidden_size(self) -> int:
        return self.sites.hidden_size

    @property
    def device(self) -> torch.device:
        return next(iter(self.base_parameters.values())).device

    @property
    def dtype(self) -> torch.dtype:
        return next(iter(self.base_parameters.values())).dtype

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.base_parameters.values())

    def fingerprint(self) -> str:
        """SHA-256 that identifies the frozen weights exactly, whatever dtype they are computed in.

        A backbone loaded from checkpoint files hashes the files as stored (their digests are cached by path, size
        and modification time, so a large checkpoint is read once), so a delta tuned on a bfloat16 load of a model
        loads on a float32 load of it and vice versa; the compute dtype is recorded beside it (``describe``). A
        backbone built in memory hashes its tensors (names, shapes, dtypes and bytes).
        """
        if self._fingerprint is None and self._weight_files:
            from ..cache import file_sha256

            h = hashlib.sha256(b"files")
            for path in self._weight_files:
                h.update(path.name.encode())
                h.update(file_sha256(path).encode())
            self._fingerprint = h.hexdigest()
        if self._fingerprint is None:
            h = hashlib.sha256()
            for name, p in self.base_parameters.items():
                if p.device.type == "meta":
                    raise ConfigError("a backbone on the meta device has no weights to fingerprint")
                h.update(name.encode())
                h.update(str(tuple(p.shape)).encode())
                h.update(str(p.dtype).encode())
                h.update(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def describe(self) -> dict:
        return {
            "name": self.name,
            "family": self.family,
            "model_type": self.model_type,
            "hidden_size": self.hidden_size,
            "parameters": self.num_parameters(),
            "max_input_length": self.max_input_length,
            "max_output_length": self.max_output_length,
            "task_prefix": self.task_prefix,
            "template": self.template,
            "truncation": self.truncation,
            "label_smoothing": self.label_smoothing,
            "decode": self.decode,
            "dtype": str(self.dtype).removeprefix("torch."),
            "dropout": self.dropout,
            "attn_implementation": self.attn_implementation,
            "gradient_checkpointing": self.gradient_checkpointing,
        }

    def train(self, mode: bool = True) -> "Backbone":
        """Training mode for what is trained through the backbone. The frozen model itself stays in evaluation mode
        (its dropout off, so a step depends only on theta, the batch and nothing random) unless the backbone was
        built with ``dropout=True``, the behaviour of the papers' code, which trains with the model's dropout on."""
        super().train(mode)
        if mode and not self.dropout:
            self.model.eval()
        return self

    # ----------------------------------------------------------------------------------------------------------
    # Injections

    def add_output_edit(self, module: nn.Module, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> _Handle:
        """While registered, ``module``'s output becomes ``fn(module_input, output)``."""

        def hook(_mod, args, output):
            if self._suspended:
                return None
            return fn(args[0], output)

        handle: RemovableHandle = module.register_forward_hook(hook)
        return _Handle(handle.remove)

    def add_input_prefix(self, fn: Callable[[int], torch.Tensor]) -> _Handle:
        """While registered, ``fn(batch_size)`` (``[B or 1, n, d]``) is prepended to the input embeddings."""
        self._input_prefixes.append(fn)
        return _Handle(lambda: self._input_prefixes.remove(fn))

    def add_attention_prefix(self, site: AttentionSite, provider: PrefixProvider) -> _Handle:
        """While registered, the provider's keys and values are prepended in ``site``'s attention."""
        module = site.module
        if self.attn_implementation not in WRAPPABLE:
            raise ConfigError(f"prefix: attention implementation {self.attn_implementation!r} takes no key/value "
                              "prefix (its masks are sequence lengths); load the backbone with --backbone-opt "
                              f"attn_implementation=<{'|'.join(WRAPPABLE)}>")
        if getattr(module, PREFIX_ATTR, None) is not None:
            raise ConfigError(f"{site.name} already has a prefix bound; bind one prefix method at a time")
        backbone = self

        class _Guarded:
            def key_values(self, batch_size: int):
                return None if backbone._suspended else provider.key_values(batch_size)

        setattr(module, PREFIX_ATTR, _Guarded())
        return _Handle(lambda: delattr(module, PREFIX_ATTR))

    def override_parameters(self, tensors: dict[str, torch.Tensor]) -> _Handle:
        """While registered, frozen parameter ``name`` is replaced by ``tensors[name]`` everywhere it is used."""
        unknown = [n for n in tensors if n not in self.base_parameters]
        if unknown:
            raise ConfigError(f"unknown parameter names: {unknown[:5]}")
        for n, t in tensors.items():
            if t.shape != self.base_parameters[n].shape:
                raise ConfigError(f"override of {n}: shape {tuple(t.shape)}, expected {tuple(self.base_parameters[n].shape)}")
        self._overrides.append(tensors)
        self._apply_overrides()

        def undo() -> None:
            self._overrides.remove(tensors)
            self._apply_overrides()

        return _Handle(undo)

    def _apply_overrides(self) -> None:
        merged: dict[str, torch.Tensor] = {}
        if not self._suspended:
            for layer in self._overrides:
                merged.update(layer)
        for name, param in self.base_parameters.items():
            value = merged.get(name, param)
            for mod, attr in self._holders[name]:
                # Writing the slot directly swaps a tensor in without re-registering a Parameter, so autograd
                # flows from the model's computation into the override (as torch.func.functional_call does).
                mod._parameters[attr] = value

    def holders(self, name: str) -> list[tuple[nn.Module, str]]:
        """The (module, attribute) pairs that hold base parameter ``name`` (several when weights are tied)."""
        return list(self._holders[name])

    @contextlib.contextmanager
    def suspended(self) -> Iterator[None]:
        """Run the frozen model as loaded, ignoring every injection registered so far."""
        self._suspended += 1
        if self._suspended == 1 and self._overrides:
            self._apply_overrides()
        try:
            yield
        finally:
            self._suspended -= 1
            if self._suspended == 0 and self._overrides:
                self._apply_overrides()

    @contextlib.contextmanager
    def row_map(self, index: torch.Tensor) -> Iterator[None]:
        """Within this block, model rows are ``index``-selected copies of the batch's examples."""
        previous = self._row_index
        self._row_index = index if previous is None else previous.index_select(0, index)
        try:
            yield
        finally:
            self._row_index = previous

    def rows(self, per_example: torch.Tensor) -> torch.Tensor:
        """Select the rows of a per-example tensor ``[B, ...]`` that the model is currently running."""
        if self._row_index is None:
            return per_example
        return per_example.index_select(0, self._row_index)

    def _embed_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Input embeddings with every registered input prefix prepended; returns (embeds, mask, n_prepended)."""
        embeds = self.model.get_input_embeddings()(input_ids)
        if self._suspended or not self._input_prefixes:
            return embeds, attention_mask, 0
        batch = embeds.shape[0]
        parts, n = [], 0
        for fn in self._input_prefixes:
            p = fn(batch)
            if p.shape[0] not in (1, batch):
                raise ConfigError(f"input prefix has {p.shape[0]} rows for a batch of {batch}")
            parts.append(p.to(embeds.dtype).expand(batch, -1, -1))
            n += p.shape[1]
        embeds = torch.cat(parts + [embeds], dim=1)
        ones = attention_mask.new_ones(batch, n)
        return embeds, torch.cat([ones, attention_mask], dim=1), n

    # ----------------------------------------------------------------------------------------------------------
    # Text

    def format_input(self, example: Example) -> str:
        """The model input text: ``[task] input`` (SPEC §1) or just the input when task_prefix is off."""
        if self.task_prefix and example.task:
            return f"[{example.task}] {example.input}"
        return example.input

    # ----------------------------------------------------------------------------------------------------------
    # The three operations every family implements

    def collate(self, examples: Sequence[Example], targets: Sequence[str] | None = None) -> Batch:
        raise NotImplementedError

    def loss(self, batch: Batch, *, label_smoothing: float | None = None, reduction: str = "mean") -> torch.Tensor:
        """Per-example training loss ``[B]`` under the currently bound deltas: the mean (``reduction="sum"``: the
        sum) of the answer's token losses, label-smoothed by ``label_smoothing`` (None: the backbone's option)."""
        raise NotImplementedError

    def _loss_settings(self, label_smoothing: float | None, reduction: str) -> float:
        """The label smoothing a loss call uses, after checking its arguments."""
        if reduction not in REDUCTIONS:
            raise ConfigError(f"reduction={reduction!r}: expected one of {', '.join(REDUCTIONS)}")
        smoothing = self.label_smoothing if label_smoothing is None else label_smoothing
        if not 0.0 <= smoothing < 1.0:
            raise ConfigError(f"label_smoothing={smoothing}: expected a value in [0, 1)")
        return smoothing

    def predict(self, batch: Batch, settle=None) -> list[str]:
        """One prediction per example: generated text (``decode="generate"``), or with ``decode="rank"`` the most
        likely option for examples with options and generated text for the others. With ``settle`` (a metric's
        :func:`~taskspace.tasks.settled.settled_check`), generation of an example stops once its score is settled:
        the scores are those of full answers, the texts may stop early (for scoring only, not for showing)."""
        generate = self.generate if settle is None else partial(self.generate, settle=settle)
        if self.decode == "generate":
            ranked, generated = [], list(range(len(batch)))
        else:
            ranked, generated = group_options(batch.examples)
        predictions: list[str] = [""] * len(batch)
        for indices, fill in ((ranked, self._choose_options), (generated, generate)):
            if not indices:
                continue
            if len(indices) == len(batch):
                outputs = fill(batch)
            else:
                # A sub-batch: per-example deltas must follow their examples.
                with self.row_map(torch.tensor(indices, dtype=torch.long, device=self.device)):
                    outputs = fill(self.collate([batch.examples[i] for i in indices]))
            for i, text in zip(indices, outputs):
                predictions[i] = text
        return predictions

    def _choose_options(self, batch: Batch) -> list[str]:
        return [e.options[int(s.argmax())] for e, s in zip(batch.examples, self.option_scores(batch))]

    def option_scores(self, batch: Batch) -> list[torch.Tensor]:
        """A score per option of every example (all examples of ``batch`` must have options); higher is better."""
        raise NotImplementedError

    def generate(self, batch: Batch, settle=None) -> list[str]:
        raise NotImplementedError(f"the {self.family} family does not generate text")

    def _decode_answer(self, tokens: list[int]) -> str:
        """A generated answer's text: the tokens decoded without special tokens, surrounding whitespace stripped."""
        return self.tokenizer.decode(tokens, skip_special_tokens=True).strip()

    def check_task(self, has_options: bool, task: str) -> None:
        """Raise ConfigError if this family cannot handle a task (only the encoder family rejects some)."""
