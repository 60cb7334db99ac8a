"""Exports of tuned results into other libraries' formats."""

from .peft import export_peft

__all__ = ["export_peft"]
