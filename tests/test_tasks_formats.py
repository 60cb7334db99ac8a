"""File formats and task loading: JSONL / TSV readers, the TSV writer, file location, split files, load_task."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from taskspace.errors import ConfigError, DataError, UnknownTaskError
from taskspace.tasks import (
    CATALOG,
    METRICS,
    Example,
    Task,
    available_tasks,
    default_data_dir,
    load_task,
    read_jsonl,
    read_split_file,
    read_tsv,
    task_files,
    write_tsv,
)
from taskspace.tasks.formats import inline_options_suffix, split_inline_options

TEST_SLICE = 40  # test examples per task in the round trip: enough to cover variety, cheap to write


@pytest.fixture(scope="module")
def seed100(data_dir: Path) -> dict[str, Task]:
    """Every catalogued task loaded once for seed 100 (the module's tests share it)."""
    return {name: load_task(name, data_dir, seed=100) for name in sorted(CATALOG)}


def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def jline(**record) -> str:
    return json.dumps(record)


# ----------------------------------------------------------------------------------------------------------------
# Real data


def test_every_shared_task_loads_for_seed_100(data_dir: Path, seed100: dict[str, Task]) -> None:
    assert available_tasks(data_dir) == sorted(CATALOG)
    assert len(seed100) == 101
    no_test = []
    for name, task in seed100.items():
        assert len(task.train) == 16, name
        assert len(task.dev) == 16, name
        assert task.metric == CATALOG[name].metric and task.metric in METRICS
        assert all(e.task == name for split in (task.train, task.dev, task.test) for e in split)
        assert task.sources["train"].endswith(f"{name}_16_100_train.jsonl")
        if not task.has_test:
            no_test.append(name)
            assert task.sources["test"].startswith("none")
    # The data README says 14 but lists these 15 tasks without a test file.
    assert no_test == sorted(
        "discovery glue-qqp hellaswag hotpot_qa imdb kilt_ay2 quail quoref race-high squad-with_context "
        "superglue-record swag tab_fact xsum yelp_polarity".split()
    )


def test_test_file_falls_back_to_seed_100_and_says_so(data_dir: Path) -> None:
    task = load_task("glue-sst2", data_dir, seed=13)
    assert task.sources["train"].endswith("glue-sst2_16_13_train.jsonl")
    assert "glue-sst2_16_100_test.jsonl" in task.sources["test"] and "seed-100" in task.sources["test"]
    assert len(task.test) == 872
    assert task_files(data_dir, "glue-sst2", 16, 13)["test"].name == "glue-sst2_16_100_test.jsonl"
    assert "test" not in task_files(data_dir, "xsum", 16, 13)


def _sanitized(example: Example) -> Example:
    # The replacement write_tsv(sanitize=True) promises: each run of tabs / line breaks becomes one space.
    def fix(text: str) -> str:
        return re.sub(r"[\t\r\n]+", " ", text)

    return Example(fix(example.input), tuple(fix(r) for r in example.references), example.options, example.task)


def test_jsonl_to_tsv_round_trip_for_all_tasks(seed100: dict[str, Task], tmp_path: Path) -> None:
    sanitized_seen = 0
    for name, task in seed100.items():
        info = task.info
        labels = info.labels or None
        examples = task.train + task.dev + task.test[:TEST_SLICE]
        # The one wikisql input with a tab lies deep in the test file: add it explicitly.
        examples += [e for e in task.test[TEST_SLICE:] if "\t" in e.input]
        has_tab = any("\t" in e.input or any("\t" in r for r in e.references) for e in examples)
        path = tmp_path / f"{name}.tsv"
        if has_tab:
            with pytest.raises(DataError, match="tab or line break"):
                write_tsv(examples, path, labels=labels)
            write_tsv(examples, path, labels=labels, sanitize=True)
            expected = [_sanitized(e) for e in examples]
            sanitized_seen += 1
        else:
            write_tsv(examples, path, labels=labels)
            expected = examples
        back = read_tsv(path, name, labels, parse_options=info.has_options)
        if task.inline_choices:  # the file holds the choices once; the loader writes them after the input again
            back = [replace(e, input=e.input + inline_options_suffix(e.options)) for e in back]
        assert back == expected, name
        assert [e.options for e in back] == [e.options for e in expected]  # Example equality covers it; be explicit
    assert sanitized_seen == 1  # wikisql


def test_tsv_layout_loads_like_jsonl(data_dir: Path, seed100: dict[str, Task], tmp_path: Path) -> None:
    for name in ("glue-sst2", "commonsense_qa", "squad-no_context"):
        task = seed100[name]
        for split in ("train", "dev"):
            path = tmp_path / name / f"{name}_16_100_{split}.tsv"
            write_tsv(getattr(task, split), path, labels=task.info.labels or None)
        loaded = load_task(name, tmp_path)
        assert loaded.train == task.train and loaded.dev == task.dev
        assert loaded.sources["train"].endswith(".tsv") and not loaded.has_test


# ----------------------------------------------------------------------------------------------------------------
# JSONL reader


def test_read_jsonl_valid_lines(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "t.jsonl",
        [
            jline(task="t", input="", output="b", options=["a", "b", "a"]),  # empty input is allowed
            "",  # blank lines are skipped
            jline(task="t", input="q", output=["x", "y"], options=[]),
            jline(input="q2", output="z"),  # task and options optional
        ],
    )
    examples = read_jsonl(path)
    assert examples[0] == Example("", ("b",), ("a", "b"), "t")  # duplicate option dropped, first order kept
    assert examples[1].references == ("x", "y") and examples[1].options == ()
    assert examples[2].task == "" and examples[2].meta["line"] == 4
    assert {e.task for e in read_jsonl(path, task="other")} == {"other"}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"input": "a", "output": "b"', "invalid JSON"),
        (jline(input="a", options=[]), "missing key 'output'"),
        (jline(output="a"), "missing key 'input'"),
        (jline(input=3, output="a"), "'input' must be a string"),
        (jline(input="a", output=""), "empty output"),
        (jline(input="a", output=[]), "non-empty list"),
        (jline(input="a", output="b", options="b"), "'options' must be a list"),
        (jline(input="a", output="c", options=["a", "b"]), "not among the options"),
        ('["a", "b"]', "not an example"),
    ],
)
def test_read_jsonl_errors_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = write_lines(tmp_path / "bad.jsonl", [jline(input="ok", output="ok"), line])
    with pytest.raises(DataError, match=re.escape(message)) as info:
        read_jsonl(path)
    assert "bad.jsonl" in str(info.value) and "line 2" in str(info.value)
    assert info.value.line == 2 and info.value.path == path


