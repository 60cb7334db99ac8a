"""The task catalog: agreement with the data, the ontology, the Markdown table and docs/tasks.md."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from taskspace.errors import DataError, UnknownTaskError
from taskspace.tasks import CATALOG, METRICS, TaskInfo, catalog_markdown, task_info, tasks_where
from taskspace.tasks.catalog import build_catalog, catalog_tsv, docs_table, main, parse_catalog

REPO = Path(__file__).resolve().parents[1]
FEWSHOT = re.compile(r"^(.+)_(\d+)_(\d+)_(train|dev|test)\.jsonl$")

# The ontology as the task brief states it (IPT's cls / non-cls), written out independently of the package.
CLS = set(
    """ade_corpus_v2-classification ag_news anli circa discovery emo emotion ethos-directed_vs_generalized
    ethos-disability ethos-gender ethos-national_origin ethos-race ethos-religion ethos-sexual_orientation glue-cola
    glue-mnli glue-mrpc glue-qnli glue-qqp glue-rte glue-sst2 glue-wnli hate_speech_offensive hatexplain health_fact
    imdb kilt_fever liar paws rotten_tomatoes scitail sms_spam superglue-cb superglue-rte superglue-wic
    superglue-wsc tab_fact trec-finegrained trec tweet_eval-emoji tweet_eval-hate tweet_eval-irony
    tweet_eval-offensive tweet_eval-sentiment tweet_eval-stance_abortion tweet_eval-stance_atheism
    tweet_eval-stance_climate tweet_eval-stance_feminist tweet_eval-stance_hillary wiki_qa yelp_polarity""".split()
)
TYPE_SIZES = {
    "sentiment": 5, "emotion": 3, "hate speech": 11, "stance": 5, "NLI": 8, "paraphrase": 3, "fact checking": 4,
    "topic": 3, "other classification": 9, "multiple-choice QA": 21, "binary QA": 1, "reading comprehension": 6,
    "closed-book QA": 5, "knowledge probing": 6, "linguistic phenomenon": 4, "summarization": 1, "other": 6,
}  # fmt: skip


@pytest.fixture(scope="module")
def data_options(data_dir: Path) -> dict[str, set[tuple[str, ...]]]:
    """Per task, the set of (deduplicated) option lists found in all its few-shot files, read with plain json."""
    found: dict[str, set[tuple[str, ...]]] = {}
    for folder in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        sets = set()
        for path in folder.iterdir():
            match = FEWSHOT.match(path.name)
            if not match or match[1] != folder.name:
                continue  # glue-wnli's overall_*_wnli.jsonl are not few-shot files
            with path.open(encoding="utf-8") as handle:
                sets.update(tuple(dict.fromkeys(json.loads(line)["options"])) for line in handle)
        found[folder.name] = sets
    return found


def test_catalog_covers_exactly_the_data_folders(data_options) -> None:
    assert len(CATALOG) == 101
    assert set(CATALOG) == set(data_options)
    assert all(isinstance(info, TaskInfo) and info.name == name for name, info in CATALOG.items())


def test_has_options_and_labels_agree_with_the_data(data_options) -> None:
    for name, option_sets in data_options.items():
        info = CATALOG[name]
        assert info.has_options == any(option_sets), name
        expected_labels = next(iter(option_sets)) if len(option_sets) == 1 and any(option_sets) else ()
        assert info.labels == expected_labels, name
    # Spot checks, in the data's own option order.
    assert CATALOG["wiqa"].labels == ("more", "less", "no effect")
    assert CATALOG["tweet_eval-irony"].labels == ("0", "1", "hate", "non-irony")
    assert len(CATALOG["discovery"].labels) == 174
    assert CATALOG["commonsense_qa"].options_kind == "per-example"
    assert CATALOG["xsum"].options_kind == "none"


def test_categories_follow_the_ontology() -> None:
    assert {n for n, i in CATALOG.items() if i.category == "cls"} == CLS
    assert Counter(i.category for i in CATALOG.values()) == {"cls": 51, "non-cls": 50}
    assert tasks_where(category="cls") == sorted(CLS)
    # Tasks with fixed labels that the ontology does not call classification.
    assert {"boolq", "piqa", "art", "wiqa", "crows_pairs"} <= set(tasks_where(category="non-cls"))


def test_every_task_has_one_known_type() -> None:
    assert all(info.type for info in CATALOG.values())
    assert Counter(info.type for info in CATALOG.values()) == TYPE_SIZES
    assert tasks_where(type="binary QA") == ["boolq"]
    assert tasks_where(category="cls", type="multiple-choice QA") == []
    assert set(tasks_where(type="linguistic phenomenon")) == {n for n in CATALOG if n.startswith("blimp-")}


def test_metrics_are_crossfit_names() -> None:
    assert all(info.metric in METRICS for info in CATALOG.values())
    assert Counter(i.metric for i in CATALOG.values()) == {
        "ACC": 37, "Classification-F1": 39, "EM": 17, "QA-F1": 6, "Rouge-L": 1, "Matthew-Correlation": 1,
    }  # fmt: skip
    assert task_info("glue-cola").metric == "Matthew-Correlation"
    assert task_info("xsum").metric == "Rouge-L"
    assert task_info("squad-with_context").metric == "QA-F1"
    assert task_info("squad-no_context").metric == "EM"


def test_task_info_unknown_suggests() -> None:
    with pytest.raises(UnknownTaskError, match="did you mean.*tweet_eval-hate"):
        task_info("tweet_eval_hate")


def test_generator_reproduces_the_packaged_catalog(data_dir: Path, tmp_path: Path) -> None:
    rebuilt = build_catalog(data_dir, {name: info.metric for name, info in CATALOG.items()})
    assert rebuilt == CATALOG
    packaged = (REPO / "src" / "taskspace" / "tasks" / "catalog.tsv").read_text(encoding="utf-8")
    assert catalog_tsv(rebuilt) == packaged
    assert parse_catalog(packaged) == CATALOG


def test_parse_catalog_errors_name_the_line() -> None:
    header = "task\tmetric\tcategory\ttype\thas_options\tlabels\n"
    with pytest.raises(DataError, match="line 2: unknown metric 'F1'"):
        parse_catalog(header + 't\tF1\tcls\tx\ttrue\t["a"]\n', "cat.tsv")
    with pytest.raises(DataError, match="line 3: labels must be a JSON list"):
        parse_catalog(header + "t\tEM\tnon-cls\tx\tfalse\t[]\nu\tEM\tcls\tx\ttrue\t[1]\n", "cat.tsv")
    with pytest.raises(DataError, match="line 1: expected the header"):
        parse_catalog("name\tmetric\n", "cat.tsv")


def test_markdown_table() -> None:
    table = catalog_markdown()
    lines = table.splitlines()
    assert lines[0] == "| task | metric | options | category | type | labels |"
    assert len(lines) == 2 + 101
    assert "| glue-sst2 | ACC | fixed (2) | cls | sentiment | `negative` `positive` |" in lines
    assert "| commonsense_qa | ACC | per example | non-cls | multiple-choice QA | – |" in lines
    discovery = next(line for line in lines if line.startswith("| discovery |"))
    assert discovery.endswith("… (+168 more) |")  # 174 labels, six shown
    assert all(line.count(" | ") == 5 for line in lines)  # no label breaks a cell


def test_docs_page_holds_the_table_exactly() -> None:
    document = (REPO / "docs" / "tasks.md").read_text(encoding="utf-8")
    assert document.count("<!-- catalog:start -->") == 1 and document.count("<!-- catalog:end -->") == 1
    assert docs_table(document) == catalog_markdown()


def test_markdown_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["markdown"]) == 0
    assert capsys.readouterr().out == catalog_markdown()
