"""Delta methods: prompt, prefix, LoRA, adapter, BitFit and full fine-tuning, each one flat vector theta.

``build_method(name, backbone, options)`` builds one from its registry name and a dict of options (see each
method's config dataclass, or ``taskspace methods``).
"""

from __future__ import annotations

from typing import Any, Mapping

from ..backbones.base import Backbone
from ..errors import ConfigError
from .adapter import Adapter, AdapterConfig
from .base import Binding, DeltaMethod, FlatParameters, Layout, MethodConfig, Slice
from .bitfit import BitFit, BitFitConfig
from .finetune import FineTuning, FinetuneConfig
from .lora import LoRA, LoRAConfig
from .prefix import PrefixConfig, PrefixTuning
from .prompt import PromptConfig, PromptTuning

METHODS: dict[str, type[DeltaMethod]] = {
    cls.name: cls for cls in (PromptTuning, PrefixTuning, LoRA, Adapter, BitFit, FineTuning)
}


def method_class(name: str) -> type[DeltaMethod]:
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; expected one of {', '.join(METHODS)}") from None


def build_method(name: str, backbone: Backbone, options: Mapping[str, Any] | None = None) -> DeltaMethod:
    cls = method_class(name)
    return cls(backbone, cls.config_class.from_dict(dict(options or {})))


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
    "method_class",
]
