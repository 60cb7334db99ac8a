"""Your own data and metrics: split files with a header, saved and hub datasets, column names, the default
metric of a task outside the catalog, metrics of your own; and a tune run on each."""

from __future__ import annotations

import json

import pytest

from taskspace.cli import main
from taskspace.errors import ConfigError, DataError
from taskspace.tasks import available_tasks, load_task
from taskspace.tasks.metrics import METRICS, compute_metric, register_metric
from taskspace.tasks.sources import Columns

datasets = pytest.importorskip("datasets")

COLUMNS = Columns(input_column="text", output_column="label")


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def own(tmp_path):
    """A folder with three tasks of one's own: CSV (with a quoted comma), TSV + JSON lines, and a saved dataset."""
    _write(tmp_path / "reviews" / "train.csv", 'text,label\n"Great film, loved it",positive\n"Awful.\nJust awful",negative\n')
    _write(tmp_path / "reviews" / "validation.csv", "text,label\nNice,positive\n")
    _write(tmp_path / "reviews" / "test.csv", "text,label\nBad,negative\nFine,positive\n")
    _write(tmp_path / "qa" / "train.tsv", "text\tlabel\nwho wrote hamlet?\tshakespeare\n")
    _write(tmp_path / "qa" / "dev.jsonl", '{"text": "capital of france?", "label": ["paris", "Paris"]}\n')
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})
    rows = {"train": {"text": ["good", "bad", "great"], "label": [1, 0, 1]}, "validation": {"text": ["ok"], "label": [1]}}
    datasets.DatasetDict({k: datasets.Dataset.from_dict(v, features=features) for k, v in rows.items()}).save_to_disk(
        str(tmp_path / "sst"))
    return tmp_path


def test_split_files_with_a_header_are_read_by_column(own):
    task = load_task("reviews", own, columns=COLUMNS)
    assert [e.input for e in task.train] == ["Great film, loved it", "Awful.\nJust awful"]  # a quoted line break kept
    assert [e.target for e in task.dev] == ["positive"] and len(task.test) == 2
    assert task.sources["dev"].endswith("validation.csv")
    qa = load_task("qa", own, columns=COLUMNS)
    assert qa.dev[0].references == ("paris", "Paris")  # JSON lines: a list is several references
    assert not qa.has_test and "no test split" in qa.sources["test"]
    assert {"reviews", "qa", "sst"} <= set(available_tasks(own))
    # the data folder may be the task's own folder
    alone = load_task("anything", own / "reviews", columns=COLUMNS)
    assert [(e.input, e.task) for e in alone.train] == [(e.input, "anything") for e in task.train]


def test_a_saved_dataset_reads_class_labels_as_options(own):
    task = load_task("sst", own, columns=COLUMNS)
    assert [e.target for e in task.train] == ["positive", "negative", "positive"]
    assert task.train[0].options == ("negative", "positive")
    assert task.metric == "ACC" and "the default" in task.sources["metric"]


