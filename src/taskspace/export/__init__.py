"""Tuned results in other libraries' formats, and back: PEFT adapters (out and in) and merged models, each with the
input format it was tuned on (``taskspace.json`` and a model card, :mod:`.card`)."""

from .card import input_ids, input_text, read_record
from .imports import import_peft, import_peft_run
from .merged import export_merged
from .peft import export_peft

__all__ = ["export_merged", "export_peft", "import_peft", "import_peft_run", "input_ids", "input_text", "read_record"]
