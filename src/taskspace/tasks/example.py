"""The unit of task data: one example with its references and (for classification / multiple choice) options."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Iterable


@dataclass(frozen=True)
class Example:
    """One input with one or more reference outputs.

    ``options`` is empty for generative tasks (QA, summarisation, ...). For classification and multiple-choice
    tasks it lists the label words or answer choices, without duplicates, in their original order; the first
    reference is always one of them. ``task`` is the name of the task the example belongs to, so that batches
    can mix tasks.
    """

    input: str
    references: tuple[str, ...]
    options: tuple[str, ...] = ()
    task: str = ""
    meta: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.references, str) or isinstance(self.options, str):
            raise TypeError("Example.references and Example.options must be sequences of strings, not a string")
        object.__setattr__(self, "references", tuple(self.references))
        object.__setattr__(self, "options", tuple(self.options))
        if not self.references:
            raise ValueError("an Example needs at least one reference output")

    @property
    def target(self) -> str:
        """The reference used as the training target: the first one."""
        return self.references[0]

    @property
    def has_options(self) -> bool:
        return bool(self.options)

    def answer_index(self) -> int:
        """Index in ``options`` of the first reference that is an option."""
        for ref in self.references:
            if ref in self.options:
                return self.options.index(ref)
        raise ValueError(f"none of the references {self.references!r} is among the options {self.options!r}")


def examples_digest(examples: Iterable[Example]) -> str:
    """SHA-256 of what ``examples`` hold: each one's task, input, references and options, in order (not where they
    were read from: a moved file keeps its digest). Options inferred from the outputs
    (:mod:`taskspace.tasks.classlabels`) are part of it, so whatever is keyed by it sees them."""
    rows = [[e.task, e.input, list(e.references), list(e.options)] for e in examples]
    return hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode()).hexdigest()
