"""Multiple-choice inputs in CrossFit's form (SPEC): a task whose options are per-example answer choices writes them
after each input, `` (A) opt1 (B) opt2 ...``, so that a model answering by generation sees what it chooses among; a
fixed label set and generative tasks keep their inputs; the form is recorded in a run and used by ``predict``."""

from __future__ import annotations

import json

import pytest

from taskspace.predict import Predictor
from taskspace.tasks import load_task
from taskspace.tasks.formats import read_tsv, write_tsv
from taskspace.tasks.sources import Columns


@pytest.mark.parametrize("name", ["commonsense_qa", "superglue-copa", "ai2_arc"])
def test_a_catalogued_multiple_choice_input_ends_with_its_choices(data_dir, name):
    task = load_task(name, data_dir)
    raw = [json.loads(line) for line in (data_dir / name / f"{name}_16_100_train.jsonl").read_text().splitlines()]
    assert task.inline_choices and "choices" in task.sources
    for example, record in zip(task.train, raw):
        letters = "".join(f" ({chr(65 + i)}) {o}" for i, o in enumerate(record["options"]))
        assert example.input == record["input"] + letters and example.options == tuple(record["options"])
    assert all(e.input.endswith(" (A) " + e.options[0] + " (B) " + e.options[1]) or len(e.options) > 2
               for split in (task.dev, task.test) for e in split)


@pytest.mark.parametrize("name", ["glue-sst2", "ag_news", "lama-trex"])
def test_fixed_labels_and_generative_tasks_keep_their_inputs(data_dir, name):
    task = load_task(name, data_dir)
    raw = [json.loads(line)["input"] for line in (data_dir / name / f"{name}_16_100_train.jsonl").read_text()
           .splitlines()]
    assert not task.inline_choices and [e.input for e in task.train] == raw


def test_a_resampled_multiple_choice_task_writes_its_choices_too(data_dir):
    task = load_task("commonsense_qa", data_dir, resample=True, seed=3)
    assert task.inline_choices and all(e.input.endswith(f" (B) {e.options[1]}") or f" (B) {e.options[1]} (C) "
                                       in e.input for e in task.train + task.dev)


def test_a_loaded_multiple_choice_task_writes_and_reads_back_as_crossfit_tsv(data_dir, tmp_path):
    task = load_task("ai2_arc", data_dir)
    path = write_tsv(task.train, tmp_path / "ai2_arc_16_100_train.tsv")
    line = path.read_text().splitlines()[0]
    assert line.count(" (A) ") == 1  # the choices once, not twice
    back = read_tsv(path, "ai2_arc")
    assert [(e.options, e.references) for e in back] == [(e.options, e.references) for e in task.train]
    assert [e.input + "".join(f" ({chr(65 + i)}) {o}" for i, o in enumerate(e.options)) for e in back] == \
        [e.input for e in task.train]


def _own(tmp_path, options_per_row):
    folder = tmp_path / "mine"
    folder.mkdir(parents=True)
    for split in ("train", "dev"):
        rows = [{"text": f"question {i}?", "label": opts[0], "options": list(opts)} for i, opts in
                enumerate(options_per_row)]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return load_task("mine", tmp_path, columns=Columns(input_column="text", output_column="label",
                                                       options_column="options"))


def test_own_data_writes_choices_only_when_they_differ_between_examples(tmp_path):
    choices = _own(tmp_path / "a", [("red", "blue"), ("cat", "dog", "cow")])
    assert choices.inline_choices and choices.train[1].input == "question 1? (A) cat (B) dog (C) cow"
    labels = _own(tmp_path / "b", [("yes", "no"), ("yes", "no")])
    assert not labels.inline_choices and labels.train[0].input == "question 0?"


def test_predict_writes_a_querys_choices_as_its_run_did(shared_dir, data_dir, tmp_path):
    from taskspace.backbones import load_backbone
    from taskspace.predict import Query
    from taskspace.tuning import TuneConfig, tune

    backbone = load_backbone(f"{shared_dir}/models/stories260K")
    config = TuneConfig(task="commonsense_qa", method="bitfit", data_dir=str(data_dir), max_test_examples=2,
                        backbone=backbone.name)
    config.train = config.train.replace(steps=1, batch_size=2, eval_every=1, progress=False)
    tune(config, tmp_path / "run", backbone=backbone)
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())["data"]
    assert recorded["inline_choices"] is True
    predictor = Predictor.load(tmp_path / "run", backbone=backbone)
    example = predictor._example(Query("Where do cats sleep?", ("bed", "sky")))
    assert example.input == "Where do cats sleep? (A) bed (B) sky" and example.options == ("bed", "sky")
    assert predictor._example(Query("No choices here")).input == "No choices here"
    # a run made before the form existed recorded nothing: its queries are read as it read its inputs
    config_file = tmp_path / "run" / "config.json"
    record = json.loads(config_file.read_text())
    record["data"].pop("inline_choices")
    config_file.write_text(json.dumps(record))
    before = Predictor.load(tmp_path / "run", backbone=backbone)
    assert before._example(Query("Where do cats sleep?", ("bed", "sky"))).input == "Where do cats sleep?"


def test_an_export_says_and_formats_the_choices_after_the_input(shared_dir):
    """The export record of a multiple-choice run gives the ids taskspace feeds the model (the choices after the
    input), and its model card says so; a run of a task without choices ignores options given to it."""
    import torch

    from taskspace.deltas import build_method
    from taskspace.export.card import card_text, export_record, input_ids, input_text
    from taskspace.tasks import Example
    from tiny import tiny_backbone

    backbone = tiny_backbone("llama", str(shared_dir), template="boundary")
    method = build_method("lora", backbone, {"r": 2})
    theta = method.init(torch.Generator().manual_seed(0))
    question, options = "Where do cats sleep?", ("bed", "sky")
    record = export_record(Predictor(backbone, method, theta, "commonsense_qa", inline_choices=True), None, "peft")
    example = Example(question + " (A) bed (B) sky", ("bed",), options, task="commonsense_qa")
    assert input_text(record, question, options) == backbone.format_input(example)
    batch = backbone.collate([example])
    assert input_ids(record, question, backbone.tokenizer, options) == \
        batch["input_ids"][0, : int(batch["answer_start"])].tolist()
    assert "The input ends with its answer choices" in card_text(record)
    plain = export_record(Predictor(backbone, method, theta, "glue-sst2"), None, "peft")
    assert input_text(plain, question, options) == "[glue-sst2] " + question
    assert "answer choices" not in card_text(plain)