def test_read_jsonl_empty_file(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "empty.jsonl", [])
    with pytest.raises(DataError, match="empty split: expected at least one example") as info:
        read_jsonl(path)
    assert "empty.jsonl" in str(info.value)


def test_read_jsonl_invalid_utf8_names_line(tmp_path: Path) -> None:
    path = tmp_path / "latin.jsonl"
    path.write_bytes(b'{"input": "a", "output": "b"}\n{"input": "caf\xe9", "output": "b"}\n')
    with pytest.raises(DataError, match="UTF-8") as info:
        read_jsonl(path)
    assert "latin.jsonl" in str(info.value) and info.value.line == 2


# ----------------------------------------------------------------------------------------------------------------
# TSV reader / writer


def test_split_inline_options() -> None:
    assert split_inline_options("Q? (A) red (B) green (C) blue") == ("Q?", ("red", "green", "blue"))
    # The suffix starts at the last " (A) ": an earlier one belongs to the input.
    assert split_inline_options("pick (A) or (B)? (A) x (B) y") == ("pick (A) or (B)?", ("x", "y"))
    assert split_inline_options("only (A) one") == ("only (A) one", ())
    assert split_inline_options("no suffix") == ("no suffix", ())
    assert split_inline_options(" lead (A) a (B) b") == (" lead", ("a", "b"))  # whitespace kept as is


def test_read_tsv_options(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "t.tsv", ["What? (A) red (B) green\tgreen", " plain input \tans1\tans2"])
    first, second = read_tsv(path, task="t")
    assert first == Example("What?", ("green",), ("red", "green"), "t")
    assert second == Example(" plain input ", ("ans1", "ans2"), (), "t")
    # parse_options=False keeps a generative input whole.
    assert read_tsv(path, parse_options=False)[0].input == "What? (A) red (B) green"
    # A fixed label set: every example gets it; inline suffixes are not parsed.
    fixed = write_lines(tmp_path / "f.tsv", ["good film\tpositive", "bad film\tnegative"])
    assert [e.options for e in read_tsv(fixed, labels=["negative", "positive"])] == [("negative", "positive")] * 2


