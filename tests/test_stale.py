"""Nothing stale: a run or a bank entry is reused only for the data it was made on (the content of each split,
wherever the data folder lies); edited data gets a new run, or a one-line refusal where the run was named."""

from __future__ import annotations

import json
import shutil

import pytest

from taskspace.backbones import load_backbone
from taskspace.cli import main
from taskspace.errors import ConfigError
from taskspace.subspace import Bank, BankSpec, FitData, build_bank
from taskspace.train import TrainConfig
from taskspace.tuning import TuneConfig, default_run_name, tune

#: A task of one's own: (input, label) rows per split.
ROWS = {"train": [("great film", "good"), ("awful plot", "bad"), ("loved it", "good"), ("boring", "bad")],
        "dev": [("fine acting", "good"), ("dull", "bad")],
        "test": [("superb", "good"), ("terrible", "bad")]}


def write_task(folder, flip=()):
    """``folder`` as a task of one's own (train/dev/test CSV with a header), the labels of the splits in ``flip``
    swapped."""
    folder.mkdir(parents=True, exist_ok=True)
    swap = {"good": "bad", "bad": "good"}
    for split, rows in ROWS.items():
        lines = ["input,output", *(f"{text},{swap[label] if split in flip else label}" for text, label in rows)]
        (folder / f"{split}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def written(run):
    """Every file of a run directory with its modification time (what a retraining would change)."""
    return {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def llama_dir(shared_dir):
    return str(shared_dir / "models" / "stories260K")


@pytest.fixture(scope="module")
def llama(llama_dir):
    return load_backbone(llama_dir, max_output_length=2)


def quick():
    return TrainConfig(steps=2, eval_every=2, progress=False)


def tune_args(llama_dir, data, out, *extra):
    return ["tune", "--task", "reviews", "--method", "bitfit", "--backbone", llama_dir, "--data-dir", str(data),
            "--metric", "EM", "--steps", "2", "--eval-every", "2", "--backbone-opt", "max_output_length=2",
            "--no-progress", "--out", str(out), *extra]


def test_edited_labels_give_a_new_run_with_new_predictions(tmp_path, llama_dir, capsys):
    data, runs = tmp_path / "data", tmp_path / "runs"
    write_task(data / "reviews")
    assert main(tune_args(llama_dir, data, runs)) == 0
    (first,) = runs.iterdir()
    before = written(first)
    # the labels of train.csv changed, nothing else: the same command trains a new run
    write_task(data / "reviews", flip=("train",))
    assert main(tune_args(llama_dir, data, runs)) == 0
    (second,) = set(runs.iterdir()) - {first}
    assert written(first) == before  # the old run is left as it was
    old, new = (json.loads((run / "config.json").read_text())["data_digest"]["reviews"] for run in (first, second))
    assert old["train"] != new["train"] and old["dev"] == new["dev"] and old["test"] == new["test"]
    # every split's labels changed: another run, whose predictions are scored against the new labels
    write_task(data / "reviews", flip=("train", "dev", "test"))
    assert main(tune_args(llama_dir, data, runs)) == 0
    (third,) = set(runs.iterdir()) - {first, second}
    references = {split: [json.loads(line)["references"] for line in
                          (third / "predictions" / f"{split}.jsonl").read_text().splitlines()]
                  for split in ("dev", "test")}
    assert references == {"dev": [["bad"], ["good"]], "test": [["bad"], ["good"]]}
    assert written(first) == before
    assert str(third) in capsys.readouterr().out


def test_a_moved_data_folder_keeps_its_run(tmp_path, llama, llama_dir):
    write_task(tmp_path / "data" / "reviews")
    config = TuneConfig(task="reviews", method="bitfit", data_dir=str(tmp_path / "data"), backbone=llama_dir,
                        backbone_options={"max_output_length": 2}, train=quick())
    run = tmp_path / "runs" / default_run_name(config)
    trained = tune(config, run, backbone=llama)
    before = written(run)
    shutil.move(tmp_path / "data", tmp_path / "moved")
    moved = config.replace(data_dir=str(tmp_path / "moved"))
    assert default_run_name(moved) == run.name  # the same name: the same data
    again = tune(moved, run, backbone=llama)  # returned, not trained again
    assert again.run_dir == run and (again.scores["dev"], again.scores["test"]) == (trained.scores["dev"],
                                                                                     trained.scores["test"])
    assert written(run) == before


def test_a_named_run_of_other_data_is_refused_in_one_line(tmp_path, llama_dir, capsys):
    data, runs = tmp_path / "data", tmp_path / "runs"
    write_task(data / "reviews")
    args = tune_args(llama_dir, data, runs, "--run-name", "mine")
    assert main(args) == 0
    before = written(runs / "mine")
    recorded = json.loads((runs / "mine" / "config.json").read_text())
    write_task(data / "reviews", flip=("train",))
    capsys.readouterr()
    assert main(args) == 2
    (err,) = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err.startswith("taskspace tune: error:")
    changed, fix = err.split("holds a run made on other data: ", 1)[1].split(";", 1)
    assert changed == "the train split of task 'reviews' changed since" and "--overwrite" in fix
    assert written(runs / "mine") == before  # left as it was
    # the Python API refuses it alike (the run's own settings, given its directory)
    with pytest.raises(ConfigError, match="the train split of task 'reviews' changed"):
        tune(TuneConfig.from_dict(recorded["run"]), runs / "mine")
    assert written(runs / "mine") == before
    # --overwrite replaces it by a run of the new data
    assert main([*args, "--overwrite"]) == 0
    old = recorded["data_digest"]["reviews"]
    new = json.loads((runs / "mine" / "config.json").read_text())["data_digest"]["reviews"]
    assert new["train"] != old["train"] and new["dev"] == old["dev"] and new["test"] == old["test"]


def test_a_run_made_before_digests_is_returned_from_its_own_data_folder(tmp_path, llama, llama_dir):
    """A run whose config.json records no digests (made by an earlier version) cannot be compared on content: it
    is returned for the data folder it recorded, and refused for another one, as before."""
    write_task(tmp_path / "data" / "reviews")
    config = TuneConfig(task="reviews", method="bitfit", data_dir=str(tmp_path / "data"), backbone=llama_dir,
                        backbone_options={"max_output_length": 2}, train=quick())
    run = tmp_path / "old"
    trained = tune(config, run, backbone=llama)
    record = json.loads((run / "config.json").read_text())
    del record["data_digest"]
    (run / "config.json").write_text(json.dumps(record))
    assert tune(config, run, backbone=llama).scores["dev"] == trained.scores["dev"]
    shutil.copytree(tmp_path / "data", tmp_path / "copy")
    with pytest.raises(ConfigError, match="different configuration"):
        tune(config.replace(data_dir=str(tmp_path / "copy")), run, backbone=llama)


def test_a_bank_entry_is_not_reused_after_its_tasks_data_changed(tmp_path, llama):
    data, root = tmp_path / "data", tmp_path / "bank"
    write_task(data / "reviews")
    spec = BankSpec(tasks=["reviews"], methods={"bitfit": {}}, data_dir=str(data), train=quick())
    build_bank(root, spec, llama)
    entry = root / "reviews" / "bitfit" / "s0"
    before = written(entry)
    assert json.loads((root / "bank.json").read_text())["data"]["reviews"] == json.loads(
        (entry / "config.json").read_text())["data_digest"]["reviews"]
    write_task(data / "reviews", flip=("train",))
    # building the bank again is refused, naming the task and split; so is the entry, asked for as a run
    with pytest.raises(ConfigError, match="holds entries made on other data: the train split of task 'reviews'"):
        build_bank(root, spec, llama)
    with pytest.raises(ConfigError, match="the train split of task 'reviews' changed"):
        tune(spec.tune_config("reviews", "bitfit", 0, llama), entry, backbone=llama)
    # and fitting a subspace to the bank's solutions on the changed training data
    with pytest.raises(ConfigError, match="the train split of task 'reviews' changed"):
        FitData.from_bank(Bank(root, llama), ["reviews"]).multitask()
    assert written(entry) == before
    # the data the bank was built on, in another folder: the same bank, nothing trained again
    write_task(data / "reviews")
    shutil.move(data, tmp_path / "moved")
    build_bank(root, spec.replace(data_dir=str(tmp_path / "moved")), llama)
    assert written(entry) == before
