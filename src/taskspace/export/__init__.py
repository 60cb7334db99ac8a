"""Tuned results in other libraries' formats, and back: PEFT adapters (out and in) and merged models."""

from .imports import import_peft, import_peft_run
from .merged import export_merged
from .peft import export_peft

__all__ = ["export_merged", "export_peft", "import_peft", "import_peft_run"]
