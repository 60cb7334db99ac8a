"""Your own classification data is classification: outputs of a few values become the task's options (the idea of
datasets' ClassLabel), said once; text / label columns are read by their Hugging Face names; and a folder that is
one task is listed by `taskspace tasks` and tuned with --decode rank and Classification-F1."""

from __future__ import annotations

import json

import pytest

from taskspace.cli import build_parser, main
from taskspace.cli.tune import tune_config_from
from taskspace.errors import ConfigError, DataError
from taskspace.tasks import Example, available_tasks, examples_digest, load_task
from taskspace.tasks.classlabels import MAX_CLASS_LABELS, class_labels
from taskspace.tasks.sources import Columns
from taskspace.tuning import default_run_name

#: What the one line about inferred options says.
SAID = "distinct outputs"

REVIEWS = {
    "train": [("loved it", "good"), ("awful", "bad"), ("great fun", "good"), ("dull", "bad"), ("a gem", "good"),
              ("boring", "bad"), ("superb", "good"), ("weak plot", "bad")],
    "dev": [("nice", "good"), ("poor", "bad")],
    "test": [("fine", "good"), ("bad acting", "bad"), ("wonderful", "good")],
}


def _csv(folder, splits, header=("input", "output")):
    """One CSV file per split in ``folder``: the header, then one (text, label) row per pair."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        lines = [",".join(header), *(",".join(row) for row in rows)]
        (folder / f"{split}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def _said(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if SAID in r.getMessage()]


def _all(task) -> list[Example]:
    return [*task.train, *task.dev, *task.test]


def test_a_label_column_of_few_values_becomes_the_options(tmp_path, caplog):
    _csv(tmp_path / "reviews", REVIEWS)
    with caplog.at_level("WARNING"):
        task = load_task("reviews", tmp_path)
    assert all(e.options == ("bad", "good") for e in _all(task))
    assert [e.target for e in task.dev] == ["good", "bad"]  # the outputs themselves are unchanged
    assert task.info.has_options and task.info.labels == ("bad", "good")
    assert task.metric == "ACC" and "ACC: the default" in task.sources["metric"]
    assert task.sources["options"].startswith("inferred: the 2 distinct train outputs (bad, good)")
    said = _said(caplog)
    assert len(said) == 1 and said[0].startswith("task reviews: its 2 distinct outputs (bad, good) are its options")
    # sorted, not first-seen: the same data in another row order give the same options (and examples)
    turned = _csv(tmp_path / "turned", {split: rows[::-1] for split, rows in REVIEWS.items()})
    assert load_task("reviews", turned).train[0].options == ("bad", "good")


def test_numeric_labels_are_class_labels_sorted_by_value(tmp_path):
    rows = [json.dumps({"input": f"n{i}", "output": label}) for i, label in enumerate([0, 1, 2, 10] * 2)]
    (tmp_path / "numbers").mkdir()
    (tmp_path / "numbers" / "train.jsonl").write_text("\n".join(rows) + "\n")
    (tmp_path / "numbers" / "dev.jsonl").write_text(json.dumps({"input": "x", "output": 10}) + "\n")
    task = load_task("numbers", tmp_path)
    assert task.train[0].options == ("0", "1", "2", "10") and task.dev[0].target == "10"
    _csv(tmp_path / "binary", {"train": [(f"t{i}", str(i % 2)) for i in range(6)], "dev": [("d", "1")]})
    assert load_task("binary", tmp_path).dev[0].options == ("0", "1")


def test_text_and_label_columns_are_read_by_their_hugging_face_names(tmp_path):
    _csv(tmp_path / "hf", REVIEWS, header=("text", "label"))
    task = load_task("hf", tmp_path)
    assert (task.train[0].input, task.train[0].target, task.train[0].options) == ("loved it", "good", ("bad", "good"))
    # input / output win where a file has both conventions
    _csv(tmp_path / "both", {"train": [("a", "b", "c", "d")], "dev": [("a", "b", "c", "d")]},
         header=("input", "output", "text", "label"))
    both = load_task("both", tmp_path).train[0]
    assert (both.input, both.target) == ("a", "b")
    _csv(tmp_path / "neither", {"train": [("a", "b")], "dev": [("a", "b")]}, header=("words", "label"))
    with pytest.raises(DataError, match=r"train.csv, line 1: no input column 'input' \(nor 'text'\) "
                                        r"\(columns: words, label\); name it with --input-column"):
        load_task("neither", tmp_path)


def test_a_saved_dataset_with_a_label_column_needs_no_column_options(tmp_path):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})
    rows = {"train": {"text": ["good", "bad"], "label": [1, 0]}, "validation": {"text": ["ok"], "label": [1]}}
    datasets.DatasetDict({k: datasets.Dataset.from_dict(v, features=features) for k, v in rows.items()}).save_to_disk(
        str(tmp_path / "sst"))
    task = load_task("sst", tmp_path)
    assert [e.target for e in task.train] == ["positive", "negative"]
    assert task.dev[0].options == ("negative", "positive")
    assert available_tasks(tmp_path / "sst") == ["sst"]  # one task, not its splits' folders


def test_no_infer_options_and_an_options_column_keep_the_outputs_free_text(tmp_path, caplog):
    _csv(tmp_path / "reviews", REVIEWS)
    with caplog.at_level("WARNING"):
        off = load_task("reviews", tmp_path, columns=Columns(infer_options=False))
        named = load_task("reviews", tmp_path, columns=Columns(options_column="choices"))  # a column the files lack
    for task in (off, named):
        assert not any(e.options for e in _all(task))
        assert task.metric == "EM" and "options" not in task.sources and not task.info.labels
    assert not _said(caplog)
    # the inferred options are part of the examples, so the frozen-score cache (keyed by this digest) tells them apart
    assert examples_digest(off.dev) != examples_digest(load_task("reviews", tmp_path).dev)


def test_no_infer_options_is_a_setting_of_the_run(tmp_path):
    _csv(tmp_path / "reviews", REVIEWS)  # a run's name covers its data: naming it loads the task
    common = ["tune", "--task", "reviews", "--method", "bitfit", "--data-dir", str(tmp_path)]
    on = tune_config_from(build_parser().parse_args(common))
    off = tune_config_from(build_parser().parse_args([*common, "--no-infer-options"]))
    assert on.columns.infer_options and not off.columns.infer_options
    assert "columns" not in on.identity()  # at its default: runs made before the option keep their names
    assert off.identity()["columns"]["infer_options"] is False
    assert default_run_name(on) != default_run_name(off)


@pytest.mark.parametrize("split", ["dev", "test"])
def test_an_output_outside_the_train_labels_keeps_them_free_text_and_says_nothing(tmp_path, caplog, split):
    _csv(tmp_path / "reviews", {**REVIEWS, split: [("so-so", "mixed"), *REVIEWS[split]]})
    with caplog.at_level("WARNING"):
        task = load_task("reviews", tmp_path)
    assert not any(e.options for e in _all(task)) and task.metric == "EM" and "options" not in task.sources
    assert not _said(caplog)


def _examples(labels) -> list[Example]:
    return [Example(f"x{i}", (label,)) for i, label in enumerate(labels)]


@pytest.mark.parametrize("train,expected", [
    (["a", "b", "b", "a"], ("a", "b")),  # 2 labels in 4 rows: at most half as many labels as rows
    (["a", "b", "a"], None),  # one label occurs once: not a recurring label
    (["a"] * 6, None),  # a single value is no choice
    ([f"c{i % 20:02d}" for i in range(40)], tuple(f"c{i:02d}" for i in range(20))),  # the most: 20
    ([f"c{i % 21:02d}" for i in range(42)], None),
])
def test_which_outputs_are_class_labels(train, expected):
    assert MAX_CLASS_LABELS == 20
    assert class_labels({"train": _examples(train), "dev": _examples(train[:1])}) == expected


def test_outputs_with_options_or_several_references_are_not_class_labels():
    train = _examples(["a", "b", "a", "b"])
    assert class_labels({"train": train, "dev": [Example("q", ("a", "A"))]}) is None
    assert class_labels({"train": train, "dev": [Example("q", ("a",), ("a", "c"))]}) is None


def test_a_folder_that_is_one_task_is_listed_and_tuned_as_classification(tmp_path, shared_dir, capsys, caplog):
    folder = _csv(tmp_path / "reviews", REVIEWS)
    assert main(["tasks", "--data-dir", str(folder)]) == 0
    out = capsys.readouterr().out
    # The labels inferred from its outputs are its options, as tune reads them; the listing says nothing else.
    assert [line.split()[:4] for line in out.splitlines() if line.startswith("reviews ")] == [
        ["reviews", "ACC", "unknown", "yes"]] and "1 tasks" in out
    args = ["tune", "--task", "reviews", "--method", "bitfit", "--backbone", f"{shared_dir}/models/stories260K",
            "--data-dir", str(folder), "--decode", "rank", "--metric", "Classification-F1", "--steps", "2",
            "--eval-every", "2", "--out", str(tmp_path / "runs"), "--run-name", "r", "--no-progress"]
    with caplog.at_level("WARNING"):
        assert main(args) == 0
    assert "metric Classification-F1 | decode rank" in capsys.readouterr().out
    assert len(_said(caplog)) == 1
    run = tmp_path / "runs" / "r"
    for split in ("dev", "test"):  # ranked: every answer is one of the labels
        rows = [json.loads(line) for line in (run / "predictions" / f"{split}.jsonl").read_text().splitlines()]
        assert len(rows) == len(REVIEWS[split]) and {r["prediction"] for r in rows} <= {"bad", "good"}
    assert json.loads((run / "config.json").read_text())["data"]["sources"]["options"].startswith("inferred: the 2")


def test_no_infer_options_is_refused_for_crossfit_files(data_dir):
    with pytest.raises(ConfigError, match=r"--no-infer-options: task 'glue-sst2' is read from CrossFit files"):
        load_task("glue-sst2", data_dir, columns=Columns(infer_options=False))


def test_a_task_whose_files_cannot_be_read_is_listed_with_the_reason(tmp_path, capsys):
    folder = _csv(tmp_path / "data" / "broken", REVIEWS, header=("text", "stars"))
    assert main(["tasks", "--data-dir", str(folder.parent)]) == 0
    (row,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("broken ")]
    assert row.split()[1] == "?" and "unreadable: " in row
