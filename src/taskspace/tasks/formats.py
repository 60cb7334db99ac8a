"""Reading and writing task data files: MetaICL's JSONL layout, CrossFit's TSV layout, and task-split files.

Two on-disk layouts hold the same few-shot data:

* JSONL (MetaICL): one JSON object per line, ``{"task", "input", "output", "options"}``; ``output`` is a string
  or a list of strings (several references); ``options`` is empty for generative tasks.
* TSV (CrossFit): ``input \\t ref1 [\\t ref2 ...]`` per line, UTF-8, no header. Per-example answer choices are
  appended to the input as `` (A) opt1 (B) opt2 ...``; fixed label sets are not written at all (the reader gets
  them from the caller, usually from the task catalog).

Files are located by :func:`taskspace.tasks.files.task_files`: ``<task>_<k>_<seed>_{train,dev,test}.{jsonl,tsv}`` in
``<data_dir>/<task>/`` or directly in ``<data_dir>``.
"""

from __future__ import annotations

import difflib
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from taskspace.errors import DataError
from taskspace.store import write_text
from taskspace.tasks.example import Example
from taskspace.tasks.files import LAYOUTS, find_test_file, task_files  # re-exported: they were defined here

__all__ = [
    "read_jsonl",
    "read_tsv",
    "read_examples",
    "write_tsv",
    "task_files",
    "find_test_file",
    "read_split_file",
    "split_inline_options",
    "inline_options_suffix",
    "sanitize_field",
    "SPLITS",
    "LAYOUTS",
]

#: Split names, in the order used everywhere (files, split files, Task attributes).
SPLITS: tuple[str, ...] = ("train", "dev", "test")

# Tabs and line breaks are the only characters the TSV layout cannot carry inside a field. "\r" counts: many
# readers (Python's universal newlines, CrossFit's loaders) treat it as a line end.
_TSV_FORBIDDEN = re.compile(r"[\t\r\n]+")
_MAX_INLINE_OPTIONS = 26  # one capital letter per option


def _dedup(items: Iterable[str]) -> tuple[str, ...]:
    """Remove duplicates, keeping the first occurrence's position."""
    return tuple(dict.fromkeys(items))


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, line without its terminator) of a UTF-8 text file.

    Lines are split on "\\n" only (a trailing "\\r" is dropped), never on the other Unicode line separators that
    ``str.splitlines`` knows: those may occur inside a field and must not cut an example in two.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError("file not found", path) from None
    except OSError as exc:
        raise DataError(f"cannot read file: {exc.strerror or exc}", path) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(
            f"not valid UTF-8 (byte {exc.start}: {exc.reason}); expected a UTF-8 text file", path, line
        ) from None
    if text.startswith("\ufeff"):  # a byte-order mark written by some editors; not part of the first field
        text = text[1:]
    parts = text.split("\n")
    if parts and parts[-1] == "":  # the terminator of the last line, not an extra empty line
        parts.pop()
    for number, line in enumerate(parts, start=1):
        yield number, line[:-1] if line.endswith("\r") else line


def _empty_split(path: Path) -> DataError:
    return DataError("empty split: expected at least one example", path)


# ----------------------------------------------------------------------------------------------------------------
# JSONL (MetaICL)


def read_jsonl(path: str | Path, task: str | None = None) -> list[Example]:
    """Read a MetaICL-layout JSONL file into examples.

    Each non-blank line must be a JSON object with a string ``input`` (may be empty), an ``output`` that is a
    non-empty string or a non-empty list of non-empty strings (several references), and optionally ``options``
    (a list of strings; duplicates are removed keeping the first occurrence) and ``task`` (a string). When options
    are given the first reference must be one of them. ``task`` overrides the name stored in the lines. Each
    example's ``meta`` records ``source`` (the file) and ``line``. Blank lines are skipped.

    Raises DataError naming the file and 1-based line for every malformed line, and for a file without examples.
    """
    path = Path(path)
    examples: list[Example] = []
    for number, line in _lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"invalid JSON ({exc.msg}, column {exc.colno}); expected one JSON object per line", path, number
            ) from None
        examples.append(_example_from_record(record, path, number, task))
    if not examples:
        raise _empty_split(path)
    return examples


