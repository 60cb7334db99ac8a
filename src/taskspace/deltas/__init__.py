"""Delta methods: prompt, prefix, LoRA, adapter, BitFit and full fine-tuning, each one flat vector theta.

``build_method(name, backbone, options)`` builds one from its registry name and a dict of options (see each
method's config dataclass, or ``taskspace methods``).
"""

from __future__ import annotations

from typing import Any, Mapping

from ..backbones.base import Backbone
from .base import METHODS, Binding, DeltaMethod, FlatParameters, Layout, MethodConfig, Slice, register

# Every module of this package that defines a method registers it on import: a new method is one new file. The
# papers' methods come first in listings.
METHODS.load(__name__, __path__, first=("prompt", "prefix", "lora", "adapter", "bitfit", "finetune"))

from .adapter import Adapter, AdapterConfig  # noqa: E402
from .bitfit import BitFit, BitFitConfig  # noqa: E402
from .finetune import FineTuning, FinetuneConfig  # noqa: E402
from .lora import LoRA, LoRAConfig  # noqa: E402
from .prefix import PrefixConfig, PrefixTuning  # noqa: E402
from .prompt import PromptConfig, PromptTuning  # noqa: E402



def method_class(name: str) -> type[DeltaMethod]:
    return METHODS.lookup(name)


def build_method(name: str, backbone: Backbone, options: Mapping[str, Any] | None = None) -> DeltaMethod:
    cls = method_class(name)
    return cls(backbone, cls.config_class.from_dict(dict(options or {})))


def default_lr(name: str) -> float:
    """The learning rate of ``name``'s runs unless told otherwise."""
    return method_class(name).default_lr


__all__ = [
    "Adapter",
    "AdapterConfig",
    "BitFit",
    "BitFitConfig",
    "Binding",
    "DeltaMethod",
    "FineTuning",
    "FlatParameters",
    "FinetuneConfig",
    "LoRA",
    "LoRAConfig",
    "Layout",
    "METHODS",
    "MethodConfig",
    "PrefixConfig",
    "PrefixTuning",
    "PromptConfig",
    "PromptTuning",
    "Slice",
    "build_method",
    "default_lr",
    "register",
    "method_class",
]
