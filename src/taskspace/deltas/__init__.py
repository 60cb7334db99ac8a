"""Delta methods: prompt, prefix, LoRA, adapter, BitFit and full fine-tuning, each one flat vector theta.

``build_method(name, backbone, options)`` builds one from its registry name and a dict of options (see each
method's config dataclass, or ``taskspace methods``).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Mapping

from ..backbones.base import Backbone
from ..errors import ConfigError
from .base import METHODS, Binding, DeltaMethod, FlatParameters, Layout, MethodConfig, Slice, register

# Every module of this package that defines a method registers it on import: a new method is one new file.
for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

from .adapter import Adapter, AdapterConfig  # noqa: E402
from .bitfit import BitFit, BitFitConfig  # noqa: E402
from .finetune import FineTuning, FinetuneConfig  # noqa: E402
from .lora import LoRA, LoRAConfig  # noqa: E402
from .prefix import PrefixConfig, PrefixTuning  # noqa: E402
from .prompt import PromptConfig, PromptTuning  # noqa: E402

#: The methods in the papers' order (prompt, prefix, LoRA, adapter, BitFit, fine-tuning), then any others.
_ORDER = ("prompt", "prefix", "lora", "adapter", "bitfit", "finetune")
METHODS.update({n: METHODS.pop(n) for n in [*(_ORDER), *(n for n in list(METHODS) if n not in _ORDER)] if n in METHODS})


def method_class(name: str) -> type[DeltaMethod]:
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; expected one of {', '.join(METHODS)}") from None


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