def _example_from_record(record: object, path: Path, number: int, task: str | None) -> Example:
    expected = 'expected {"input": str, "output": str or [str, ...], "options": [str, ...]}'
    if not isinstance(record, dict):
        raise DataError(f"a JSON {type(record).__name__} is not an example; {expected}", path, number)
    for key in ("input", "output"):
        if key not in record:
            raise DataError(f"missing key {key!r}; {expected}", path, number)
    text = record["input"]
    if not isinstance(text, str):
        raise DataError(f"'input' must be a string, got {type(text).__name__}; {expected}", path, number)

    output = record["output"]
    if isinstance(output, str):
        references: tuple[str, ...] = (output,)
    elif isinstance(output, list) and output and all(isinstance(o, str) for o in output):
        references = tuple(output)
    else:
        got = "an empty list" if output == [] else type(output).__name__
        raise DataError(f"'output' must be a string or a non-empty list of strings, got {got}", path, number)
    if any(ref == "" for ref in references):
        raise DataError("empty output: expected a non-empty reference string", path, number)

    options_raw = record.get("options", [])
    if not isinstance(options_raw, list) or not all(isinstance(o, str) for o in options_raw):
        raise DataError(f"'options' must be a list of strings, got {options_raw!r:.80}", path, number)
    options = _dedup(options_raw)
    if options and references[0] not in options:
        raise DataError(
            f"output {references[0]!r} is not among the options {list(options)!r:.300}; "
            "expected the output to be one of the options",
            path,
            number,
        )

    name = task
    if name is None:
        name = record.get("task", "")
        if not isinstance(name, str):
            raise DataError(f"'task' must be a string, got {type(name).__name__}", path, number)
    return Example(text, references, options, name, meta={"source": str(path), "line": number})


# ----------------------------------------------------------------------------------------------------------------
# TSV (CrossFit)


def inline_options_suffix(options: Sequence[str]) -> str:
    """CrossFit's inline multiple-choice suffix: `` (A) opt1 (B) opt2 ...``."""
    if len(options) > _MAX_INLINE_OPTIONS:
        raise ValueError(f"{len(options)} options cannot be lettered A-Z (at most {_MAX_INLINE_OPTIONS})")
    return "".join(f" ({chr(ord('A') + i)}) {option}" for i, option in enumerate(options))


def split_inline_options(text: str) -> tuple[str, tuple[str, ...]]:
    """Split CrossFit's inline multiple-choice suffix off an input.

    The suffix starts at the *last* `` (A) `` of the text and must continue with `` (B) ``, `` (C) ``, ... (at least
    two options, consecutive letters). Each marker is searched from the end of the previous one, so an option runs
    until the next letter's marker. Returns ``(input without the suffix, options without duplicates)``, or
    ``(text, ())`` when there is no such suffix.
    """
    start = text.rfind(" (A) ")
    if start < 0:
        return text, ()
    options: list[str] = []
    pos = start + len(" (A) ")
    letter = 1
    while letter < _MAX_INLINE_OPTIONS:
        marker = f" ({chr(ord('A') + letter)}) "
        nxt = text.find(marker, pos)
        if nxt < 0:
            break
        options.append(text[pos:nxt])
        pos = nxt + len(marker)
        letter += 1
    options.append(text[pos:])
    if len(options) < 2:
        return text, ()
    return text[:start], _dedup(options)