@pytest.mark.parametrize(
    ("lines", "labels", "message"),
    [
        (["a\tb", "no tab here"], None, "no tab"),
        (["a\tb", "input\t"], None, "empty reference"),
        (["a\tb", "input\tb\t"], None, "empty reference"),
        (["a\tnegative", "input\tneutral"], ["negative", "positive"], "not one of the task's labels"),
        (["a\tb", "Q (A) x (B) y\tz"], None, "not among the inline options"),
    ],
)
def test_read_tsv_errors_name_file_and_line(tmp_path: Path, lines, labels, message) -> None:
    path = write_lines(tmp_path / "bad.tsv", lines)
    with pytest.raises(DataError, match=re.escape(message)) as info:
        read_tsv(path, labels=labels)
    assert "bad.tsv" in str(info.value) and "line 2" in str(info.value)


def test_read_tsv_empty_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="empty split") as info:
        read_tsv(write_lines(tmp_path / "none.tsv", []))
    assert "none.tsv" in str(info.value)


def test_write_tsv_layout_and_options(tmp_path: Path) -> None:
    examples = [
        Example("Which?", ("b",), ("a", "b"), "t"),
        Example("Fine", ("positive",), ("negative", "positive"), "t"),
        Example("Gen", ("x", "y"), (), "t"),
    ]
    path = write_tsv(examples, tmp_path / "sub" / "out.tsv", labels=["negative", "positive"])
    assert path.read_text(encoding="utf-8") == "Which? (A) a (B) b\tb\nFine\tpositive\nGen\tx\ty\n"
    write_tsv(examples, path, inline_options=False)
    assert path.read_text(encoding="utf-8").splitlines()[0] == "Which?\tb"
    # Atomic replacement leaves no temporary file behind.
    assert [p.name for p in path.parent.iterdir()] == ["out.tsv"]


def test_write_tsv_rejects_tabs_and_ambiguous_options(tmp_path: Path) -> None:
    path = tmp_path / "out.tsv"
    with pytest.raises(DataError, match="tab or line break") as info:
        write_tsv([Example("ok", ("a",)), Example("a\tb", ("c",))], path)
    assert "out.tsv" in str(info.value) and "line 2" in str(info.value)
    assert not path.exists()  # nothing half-written
    write_tsv([Example("a\t\tb\nc", ("multi\r\nline",))], path, sanitize=True)
    assert path.read_text(encoding="utf-8") == "a b c\tmulti line\n"
    with pytest.raises(DataError, match="cannot be inlined unambiguously"):
        write_tsv([Example("Q", ("x (B) y",), ("x (B) y", "z"))], path)


# ----------------------------------------------------------------------------------------------------------------
# Locating files


def test_task_files_layouts(tmp_path: Path) -> None:
    folder = tmp_path / "mytask"
    for split in ("train", "dev"):
        write_lines(folder / f"mytask_16_7_{split}.tsv", ["a\tb"])
    write_lines(folder / "mytask_16_7_train.jsonl", [jline(input="a", output="b")])  # JSONL wins over TSV
    files = task_files(tmp_path, "mytask", 16, 7)
    assert files["train"].name == "mytask_16_7_train.jsonl" and files["dev"].name == "mytask_16_7_dev.tsv"
    assert "test" not in files
    write_lines(folder / "mytask_16_100_test.tsv", ["a\tb"])
    assert task_files(tmp_path, "mytask", 16, 7)["test"].name == "mytask_16_100_test.tsv"
    # Flat layout: the files lie directly in data_dir.
    for split in ("train", "dev", "test"):
        write_lines(tmp_path / f"flat_8_1_{split}.tsv", ["a\tb"])
    assert task_files(tmp_path, "flat", 8, 1) == {s: tmp_path / f"flat_8_1_{s}.tsv" for s in ("train", "dev", "test")}
    assert available_tasks(tmp_path) == ["flat", "mytask"]


def test_task_files_missing_dev_names_paths_tried(tmp_path: Path) -> None:
    write_lines(tmp_path / "t" / "t_16_5_train.jsonl", [jline(input="a", output="b")])
    with pytest.raises(DataError, match="no dev file") as info:
        task_files(tmp_path, "t", 16, 5)
    message = str(info.value)
    assert str(tmp_path / "t" / "t_16_5_dev.jsonl") in message and str(tmp_path / "t_16_5_dev.tsv") in message