def test_a_hub_name_is_downloaded_once_into_the_cache(own, tmp_path, monkeypatch):
    calls = []

    def load_dataset(name, config=None):
        calls.append((name, config))
        return datasets.load_from_disk(str(own / "sst"))

    monkeypatch.setenv("TASKSPACE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    for _ in range(2):
        task = load_task("sst2", "hub:someone/sst:default", columns=COLUMNS)
        assert len(task.train) == 3
    assert calls == [("someone/sst", "default")]  # the second load used the saved copy
    assert not list((tmp_path / "cache" / "datasets").glob("*.tmp-*"))


def test_the_default_metric_is_said_once_and_recorded(own, caplog):
    with caplog.at_level("WARNING"):
        task = load_task("reviews", own, columns=COLUMNS)
    assert task.metric == "EM" and "EM: the default" in task.sources["metric"]
    assert sum("not in the catalog: scored with EM" in r.getMessage() for r in caplog.records) == 1
    assert load_task("reviews", own, columns=COLUMNS, metric="Rouge-L").metric == "Rouge-L"


def my_metric(predictions, references):
    return sum(len(p) for p in predictions) / 100


def test_metrics_of_your_own(own):
    try:
        register_metric("length", my_metric)
        assert compute_metric("length", ["abc", "de"], [["x"], ["y"]]) == pytest.approx(0.05)
        with pytest.raises(ConfigError, match="built in"):
            register_metric("EM", my_metric)
        path = f"{__name__}:my_metric"
        assert load_task("reviews", own, columns=COLUMNS, metric=path).metric == path
        assert compute_metric(path, ["abcd"], [["x"]]) == pytest.approx(0.04)
        register_metric("broken", lambda p, r: float("nan"))
        with pytest.raises(ConfigError, match="finite"):
            compute_metric("broken", ["a"], [["a"]])
    finally:
        for name in ("length", "broken", f"{__name__}:my_metric"):
            METRICS.pop(name, None)


@pytest.mark.parametrize("files,columns,message", [
    ({"t/train.csv": "text,label\na,b\n"}, COLUMNS, r"t: no dev split: expected dev.csv"),
    ({"t/train.csv": "words,label\na,b\n", "t/dev.csv": "words,label\na,b\n"}, COLUMNS,
     r"train.csv, line 1: no input column 'text' \(columns: words, label\); name it with --input-column"),
    ({"t/train.csv": "text,label\na,b,c\n", "t/dev.csv": "text,label\na,b\n"}, COLUMNS,
     r"train.csv, line 2: 3 cells, but the header names 2 columns"),
    ({"t/train.csv": "text,label\na,\n", "t/dev.csv": "text,label\na,b\n"}, COLUMNS, r"line 2: .*empty output"),
    ({"t/train.csv": 'text,label,choices\na,b,"[""x"", ""y""]"\n', "t/dev.csv": "text,label\na,b\n"},
     Columns(input_column="text", output_column="label", options_column="choices"),
     r"train.csv, line 2: output 'b' is not among the options \['x', 'y'\]"),
    ({"t/train.csv": "text,label,options\na,b,x|y\n", "t/dev.csv": "text,label\na,b\n"}, COLUMNS,
     r"line 2: options column 'options': 'x\|y' is not a JSON array"),
    ({"t/train.jsonl": '{"text": 3, "label": "b"}\n', "t/dev.jsonl": '{"text": "a", "label": "b"}\n'}, COLUMNS,
     r"train.jsonl, line 1: input column 'text': expected text, got int"),
    ({"t/train.csv": "text,label\n", "t/dev.csv": "text,label\na,b\n"}, COLUMNS, r"train.csv: empty split"),
])
def test_bad_own_data_is_named_by_file_and_line(tmp_path, files, columns, message):
    for name, text in files.items():
        _write(tmp_path / name, text)
    with pytest.raises(DataError, match=message):
        load_task("t", tmp_path, columns=columns)


def test_column_options_are_refused_for_crossfit_files(data_dir):
    with pytest.raises(ConfigError, match="columns are fixed"):
        load_task("glue-sst2", data_dir, columns=COLUMNS)


def test_tune_and_predict_on_your_own_csv(own, shared_dir, tmp_path, capsys):
    llama = f"{shared_dir}/models/stories260K"
    args = ["tune", "--task", "reviews", "--method", "bitfit", "--backbone", llama, "--data-dir", str(own),
            "--input-column", "text", "--output-column", "label", "--metric", f"{__name__}:my_metric",
            "--steps", "2", "--eval-every", "2", "--out", str(tmp_path / "runs"), "--run-name", "r", "--no-progress"]
    try:
        assert main(args) == 0
        config = json.loads((tmp_path / "runs" / "r" / "config.json").read_text())
        assert config["run"]["columns"] == {"input_column": "text", "output_column": "label",
                                            "options_column": "options"}
        assert config["data"]["metric"] == f"{__name__}:my_metric"
        METRICS.pop(f"{__name__}:my_metric")
        # the metric is imported again from its module: evaluate reproduces the saved scores
        assert main(["evaluate", str(tmp_path / "runs" / "r")]) == 0
        assert "identical" in capsys.readouterr().out
    finally:
        METRICS.pop(f"{__name__}:my_metric", None)
