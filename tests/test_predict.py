"""Using a tuned result: a finished run answers new inputs exactly as it answered its own test set."""

from __future__ import annotations

import io
import json

import pytest

from taskspace.cli import main
from taskspace.evaluation import capped_test_split
from taskspace.predict import Predictor, Query
from taskspace.tasks import load_task

COMMON = ["--steps", "2", "--eval-every", "2", "--max-test-examples", "8", "--no-progress"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shared_dir, data_dir):
    """A LoRA tune run (rank: options chosen) and a subspace-tune run in a Fastfood subspace (generate)."""
    root = tmp_path_factory.mktemp("runs")
    llama = f"{shared_dir}/models/stories260K"
    assert main(["tune", "--task", "glue-sst2", "--method", "lora", "--opt", "r=2", "--backbone", llama,
                 "--decode", "rank", "--data-dir", str(data_dir), "--out", str(root), "--run-name", "lora",
                 *COMMON]) == 0
    assert main(["fit-subspace", "--recipe", "fastfood", "--d", "4", "--backbone", llama,
                 "--out", str(root / "ff")]) == 0
    assert main(["subspace-tune", "--subspace", str(root / "ff"), "--task", "web_questions", "--method", "finetune",
                 "--z-init", "zeros", "--lr", "0.5", "--data-dir", str(data_dir), "--out", str(root / "ist"),
                 "--backbone-opt", "max_output_length=6", *COMMON]) == 0
    return root


def _saved(run):
    return [json.loads(line) for line in (run / "predictions" / "test.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("name,task", [("lora", "glue-sst2"), ("ist", "web_questions")])
def test_a_run_predicts_what_it_predicted_on_its_test_set(runs, data_dir, name, task):
    examples = capped_test_split(load_task(task, str(data_dir)), 8, 0)
    predictor = Predictor.load(runs / name)
    got = predictor.predict([Query(e.input, e.options) for e in examples], batch_size=3)
    assert got == [p["prediction"] for p in _saved(runs / name)]
    if name == "lora":  # rank: every answer is one of the options
        assert all(a in e.options for a, e in zip(got, examples))
    else:
        assert predictor.backbone.max_output_length == 6  # the recorded settings came back


def test_the_command_reads_jsonl_or_plain_lines(runs, data_dir, tmp_path, capsys, monkeypatch):
    examples = capped_test_split(load_task("glue-sst2", str(data_dir)), 8, 0)
    queries = tmp_path / "in.jsonl"
    queries.write_text("".join(json.dumps({"input": e.input, "options": list(e.options)}) + "\n" for e in examples)
                       + "\n")  # a blank line is skipped
    out = tmp_path / "out" / "answers.jsonl"
    assert main(["predict", str(runs / "lora"), "--input", str(queries), "--output", str(out), "--no-progress"]) == 0
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [w["prediction"] for w in written] == [p["prediction"] for p in _saved(runs / "lora")]
    assert written[0]["input"] == examples[0].input and written[0]["options"] == list(examples[0].options)
    capsys.readouterr()
    monkeypatch.setattr("sys.stdin", io.StringIO("what is the capital of france?\nwho wrote hamlet?\n"))
    assert main(["predict", str(runs / "ist"), "--no-progress"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


@pytest.mark.parametrize("make,message", [
    (lambda tmp, runs: ["predict", str(tmp / "nowhere")], "RUN .*nowhere: expected a run directory"),
    (lambda tmp, runs: ["predict", str(runs / "lora"), "--input", str(tmp / "missing.txt")],
     "--input .*missing.txt: file not found"),
    (lambda tmp, runs: ["predict", str(runs / "lora"), "--input", str(_write(tmp / "bad.jsonl", '{"input": "x"}\n{"input"'))],
     r"bad.jsonl, line 2: invalid JSON"),
    (lambda tmp, runs: ["predict", str(runs / "lora"), "--input", str(_write(tmp / "opt.jsonl", '{"input": "x", "options": "yes"}'))],
     r"opt.jsonl, line 1: \"options\" must be a list"),
    (lambda tmp, runs: ["predict", str(runs / "ff")], "RUN .*ff: expected a run directory"),
    (lambda tmp, runs: ["predict", str(_unfinished(tmp, runs))], "the run is not finished"),
])
def test_bad_input_is_one_line(runs, tmp_path, capsys, make, message):
    import re

    assert main([*make(tmp_path, runs), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err


def _write(path, text):
    path.write_text(text)
    return path


def _unfinished(tmp, runs):
    import shutil

    copy = tmp / "unfinished"
    shutil.copytree(runs / "lora", copy)
    (copy / "scores.json").unlink()
    return copy