# ----------------------------------------------------------------------------------------------------------------
# Split files


def test_read_split_file_valid(tmp_path: Path) -> None:
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"train": ["glue-sst2", "imdb"], "test": ["boolq"]}))
    assert read_split_file(path, known_tasks=CATALOG) == {"train": ["glue-sst2", "imdb"], "test": ["boolq"]}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"train": ["glue-sst2", "boolq"], "test": ["boolq"]}, "leakage"),
        ({"train": ["glue-sst2"], "valid": ["boolq"]}, "unknown keys ['valid']"),
        ({"train": ["glue-sst"]}, "did you mean glue-sst2"),
        ({"train": ["imdb", "imdb"]}, "more than once"),
        ({"dev": "imdb"}, "must be a list"),
        ({}, "non-empty JSON object"),
    ],
)
def test_read_split_file_errors_name_the_file(tmp_path: Path, content, message) -> None:
    path = tmp_path / "my_split.json"
    path.write_text(json.dumps(content))
    with pytest.raises(DataError, match=re.escape(message)) as info:
        read_split_file(path, known_tasks=CATALOG)
    assert "my_split.json" in str(info.value)


def test_read_split_file_invalid_json_names_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "train": ["a",\n}\n')
    with pytest.raises(DataError, match="invalid JSON") as info:
        read_split_file(path)
    assert "broken.json" in str(info.value) and "line 3" in str(info.value)


# ----------------------------------------------------------------------------------------------------------------
# load_task


def test_unknown_task_suggests_close_names(data_dir: Path) -> None:
    with pytest.raises(UnknownTaskError, match="did you mean glue-sst2") as info:
        load_task("glue-sst", data_dir)
    assert str(data_dir) in str(info.value)
    # A catalogued task whose files are absent from the folder is unknown *there*.
    with pytest.raises(UnknownTaskError, match="has no folder"):
        load_task("glue-sst2", data_dir / "glue-rte")


def test_user_task_takes_a_metric_or_the_default(tmp_path: Path) -> None:
    for split in ("train", "dev"):
        line = jline(input="q", output="a", options=["a", "b"])
        write_lines(tmp_path / "mine" / f"mine_16_100_{split}.jsonl", [line])
    default = load_task("mine", tmp_path)  # options: ACC, said and recorded
    assert default.metric == "ACC" and default.sources["metric"].startswith("ACC: the default")
    with pytest.raises(UnknownTaskError, match="has no files"):
        load_task("nothing", tmp_path)
    with pytest.raises(ConfigError, match="Classification-F1"):
        load_task("mine", tmp_path, metric="F1")
    task = load_task("mine", tmp_path, metric="ACC")
    assert (task.metric, task.info.category, task.info.type) == ("ACC", "unknown", "unknown")
    assert task.info.has_options and task.info.labels == () and not task.has_test
    assert task.train[0].task == "mine"


def test_options_must_match_catalog_labels(data_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "glue-sst2"
    good = jline(input="x", output="positive", options=["negative", "positive"])
    swapped = jline(input="y", output="positive", options=["positive", "negative"])
    write_lines(folder / "glue-sst2_16_100_train.jsonl", [good, swapped])
    write_lines(folder / "glue-sst2_16_100_dev.jsonl", [good])
    with pytest.raises(DataError, match="differ from the catalog labels") as info:
        load_task("glue-sst2", tmp_path)
    assert "glue-sst2_16_100_train.jsonl" in str(info.value) and "line 2" in str(info.value)


def test_task_split_accessor(seed100: dict[str, Task]) -> None:
    task = seed100["glue-rte"]
    assert task.split("dev") is task.dev
    with pytest.raises(ConfigError, match="unknown split 'validation'"):
        task.split("validation")
    with pytest.raises(DataError, match="no test split"):
        seed100["xsum"].split("test")


def test_default_data_dir(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    monkeypatch.delenv("TASKSPACE_DATA", raising=False)
    with pytest.raises(ConfigError, match="--data-dir"):
        default_data_dir()
    monkeypatch.setenv("TASKSPACE_DATA", str(data_dir))
    assert default_data_dir() == data_dir