def read_tsv(
    path: str | Path,
    task: str | None = None,
    labels: Sequence[str] | None = None,
    *,
    parse_options: bool = True,
) -> list[Example]:
    """Read a CrossFit-layout TSV file (``input \\t ref1 [\\t ref2 ...]``, UTF-8, no header) into examples.

    Options: with ``labels`` (a fixed label set) every example gets those options and its first reference must be
    one of them. Otherwise, when ``parse_options`` is true and the input ends with the inline suffix
    `` (A) opt1 (B) opt2 ...`` (see :func:`split_inline_options`), the suffix is removed from the input and its
    texts become the options (the first reference must be one of them); else the example has no options.
    Pass ``parse_options=False`` for generative tasks whose inputs may end in such a pattern.

    Fields are taken verbatim (no whitespace stripping), so that a file written by :func:`write_tsv` reads back
    exactly. Completely empty lines are skipped. Raises DataError naming the file and line for a line without a
    tab, an empty reference, a reference that is not an option, and for a file without examples.
    """
    path = Path(path)
    fixed = _dedup(labels) if labels is not None else None
    if fixed is not None and not fixed:
        raise ValueError("labels must be a non-empty label set (or None)")
    examples: list[Example] = []
    for number, line in _lines(path):
        if line == "":
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise DataError(
                f"no tab in line {line[:60]!r}; expected 'input<TAB>reference[<TAB>reference ...]'", path, number
            )
        text, references = fields[0], tuple(fields[1:])
        empty = [i for i, ref in enumerate(references, start=1) if ref == ""]
        if empty:
            raise DataError(
                f"empty reference (field {empty[0] + 1}); expected non-empty reference strings", path, number
            )
        if fixed is not None:
            options = fixed
            if references[0] not in options:
                raise DataError(
                    f"reference {references[0]!r} is not one of the task's labels {list(options)!r:.300}",
                    path,
                    number,
                )
        else:
            options = ()
            if parse_options:
                text, options = split_inline_options(text)
            if options and references[0] not in options:
                raise DataError(
                    f"reference {references[0]!r} is not among the inline options {list(options)!r:.300}; "
                    "expected the answer text to be one of the ' (A) ... (B) ...' options",
                    path,
                    number,
                )
        examples.append(Example(text, references, options, task or "", meta={"source": str(path), "line": number}))
    if not examples:
        raise _empty_split(path)
    return examples


def sanitize_field(text: str) -> str:
    """Replace every run of tabs and line breaks by one space (what ``write_tsv(..., sanitize=True)`` writes)."""
    return _TSV_FORBIDDEN.sub(" ", text)


def write_tsv(
    examples: Iterable[Example],
    path: str | Path,
    inline_options: bool = True,
    sanitize: bool = False,
    labels: Sequence[str] | None = None,
) -> Path:
    """Write examples in CrossFit's TSV layout, atomically (a temporary file in the same folder, then os.replace).

    One line per example: ``input \\t ref1 [\\t ref2 ...]``. When ``inline_options`` is true, an example's options
    are appended to its input as `` (A) opt1 (B) opt2 ...`` unless they are the fixed label set ``labels`` (label
    sets are not written: the reader passes them to :func:`read_tsv`). Options equal to ``labels`` and, with
    ``inline_options=False``, all options are dropped. A field holding a tab or line break raises DataError
    unless ``sanitize`` is true, which replaces each run of them by one space. Inlined options that would not read
    back identically (an option containing `` (B) ``, more than 26 options, ...) raise DataError. Parent folders
    are created. Returns the path written.
    """
    path = Path(path)
    fixed = _dedup(labels) if labels is not None else None
    rows: list[str] = []
    for number, example in enumerate(examples, start=1):
        text = example.input
        options = _dedup(example.options)
        if inline_options and options and options != fixed:
            written = inline_options_suffix(options) if len(options) <= _MAX_INLINE_OPTIONS else None
            if written and text.endswith(written):  # a loaded task's input already ends with them
                text = text[: -len(written)]
            if any(_TSV_FORBIDDEN.search(o) for o in options):
                if not sanitize:
                    raise DataError(
                        "an option contains a tab or line break, which the TSV layout cannot hold; "
                        "pass sanitize=True to replace them by spaces",
                        path,
                        number,
                    )
                options = _dedup(sanitize_field(o) for o in options)
            if len(options) > _MAX_INLINE_OPTIONS:
                raise DataError(
                    f"{len(options)} options cannot be written inline (at most {_MAX_INLINE_OPTIONS}, A-Z); "
                    "pass them as the fixed label set or use the JSONL layout",
                    path,
                    number,
                )
            text = _check_field(text, "input", path, number, sanitize)
            # Check the reader's view now rather than produce a file that silently reads back differently.
            if split_inline_options(text + inline_options_suffix(options)) != (text, options):
                raise DataError(
                    f"options {list(options)!r:.200} cannot be inlined unambiguously (an option or the end of the "
                    "input looks like a ' (A) ' / ' (B) ' marker); use the JSONL layout for this example",
                    path,
                    number,
                )
            text += inline_options_suffix(options)
        else:
            text = _check_field(text, "input", path, number, sanitize)
        refs = [_check_field(ref, "reference", path, number, sanitize) for ref in example.references]
        if any(ref == "" for ref in refs):
            raise DataError("empty reference: the TSV layout needs non-empty references", path, number)
        rows.append("\t".join([text, *refs]) + "\n")
    if not rows:
        raise DataError("no examples to write: expected at least one example", path)
    write_text(path, "".join(rows))
    return path


