"""The task catalog: metric, options, category and type of the 101 CrossFit few-shot tasks.

``catalog.tsv`` (package data, beside this module) is the source of truth at run time; reading it needs no
access to the task data. The generator below rebuilds it from a data folder::

    python -m taskspace.tasks.catalog build DATA_DIR [--metrics FILE] [--output PATH]
    python -m taskspace.tasks.catalog markdown          # the Markdown table of docs/tasks.md
    python -m taskspace.tasks.catalog update-docs docs/tasks.md

"Classification" here means CrossFit's task ontology (``cls/*``), which IPT's cls / non-cls splits use; see
docs/tasks.md for why, and for the two other meanings (builder class, metric family).
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from taskspace.errors import DataError, UnknownTaskError
from taskspace.tasks.formats import read_examples
from taskspace.tasks.metrics import METRICS

__all__ = ["TaskInfo", "CATALOG", "task_info", "tasks_where", "catalog_markdown", "CATEGORIES", "COLUMNS"]

CATEGORIES: tuple[str, ...] = ("cls", "non-cls")
COLUMNS: tuple[str, ...] = ("task", "metric", "category", "type", "has_options", "labels")
_CATALOG_FILE = "catalog.tsv"
_DOCS_START = "<!-- catalog:start -->"
_DOCS_END = "<!-- catalog:end -->"


@dataclass(frozen=True)
class TaskInfo:
    """What the catalog knows about a task.

    ``labels`` is the fixed label set (in the data's option order) of tasks whose every example has the same
    options; it is empty for tasks with per-example answer choices (multiple-choice QA) and for generative tasks
    (``has_options`` false). ``category`` is "cls" or "non-cls" (CrossFit's ontology; "unknown" for user tasks
    outside the catalog) and ``type`` a finer grouping (sentiment, NLI, multiple-choice QA, ...).
    """

    name: str
    metric: str
    has_options: bool
    labels: tuple[str, ...]
    category: str
    type: str

    @property
    def options_kind(self) -> str:
        """"fixed" (a label set shared by all examples), "per-example" (answer choices) or "none" (generative)."""
        if self.labels:
            return "fixed"
        return "per-example" if self.has_options else "none"


def _parse_bool(value: str, path: str, line: int) -> bool:
    if value not in ("true", "false"):
        raise DataError(f"has_options must be 'true' or 'false', got {value!r}", path, line)
    return value == "true"


def parse_catalog(text: str, source: str = _CATALOG_FILE) -> dict[str, TaskInfo]:
    """Parse the catalog TSV (header ``task metric category type has_options labels``; labels a JSON list)."""
    lines = text.splitlines()
    if not lines or tuple(lines[0].split("\t")) != COLUMNS:
        raise DataError(f"expected the header {chr(9).join(COLUMNS)!r}", source, 1)
    catalog: dict[str, TaskInfo] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(COLUMNS):
            raise DataError(
                f"expected {len(COLUMNS)} tab-separated fields {list(COLUMNS)}, got {len(fields)}", source, number
            )
        name, metric, category, type_, has_options, labels_json = fields
        if metric not in METRICS:
            raise DataError(f"unknown metric {metric!r}; expected one of {sorted(METRICS)}", source, number)
        if category not in CATEGORIES:
            raise DataError(f"unknown category {category!r}; expected one of {list(CATEGORIES)}", source, number)
        if not type_:
            raise DataError("empty type", source, number)
        try:
            labels = json.loads(labels_json)
        except json.JSONDecodeError as exc:
            raise DataError(f"labels must be a JSON list of strings ({exc.msg})", source, number) from None
        if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
            raise DataError(f"labels must be a JSON list of strings, got {labels_json!r:.80}", source, number)
        info = TaskInfo(name, metric, _parse_bool(has_options, source, number), tuple(labels), category, type_)
        if info.labels and not info.has_options:
            raise DataError("a task with labels must have has_options = true", source, number)
        if name in catalog:
            raise DataError(f"task {name!r} is listed twice", source, number)
        catalog[name] = info
    return catalog


def _load_catalog() -> dict[str, TaskInfo]:
    resource = resources.files("taskspace.tasks").joinpath(_CATALOG_FILE)
    return parse_catalog(resource.read_text(encoding="utf-8"), str(resource))


#: Every catalogued task by name, read once from the packaged catalog.tsv.
CATALOG: dict[str, TaskInfo] = _load_catalog()


def close_task_names(name: str, candidates: Sequence[str] | None = None, n: int = 3) -> list[str]:
    """Up to ``n`` names close to ``name`` (difflib), from ``candidates`` or the catalog."""
    pool = sorted(CATALOG) if candidates is None else sorted(set(candidates))
    return difflib.get_close_matches(name, pool, n=n, cutoff=0.6)


def task_info(name: str) -> TaskInfo:
    """The catalog entry of a task; UnknownTaskError (with close names) when it is not catalogued."""
    try:
        return CATALOG[name]
    except KeyError:
        close = close_task_names(name)
        if close:
            hint = f"; did you mean {', '.join(close)}?"
        else:
            hint = f"; the catalog lists {len(CATALOG)} tasks (see docs/tasks.md)"
        raise UnknownTaskError(f"unknown task {name!r}: not in the task catalog{hint}") from None


def tasks_where(category: str | None = None, type: str | None = None) -> list[str]:  # noqa: A002 - column name
    """Sorted names of the catalogued tasks with the given category and/or type (None: any)."""
    return sorted(
        name
        for name, info in CATALOG.items()
        if (category is None or info.category == category) and (type is None or info.type == type)
    )


# ----------------------------------------------------------------------------------------------------------------
# Markdown


_MAX_LABELS_SHOWN = 6


def _code(text: str) -> str:
    # A pipe would end the table cell even inside a code span (GitHub-flavoured Markdown).
    return "`" + text.replace("|", "\\|") + "`"


def _labels_cell(labels: Sequence[str]) -> str:
    if not labels:
        return "–"
    shown = " ".join(_code(label) for label in labels[:_MAX_LABELS_SHOWN])
    if len(labels) > _MAX_LABELS_SHOWN:
        shown += f" … (+{len(labels) - _MAX_LABELS_SHOWN} more)"
    return shown


def catalog_markdown(catalog: Mapping[str, TaskInfo] | None = None) -> str:
    """One Markdown table of the catalog: task | metric | options | category | type | labels (first six shown)."""
    catalog = CATALOG if catalog is None else catalog
    rows = ["| task | metric | options | category | type | labels |", "| --- | --- | --- | --- | --- | --- |"]
    for name in sorted(catalog):
        info = catalog[name]
        kind = info.options_kind
        options = f"fixed ({len(info.labels)})" if kind == "fixed" else kind.replace("-", " ")
        rows.append(
            f"| {name} | {info.metric} | {options} | {info.category} | {info.type} | {_labels_cell(info.labels)} |"
        )
    return "\n".join(rows) + "\n"


def replace_docs_table(document: str, table: str) -> str:
    """Put ``table`` between the ``<!-- catalog:start -->`` / ``<!-- catalog:end -->`` lines of a document."""
    pattern = re.compile(re.escape(_DOCS_START) + r"\n.*?" + re.escape(_DOCS_END), re.S)
    if not pattern.search(document):
        raise ValueError(f"the document has no {_DOCS_START} ... {_DOCS_END} block")
    return pattern.sub(lambda _: f"{_DOCS_START}\n{table}{_DOCS_END}", document, count=1)


def docs_table(document: str) -> str:
    """The text between the catalog marker lines of a document (what ``catalog_markdown()`` put there)."""
    start = document.index(_DOCS_START + "\n") + len(_DOCS_START) + 1
    return document[start : document.index(_DOCS_END, start)]


# ----------------------------------------------------------------------------------------------------------------
# Generator: the ontology below (CrossFit's, as used by IPT's cls / non-cls splits) and the data make catalog.tsv.

#: The 51 "cls" tasks of the ontology; the other catalogued tasks are "non-cls".
CLS_TASKS: frozenset[str] = frozenset(
    """
    ade_corpus_v2-classification ag_news anli circa discovery emo emotion ethos-directed_vs_generalized
    ethos-disability ethos-gender ethos-national_origin ethos-race ethos-religion ethos-sexual_orientation glue-cola
    glue-mnli glue-mrpc glue-qnli glue-qqp glue-rte glue-sst2 glue-wnli hate_speech_offensive hatexplain health_fact
    imdb kilt_fever liar paws rotten_tomatoes scitail sms_spam superglue-cb superglue-rte superglue-wic
    superglue-wsc tab_fact trec-finegrained trec tweet_eval-emoji tweet_eval-hate tweet_eval-irony
    tweet_eval-offensive tweet_eval-sentiment tweet_eval-stance_abortion tweet_eval-stance_atheism
    tweet_eval-stance_climate tweet_eval-stance_feminist tweet_eval-stance_hillary wiki_qa yelp_polarity
    """.split()
)

#: Finer task types; every catalogued task has exactly one.
TASK_TYPES: Mapping[str, tuple[str, ...]] = {
    type_: tuple(names.split())
    for type_, names in (
        ("sentiment", "glue-sst2 imdb rotten_tomatoes yelp_polarity tweet_eval-sentiment"),
        ("emotion", "emo emotion tweet_eval-emoji"),
        (
            "hate speech",
            "ethos-directed_vs_generalized ethos-disability ethos-gender ethos-national_origin ethos-race "
            "ethos-religion ethos-sexual_orientation hate_speech_offensive hatexplain tweet_eval-hate "
            "tweet_eval-offensive",
        ),
        (
            "stance",
            "tweet_eval-stance_abortion tweet_eval-stance_atheism tweet_eval-stance_climate "
            "tweet_eval-stance_feminist tweet_eval-stance_hillary",
        ),
        ("NLI", "anli glue-mnli glue-qnli glue-rte glue-wnli scitail superglue-cb superglue-rte"),
        ("paraphrase", "glue-mrpc glue-qqp paws"),
        ("fact checking", "health_fact kilt_fever liar tab_fact"),
        ("topic", "ag_news trec trec-finegrained"),
        (
            "other classification",
            "ade_corpus_v2-classification circa discovery glue-cola superglue-wic superglue-wsc wiki_qa "
            "tweet_eval-irony sms_spam",
        ),
        (
            "multiple-choice QA",
            "ai2_arc codah commonsense_qa cosmos_qa dream hellaswag openbookqa qasc quail quartz-no_knowledge "
            "quartz-with_knowledge race-high race-middle sciq superglue-copa superglue-multirc swag wino_grande "
            "wiqa piqa art",
        ),
        ("binary QA", "boolq"),
        ("reading comprehension", "quoref ropes squad-with_context superglue-record hotpot_qa tweet_qa"),
        ("closed-book QA", "freebase_qa kilt_hotpotqa kilt_nq web_questions squad-no_context"),
        ("knowledge probing", "lama-conceptnet lama-google_re lama-squad lama-trex kilt_trex kilt_zsre"),
        (
            "linguistic phenomenon",
            "blimp-anaphor_number_agreement blimp-ellipsis_n_bar_2 blimp-sentential_negation_npi_licensor_present "
            "blimp-sentential_negation_npi_scope",
        ),
        ("summarization", "xsum"),
        ("other", "ade_corpus_v2-dosage kilt_ay2 qa_srl proto_qa wikisql crows_pairs"),
    )
}

_FEWSHOT_FILE = re.compile(r"^(?P<task>.+)_(?P<k>\d+)_(?P<seed>\d+)_(?P<split>train|dev|test)\.(?:jsonl|tsv)$")


def _type_of(name: str) -> str:
    types = [type_ for type_, names in TASK_TYPES.items() if name in names]
    if len(types) != 1:
        raise ValueError(f"task {name!r} has {len(types)} types {types} in TASK_TYPES; expected exactly one")
    return types[0]


def derive_options(data_dir: str | Path, task: str) -> tuple[bool, tuple[str, ...]]:
    """``(has_options, labels)`` of a task from every few-shot file in its folder (all seeds, all splits).

    ``labels`` is the shared option list when every example has the same non-empty options, else empty.
    Files that are not ``<task>_<k>_<seed>_<split>`` (such as glue-wnli's ``overall_*``) are ignored.
    """
    folder = Path(data_dir) / task
    files = sorted(p for p in folder.iterdir() if (m := _FEWSHOT_FILE.match(p.name)) and m["task"] == task)
    if not files:
        raise DataError(f"no few-shot files for task {task!r}", folder)
    option_sets = {example.options for path in files for example in read_examples(path, task)}
    has_options = any(option_sets)
    labels = next(iter(option_sets)) if len(option_sets) == 1 and has_options else ()
    return has_options, labels


def build_catalog(data_dir: str | Path, metrics: Mapping[str, str]) -> dict[str, TaskInfo]:
    """Catalog entries for every task folder of ``data_dir`` holding few-shot files.

    ``metrics`` maps task names to CrossFit metric names; category and type come from :data:`CLS_TASKS` and
    :data:`TASK_TYPES`; has_options and labels from the data. Raises ValueError when a task lacks a metric or a
    type, or when the ontology names a task without a folder.
    """
    data_dir = Path(data_dir)
    names = sorted(
        p.name for p in data_dir.iterdir() if p.is_dir() and any(_FEWSHOT_FILE.match(f.name) for f in p.iterdir())
    )
    missing_metric = [n for n in names if n not in metrics]
    if missing_metric:
        raise ValueError(f"no metric given for tasks {missing_metric}")
    bad_metric = {n: metrics[n] for n in names if metrics[n] not in METRICS}
    if bad_metric:
        raise ValueError(f"unknown metrics {bad_metric}; expected one of {sorted(METRICS)}")
    typed = {n for group in TASK_TYPES.values() for n in group}
    orphans = sorted((typed | CLS_TASKS) - set(names))
    if orphans:
        raise ValueError(f"the ontology names tasks without a folder in {data_dir}: {orphans}")
    catalog = {}
    for name in names:
        has_options, labels = derive_options(data_dir, name)
        category = "cls" if name in CLS_TASKS else "non-cls"
        catalog[name] = TaskInfo(name, metrics[name], has_options, labels, category, _type_of(name))
    return catalog


def catalog_tsv(catalog: Mapping[str, TaskInfo]) -> str:
    """The catalog.tsv text of a catalog (sorted by task name)."""
    rows = ["\t".join(COLUMNS)]
    for name in sorted(catalog):
        info = catalog[name]
        labels = json.dumps(list(info.labels), ensure_ascii=False)
        rows.append("\t".join([name, info.metric, info.category, info.type, str(info.has_options).lower(), labels]))
    return "\n".join(rows) + "\n"


def read_metrics_file(path: str | Path) -> dict[str, str]:
    """``task \\t metric`` lines (blank lines, ``#`` comments and a ``task metric`` header are skipped)."""
    path = Path(path)
    metrics: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#") or line.split("\t") == ["task", "metric"]:
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise DataError("expected 'task<TAB>metric'", path, number)
        metrics[fields[0]] = fields[1]
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of the generator (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m taskspace.tasks.catalog", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="rebuild catalog.tsv from a data folder")
    build.add_argument("data_dir", type=Path)
    build.add_argument(
        "--metrics", type=Path, help="task<TAB>metric file (default: the metrics of the current catalog)"
    )
    build.add_argument("--output", type=Path, help="where to write (default: the packaged catalog.tsv)")
    sub.add_parser("markdown", help="print the Markdown table of docs/tasks.md")
    docs = sub.add_parser("update-docs", help="rewrite the table between the catalog markers of a Markdown file")
    docs.add_argument("path", type=Path)
    args = parser.parse_args(argv)

    if args.command == "build":
        metrics = read_metrics_file(args.metrics) if args.metrics else {n: i.metric for n, i in CATALOG.items()}
        output = args.output or Path(__file__).with_name(_CATALOG_FILE)
        catalog = build_catalog(args.data_dir, metrics)
        output.write_text(catalog_tsv(catalog), encoding="utf-8")
        sys.stdout.write(f"wrote {len(catalog)} tasks to {output}\n")
    elif args.command == "markdown":
        sys.stdout.write(catalog_markdown())
    else:
        text = args.path.read_text(encoding="utf-8")
        args.path.write_text(replace_docs_table(text, catalog_markdown()), encoding="utf-8")
        sys.stdout.write(f"updated the catalog table of {args.path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