def _check_field(text: str, what: str, path: Path, number: int, sanitize: bool) -> str:
    if _TSV_FORBIDDEN.search(text):
        if sanitize:
            return sanitize_field(text)
        raise DataError(
            f"the {what} {text[:60]!r}... contains a tab or line break, which the TSV layout cannot hold; "
            "pass sanitize=True to replace them by spaces",
            path,
            number,
        )
    return text


def read_examples(
    path: str | Path,
    task: str | None = None,
    labels: Sequence[str] | None = None,
    *,
    parse_options: bool = True,
) -> list[Example]:
    """Read a split file in whichever layout its extension names (``.jsonl`` or ``.tsv``).

    ``labels`` and ``parse_options`` apply to TSV only: JSONL lines carry their own options.
    """
    path = Path(path)
    if path.suffix == ".jsonl":
        return read_jsonl(path, task)
    if path.suffix == ".tsv":
        return read_tsv(path, task, labels, parse_options=parse_options)
    raise DataError(f"unknown file type {path.suffix!r}; expected .jsonl or .tsv", path)


# ----------------------------------------------------------------------------------------------------------------
# Split files


def read_split_file(path: str | Path, known_tasks: Iterable[str] | None = None) -> dict[str, list[str]]:
    """Read a task-split file: JSON ``{"train": [tasks], "dev": [tasks], "test": [tasks]}``.

    The keys must be a non-empty subset of train / dev / test; each value a list of distinct, non-empty task
    names. A task listed both in train and in test is an error (test-task leakage). With ``known_tasks``, names
    outside it are an error that lists them with close matches. Every error is a DataError naming the file.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError("split file not found", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read split file: {exc}", path) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"invalid JSON ({exc.msg}, column {exc.colno}); "
            'expected {"train": [...], "dev": [...], "test": [...]}',
            path,
            exc.lineno,
        ) from None
    if not isinstance(data, dict) or not data:
        raise DataError(
            'expected a non-empty JSON object {"train": [...], "dev": [...], "test": [...]}', path
        )
    unknown_keys = sorted(set(data) - set(SPLITS))
    if unknown_keys:
        raise DataError(f"unknown keys {unknown_keys}; expected only {list(SPLITS)}", path)

    splits: dict[str, list[str]] = {}
    for split in SPLITS:
        if split not in data:
            continue
        names = data[split]
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise DataError(f"{split!r} must be a list of non-empty task names (strings), got {names!r:.120}", path)
        duplicates = sorted(n for n, count in Counter(names).items() if count > 1)
        if duplicates:
            raise DataError(f"{split!r} lists tasks more than once: {duplicates}", path)
        splits[split] = list(names)

    leaked = sorted(set(splits.get("train", ())) & set(splits.get("test", ())))
    if leaked:
        raise DataError(f"tasks listed both in 'train' and in 'test' (test-task leakage): {leaked}", path)

    if known_tasks is not None:
        known = sorted(set(known_tasks))
        unknown = sorted({n for names in splits.values() for n in names} - set(known))
        if unknown:
            described = []
            for name in unknown:
                close = difflib.get_close_matches(name, known, n=3)
                described.append(f"{name!r} (did you mean {', '.join(close)}?)" if close else f"{name!r}")
            raise DataError(f"unknown tasks: {'; '.join(described)}", path)
    return splits
